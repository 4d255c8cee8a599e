package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace bound to a file. The cluster's daemons run in it (nsenter
// --net=<Path>), and this process makes sockets in it from a locked OS thread, so tests and
// `make dev` reach pods and ClusterIPs while the host's own namespace gets no route, link or
// rule.
type Netns struct {
	// Path is the bound namespace: nsenter --net=<Path> enters it.
	Path string
	fd   *os.File
}

// newNetns creates a network namespace and binds it to path.
func newNetns(path string) (*Netns, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		return nil, err
	}
	err := onOwnThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding the new network namespace to %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return openNetns(path)
}

func openNetns(path string) (*Netns, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &Netns{Path: path, fd: fd}, nil
}

// onOwnThread runs f on a locked OS thread and puts the thread back into this process's
// network namespace afterwards. A thread that cannot be put back is never released, so no
// other goroutine runs in the wrong namespace (and the thread never exits: children started
// from it with a parent-death signal would die with it).
func onOwnThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer home.Close()
		errc <- f()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			select {} // keep the thread locked forever: see above
		}
		runtime.UnlockOSThread()
	}()
	return <-errc
}

// Do runs f with the calling goroutine's thread in the namespace: sockets f makes belong to
// it for their whole life.
func (n *Netns) Do(f func() error) error {
	return onOwnThread(func() error {
		if err := unix.Setns(int(n.fd.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("entering %s: %w", n.Path, err)
		}
		return f()
	})
}

// DialContext connects to an address as seen from inside the namespace (a pod IP, a
// ClusterIP, the node IP). Addresses must be IPs: names are not resolved there.
func (n *Netns) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// Listen listens inside the namespace.
func (n *Netns) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// Command is cmd run inside the namespace (through nsenter; the process keeps this
// process's mount namespace, so it sees the node's mounts and cgroups).
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Path, "--", name}, args...)...)
}

func (n *Netns) run(args ...string) error {
	out, err := n.Command(context.Background(), args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s (in %s): %w: %s", strings.Join(args, " "), filepath.Base(n.Path), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close releases the handle (the namespace lives on while bound or used).
func (n *Netns) Close() error { return n.fd.Close() }

// nodeNetwork makes the node's namespace: the node IP on its loopback device, and one link
// to a namespace that routes nothing, as its default route. Every packet for an address that
// is neither the node's, a pod's nor (after kube-proxy's DNAT) a Service's is sent there and
// dropped: nothing leaves the machine. (A default route is still needed: without one, a
// connection from the node to a ClusterIP fails before kube-proxy's OUTPUT rules see it.)
func nodeNetwork(s *Slot) (node, drop *Netns, err error) {
	if node, err = newNetns(s.netnsPath(s.NodeNetns())); err != nil {
		return nil, nil, err
	}
	if drop, err = newNetns(s.netnsPath(s.DropNetns())); err != nil {
		node.Close()
		return nil, nil, err
	}
	near, far := s.dropLink()
	steps := []struct {
		ns   *Netns
		args []string
	}{
		{node, []string{"ip", "link", "set", "lo", "up"}},
		{node, []string{"ip", "addr", "add", s.NodeIP().String() + "/32", "dev", "lo"}},
		{node, []string{"ip", "link", "add", "drop0", "type", "veth", "peer", "name", "drop0", "netns", drop.Path}},
		{node, []string{"ip", "addr", "add", near.String(), "dev", "drop0"}},
		{node, []string{"ip", "link", "set", "drop0", "up"}},
		{drop, []string{"ip", "addr", "add", far.String(), "dev", "drop0"}},
		{drop, []string{"ip", "link", "set", "drop0", "up"}},
		{node, []string{"ip", "route", "add", "default", "via", far.Addr().String(), "dev", "drop0"}},
		// Forwarding stays off in the drop namespace (a new namespace's default).
		{drop, []string{"sysctl", "-qw", "net.ipv4.ip_forward=0"}},
	}
	for _, st := range steps {
		if err := st.ns.run(st.args...); err != nil {
			node.Close()
			drop.Close()
			return nil, nil, err
		}
	}
	return node, drop, nil
}

// forwarder accepts connections on the host's loopback and connects each to an address
// inside a namespace: how the host reaches the API server (kubectl, the tests) and, for `make
// dev`, the sample's Service.
type forwarder struct {
	l      net.Listener
	ns     *Netns
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// forward listens on listen (such as 127.0.0.1:0) in this process's namespace.
func forward(ns *Netns, listen string, target netip.AddrPort) (*forwarder, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	f := &forwarder{l: l, ns: ns, target: target.String(), conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Addr is where the forwarder listens.
func (f *forwarder) Addr() netip.AddrPort { return f.l.Addr().(*net.TCPAddr).AddrPort() }

func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.pipe(c)
		}()
	}
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) pipe(c net.Conn) {
	defer c.Close()
	up, err := f.ns.DialContext(context.Background(), "tcp", f.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !f.track(c) || !f.track(up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
	f.mu.Lock()
	delete(f.conns, c)
	delete(f.conns, up)
	f.mu.Unlock()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// Close stops listening and cuts every connection.
func (f *forwarder) Close() error {
	err := f.l.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
