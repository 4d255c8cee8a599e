package nodeagent

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host state lives under StateRoot: one directory and one lock file per slot. A slot is one
// local cluster's share of this machine: pod addresses 10.244.<slot>.0/24, Service addresses
// 10.96.<slot>.0/24, and every network namespace and link named with the slot's prefix
// (cbr<slot>, two digits), so that several clusters (a `make dev` and test runs of other
// engineers) can run side by side and each cleans up only its own.
const (
	StateRoot = "/run/callback-operator"
	MaxSlots  = 32
	// NetnsDir is where `ip netns exec` finds the files it bind-mounts over /etc.
	NetnsDir = "/etc/netns"
)

// Slot is a held share of the host. Release it to sweep and unlock.
type Slot struct {
	Index int
	// Dir is a scratch directory only this slot's processes use; any process whose command
	// line or environment mentions it belongs to the slot and is killed by a sweep.
	Dir  string
	lock *os.File
}

// Prefix starts the name of every network namespace and link of the slot.
func (s *Slot) Prefix() string { return fmt.Sprintf("cbr%02d", s.Index) }

// BridgeName is the slot's bridge: gateway of its pods and home of its Service addresses.
func (s *Slot) BridgeName() string { return s.Prefix() + "br" }

// PodCIDR is the range pod addresses come from.
func (s *Slot) PodCIDR() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(s.Index), 0}), 24)
}

// ServiceCIDR is the range the API server must allocate ClusterIPs from
// (--service-cluster-ip-range).
func (s *Slot) ServiceCIDR() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 96, byte(s.Index), 0}), 24)
}

// Gateway is the host's address on the bridge: the node's InternalIP and the pods' route out.
func (s *Slot) Gateway() netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(s.Index), 1}) }

// AcquireSlot takes a free slot. Every free slot that holds state of a run that died
// (killed, or crashed before cleaning up) is swept first.
func AcquireSlot(logf func(string, ...any)) (*Slot, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the node agent needs root (network namespaces, veth pairs, bind mounts); run as root")
	}
	for _, tool := range []string{"ip", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("the node agent needs %q (iproute2, util-linux): %w", tool, err)
		}
	}
	if err := os.MkdirAll(StateRoot, 0o755); err != nil {
		return nil, err
	}
	var mine *Slot
	for i := 0; i < MaxSlots; i++ {
		// Only a slot used before can hold stale state; of the others, the first will do.
		if _, err := os.Stat(lockPath(i)); err != nil && mine != nil {
			continue
		}
		s, err := tryLockSlot(i)
		if err != nil {
			return nil, err
		}
		if s == nil {
			continue // held by a live run
		}
		if s.hasState() {
			logf("sweeping stale state of slot %d (a previous run did not clean up)", i)
			if err := s.Sweep(); err != nil {
				logf("sweeping slot %d: %v", i, err)
			}
		}
		if mine == nil {
			mine = s
			continue
		}
		s.unlock()
	}
	if mine == nil {
		return nil, fmt.Errorf("all %d local cluster slots are in use", MaxSlots)
	}
	if err := os.MkdirAll(mine.Dir, 0o755); err != nil {
		mine.unlock()
		return nil, err
	}
	return mine, nil
}

// LockSlot takes slot i if it is free (for sweeping it, as `make dev-down` does after a
// killed run); nil when a live run holds it.
func LockSlot(i int) (*Slot, error) { return tryLockSlot(i) }

func lockPath(i int) string { return filepath.Join(StateRoot, fmt.Sprintf("slot-%02d.lock", i)) }

func tryLockSlot(i int) (*Slot, error) {
	path := lockPath(i)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return &Slot{Index: i, Dir: filepath.Join(StateRoot, fmt.Sprintf("slot-%02d", i)), lock: f}, nil
}

func (s *Slot) unlock() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// Release sweeps everything of the slot and gives it up.
func (s *Slot) Release() error {
	err := s.Sweep()
	s.unlock()
	return err
}

func (s *Slot) hasState() bool {
	if _, err := os.Stat(s.Dir); err == nil {
		return true
	}
	if names, _ := s.netnsNames(); len(names) > 0 {
		return true
	}
	links, _ := s.linkNames()
	return len(links) > 0
}

