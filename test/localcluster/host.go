package localcluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What the node changes on the host outside the slot's directory, and how it is undone.

const cgroupMount = "/sys/fs/cgroup"

// mount is a line of /proc/self/mountinfo: where something is mounted, and its type.
type mount struct{ point, fstype string }

// mounts lists this process's mounts in the order they were made.
func mounts() []mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-") // optional fields end at "-", the type follows it
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: fields[sep+1]})
	}
	return out
}

// cgroupHierarchies are the mounted cgroup hierarchies (v1 controllers, name=systemd, the
// unified v2 tree of a hybrid host, or the single v2 tree).
func cgroupHierarchies() []string {
	var out []string
	for _, m := range mounts() {
		if m.fstype == "cgroup" || m.fstype == "cgroup2" {
			out = append(out, m.point)
		}
	}
	return out
}

// prepareCgroupRoot makes root in every hierarchy (the kubelet refuses a --cgroup-root that
// does not exist), with the parent's CPUs and memory nodes in v1 cpuset (empty ones refuse
// every task).
func prepareCgroupRoot(root string) error {
	for _, h := range cgroupHierarchies() {
		dir := h
		for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("creating cgroup %s: %w", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if cur, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(cur)) == "" {
					v, _ := os.ReadFile(filepath.Join(parent, f))
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
					}
				}
			}
		}
	}
	return nil
}

// cgroupDirs lists root and every cgroup below it, deepest first, in every hierarchy.
func cgroupDirs(root string) []string {
	var out []string
	for _, h := range cgroupHierarchies() {
		top := filepath.Join(h, root)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		out = append(out, dirs...)
	}
	return out
}

