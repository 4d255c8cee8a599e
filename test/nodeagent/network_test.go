package nodeagent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSweepRemovesStaleState plays a run that was killed: it leaves a network namespace with a
// process in it, a veth pair, a bridge, /etc/netns files and a process that uses the slot's
// directory. The next AcquireSlot must sweep all of it, and nothing of other slots.
func TestSweepRemovesStaleState(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces); run it as root")
	}
	slot, err := AcquireSlot(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			_ = slot.Release()
		}
	}()
	n := newNetwork(slot)
	if err := n.setup(); err != nil {
		t.Fatal(err)
	}
	sb, err := n.createSandbox("default")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeHosts(sb, []byte("127.0.0.1 localhost\n")); err != nil {
		t.Fatal(err)
	}
	// A pod process, started as the agent starts them, and a "control plane" process.
	inPod := exec.Command("ip", "netns", "exec", sb.Netns, "sleep", "300")
	inPod.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := inPod.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = inPod.Wait() }()
	cfg := filepath.Join(slot.Dir, "kubeconfig")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sleep", "300")
	other.Env = []string{"KUBECONFIG=" + cfg}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = other.Wait() }()
	waitFor(t, func() bool { return len(netnsPids(sb.Netns)) > 0 })

	before := slot.Leftovers()
	for _, want := range []string{"netns " + sb.Netns, "link " + sb.HostVeth, "link " + slot.BridgeName(), sb.EtcDir} {
		if !contains(before, want) {
			t.Fatalf("setup did not make %q; leftovers %q", want, before)
		}
	}

	// The run "dies": its lock goes away without any cleanup.
	index := slot.Index
	slot.unlock()
	next, err := AcquireSlot(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	released = true
	defer func() { _ = next.Release() }()

	stale := &Slot{Index: index, Dir: filepath.Join(StateRoot, filepathBase(index))}
	left := stale.Leftovers()
	if next.Index == index {
		left = remove(left, next.Dir) // re-created for the new run
	}
	if len(left) > 0 {
		t.Errorf("after the sweep, left over: %q", left)
	}
	for _, p := range []*exec.Cmd{inPod, other} {
		if processAlive(p.Process.Pid) {
			t.Errorf("process %d (%s) survived the sweep", p.Process.Pid, strings.Join(p.Args, " "))
		}
	}
}

func filepathBase(i int) string { return fmt.Sprintf("slot-%02d", i) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func remove(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
