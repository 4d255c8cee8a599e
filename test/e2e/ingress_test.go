package e2e

// status.callbackURL carries real traffic: through Traefik's Ingress over HTTPS with the
// certificate cert-manager issued for spec.ingress.host (and its renewal under traffic), and
// through an HTTPRoute on Traefik's Gateway, whose own status decides Exposed.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/test/localcluster"
)

// How many callbacks each path of the latency comparison sends, one every latencyPause.
const (
	latencySamples = 200
	latencyPause   = 50 * time.Millisecond
)

func TestIngressHTTPSWithCertManager(t *testing.T) {
	t.Parallel()
	in := ingressAddon(t)
	ns := newNamespace(t, "e2e-ingress")
	t.Cleanup(func() { traefikLogOnFailure(t) })
	host := ns + ".callbacks.test"
	dir := overlay(t, nil, []kpatch{{kind: "CallbackReceiver", name: sampleName, patch: fmt.Sprintf(`
- op: add
  path: /spec/ingress
  value:
    className: %s
    host: %s
    annotations: {cert-manager.io/cluster-issuer: %s}
    tls: {secretName: %s-tls}`, localcluster.IngressClassName, host, localcluster.CAIssuer, sampleName)}})
	applyK(t, ns, dir)
	rcv := waitReceiver(t, ns, sampleName, 1, 3*time.Minute)
	waitSink(t, ns, sampleSink)
	url := "https://" + host + samplePath
	if rcv.cr.Status.CallbackURL != url {
		t.Fatalf("status.callbackURL %q, want %q", rcv.cr.Status.CallbackURL, url)
	}
	if c := meta.FindStatusCondition(rcv.cr.Status.Conditions, cbv1.ConditionExposed); c == nil || c.Status != metav1.ConditionTrue || c.Reason != cbv1.ReasonIngressConfigured {
		t.Errorf("Exposed %+v, want True %s", c, cbv1.ReasonIngressConfigured)
	}

	// cert-manager's ingress-shim issued the Secret the Ingress names, for the host only.
	certName := sampleName + "-tls"
	rev := waitCertificateReady(t, ns, certName, 0, 2*time.Minute)
	issued, err := secretLeaf(t, ns, certName)
	if err != nil {
		t.Fatal(err)
	}
	if len(issued.DNSNames) != 1 || issued.DNSNames[0] != host {
		t.Errorf("issued certificate for %v, want [%s]", issued.DNSNames, host)
	}
	client := localCAClient(t, in)
	eventually(t, time.Minute, "Traefik serves the issued certificate for "+host, func() error {
		leaf, err := servedLeaf(in, host)
		if err != nil {
			return err
		}
		if leaf.SerialNumber.Cmp(issued.SerialNumber) != 0 {
			return fmt.Errorf("served serial %s, issued %s", leaf.SerialNumber, issued.SerialNumber)
		}
		return nil
	})

	// Signed callbacks through the URL IM would call, trusting only the local CA. Traefik
	// routes the Ingress once its provider saw the Service's endpoints (its configuration
	// is reloaded at most every 2s).
	var sent []callback
	eventually(t, 30*time.Second, "a signed callback through the Ingress", func() error {
		c := blacklistDelete(sampleToken, 50+len(sent), 1)
		status, r, err := c.sendWith(client, url)
		if err != nil || status != http.StatusOK || r != (protocolReply{ActionStatus: "OK"}) {
			return answerErr(status, r, err)
		}
		sent = append(sent, c)
		return nil
	})
	for i := range 5 {
		c := blacklistDelete(sampleToken, i, 1)
		status, r, err := c.sendWith(client, url)
		if err != nil || status != http.StatusOK || r != (protocolReply{ActionStatus: "OK"}) {
			t.Fatalf("callback through the Ingress: %d %+v %v", status, r, err)
		}
		sent = append(sent, c)
	}
	// A bad Sign is the receiver's 401, through the ingress.
	forged := blacklistDelete(sampleToken, 100, 1)
	forged.sign = signature("not-the-token", forged.requestTime)
	if status, r, err := forged.sendWith(client, url); err != nil || status != http.StatusUnauthorized || r.ActionStatus != "FAIL" || !strings.Contains(r.ErrorInfo, "Sign") {
		t.Errorf("forged callback through the Ingress: %d %+v %v, want 401 FAIL Sign", status, r, err)
	}
	// The Ingress routes exactly the path (and any query): other paths are Traefik's 404
	// and never reach the receiver.
	for _, p := range []string{"/", "/im", samplePath + "/", samplePath + "x", "/im/callback/../other", "/metrics"} {
		c := blacklistDelete(sampleToken, 200, 1)
		resp, err := client.Post("https://"+host+p+"?"+c.query(), "application/json", bytes.NewReader(c.body))
		if err != nil {
			t.Fatalf("POST %s: %v", p, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "ActionStatus") {
			t.Errorf("POST %s through the Ingress: %d %q, want Traefik's 404", p, resp.StatusCode, body)
		}
	}
	// Another host on the same address is not routed to the receiver either.
	other := &http.Client{Timeout: 10 * time.Second, Transport: client.Transport.(*http.Transport).Clone()}
	other.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true // not the point here
	if resp, err := other.Post("https://other.callbacks.test"+samplePath, "application/json", strings.NewReader("{}")); err != nil {
		t.Errorf("POST to another host: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST to another host: %d, want 404", resp.StatusCode)
		}
	}

	// Renewal under traffic: a re-issue (what `cmctl renew` asks for) is served without
	// dropping a callback.
	var next atomic.Int64
	next.Store(1000)
	tr := startTrafficWith(client, url, sampleToken, &next, 2, 100*time.Millisecond)
	time.Sleep(time.Second)
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":"Issuing","status":"True","reason":"ManuallyTriggered","message":"e2e: re-issue","lastTransitionTime":%q}]}}`,
		time.Now().UTC().Format(time.RFC3339))
	kubectl(t, "patch", "certificate", certName, "-n", ns, "--subresource=status", "--type=merge", "-p", patch)
	newRev := waitCertificateReady(t, ns, certName, rev, 2*time.Minute)
	renewed, err := secretLeaf(t, ns, certName)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.SerialNumber.Cmp(issued.SerialNumber) == 0 {
		t.Fatalf("Certificate at revision %d (was %d) but the Secret holds the same certificate", newRev, rev)
	}
	eventually(t, time.Minute, "Traefik serves the renewed certificate", func() error {
		leaf, err := servedLeaf(in, host)
		if err != nil {
			return err
		}
		if leaf.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
			return fmt.Errorf("served serial %s, renewed %s", leaf.SerialNumber, renewed.SerialNumber)
		}
		return nil
	})
	before := tr.okCount()
	eventually(t, 30*time.Second, "callbacks answered after the renewal is served", func() error {
		if n := tr.okCount(); n < before+5 {
			return fmt.Errorf("%d OK, %d before", n, before)
		}
		return nil
	})
	tr.halt()
	if len(tr.failures) > 0 || tr.statuses[http.StatusOK] != tr.sent {
		t.Fatalf("during the renewal: %d sent, statuses %v, failures %v", tr.sent, tr.statuses, tr.failures)
	}
	t.Logf("certificate revision %d -> %d under traffic: %d callbacks, all OK", rev, newRev, tr.sent)
	sent = append(sent, tr.accepted...)

	// What the ingress adds per callback: the same rate through Traefik over HTTPS (a new
	// connection each, as IM's first request) and straight to the Service's ClusterIP.
	for _, path := range []struct {
		name string
		cl   *http.Client
		base string
	}{{"through Traefik (HTTPS)", client, url}, {"straight to the Service (HTTP)", callbackClient, rcv.url()}} {
		var lat []time.Duration
		for i := range latencySamples {
			c := blacklistDelete(sampleToken, 5000+len(sent), 1)
			begin := time.Now()
			status, r, err := c.sendWith(path.cl, path.base)
			lat = append(lat, time.Since(begin))
			if err != nil || status != http.StatusOK || r != (protocolReply{ActionStatus: "OK"}) {
				t.Fatalf("callback %d %s: %d %+v %v", i, path.name, status, r, err)
			}
			sent = append(sent, c)
			time.Sleep(latencyPause)
		}
		slices.Sort(lat)
		t.Logf("OK %s, %d callbacks at %.0f/s: p50 %s, p99 %s, max %s", path.name, len(lat), float64(time.Second)/float64(latencyPause),
			lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	}
	events := waitSinkEvents(t, ns, sampleSink, len(sent), time.Minute)
	checkEvents(t, events, sent, sampleSinkPath, nil)
}

