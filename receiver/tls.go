package receiver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// certReloader serves the key pair from two files and re-reads them when either changes
// (another inode, size or modification time: a cert-manager or kubelet Secret update swaps a
// symlink, a hand edit rewrites the file). The check is a stat of both files per TLS
// handshake (and per readiness probe), cheap next to the handshake itself. A pair that does
// not load (say the certificate is new but the key not yet) keeps the previous one in use.
//
// Without any usable pair yet (a container restarted while its Secret is broken) there is
// nothing to serve: the receiver stays up but not ready, instead of exiting into a crash
// loop, and serves as soon as a pair loads.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu                sync.Mutex
	cert              *tls.Certificate
	certStat, keyStat os.FileInfo
	lastErr           string
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) *certReloader {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if !c.refresh() {
		log.Error("no usable TLS key pair: not ready until the files hold one (they are re-read when they change)",
			slog.String("certFile", certFile), slog.String("keyFile", keyFile), slog.String("error", c.lastErr))
	}
	return c
}

// refresh re-reads the pair if the files changed (or none was ever loaded) and reports
// whether a pair is there to serve.
func (c *certReloader) refresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err1 := os.Stat(c.certFile)
	ks, err2 := os.Stat(c.keyFile)
	if err1 != nil || err2 != nil {
		if c.cert == nil {
			c.lastErr = fmt.Sprint(errors.Join(err1, err2))
		}
		return c.cert != nil
	}
	if c.cert != nil && !fileChanged(c.certStat, cs) && !fileChanged(c.keyStat, ks) {
		return true
	}
	if c.cert == nil && c.certStat != nil && !fileChanged(c.certStat, cs) && !fileChanged(c.keyStat, ks) {
		return false // the same broken files: not parsed again at every probe
	}
	c.certStat, c.keyStat = cs, ks
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.lastErr = err.Error()
		if c.cert != nil {
			c.log.Warn("TLS key pair changed but does not load; keeping the previous one", slog.Any("error", err))
		}
		return c.cert != nil
	}
	first := c.cert == nil
	c.cert = &pair
	if first {
		c.log.Info("TLS key pair loaded", slog.String("certFile", c.certFile))
	} else {
		c.log.Info("TLS key pair reloaded", slog.String("certFile", c.certFile))
	}
	return true
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if !c.refresh() {
		return nil, errors.New("no usable TLS key pair yet")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

func fileChanged(old, cur os.FileInfo) bool {
	return !os.SameFile(old, cur) || !old.ModTime().Equal(cur.ModTime()) || old.Size() != cur.Size()
}
