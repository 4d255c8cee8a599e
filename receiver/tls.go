package receiver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// certReloader serves the key pair from two files and re-reads them when either changes
// (another inode, size or modification time: a cert-manager or kubelet Secret update swaps a
// symlink, a hand edit rewrites the file). The check is a stat of both files per TLS
// handshake, cheap next to the handshake itself. A pair that does not load (say the
// certificate is new but the key not yet) keeps the previous one in use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu                sync.Mutex
	cert              *tls.Certificate
	certStat, keyStat os.FileInfo
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	cs, err := os.Stat(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	ks, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS key pair: %w", err)
	}
	c.cert, c.certStat, c.keyStat = &pair, cs, ks
	return c, nil
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err1 := os.Stat(c.certFile)
	ks, err2 := os.Stat(c.keyFile)
	if err1 != nil || err2 != nil || (!fileChanged(c.certStat, cs) && !fileChanged(c.keyStat, ks)) {
		return c.cert, nil
	}
	c.certStat, c.keyStat = cs, ks
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Warn("TLS key pair changed but does not load; keeping the previous one", slog.Any("error", err))
		return c.cert, nil
	}
	c.cert = &pair
	c.log.Info("TLS key pair reloaded", slog.String("certFile", c.certFile))
	return c.cert, nil
}

func fileChanged(old, cur os.FileInfo) bool {
	return !os.SameFile(old, cur) || !old.ModTime().Equal(cur.ModTime()) || old.Size() != cur.Size()
}