func TestGatewayHTTPRouteExposure(t *testing.T) {
	t.Parallel()
	in := ingressAddon(t)
	ns := newNamespace(t, "e2e-gateway")
	t.Cleanup(func() { traefikLogOnFailure(t) })
	host := ns + "." + localcluster.GatewayDomain
	dir := overlay(t, nil, []kpatch{{kind: "CallbackReceiver", name: sampleName, patch: fmt.Sprintf(`
- op: add
  path: /spec/httpRoute
  value:
    parentRefs:
    - {namespace: %s, name: %s, sectionName: %s}
    hostnames: [%s]`, localcluster.IngressNamespace, localcluster.GatewayName, localcluster.GatewayListener, host)}})
	applyK(t, ns, dir)
	// Ready counts Exposed: True only once Traefik accepted the route in its status.parents.
	rcv := waitReceiver(t, ns, sampleName, 1, 3*time.Minute)
	waitSink(t, ns, sampleSink)
	exp := meta.FindStatusCondition(rcv.cr.Status.Conditions, cbv1.ConditionExposed)
	if exp == nil || exp.Status != metav1.ConditionTrue || exp.Reason != cbv1.ReasonRouteAccepted {
		t.Fatalf("Exposed %+v, want True %s", exp, cbv1.ReasonRouteAccepted)
	}
	route := kubectl(t, "get", "httproute", sampleName, "-n", ns, "-o", "jsonpath={.status.parents[0].controllerName} {.status.parents[0].conditions[?(@.type=='Accepted')].status}")
	if route != "traefik.io/gateway-controller True" {
		t.Errorf("HTTPRoute status.parents: %q, want Traefik's Accepted True", route)
	}
	url := "https://" + host + samplePath
	if rcv.cr.Status.CallbackURL != url {
		t.Fatalf("status.callbackURL %q, want %q", rcv.cr.Status.CallbackURL, url)
	}
	client := localCAClient(t, in)
	var sent []callback
	eventually(t, 30*time.Second, "a signed callback through the Gateway", func() error {
		c := blacklistDelete(sampleToken, len(sent), 1)
		status, r, err := c.sendWith(client, url)
		if err != nil || status != http.StatusOK || r != (protocolReply{ActionStatus: "OK"}) {
			return answerErr(status, r, err) // Traefik's 404 until the route is live
		}
		sent = append(sent, c)
		return nil
	})
	for i := range 3 {
		c := blacklistDelete(sampleToken, 10+i, 2)
		status, r, err := c.sendWith(client, url)
		if err != nil || status != http.StatusOK || r != (protocolReply{ActionStatus: "OK"}) {
			t.Fatalf("callback through the Gateway: %d %+v %v", status, r, err)
		}
		sent = append(sent, c)
	}
	leaf, err := servedLeaf(in, host)
	if err != nil {
		t.Fatal(err)
	}
	if want := "*." + localcluster.GatewayDomain; len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != want {
		t.Errorf("the Gateway serves a certificate for %v, want [%s] (gateway-shim's)", leaf.DNSNames, want)
	}
	events := waitSinkEvents(t, ns, sampleSink, len(sent), time.Minute)
	checkEvents(t, events, sent, sampleSinkPath, nil)

	// A hostname the listener does not allow: Traefik refuses the route, and Exposed says so
	// with Traefik's reason; no URL is offered.
	elsewhere := ns + ".elsewhere.test"
	kubectl(t, "patch", "cbr", sampleName, "-n", ns, "--type=json", "-p",
		fmt.Sprintf(`[{"op":"replace","path":"/spec/httpRoute/hostnames","value":[%q]}]`, elsewhere))
	eventually(t, time.Minute, "Exposed False with Traefik's reason", func() error {
		cr, err := getCR(t, ns, sampleName)
		if err != nil {
			return err
		}
		c := meta.FindStatusCondition(cr.Status.Conditions, cbv1.ConditionExposed)
		switch {
		case c == nil || c.ObservedGeneration != cr.Generation:
			return fmt.Errorf("Exposed %+v (generation %d)", c, cr.Generation)
		case c.Status != metav1.ConditionFalse || c.Reason != cbv1.ReasonRouteNotAccepted:
			return fmt.Errorf("Exposed %s %s: %s", c.Status, c.Reason, c.Message)
		case !strings.Contains(c.Message, "NoMatchingListenerHostname"):
			return fmt.Errorf("Exposed message without Traefik's reason: %s", c.Message)
		case cr.Status.CallbackURL != "":
			return fmt.Errorf("status.callbackURL %q with a refused route", cr.Status.CallbackURL)
		}
		t.Logf("Exposed: %s %s: %s", c.Status, c.Reason, c.Message)
		return nil
	})
}

