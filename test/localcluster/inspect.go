package localcluster

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// What the tests read of the node from the host, as the kernel sees it: a container's
// cgroup and processes, a pod's volumes, the addresses the CNI plugin has handed out.

// ContainerID is the runtime's id of a container of a pod (from its current status).
func ContainerID(pod *corev1.Pod, container string) (string, error) {
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == container {
			_, id, ok := strings.Cut(st.ContainerID, "://")
			if !ok || id == "" {
				return "", fmt.Errorf("container %s of pod %s has no id yet (%q)", container, pod.Name, st.ContainerID)
			}
			return id, nil
		}
	}
	return "", fmt.Errorf("pod %s has no status of container %s", pod.Name, container)
}

// ContainerCgroup is the directory of a container's cgroup in a cgroup v1 hierarchy (such as
// "memory" or "pids"): the kubelet's cgroupfs layout, <root>/kubepods[/<qos>]/pod<uid>/<id>.
func (c *Cluster) ContainerCgroup(hierarchy string, pod *corev1.Pod, container string) (string, error) {
	id, err := ContainerID(pod, container)
	if err != nil {
		return "", err
	}
	base := filepath.Join(cgroupMount, hierarchy, c.Slot.CgroupRoot(), "kubepods")
	for _, pattern := range []string{
		filepath.Join(base, "pod"+string(pod.UID), id),
		filepath.Join(base, "*", "pod"+string(pod.UID), id),
	} {
		if m, _ := filepath.Glob(pattern); len(m) == 1 {
			return m[0], nil
		}
	}
	return "", fmt.Errorf("no %s cgroup of container %s (%s) of pod %s under %s", hierarchy, container, id, pod.Name, base)
}

// ContainerPID is the host's pid of a container's main process: the one that is pid 1 in
// the container's pid namespace.
func (c *Cluster) ContainerPID(pod *corev1.Pod, container string) (int, error) {
	dir, err := c.ContainerCgroup("pids", pod, container)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return 0, err
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
				if ids := strings.Fields(rest); len(ids) > 1 && ids[len(ids)-1] == "1" {
					return pid, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("container %s of pod %s: no main process among %q", container, pod.Name, strings.Fields(string(b)))
}

// PodVolumeDir is where the kubelet keeps an emptyDir volume of a pod on the node.
func (c *Cluster) PodVolumeDir(pod *corev1.Pod, volume string) string {
	return filepath.Join(c.paths.kubeletDir(), "pods", string(pod.UID), "volumes", "kubernetes.io~empty-dir", volume)
}

// AllocatedPodIPs are the pod addresses the CNI plugin's IPAM holds: a pod's address is
// released when its sandbox is removed.
func (c *Cluster) AllocatedPodIPs() []netip.Addr {
	entries, _ := os.ReadDir(c.paths.join("cni", "ipam", c.Slot.networkName()))
	var out []netip.Addr
	for _, e := range entries {
		if a, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, a)
		}
	}
	return out
}