// cgroupPids are the processes in root's cgroups.
func cgroupPids(root string) []int {
	var pids []int
	for _, d := range cgroupDirs(root) {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeCgroups removes root's cgroups (they must be empty of processes), and the parent
// /callback-operator when no other slot has cgroups there.
func removeCgroups(root string) error {
	var errs []error
	for _, d := range cgroupDirs(root) {
		var err error
		for range 50 { // a cgroup whose last task just died may be busy for a moment
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	for _, h := range cgroupHierarchies() {
		_ = syscall.Rmdir(filepath.Join(h, filepath.Dir(root))) // fails while another slot uses it
	}
	return errors.Join(errs...)
}

// mountsUnder lists mount points at or below dir, deepest (last mounted) first.
func mountsUnder(dir string) []string {
	var out []string
	for _, m := range mounts() {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			out = append(out, m.point)
		}
	}
	slices.Reverse(out)
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount at or below dir.
func unmountUnder(dir string) error {
	var errs []error
	for range 3 { // a mount may sit on another
		mounts := mountsUnder(dir)
		if len(mounts) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Files the node writes outside the slot's directory: the kubelet's symlinks to container
// logs (/var/log/containers, a fixed path) and the CNI plugins' cached results (libcni's
// /var/lib/cni/results, named after the network).
const (
	containerLogLinks = "/var/log/containers"
	cniResults        = "/var/lib/cni/results"
)

func nodeFiles(s *Slot) []string {
	var out []string
	entries, _ := os.ReadDir(containerLogLinks)
	for _, e := range entries {
		p := filepath.Join(containerLogLinks, e.Name())
		if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, s.Dir+"/") {
			out = append(out, p)
		}
	}
	results, _ := filepath.Glob(filepath.Join(cniResults, s.networkName()+"-*"))
	return append(out, results...)
}

func removeNodeFiles(s *Slot) error {
	var errs []error
	for _, p := range nodeFiles(s) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// The kubelet sets these kernel parameters at start (for its own defaults: a panic reboots,
// memory overcommit on). They are not per namespace: the first cluster saves the host's
// values and the last one to stop restores them.
var kubeletSysctls = []string{
	"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// hostPaths are directories the node creates at fixed paths; the last cluster to stop
// removes those that did not exist before the first one started.
var hostPaths = []string{
	"/var/lib/kubelet/device-plugins", "/var/lib/kubelet", containerLogLinks, cniResults, "/var/lib/cni",
	"/run/containerd/s", "/run/containerd",
}

// hostState is what the first cluster found on the host, and which clusters (slots) changed
// it since: the last of them to stop restores it.
type hostState struct {
	Sysctls map[string]string `json:"sysctls"`
	Absent  []string          `json:"absent"`
	Users   []int             `json:"users"`
}

var (
	hostStateFile = filepath.Join(StateRoot, "host.json")
	hostLockFile  = filepath.Join(StateRoot, "host.lock")
)

// withHostState runs f on the recorded state (nil when none) under a host-wide lock, with
// users that no live run holds any more left out; f's result is written back (nil: removed).
func withHostState(f func(st *hostState) (*hostState, error)) error {
	l, err := os.OpenFile(hostLockFile, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	var st *hostState
	if b, err := os.ReadFile(hostStateFile); err == nil {
		st = &hostState{}
		if err := json.Unmarshal(b, st); err != nil {
			return fmt.Errorf("%s: %w", hostStateFile, err)
		}
		st.Users = slices.DeleteFunc(st.Users, func(i int) bool { return !slotHeld(i) })
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	out, ferr := f(st)
	if out == nil {
		if err := os.Remove(hostStateFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return errors.Join(ferr, err)
		}
		return ferr
	}
	b, err := json.Marshal(out)
	if err != nil {
		return errors.Join(ferr, err)
	}
	return errors.Join(ferr, os.WriteFile(hostStateFile, b, 0o644))
}

// slotHeld tells whether a live run holds slot i.
func slotHeld(i int) bool {
	s, err := LockSlot(i)
	if err != nil || s == nil {
		return true
	}
	s.unlock()
	return false
}

// ReadSysctls reads the kernel parameters the kubelet changes.
func ReadSysctls() map[string]string {
	out := map[string]string{}
	for _, k := range kubeletSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			out[k] = strings.TrimSpace(string(b))
		}
	}
	return out
}

// saveHost records the host's state unless a running cluster already did (then s joins its
// users). State left by clusters that died is put back first.
func saveHost(s *Slot) error {
	return withHostState(func(st *hostState) (*hostState, error) {
		if st != nil && len(st.Users) == 0 {
			if err := st.restore(); err != nil {
				return st, err
			}
			st = nil
		}
		if st == nil {
			st = &hostState{Sysctls: ReadSysctls()}
			for _, p := range hostPaths {
				if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
					st.Absent = append(st.Absent, p)
				}
			}
		}
		if !slices.Contains(st.Users, s.Index) {
			st.Users = append(st.Users, s.Index)
		}
		return st, nil
	})
}

// restoreHost puts the host back as the first cluster found it when no other cluster that
// changed it runs any more.
func restoreHost(s *Slot) error {
	return withHostState(func(st *hostState) (*hostState, error) {
		if st == nil {
			return nil, nil
		}
		st.Users = slices.DeleteFunc(st.Users, func(i int) bool { return i == s.Index })
		if len(st.Users) > 0 {
			return st, nil
		}
		if err := st.restore(); err != nil {
			return st, err
		}
		return nil, nil
	})
}

// hostUnrestored tells whether the host's state is recorded with no cluster but s using it.
func hostUnrestored(s *Slot) bool {
	unrestored := false
	_ = withHostState(func(st *hostState) (*hostState, error) {
		unrestored = st != nil && len(slices.DeleteFunc(slices.Clone(st.Users), func(i int) bool { return i == s.Index })) == 0
		return st, nil
	})
	return unrestored
}

func (st *hostState) restore() error {
	var errs []error
	for k, v := range st.Sysctls {
		if cur, err := os.ReadFile("/proc/sys/" + k); err == nil && strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s=%s: %w", k, v, err))
		}
	}
	for _, p := range st.Absent { // deepest first, as listed
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