// Sweep kills every process of the slot (those in its network namespaces and those whose
// command line or environment names its directory), then removes its network namespaces,
// links, /etc/netns directories and scratch directory.
func (s *Slot) Sweep() error {
	var errs []error
	names, err := s.netnsNames()
	errs = append(errs, err)
	var pids []int
	for _, ns := range names {
		pids = append(pids, netnsPids(ns)...)
	}
	pids = append(pids, processesMentioning(s.Dir+"/")...)
	killAndWait(pids, 10*time.Second)
	for _, ns := range names {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", ns, err, bytes.TrimSpace(out)))
		}
	}
	links, err := s.linkNames()
	errs = append(errs, err)
	for _, l := range links {
		if out, err := exec.Command("ip", "link", "delete", l).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
			errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", l, err, bytes.TrimSpace(out)))
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(NetnsDir, s.Prefix()+"-*"))
	for _, d := range dirs {
		errs = append(errs, os.RemoveAll(d))
	}
	errs = append(errs, os.RemoveAll(s.Dir))
	return errors.Join(errs...)
}

// Leftovers lists what of the slot still exists on the host (for tests of the cleanup).
func (s *Slot) Leftovers() []string {
	var out []string
	names, _ := s.netnsNames()
	for _, n := range names {
		out = append(out, "netns "+n)
	}
	links, _ := s.linkNames()
	for _, l := range links {
		out = append(out, "link "+l)
	}
	dirs, _ := filepath.Glob(filepath.Join(NetnsDir, s.Prefix()+"-*"))
	out = append(out, dirs...)
	if _, err := os.Stat(s.Dir); err == nil {
		out = append(out, s.Dir)
	}
	for _, pid := range processesMentioning(s.Dir + "/") {
		out = append(out, "process "+strconv.Itoa(pid))
	}
	return out
}

