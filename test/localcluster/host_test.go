package localcluster

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// A cluster that died leaves the kubelet's values in the kernel and the host's own in its
// record: the host's values are the recorded ones (the next cluster puts them back), not the
// ones read now. CI saw the difference: a run killed at a session's end made the next run's
// check compare against the kubelet's values and fail after restoring the host correctly.
func TestHostSysctlsPreferTheRecord(t *testing.T) {
	dir := t.TempDir()
	savedState, savedLock := hostStateFile, hostLockFile
	hostStateFile, hostLockFile = filepath.Join(dir, "host.json"), filepath.Join(dir, "host.lock")
	t.Cleanup(func() { hostStateFile, hostLockFile = savedState, savedLock })

	if got, now := HostSysctls(), ReadSysctls(); !maps.Equal(got, now) {
		t.Fatalf("without a record: %v, want the current values %v", got, now)
	}
	recorded := map[string]string{"kernel/panic": "37", "vm/overcommit_memory": "2"} // not what this host has
	if err := withHostState(func(*hostState) (*hostState, error) {
		return &hostState{Sysctls: recorded}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := HostSysctls(); !maps.Equal(got, recorded) {
		t.Fatalf("with a record left by a cluster that died: %v, want %v", got, recorded)
	}
	if _, err := os.Stat(hostStateFile); err != nil {
		t.Fatalf("reading the record must keep it for the next cluster to restore: %v", err)
	}
}
