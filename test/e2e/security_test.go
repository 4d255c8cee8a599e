package e2e

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReceiverRunsRestricted: the receiver container runs as the kernel reports it, not as
// its pod spec asks: uid and gid 65532, no capabilities at all, no_new_privs, a seccomp
// filter, a read-only root filesystem and the memory limit in its cgroup.
func TestReceiverRunsRestricted(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-security")
	applyK(t, ns, overlay(t, nil, nil))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	pod := currentPod(t, ns, rcv.pods[0].Name)
	pid := containerPID(t, pod, "receiver")

	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"); args[0] != "/receiver" {
		t.Fatalf("pid %d runs %q, want /receiver", pid, args)
	}
	st := procStatus(t, pid)
	for k, want := range map[string]string{
		"Uid":        "65532 65532 65532 65532",
		"Gid":        "65532 65532 65532 65532",
		"CapInh":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapEff":     "0000000000000000",
		"CapBnd":     "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2", // SECCOMP_MODE_FILTER
	} {
		if st[k] != want {
			t.Errorf("/proc/%d/status %s: %q, want %q", pid, k, st[k], want)
		}
	}
	if opts := mountOptions(t, pid, "/"); !slices.Contains(opts, "ro") {
		t.Errorf("the root filesystem is mounted %v, want read-only", opts)
	}
	// The controller's default: a 256Mi limit and a 50m CPU request (cpu.shares 51).
	if got := cgroupFile(t, pod, "receiver", "memory", "memory.limit_in_bytes"); got != "268435456" {
		t.Errorf("memory.limit_in_bytes %s, want 268435456 (256Mi)", got)
	}
	if got := cgroupFile(t, pod, "receiver", "cpu", "cpu.shares"); got != "51" {
		t.Errorf("cpu.shares %s, want 51 (50m)", got)
	}
}
