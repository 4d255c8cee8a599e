package nodeagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"time"
)

// KubeletPort is where the agent serves the part of the kubelet API that `kubectl logs`
// needs (the API server proxies /containerLogs to the node's InternalIP on this port).
const KubeletPort = 10250

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// serveKubeletAPI serves /containerLogs over TLS on the node's address until ctx ends.
// Like a kubelet the API server talks to without --kubelet-certificate-authority, its
// certificate is self-signed; it is reachable only from this host and its pods.
func (a *Agent) serveKubeletAPI(ctx context.Context) (<-chan struct{}, error) {
	cert, err := selfSignedCert(a.opts.NodeName, a.net.slot.Gateway().String())
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(a.net.slot.Gateway().String(), strconv.Itoa(KubeletPort))
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("kubelet API on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		a.containerLogs(ctx, w, r)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return done, nil
}

// containerLogs answers like the kubelet: the container's output, optionally the last
// tailLines lines, at most limitBytes, and with follow=true new output until the pod stops
// or the client goes away.
func (a *Agent) containerLogs(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	for _, n := range []string{ns, pod, container} {
		if !nameRE.MatchString(n) {
			http.Error(w, "bad name "+strconv.Quote(n), http.StatusBadRequest)
			return
		}
	}
	q := r.URL.Query()
	if q.Get("previous") == "true" {
		http.Error(w, "the node agent keeps every run of a container in one log: drop --previous", http.StatusBadRequest)
		return
	}
	f, err := os.Open(a.LogPath(ns, pod, container))
	if errors.Is(err, os.ErrNotExist) {
		http.Error(w, fmt.Sprintf("container %q in pod %q has no logs on this node", container, pod), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if s := q.Get("tailLines"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			data = lastLines(data, n)
		}
	}
	limit := int64(-1)
	if s := q.Get("limitBytes"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			limit = n
		}
	}
	if limit >= 0 && int64(len(data)) > limit {
		data = data[:limit]
	}
	w.Header().Set("Content-Type", "text/plain")
	if _, err := w.Write(data); err != nil || q.Get("follow") != "true" || (limit >= 0 && int64(len(data)) >= limit) {
		return
	}
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	buf := make([]byte, 32*1024)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			continue
		}
		if err != nil && err != io.EOF {
			return
		}
		if !a.podRunsHere(ns, pod) {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *Agent) podRunsHere(ns, pod string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		if w.key == ns+"/"+pod {
			return true
		}
	}
	return false
}

func lastLines(data []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	count := 0
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			count++
			if count == n {
				return data[i+1:]
			}
		}
	}
	return data
}

func selfSignedCert(name, ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
