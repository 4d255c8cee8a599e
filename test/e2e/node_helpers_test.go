package e2e

// What the kernel says of a container, read on the node (this machine) rather than from the
// pod's spec: its main process's status and mounts, its cgroup's files.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// currentPod reads a pod again (its status names the current run of each container).
func currentPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := cluster.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// containerPID is the host's pid of the container's main process.
func containerPID(t *testing.T, pod *corev1.Pod, container string) int {
	t.Helper()
	pid, err := cluster.ContainerPID(pod, container)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// procStatus is /proc/<pid>/status as a map (Uid, CapEff, NoNewPrivs, Seccomp, ...).
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

// mountOptions are the options of the mount at path as the process sees it (its
// mountinfo: mount options, then super options).
func mountOptions(t *testing.T, pid int, path string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	var opts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == path {
			opts = strings.Split(f[5], ",") // the last mount at path is the one seen
		}
	}
	if opts == nil {
		t.Fatalf("process %d has no mount at %s", pid, path)
	}
	return opts
}

// cgroupFile reads a file of the container's cgroup in a v1 hierarchy, such as
// ("memory", "memory.limit_in_bytes").
func cgroupFile(t *testing.T, pod *corev1.Pod, container, hierarchy, file string) string {
	t.Helper()
	dir, err := cluster.ContainerCgroup(hierarchy, pod, container)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// killContainer SIGKILLs the container's main process, as the kernel's OOM killer or a
// crash would end it: no warning, no shutdown.
func killContainer(t *testing.T, pod *corev1.Pod, container string) {
	t.Helper()
	pid := containerPID(t, pod, container)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s of pod %s (pid %d): %v", container, pod.Name, pid, err)
	}
}
