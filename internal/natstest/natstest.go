// Package natstest runs a real NATS JetStream cluster of nats-server processes on loopback for
// process-level tests and benchmarks: the servers are the binary hack/nats.sh builds (the
// same one the local cluster runs), each with its own store directory, routed to each other,
// and each can be killed, paused (SIGSTOP: a server that stops answering without closing its
// connections, as a partition looks) and restarted on its store.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Options of a cluster.
type Options struct {
	// Servers is the number of servers (default 3).
	Servers int
	// SyncAlways sets sync_interval: always (every message fsynced before its PubAck).
	SyncAlways bool
	// Dir holds each server's store and config (default t.TempDir()).
	Dir string
}

// Server is one nats-server process.
type Server struct {
	Name                 string
	ClientPort, HTTPPort int
	conf, logPath        string
	cmd                  *exec.Cmd
	exited               chan struct{}
}

// Cluster is a running JetStream cluster.
type Cluster struct {
	Servers []*Server
	binary  string
	t       testing.TB
}

// Binary finds nats-server: $NATS_SERVER, else $LOCALCLUSTER_NATS_ASSETS/nats-server, else
// what hack/nats.sh (from the checkout at or above the working directory) builds or has cached.
func Binary() (string, error) {
	if b := os.Getenv("NATS_SERVER"); b != "" {
		return b, nil
	}
	if d := os.Getenv("LOCALCLUSTER_NATS_ASSETS"); d != "" {
		return filepath.Join(d, "nats-server"), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		script := filepath.Join(dir, "hack", "nats.sh")
		if _, err := os.Stat(script); err == nil {
			cmd := exec.Command(script)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				return "", fmt.Errorf("hack/nats.sh: %w", err)
			}
			return filepath.Join(strings.TrimSpace(string(out)), "nats-server"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("nats-server: set NATS_SERVER, or run inside the checkout (hack/nats.sh builds it)")
		}
		dir = parent
	}
}

// freePorts asks the kernel for n free loopback ports.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start runs the cluster and waits until every server reports JetStream healthy; the test's
// cleanup kills them.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(3 * opts.Servers)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{binary: bin, t: t}
	routes := make([]string, opts.Servers)
	for i := range opts.Servers {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i+2])
	}
	for i := range opts.Servers {
		s := &Server{Name: fmt.Sprintf("n%d", i), ClientPort: ports[3*i], HTTPPort: ports[3*i+1]}
		dir := filepath.Join(opts.Dir, s.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sync := ""
		if opts.SyncAlways {
			sync = ", sync_interval: always"
		}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 1GB %s }
cluster { name: test, listen: 127.0.0.1:%d, routes: [%s] }
`, s.Name, s.ClientPort, s.HTTPPort, filepath.Join(dir, "store"), sync, ports[3*i+2], strings.Join(routes, ", "))
		s.conf = filepath.Join(dir, "nats.conf")
		s.logPath = filepath.Join(dir, "nats.log")
		if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c.Servers = append(c.Servers, s)
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			if s.cmd != nil {
				_ = s.cmd.Process.Signal(syscall.SIGCONT)
			}
			c.Kill(s)
		}
	})
	for _, s := range c.Servers {
		if err := c.run(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.Servers {
		if err := c.WaitHealthy(s, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *Cluster) run(s *Server) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.binary, "--config", s.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting nats-server %s: %w", s.Name, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(s.exited) }()
	return nil
}

// URL is the client URL of every server, comma-separated (what a client is given).
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// URL of one server.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.ClientPort) }

// Server by name (as the stream's cluster info names its leader).
func (c *Cluster) Server(name string) *Server {
	for _, s := range c.Servers {
		if s.Name == name {
			return s
		}
	}
	c.t.Fatalf("no server %q", name)
	return nil
}

// Kill SIGKILLs a server and waits for it to exit.
func (c *Cluster) Kill(s *Server) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pause stops a server without closing its sockets (SIGSTOP); Resume continues it.
func (c *Cluster) Pause(s *Server) {
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatalf("pausing %s: %v", s.Name, err)
	}
}

// Resume continues a paused server.
func (c *Cluster) Resume(s *Server) {
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		c.t.Fatalf("resuming %s: %v", s.Name, err)
	}
}

// Restart starts a killed server again on its store and waits until it is healthy.
func (c *Cluster) Restart(s *Server) {
	c.t.Helper()
	if s.cmd != nil {
		c.Kill(s)
	}
	if err := c.run(s); err != nil {
		c.t.Fatal(err)
	}
	if err := c.WaitHealthy(s, time.Minute); err != nil {
		c.t.Fatal(err)
	}
}

// Pid of a running server (for CPU accounting in benchmarks).
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// WaitHealthy waits until the server's /healthz?js-enabled-only=true answers 200.
func (c *Cluster) WaitHealthy(s *Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", s.HTTPPort)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("nats-server %s not healthy within %s (last: %w); log:\n%s", s.Name, timeout, err, tail(log, 2000))
		case <-s.exited:
			log, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("nats-server %s exited; log:\n%s", s.Name, tail(log, 2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
