package localcluster

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Host state lives under StateRoot: one directory and one lock file per slot. A slot is one
// local cluster's share of this machine: its network namespaces (cbr<slot>-node, where every
// daemon runs, and cbr<slot>-drop, where packets for anywhere else die), its directory (etcd,
// certificates, containerd's and the kubelet's state, every mount the node makes), and its
// cgroup subtree (/callback-operator/slot-<slot> in every hierarchy). Several clusters (a `make
// dev` and test runs of other engineers) run side by side and each cleans up only its own.
const (
	StateRoot = "/run/callback-operator"
	MaxSlots  = 32
)

// Slot is a held share of the host. Release it to sweep and unlock.
type Slot struct {
	Index int
	// Dir is the slot's directory; any process whose command line or environment mentions
	// it belongs to the slot and is killed by a sweep, and every mount under it is undone.
	Dir  string
	lock *os.File
}

// Prefix starts the name of every network namespace of the slot.
func (s *Slot) Prefix() string { return fmt.Sprintf("cbr%02d", s.Index) }

// netnsPath is where the slot's network namespace ns is bound (enter it with
// nsenter --net=<path>); unmounting it (with no process left inside) deletes the namespace.
func (s *Slot) netnsPath(ns string) string { return filepath.Join(s.Dir, "netns", ns) }

// NodeNetns is the network namespace of the node: every daemon and the pods' bridge.
func (s *Slot) NodeNetns() string { return s.Prefix() + "-node" }

// DropNetns is the namespace the node's default route leads to; it forwards nothing.
func (s *Slot) DropNetns() string { return s.Prefix() + "-drop" }

// PodCIDR is the range pod addresses come from (the node's spec.podCIDR).
func (s *Slot) PodCIDR() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(s.Index), 0}), 24)
}

// ServiceCIDR is the range of ClusterIPs.
func (s *Slot) ServiceCIDR() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 96, byte(s.Index), 0}), 24)
}

// APIServiceIP is the ClusterIP of the kubernetes Service.
func (s *Slot) APIServiceIP() netip.Addr { return netip.AddrFrom4([4]byte{10, 96, byte(s.Index), 1}) }

// DNSIP is the ClusterIP of the cluster's DNS (kube-system/kube-dns).
func (s *Slot) DNSIP() netip.Addr { return netip.AddrFrom4([4]byte{10, 96, byte(s.Index), 10}) }

// NodeIP is the node's InternalIP, on the loopback device of its namespace.
func (s *Slot) NodeIP() netip.Addr { return netip.AddrFrom4([4]byte{10, 250, byte(s.Index), 1}) }

// dropLink is the node's end of the link to the drop namespace and the far end's address.
func (s *Slot) dropLink() (near, far netip.Prefix) {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, byte(s.Index), 1}), 30),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, byte(s.Index), 2}), 30)
}

// CgroupRoot is the kubelet's --cgroup-root: every pod's cgroup is below it.
func (s *Slot) CgroupRoot() string { return fmt.Sprintf("/callback-operator/slot-%02d", s.Index) }

// networkName is the CNI network's name (results cached under /var/lib/cni carry it).
func (s *Slot) networkName() string { return s.Prefix() + "-pods" }

