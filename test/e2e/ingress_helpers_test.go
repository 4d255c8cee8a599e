package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/imcallback/callback-operator/test/localcluster"
)

// The ingress add-on (Traefik, cert-manager, the Gateway and the local CA) is installed on the
// shared cluster by the first test that needs it, once; tests that do not need it never wait
// for it.
var (
	ingressOnce sync.Once
	ingressVal  *localcluster.Ingress
	ingressErr  error
)

// ingressAddon installs the add-on (once) and returns it.
func ingressAddon(t *testing.T) *localcluster.Ingress {
	t.Helper()
	ingressOnce.Do(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		ingressVal, ingressErr = cluster.InstallIngress(ctx, localcluster.IngressOptions{})
		if ingressErr == nil {
			t.Logf("ingress add-on (Traefik %s, cert-manager %s) installed in %s", ingressVal.TraefikVersion, ingressVal.CertManagerVersion, time.Since(start).Round(time.Millisecond))
		}
	})
	if ingressErr != nil {
		t.Fatalf("installing the ingress add-on: %v", ingressErr)
	}
	return ingressVal
}

// localCAClient is an HTTPS client as IM's would be for a public URL, but trusting only the
// local CA, and connecting wherever the URL's host is to the host's forward to Traefik (as
// `curl --resolve host:port:127.0.0.1` does). Each request opens a new connection.
func localCAClient(t *testing.T, in *localcluster.Ingress) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(in.CACert) {
		t.Fatalf("the local CA's certificate is not PEM: %q", in.CACert)
	}
	addr := in.HTTPSAddr.String()
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// servedLeaf is the certificate Traefik serves for host (SNI), verified against the local CA.
func servedLeaf(in *localcluster.Ingress, host string) (*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(in.CACert)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", in.HTTPSAddr.String(),
		&tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// secretLeaf is the leaf certificate of a kubernetes.io/tls Secret.
func secretLeaf(t *testing.T, ns, name string) (*x509.Certificate, error) {
	t.Helper()
	s, err := cluster.Client.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		return nil, fmt.Errorf("secret %s/%s: no PEM in tls.crt", ns, name)
	}
	return x509.ParseCertificate(block.Bytes)
}

var certificateGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

// certificate reads a cert-manager Certificate.
func certificate(t *testing.T, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return dyn.Resource(certificateGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// statusCondition is an unstructured object's status condition typ: status, reason, message.
func statusCondition(obj *unstructured.Unstructured, typ string) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, x := range conds {
		if m, _ := x.(map[string]any); m["type"] == typ {
			return fmt.Sprint(m["status"]), fmt.Sprint(m["reason"]), fmt.Sprint(m["message"])
		}
	}
	return "", "", ""
}

// waitCertificateReady waits until the Certificate is Ready and returns its revision.
func waitCertificateReady(t *testing.T, ns, name string, after int64, timeout time.Duration) int64 {
	t.Helper()
	var rev int64
	eventually(t, timeout, fmt.Sprintf("Certificate %s/%s Ready (revision > %d)", ns, name, after), func() error {
		c, err := certificate(t, ns, name)
		if err != nil {
			return err
		}
		st, reason, msg := statusCondition(c, "Ready")
		rev, _, _ = unstructured.NestedInt64(c.Object, "status", "revision")
		if st != "True" || rev <= after {
			return fmt.Errorf("Ready=%s %s: %s (revision %d)", st, reason, msg, rev)
		}
		if st, _, _ := statusCondition(c, "Issuing"); st == "True" {
			return fmt.Errorf("still issuing (revision %d)", rev)
		}
		return nil
	})
	return rev
}

// answerErr describes a callback's answer that was not OK.
func answerErr(status int, r protocolReply, err error) error {
	if err != nil {
		return fmt.Errorf("answer %d %+v: %w", status, r, err)
	}
	return fmt.Errorf("answer %d %+v", status, r)
}

// traefikLogOnFailure logs the end of Traefik's and cert-manager's logs when the test failed.
func traefikLogOnFailure(t *testing.T) {
	if !t.Failed() {
		return
	}
	for _, d := range [][2]string{{localcluster.IngressNamespace, "traefik"}, {localcluster.CertManagerNamespace, "cert-manager"}} {
		out, err := cluster.Kubectl(context.Background(), "logs", "-n", d[0], "deploy/"+d[1], "--tail=40").CombinedOutput()
		t.Logf("kubectl logs -n %s deploy/%s (%v):\n%s", d[0], d[1], err, out)
	}
}
