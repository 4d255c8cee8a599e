package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcallback/callback-operator/internal/testenv"
)

// selfSigned makes a certificate for the receiver's Service names and returns the PEM pair
// and the parsed certificate.
func selfSigned(t *testing.T, hosts ...string) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := testenv.SelfSignedCert(hosts, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if cert, err = x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, cert
}

// httpsClient trusts roots and connects inside the node, naming serverName in the handshake.
func httpsClient(roots *x509.CertPool, serverName string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:       cluster.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
}

// servedSerial is the serial number of the certificate the server at addr presents.
func servedSerial(addr, serverName string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := cluster.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	c := tls.Client(raw, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}) //nolint:gosec // only reading which certificate is served
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		return "", err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// TestHTTPSAndCertificateRenewal: a self-signed certificate in a kubernetes.io/tls Secret,
// spec.tls naming it: the receiver serves HTTPS on the Service's port 443, a signed callback
// over HTTPS reaches the sink. The Secret is then replaced with a new certificate while
// callbacks flow: the kubelet refreshes the volume, the receiver serves the new certificate
// without a restart, and no callback is refused or lost.
func TestHTTPSAndCertificateRenewal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-tls")
	serverName := sampleName + "." + ns + ".svc"
	crt1, key1, cert1 := selfSigned(t, serverName, serverName+".cluster.local")
	crt2, key2, cert2 := selfSigned(t, serverName, serverName+".cluster.local")
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "im-callback-tls", Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: crt1, corev1.TLSPrivateKeyKey: key1},
	}
	if _, err := cluster.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, `
- {op: add, path: /spec/tls, value: {secretName: im-callback-tls}}`}}))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	svc, err := cluster.Client.CoreV1().Services(ns).Get(ctx, sampleName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := svc.Spec.Ports[0]; p.Port != 443 || p.Name != "https" {
		t.Fatalf("Service port %+v, want 443 named https", p)
	}
	if rcv.cr.Status.URL != "https://"+serverName+".cluster.local/im/callback" {
		t.Errorf("status.url %q", rcv.cr.Status.URL)
	}
	addr := net.JoinHostPort(rcv.clusterIP, "443")
	base := "https://" + addr + samplePath

	roots := x509.NewCertPool()
	roots.AddCert(cert1)
	roots.AddCert(cert2)
	client := httpsClient(roots, serverName)
	send := func(c callback) (int, error) {
		resp, err := client.Post(base+"?"+c.query(), "application/json", bytes.NewReader(c.body))
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	first := blacklistDelete(sampleToken, 1, 1)
	if code, err := send(first); err != nil || code != http.StatusOK {
		t.Fatalf("a signed callback over HTTPS: %d %v", code, err)
	}
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, 1, 30*time.Second), []callback{first}, sampleSinkPath, nil)
	// Plain HTTP to the TLS port is refused by the TLS server, never accepted.
	if code, _, err := blacklistDelete(sampleToken, 2, 1).send("http://" + addr + samplePath); err == nil && code == http.StatusOK {
		t.Fatal("plain HTTP accepted on the TLS port")
	}
	if s, err := servedSerial(addr, serverName); err != nil || s != cert1.SerialNumber.String() {
		t.Fatalf("served certificate %s %v, want the first (%s)", s, err, cert1.SerialNumber)
	}

	// Renewal under traffic.
	var (
		next     atomic.Int64
		mu       sync.Mutex
		sent     []callback
		failures []error
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	next.Store(100)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				c := blacklistDelete(sampleToken, int(next.Add(1)), 1)
				code, err := send(c)
				mu.Lock()
				if err != nil || code != http.StatusOK {
					failures = append(failures, fmt.Errorf("answer %d: %w", code, err))
				} else {
					sent = append(sent, c)
				}
				mu.Unlock()
			}
		}()
	}
	secret.Data = map[string][]byte{corev1.TLSCertKey: crt2, corev1.TLSPrivateKeyKey: key2}
	if _, err := cluster.Client.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	renewed := time.Now()
	eventually(t, 3*time.Minute, "the renewed certificate served", func() error {
		s, err := servedSerial(addr, serverName)
		if err != nil {
			return err
		}
		if s != cert2.SerialNumber.String() {
			return fmt.Errorf("still serving %s", s)
		}
		return nil
	})
	t.Logf("the renewed certificate was served %s after the Secret's update", time.Since(renewed).Round(time.Second))
	time.Sleep(2 * time.Second) // traffic on the new certificate too
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d callbacks not answered OK during the renewal, such as %v", len(failures), failures[0])
	}
	if len(sent) < 20 {
		t.Fatalf("only %d callbacks during the renewal", len(sent))
	}
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, 1+len(sent), time.Minute), append([]callback{first}, sent...), sampleSinkPath, nil)
	// Without a restart: the same pod, its container never restarted.
	p := currentPod(t, ns, rcv.pods[0].Name)
	if p.UID != rcv.pods[0].UID || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("pod %s (uid %s, restarts %d): the renewal restarted the receiver", p.Name, p.UID, p.Status.ContainerStatuses[0].RestartCount)
	}
}