// AcquireSlot takes a free slot. Every free slot that holds state of a run that died
// (killed, or crashed before cleaning up) is swept first.
func AcquireSlot(logf func(string, ...any)) (*Slot, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the local cluster needs root (network namespaces, containers, cgroups); run as root")
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
		s, err := LockSlot(i)
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

func lockPath(i int) string { return filepath.Join(StateRoot, fmt.Sprintf("slot-%02d.lock", i)) }

// LockSlot takes slot i if it is free (for sweeping it, as `make dev-down` does after a
// killed run); nil when a live run holds it.
func LockSlot(i int) (*Slot, error) {
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
	return len(s.Leftovers()) > 0
}

// Sweep kills every process of the slot (those in its network namespaces or cgroups, and
// those whose command line or environment names its directory), undoes its mounts, removes
// its network namespaces (with every link, address and nft rule in them), cgroups, the files
// the node left outside its directory, and its directory; the last slot to go restores the
// host's sysctls.
func (s *Slot) Sweep() error {
	var errs []error
	for range 3 { // a process may fork while the first ones die
		pids := s.processes()
		if len(pids) == 0 {
			break
		}
		killAndWait(pids, 10*time.Second)
	}
	errs = append(errs, unmountUnder(s.Dir))
	for _, ns := range []string{s.NodeNetns(), s.DropNetns()} {
		if err := os.Remove(s.netnsPath(ns)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, removeCgroups(s.CgroupRoot()))
	errs = append(errs, removeNodeFiles(s))
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, restoreHost(s))
	return errors.Join(errs...)
}

// processes are the slot's live processes.
func (s *Slot) processes() []int {
	seen := map[int]bool{}
	var out []int
	add := func(pids []int) {
		for _, p := range pids {
			if !seen[p] && processAlive(p) {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	for _, ns := range []string{s.NodeNetns(), s.DropNetns()} {
		add(netnsPids(s.netnsPath(ns)))
	}
	add(cgroupPids(s.CgroupRoot()))
	add(processesMentioning(s.Dir + "/"))
	return out
}

// Leftovers lists what of the slot still exists on the host.
func (s *Slot) Leftovers() []string {
	var out []string
	for _, ns := range []string{s.NodeNetns(), s.DropNetns()} {
		if _, err := os.Stat(s.netnsPath(ns)); err == nil {
			out = append(out, "netns "+ns)
		}
	}
	for _, pid := range s.processes() {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("process %d (%s)", pid, strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")))
	}
	for _, m := range mountsUnder(s.Dir) {
		out = append(out, "mount "+m)
	}
	for _, c := range cgroupDirs(s.CgroupRoot()) {
		out = append(out, "cgroup "+c)
	}
	out = append(out, nodeFiles(s)...)
	if hostUnrestored(s) {
		out = append(out, "the host's sysctls and directories are not restored ("+hostStateFile+")")
	}
	if _, err := os.Stat(s.Dir); err == nil {
		out = append(out, s.Dir)
	}
	return out
}

// netnsPids are the processes in the network namespace bound at path.
func netnsPids(path string) []int {
	target, err := os.Stat(path)
	if err != nil {
		return nil
	}
	tst, ok := target.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	var pids []int
	forEachProcess(func(pid int) {
		st, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			return
		}
		if x, ok := st.Sys().(*syscall.Stat_t); ok && x.Ino == tst.Ino && x.Dev == tst.Dev {
			pids = append(pids, pid)
		}
	})
	return pids
}

func forEachProcess(f func(pid int)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != self {
			f(pid)
		}
	}
}

// processesMentioning finds processes whose command line or environment contains s.
func processesMentioning(s string) []int {
	var pids []int
	parent := os.Getppid()
	forEachProcess(func(pid int) {
		if pid == parent {
			return
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if err == nil && strings.Contains(string(b), s) {
				pids = append(pids, pid)
				return
			}
		}
	})
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
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// HostSysctls returns the host's own values of the kernel parameters the kubelet changes:
// those a cluster recorded before its kubelet started, whether it still runs or died without
// putting them back (the next cluster to start or the last to stop restores them), or else the
// current ones. A check that nothing is left compares against these, not against what it
// happens to read at its start.
func HostSysctls() map[string]string {
	var recorded map[string]string
	_ = withHostState(func(st *hostState) (*hostState, error) {
		if st != nil {
			recorded = maps.Clone(st.Sysctls)
		}
		return st, nil
	})
	if recorded != nil {
		return recorded
	}
	return ReadSysctls()
}

// OtherClustersRunning tells whether another cluster whose kubelet may have changed the host's
// sysctls still runs.
func OtherClustersRunning(s *Slot) bool {
	running := false
	_ = withHostState(func(st *hostState) (*hostState, error) {
		running = st != nil && slices.ContainsFunc(st.Users, func(i int) bool { return i != s.Index })
		return st, nil
	})
	return running
}
