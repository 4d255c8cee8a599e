package receiver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn and returns its pool.
func writeCert(t *testing.T, certFile, keyFile, cn string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Write next to the target and rename, as a Secret update or cert-manager would.
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestTLSCertificateReload: the callback port serves TLS from the files, and a replaced
// certificate is used for new connections without a restart.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	pool1 := writeCert(t, certFile, keyFile, "first")
	s := newSink(t, nil)
	cfg := testConfig(s.URL)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	rr := start(t, cfg)
	if !strings.HasPrefix(rr.url, "https://") {
		t.Fatal(rr.url)
	}

	callWith := func(pool *x509.CertPool) (string, int, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := c.Post(rr.url+testPath+"?"+signedQuery(CmdBlackListDelete), "application/json", strings.NewReader(blackListDeleteBody))
		if err != nil {
			return "", 0, err
		}
		defer resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName, resp.StatusCode, nil
	}

	cn, code, err := callWith(pool1)
	if err != nil || cn != "first" || code != 200 {
		t.Fatalf("first certificate: cn %q code %d err %v", cn, code, err)
	}
	pool2 := writeCert(t, certFile, keyFile, "second")
	cn, code, err = callWith(pool2)
	if err != nil || cn != "second" || code != 200 {
		t.Fatalf("after replacing the files: cn %q code %d err %v", cn, code, err)
	}
	if _, _, err := callWith(pool1); err == nil {
		t.Error("the old certificate is still served")
	}

	// A broken replacement keeps the last good pair in service.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cn, _, err := callWith(pool2); err != nil || cn != "second" {
		t.Errorf("after a broken update: cn %q err %v, want the previous certificate", cn, err)
	}
	eventually(t, "events delivered", func() bool { return s.count() == 3 })
}

func TestTLSMissingFiles(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.TLSCertFile, cfg.TLSKeyFile = "/nonexistent/tls.crt", "/nonexistent/tls.key"
	if _, err := New(cfg); err == nil {
		t.Fatal("New accepted missing certificate files")
	}
	cfg.TLSKeyFile = ""
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "tls-cert-file and tls-key-file must be given together") {
		t.Fatalf("New = %v", err)
	}
}