// TestGatewayToReceiverTLS: the receiver serves HTTPS itself (spec.tls, with a certificate
// cert-manager issues from the local CA for the Service's name), and Traefik's Gateway
// speaks HTTPS to it, verifying it with a BackendTLSPolicy: HTTPS end to end.
func TestGatewayToReceiverTLS(t *testing.T) {
	t.Parallel()
	in := ingressAddon(t)
	ns := newNamespace(t, "e2e-gwtls")
	t.Cleanup(func() { traefikLogOnFailure(t) })
	host := ns + "." + localcluster.GatewayDomain
	svcName := sampleName + "." + ns + ".svc"
	applyK(t, ns, overlay(t, map[string]string{"backend-tls.yaml": fmt.Sprintf(`
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: receiver-tls}
spec:
  secretName: receiver-tls
  dnsNames: [%[1]s, %[1]s.cluster.local]
  duration: 2160h
  renewBefore: 360h
  privateKey: {algorithm: ECDSA, size: 256, encoding: PKCS1, rotationPolicy: Always}
  usages: [digital signature, key encipherment, server auth]
  issuerRef: {group: cert-manager.io, kind: ClusterIssuer, name: %[2]s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-ca}
data:
  ca.crt: |
%[3]s
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: %[4]s}
spec:
  targetRefs:
  - {group: "", kind: Service, name: %[4]s}
  validation:
    caCertificateRefs:
    - {group: "", kind: ConfigMap, name: local-ca}
    hostname: %[1]s
`, svcName, localcluster.CAIssuer, indent(string(in.CACert), "    "), sampleName)}, []kpatch{{kind: "CallbackReceiver", name: sampleName, patch: fmt.Sprintf(`
- {op: add, path: /spec/tls, value: {secretName: receiver-tls}}
- op: add
  path: /spec/httpRoute
  value:
    parentRefs:
    - {namespace: %s, name: %s, sectionName: %s}
    hostnames: [%s]`, localcluster.IngressNamespace, localcluster.GatewayName, localcluster.GatewayListener, host)}}))
	rcv := waitReceiver(t, ns, sampleName, 1, 3*time.Minute)
	waitSink(t, ns, sampleSink)
	if c := meta.FindStatusCondition(rcv.cr.Status.Conditions, cbv1.ConditionTLSResolved); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("TLSResolved %+v", c)
	}
	url := rcv.cr.Status.CallbackURL
	if url != "https://"+host+samplePath {
		t.Fatalf("status.callbackURL %q", url)
	}
	client := localCAClient(t, in)
	var sent []callback
	eventually(t, time.Minute, "a signed callback through the Gateway to the receiver's HTTPS", func() error {
		c := blacklistDelete(sampleToken, len(sent), 1)
		status, r, err := c.sendWith(client, url)
		if err != nil || status != http.StatusOK || r != (protocolReply{ActionStatus: "OK"}) {
			return answerErr(status, r, err)
		}
		sent = append(sent, c)
		return nil
	})
	forged := blacklistDelete(sampleToken, 100, 1)
	forged.sign = signature("not-the-token", forged.requestTime)
	if status, r, err := forged.sendWith(client, url); err != nil || status != http.StatusUnauthorized || r.ActionStatus != "FAIL" {
		t.Errorf("forged callback: %d %+v %v, want the receiver's 401", status, r, err)
	}
	// The receiver saw HTTPS: plain HTTP to its pod is refused, so the OK above came over TLS.
	if code, _, err := blacklistDelete(sampleToken, 101, 1).send("http://" + net.JoinHostPort(rcv.pods[0].Status.PodIP, "8080") + samplePath); err == nil && code == http.StatusOK {
		t.Fatal("the receiver accepted plain HTTP on its TLS port")
	}
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, len(sent), time.Minute), sent, sampleSinkPath, nil)
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}