func (s *Slot) netnsNames() ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), s.Prefix()+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (s *Slot) linkNames() ([]string, error) {
	entries, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), s.Prefix()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func netnsPids(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesMentioning finds processes whose command line or environment contains s.
func processesMentioning(s string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self, parent := os.Getpid(), os.Getppid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == parent {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && bytes.Contains(b, []byte(s)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func killAndWait(pids []int, timeout time.Duration) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) && processAlive(pid) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// processAlive is false for a process that is gone or a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// hostLock serializes network changes of all agents on this machine: `ip netns add` sets up
// /run/netns on first use, which is not safe to do concurrently.
var hostLock sync.Mutex

func withHostLock(fn func() error) error {
	hostLock.Lock()
	defer hostLock.Unlock()
	f, err := os.OpenFile(filepath.Join(StateRoot, "ip.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	return fn()
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// network is the slot's pod network: a bridge with the gateway address, one network
// namespace and veth pair per pod, and the Service addresses on the bridge.
type network struct {
	slot *Slot

	mu       sync.Mutex
	used     map[netip.Addr]bool
	last     byte                // round-robin allocation, as host-local IPAM does
	services map[netip.Addr]bool // Service addresses on the bridge
}

func newNetwork(slot *Slot) *network {
	return &network{slot: slot, used: map[netip.Addr]bool{}, last: 1, services: map[netip.Addr]bool{}}
}

func (n *network) setup() error {
	br := n.slot.BridgeName()
	return withHostLock(func() error {
		if _, err := os.Stat("/sys/class/net/" + br); err == nil {
			_ = ip("link", "delete", br)
		}
		if err := ip("link", "add", br, "type", "bridge"); err != nil {
			return err
		}
		gw := netip.PrefixFrom(n.slot.Gateway(), 24)
		if err := ip("addr", "add", gw.String(), "dev", br); err != nil {
			return err
		}
		return ip("link", "set", br, "up")
	})
}

// sandbox is a pod's network: its namespace, address and host-side veth.
type sandbox struct {
	Netns    string
	IP       netip.Addr
	HostVeth string
	EtcDir   string // bind-mounted over /etc files by `ip netns exec`
}

func (n *network) allocate() (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := 0; i < 253; i++ {
		n.last++
		if n.last < 2 || n.last > 254 {
			n.last = 2
		}
		a := netip.AddrFrom4([4]byte{10, 244, byte(n.slot.Index), n.last})
		if !n.used[a] {
			n.used[a] = true
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free pod address in %s", n.slot.PodCIDR())
}

func (n *network) free(a netip.Addr) {
	n.mu.Lock()
	delete(n.used, a)
	n.mu.Unlock()
}

// createSandbox makes a network namespace with a veth pair to the bridge and a fresh
// address, and the /etc/netns files its processes see as /etc/hosts, resolv.conf and
// nsswitch.conf.
func (n *network) createSandbox(namespace string) (*sandbox, error) {
	addr, err := n.allocate()
	if err != nil {
		return nil, err
	}
	octet := addr.As4()[3]
	sb := &sandbox{
		Netns:    fmt.Sprintf("%s-p%d", n.slot.Prefix(), octet),
		IP:       addr,
		HostVeth: fmt.Sprintf("%sv%d", n.slot.Prefix(), octet),
	}
	sb.EtcDir = filepath.Join(NetnsDir, sb.Netns)
	err = withHostLock(func() error {
		// Leftovers of a pod that had this address can only be ours: clear them.
		_ = ip("netns", "delete", sb.Netns)
		_ = ip("link", "delete", sb.HostVeth)
		steps := [][]string{
			{"netns", "add", sb.Netns},
			{"link", "add", sb.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", sb.Netns},
			{"link", "set", sb.HostVeth, "master", n.slot.BridgeName(), "up"},
			{"-n", sb.Netns, "link", "set", "lo", "up"},
			{"-n", sb.Netns, "addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", "eth0"},
			{"-n", sb.Netns, "link", "set", "eth0", "up"},
			{"-n", sb.Netns, "route", "add", "default", "via", n.slot.Gateway().String()},
		}
		for _, s := range steps {
			if err := ip(s...); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = os.MkdirAll(sb.EtcDir, 0o755)
	}
	if err == nil {
		err = writeEtcFiles(sb.EtcDir, namespace)
	}
	if err != nil {
		n.deleteSandbox(sb)
		return nil, err
	}
	return sb, nil
}

func writeEtcFiles(dir, namespace string) error {
	// Names not in /etc/hosts fail fast: nothing answers DNS on the pod's loopback.
	resolv := fmt.Sprintf("search %s.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\noptions ndots:5 timeout:1 attempts:1\n", namespace)
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(resolv), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "nsswitch.conf"), []byte("hosts: files dns\n"), 0o644)
}

// deleteSandbox kills what is left in the namespace and removes it, its veth and files.
func (n *network) deleteSandbox(sb *sandbox) {
	killAndWait(netnsPids(sb.Netns), 10*time.Second)
	_ = withHostLock(func() error {
		_ = ip("netns", "delete", sb.Netns)
		if _, err := os.Stat("/sys/class/net/" + sb.HostVeth); err == nil {
			_ = ip("link", "delete", sb.HostVeth)
		}
		return nil
	})
	_ = os.RemoveAll(sb.EtcDir)
	n.free(sb.IP)
}

// setServiceAddrs puts exactly the given Service addresses on the bridge.
func (n *network) setServiceAddrs(want map[netip.Addr]bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for a := range want {
		if !n.services[a] {
			if err := ip("addr", "add", netip.PrefixFrom(a, 32).String(), "dev", n.slot.BridgeName()); err != nil && !strings.Contains(err.Error(), "File exists") {
				errs = append(errs, err)
				continue
			}
			n.services[a] = true
		}
	}
	for a := range n.services {
		if !want[a] {
			if err := ip("addr", "delete", netip.PrefixFrom(a, 32).String(), "dev", n.slot.BridgeName()); err != nil {
				errs = append(errs, err)
			}
			delete(n.services, a)
		}
	}
	return errors.Join(errs...)
}

func (n *network) teardown() error {
	return withHostLock(func() error {
		return ip("link", "delete", n.slot.BridgeName())
	})
}
