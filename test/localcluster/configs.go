package localcluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// The node's configuration files. Every path a daemon writes to is under the slot's
// directory, except the few fixed ones host.go undoes.

// Debian's runc and CNI plugins (make node-packages installs them).
var (
	RuncBinary = "/usr/sbin/runc"
	CNIBinDir  = "/usr/lib/cni"
)

// NodeName is the node's name in every local cluster (each has its own API server).
const NodeName = "local-node"

// paths of the node's files.
type paths struct{ dir string }

func (p paths) join(elem ...string) string { return filepath.Join(append([]string{p.dir}, elem...)...) }

func (p paths) containerdSocket() string { return p.join("containerd", "containerd.sock") }
func (p paths) containerdConfig() string { return p.join("containerd", "config.toml") }
func (p paths) cniConfDir() string       { return p.join("cni", "net.d") }
func (p paths) registryHostsDir() string { return p.join("containerd", "certs.d") }
func (p paths) kubeletDir() string       { return p.join("kubelet") }
func (p paths) podLogsDir() string       { return p.join("pod-logs") }

// containerdConfig is containerd's configuration (format version 3, containerd 2.x).
func containerdConfig(p paths, pauseImage string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return strings.Join([]string{
		`version = 3`,
		`root = ` + q(p.join("containerd", "root")),
		`state = ` + q(p.join("containerd", "state")),
		// NRI and tracing are not used; the others have no use without their hardware/filesystem.
		`disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]`,
		``,
		`[grpc]`,
		`  address = ` + q(p.containerdSocket()),
		`[ttrpc]`,
		`  address = ` + q(p.containerdSocket()+".ttrpc"),
		`[debug]`,
		`  address = ""`,
		`[metrics]`,
		`  address = ""`,
		``,
		`[plugins."io.containerd.cri.v1.images"]`,
		`  snapshotter = "overlayfs"`,
		`  [plugins."io.containerd.cri.v1.images".registry]`,
		`    config_path = ` + q(p.registryHostsDir()),
		`  [plugins."io.containerd.cri.v1.images".pinned_images]`,
		`    sandbox = ` + q(pauseImage),
		``,
		`[plugins."io.containerd.cri.v1.runtime"]`,
		// Root has no CAP_SYS_RESOURCE on these VMs: a pod sandbox asking for a lower
		// oom_score_adj than containerd's own fails in runc (every pod would fail to start).
		`  restrict_oom_score_adj = true`,
		`  netns_mounts_under_state_dir = true`,
		`  enable_selinux = false`,
		`  disable_apparmor = true`,
		`  cdi_spec_dirs = []`,
		`  [plugins."io.containerd.cri.v1.runtime".containerd]`,
		`    default_runtime_name = "runc"`,
		`    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]`,
		`      runtime_type = "io.containerd.runc.v2"`,
		`      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]`,
		`        BinaryName = ` + q(RuncBinary),
		`        Root = ` + q(p.join("runc")),
		`        SystemdCgroup = false`,
		`  [plugins."io.containerd.cri.v1.runtime".cni]`,
		`    bin_dirs = [` + q(CNIBinDir) + `]`,
		`    conf_dir = ` + q(p.cniConfDir()),
		`    use_internal_loopback = true`,
		``,
		`[plugins."io.containerd.grpc.v1.cri"]`,
		`  disable_tcp_service = true`,
		// The stream server (kubectl exec, attach, port-forward) listens inside the node.
		`  stream_server_address = "127.0.0.1"`,
		`  stream_server_port = "0"`,
		``,
	}, "\n")
}

// registryHosts sends every registry to an address inside the node where nothing listens:
// images are imported, never pulled, so a pull fails at once and nothing is looked up or
// sent anywhere.
const registryHosts = `server = "http://127.0.0.1:9"
`

// cniConfig is the pods' network: a bridge in the node's namespace, the node as gateway, no
// masquerading (nothing is routed off the node anyway).
func cniConfig(s *Slot, p paths) ([]byte, error) {
	gw := s.PodCIDR().Addr().Next()
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       s.networkName(),
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      "cni0",
			"isGateway":   true,
			"hairpinMode": true,
			"ipMasq":      false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": s.PodCIDR().String(), "gateway": gw.String()}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": p.join("cni", "ipam"),
			},
		}},
	}, "", "  ")
}

// kubeletConfig is the kubelet's KubeletConfiguration.
func kubeletConfig(s *Slot, p paths, pk *pki) ([]byte, error) {
	cfg := map[string]any{
		"apiVersion":         "kubelet.config.k8s.io/v1beta1",
		"kind":               "KubeletConfiguration",
		"address":            s.NodeIP().String(),
		"port":               10250,
		"readOnlyPort":       0,
		"healthzBindAddress": "127.0.0.1",
		"tlsCertFile":        pk.path("kubelet.crt"),
		"tlsPrivateKeyFile":  pk.path("kubelet.key"),
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": pk.path("ca.crt")},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": "unix://" + p.containerdSocket(),
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               s.CgroupRoot(),
		// These VMs have cgroup v1 only; kubelet >= 1.35 refuses it unless told.
		"failCgroupV1":          false,
		"failSwapOn":            false,
		"protectKernelDefaults": false,
		"clusterDNS":            []string{s.DNSIP().String()},
		"clusterDomain":         "cluster.local",
		// Pods never inherit the host's resolver: names outside the cluster resolve nowhere.
		"resolvConf": p.join("resolv.conf"),
		"podLogsDir": p.podLogsDir(),
		// The host's disk may be fuller than a kubelet likes; the cluster is small and short-lived.
		"evictionHard": map[string]string{
			"memory.available": "100Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
			"imagefs.available": "1%", "imagefs.inodesFree": "1%",
		},
		// Images are imported, never pulled: never collect them.
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"serializeImagePulls":         false,
		"maxPods":                     110,
		// Pods are synced (and updated Secret and ConfigMap volumes written) every 10s
		// rather than every minute: tests of certificate rotation wait less.
		"syncFrequency": "10s",
		"staticPodPath": "",
	}
	return yaml.Marshal(cfg)
}

// kubeProxyConfig is kube-proxy's configuration: nftables, bound to the node IP, and no
// conntrack tuning (those sysctls are global; kube-proxy must not set them from a namespace).
func kubeProxyConfig(s *Slot, kubeconfig string) ([]byte, error) {
	return yaml.Marshal(map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"clientConnection":   map[string]any{"kubeconfig": kubeconfig},
		"mode":               "nftables",
		"clusterCIDR":        s.PodCIDR().String(),
		"bindAddress":        s.NodeIP().String(),
		"healthzBindAddress": s.NodeIP().String() + ":10256",
		"metricsBindAddress": "127.0.0.1:10249",
		"hostnameOverride":   NodeName,
		"nodePortAddresses":  []string{s.NodeIP().String() + "/32"},
		"oomScoreAdj":        0,
		"conntrack": map[string]any{
			"maxPerCore": 0, "min": 0,
			"tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
		},
	})
}

func writeFiles(files map[string][]byte) error {
	for path, data := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}
