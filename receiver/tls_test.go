package receiver

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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

// TestTLSWithoutAUsablePairWaits: a receiver (re)started while its certificate files are
// missing or broken stays up but not ready, rather than exiting into a crash loop, and
// serves as soon as the files hold a pair.
func TestTLSWithoutAUsablePairWaits(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, nil)
	cfg := testConfig(s.URL)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	rr := start(t, cfg)
	readyz := func() (int, string) {
		resp, err := http.Get(rr.adminURL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "no usable TLS key pair") {
		t.Fatalf("/readyz without a key pair: %d %s", code, body)
	}
	pool := writeCert(t, certFile, keyFile, "late")
	eventually(t, "ready once the pair is there", func() bool { code, _ := readyz(); return code == http.StatusOK })
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Post(rr.url+testPath+"?"+signedQuery(CmdBlackListDelete), "application/json", strings.NewReader(blackListDeleteBody))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS.PeerCertificates[0].Subject.CommonName != "late" {
		t.Fatalf("callback over TLS: %d", resp.StatusCode)
	}
	eventually(t, "event delivered", func() bool { return s.count() == 1 })
}

func TestTLSFlagsTogether(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.TLSCertFile = "/nonexistent/tls.crt"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "tls-cert-file and tls-key-file must be given together") {
		t.Fatalf("New = %v", err)
	}
}

// TestTLSServerRefusalsCounted: behind TLS too, net/http's own replies are counted; a client
// speaking plain HTTP to the TLS port is told so, and counted nowhere (no request was read).
func TestTLSServerRefusalsCounted(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	pool := writeCert(t, certFile, keyFile, "refusals")
	var logs logBuffer
	cfg := testConfig(newSink(t, nil).URL)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	cfg.Logger = jsonLogger(&logs)
	rr := start(t, cfg)
	addr := strings.TrimPrefix(rr.url, "https://")

	send := func(conn net.Conn, request string) (int, string) {
		t.Helper()
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	dialTLS := func() net.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			t.Fatalf("negotiated %q", p)
		}
		return c
	}
	if code, _ := send(dialTLS(), "POST "+testPath+"?x="+strings.Repeat("a", 100<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n"); code != 431 {
		t.Errorf("100 KB query: %d, want 431", code)
	}
	if code, _ := send(dialTLS(), "HELLO\r\n\r\n"); code != 400 {
		t.Errorf("not HTTP: %d, want 400", code)
	}
	signed := "POST " + testPath + "?" + signedQuery(CmdBlackListDelete) + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(blackListDeleteBody)) + "\r\n\r\n" + blackListDeleteBody
	if code, reply := send(dialTLS(), signed); code != 200 || reply != replyOK {
		t.Errorf("signed callback over TLS: %d %s", code, reply)
	}
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if code, reply := send(plain, signed); code != 400 || !strings.Contains(reply, "HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP to the TLS port: %d %q", code, reply)
	}

	c := countsOf(rr.Receiver)
	if c.accepted != 1 || c.rejected != 2 || reasonCount(t, rr.Receiver, "headers_too_large") != 1 || reasonCount(t, rr.Receiver, "malformed_request") != 1 {
		var reasons []string
		for _, name := range reasonNames {
			if n := reasonCount(t, rr.Receiver, name); n > 0 {
				reasons = append(reasons, name+"="+strconv.FormatFloat(n, 'f', -1, 64))
			}
		}
		t.Errorf("counts %+v (%s), want 1 accepted, 1 headers_too_large and 1 malformed_request", c, strings.Join(reasons, " "))
	}
	eventually(t, "the handshake error is logged", func() bool { return strings.Contains(logs.String(), "TLS handshake error") })
}

// TestHalfOpenHandshakesBounded: strangers opening TLS connections that never finish the
// handshake hold at most max-connections/2 handshakes (the oldest are ended), and a valid
// callback over TLS meanwhile is answered at once. Before, they were unbounded (~13 KB each,
// 19,500 reached 254 MB) and lasted 10 s each.
func TestHalfOpenHandshakesBounded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	pool := writeCert(t, certFile, keyFile, "bound")
	s := newSink(t, nil)
	cfg := testConfig(s.URL)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	cfg.MaxConnections = 200 // 100 handshakes at once
	rr := start(t, cfg)
	addr := strings.TrimPrefix(rr.url, "https://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range 600 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // the start of a record header, then nothing
		conns = append(conns, c)
	}
	t0 := time.Now()
	eventually(t, "the handshakes beyond the bound are ended", func() bool {
		l := rr.conns.Load()
		return l.handshakes.evicted.Load() >= 500 && l.handshakes.inProgress() <= 100
	})
	t.Logf("bound reached in %v", time.Since(t0))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	begin := time.Now()
	resp, err := c.Post(rr.url+testPath+"?"+signedQuery(CmdBlackListDelete), "application/json", strings.NewReader(blackListDeleteBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(begin); resp.StatusCode != http.StatusOK || took > time.Second {
		t.Errorf("valid callback beside 600 half-open handshakes: %d in %v", resp.StatusCode, took)
	}
	if got := gaugeValue(t, rr.adminURL, "imcallback_tls_handshakes_in_progress"); got == "" {
		t.Error("no imcallback_tls_handshakes_in_progress")
	}
	c.CloseIdleConnections()
	t1 := time.Now()
	err = rr.stop(t)
	if err != nil || time.Since(t1) > 2*tlsHandshakeTimeout {
		t.Errorf("stop took %v: %v", time.Since(t1), err)
	}
}
