// Package localcluster starts a real single-node Kubernetes cluster on this machine for `make
// dev` and the end-to-end tests: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler (hack/control-plane.sh and hack/node.sh build them from their Go modules),
// containerd with Debian's runc and CNI bridge plugin, the kubelet, kube-proxy (nftables) and
// CoreDNS. Every daemon runs in a network namespace of the cluster's own, whose default route
// leads into a second namespace that drops everything, so nothing is sent off the machine; the
// host reaches the API server through a forwarder on 127.0.0.1, and pods and Services through
// DialContext (or `nsenter --net=<NodeNetns>`). Images are imported, never pulled.
package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Module is the Go module whose checkout the cluster serves.
const Module = "github.com/imcallback/callback-operator"

// Options configure a local cluster.
type Options struct {
	// AssetsDir holds etcd, kube-apiserver, kube-controller-manager and kubectl. Default
	// $KUBEBUILDER_ASSETS, else what hack/control-plane.sh prints (building them if needed).
	AssetsDir string
	// NodeAssetsDir holds kubelet, kube-proxy, kube-scheduler, containerd, ctr, the shim and
	// coredns. Default $LOCALCLUSTER_NODE_ASSETS, else what hack/node.sh prints.
	NodeAssetsDir string
	// RepoRoot is the checkout; default: found from the working directory.
	RepoRoot string
	// WorkDir receives kubeconfig and logs/; default the slot's directory, removed at Stop.
	WorkDir string
	// Images are image archives to import into containerd before the node starts.
	Images []string
	// Logf receives progress; default none.
	Logf func(format string, args ...any)
}

// Cluster is a running local cluster.
type Cluster struct {
	// Config is the admin user's client configuration.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of the admin kubeconfig file (server on the host's loopback).
	Kubeconfig string
	// AssetsDir holds the control-plane binaries, kubectl among them; NodeAssetsDir the node's.
	AssetsDir, NodeAssetsDir string
	// LogDir holds every daemon's log.
	LogDir string
	// Slot is the cluster's share of the host (namespaces, addresses, cgroups).
	Slot *Slot

	logf     func(string, ...any)
	repoRoot string
	paths    paths
	pki      *pki
	node     *Netns
	drop     *Netns

	daemons                        []*daemon
	containerd, kubelet, kubeProxy *daemon
	mu                             sync.Mutex
	forwarders                     []*forwarder
}

// Start brings up the cluster; Stop tears it down. On error everything started is stopped.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	begin := time.Now()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if opts.RepoRoot == "" {
		if opts.RepoRoot, err = RepoRoot(); err != nil {
			return nil, err
		}
	}
	if err := checkHostTools(); err != nil {
		return nil, err
	}
	if opts.AssetsDir == "" {
		if opts.AssetsDir, err = assets(ctx, opts.RepoRoot, "KUBEBUILDER_ASSETS", "control-plane.sh"); err != nil {
			return nil, err
		}
	}
	if opts.NodeAssetsDir == "" {
		if opts.NodeAssetsDir, err = assets(ctx, opts.RepoRoot, "LOCALCLUSTER_NODE_ASSETS", "node.sh"); err != nil {
			return nil, err
		}
	}
	for dir, bins := range map[string][]string{
		opts.AssetsDir:     {"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"},
		opts.NodeAssetsDir: {"kubelet", "kube-proxy", "kube-scheduler", "containerd", "ctr", "containerd-shim-runc-v2", "coredns"},
	} {
		for _, b := range bins {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return nil, fmt.Errorf("%s missing (hack/control-plane.sh and hack/node.sh build it): %w", b, err)
			}
		}
	}

	slot, err := AcquireSlot(logf)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Slot: slot, AssetsDir: opts.AssetsDir, NodeAssetsDir: opts.NodeAssetsDir, logf: logf,
		repoRoot: opts.RepoRoot, paths: paths{dir: slot.Dir}}
	defer func() {
		if err != nil {
			if serr := c.Stop(); serr != nil {
				logf("local cluster: cleaning up after a failed start: %v", serr)
			}
			c = nil
		}
	}()
	if err := saveHost(slot); err != nil {
		return c, err
	}
	workDir := opts.WorkDir
	if workDir == "" {
		workDir = slot.Dir
	}
	c.LogDir = filepath.Join(workDir, "logs")
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return c, err
	}
	logf("local cluster: slot %d (node %s, pods %s, Services %s), logs in %s", slot.Index, slot.NodeIP(), slot.PodCIDR(), slot.ServiceCIDR(), c.LogDir)

	if c.node, c.drop, err = nodeNetwork(slot); err != nil {
		return c, err
	}
	if err := prepareCgroupRoot(slot.CgroupRoot()); err != nil {
		return c, err
	}
	kubeconfigs, err := c.writeConfigs(workDir)
	if err != nil {
		return c, err
	}

	// etcd, the API server and containerd start together; the images load meanwhile.
	if err := c.startEtcd(); err != nil {
		return c, err
	}
	if err := c.startAPIServer(); err != nil {
		return c, err
	}
	if err := c.startContainerd(); err != nil {
		return c, err
	}
	images := make(chan error, 1)
	go func() { images <- c.loadImages(ctx, opts.Images) }()
	// abort waits for the images to load (or fail) before Stop tears containerd down.
	abort := func(err error) (*Cluster, error) {
		if ierr := <-images; ierr != nil {
			logf("local cluster: loading images: %v", ierr)
		}
		return c, err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return abort(err)
	}
	logf("local cluster: API server %s (on the host: %s) ready after %s", netip.AddrPortFrom(slot.NodeIP(), 6443), c.apiAddr(), time.Since(begin).Round(time.Millisecond))
	if err := c.startControllerManager(kubeconfigs["controller-manager"]); err != nil {
		return abort(err)
	}
	if err := c.startScheduler(kubeconfigs["scheduler"]); err != nil {
		return abort(err)
	}
	if err := <-images; err != nil {
		return c, err
	}
	logf("local cluster: images imported after %s", time.Since(begin).Round(time.Millisecond))
	if err := c.startKubelet(kubeconfigs["node"], c.paths.join("kubelet.yaml")); err != nil {
		return c, err
	}
	if err := c.startKubeProxy(c.paths.join("kube-proxy.yaml")); err != nil {
		return c, err
	}
	if err := c.installDNS(ctx); err != nil {
		return c, err
	}
	if err := c.installStorage(ctx); err != nil {
		return c, err
	}
	if err := c.waitNode(ctx); err != nil {
		return c, err
	}
	logf("local cluster: node Ready after %s", time.Since(begin).Round(time.Millisecond))
	if err := c.WaitDeployment(ctx, "kube-system", "coredns", 2*time.Minute); err != nil {
		return c, err
	}
	if err := c.waitStorage(ctx); err != nil {
		return c, err
	}
	logf("local cluster: ready after %s; kubeconfig %s", time.Since(begin).Round(time.Millisecond), c.Kubeconfig)
	return c, nil
}

// checkHostTools names what is missing of the host's part: Debian's runc, CNI plugins and nft,
// and util-linux's nsenter.
func checkHostTools() error {
	var missing []string
	for _, f := range []string{RuncBinary, filepath.Join(CNIBinDir, "bridge"), filepath.Join(CNIBinDir, "host-local")} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	for _, t := range []string{"nsenter", "nft", "ip", "sysctl"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the local cluster needs %s: run `make node-packages` (Debian: runc containernetworking-plugins nftables iproute2 procps util-linux)", strings.Join(missing, ", "))
	}
	return nil
}

// writeConfigs writes certificates, kubeconfigs and the daemons' configuration files, and
// the admin kubeconfig (server: a forwarder on the host's loopback) into workDir.
func (c *Cluster) writeConfigs(workDir string) (map[string]string, error) {
	s := c.Slot
	var err error
	if c.pki, err = newPKI(c.paths.join("pki")); err != nil {
		return nil, err
	}
	fwd, err := forward(c.node, "127.0.0.1:0", netip.AddrPortFrom(s.NodeIP(), 6443))
	if err != nil {
		return nil, err
	}
	c.forwarders = append(c.forwarders, fwd)
	inside := "https://" + netip.AddrPortFrom(s.NodeIP(), 6443).String()
	node := net.IP(s.NodeIP().AsSlice())
	certs := []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
			ips: []net.IP{node, net.IP(s.APIServiceIP().AsSlice()), net.IPv4(127, 0, 0, 1)}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}},
		{name: "controller-manager", cn: "system:kube-controller-manager"},
		{name: "scheduler", cn: "system:kube-scheduler"},
		{name: "kube-proxy", cn: "system:kube-proxy"},
		{name: "node", cn: "system:node:" + NodeName, orgs: []string{"system:nodes"}},
		{name: "kubelet", cn: NodeName, server: true, dns: []string{NodeName}, ips: []net.IP{node}},
	}
	kubeconfigs := map[string]string{}
	for _, cs := range certs {
		if err := c.pki.issue(cs); err != nil {
			return nil, err
		}
		if cs.server || cs.name == "apiserver-kubelet-client" {
			continue
		}
		if kubeconfigs[cs.name], err = c.pki.kubeconfig(cs.name, inside); err != nil {
			return nil, err
		}
	}
	c.Kubeconfig = filepath.Join(workDir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, "https://"+c.apiAddr().String(), c.pki.path("ca.crt"), c.pki.path("admin.crt"), c.pki.path("admin.key")); err != nil {
		return nil, err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, err
	}
	c.Config.QPS, c.Config.Burst = 100, 200
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}

	cni, err := cniConfig(s, c.paths)
	if err != nil {
		return nil, err
	}
	kubelet, err := kubeletConfig(s, c.paths, c.pki)
	if err != nil {
		return nil, err
	}
	proxy, err := kubeProxyConfig(s, kubeconfigs["kube-proxy"])
	if err != nil {
		return nil, err
	}
	return kubeconfigs, writeFiles(map[string][]byte{
		c.paths.containerdConfig():                                          []byte(containerdConfig(c.paths, PauseImage)),
		filepath.Join(c.paths.cniConfDir(), "10-pods.conflist"):             cni,
		c.paths.join("kubelet.yaml"):                                        kubelet,
		c.paths.join("kube-proxy.yaml"):                                     proxy,
		c.paths.join("resolv.conf"):                                         []byte("search cluster.local\n"),
		filepath.Join(c.paths.registryHostsDir(), "_default", "hosts.toml"): []byte(registryHosts),
	})
}

// apiAddr is where the host reaches the API server.
func (c *Cluster) apiAddr() netip.AddrPort { return c.forwarders[0].Addr() }

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		for _, d := range c.daemons {
			if d.exited() {
				return c.exitedErr(d)
			}
		}
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready (log %s): %w", filepath.Join(c.LogDir, "kube-apiserver.log"), errors.Join(last, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// loadImages writes the node's own images and imports them and extra, once containerd answers.
func (c *Cluster) loadImages(ctx context.Context, extra []string) error {
	archive, err := c.systemImages(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if c.containerd.exited() {
			return c.exitedErr(c.containerd)
		}
		cmd := exec.CommandContext(ctx, c.np("ctr"), "--address", c.paths.containerdSocket(), "version")
		if cmd.Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd does not answer on %s (log %s)", c.paths.containerdSocket(), filepath.Join(c.LogDir, "containerd.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c.ImportImages(ctx, append([]string{archive}, extra...)...)
}

func (c *Cluster) waitNode(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	last := "not registered"
	for {
		for _, d := range []*daemon{c.kubelet, c.kubeProxy, c.containerd} {
			if d.exited() {
				return c.exitedErr(d)
			}
		}
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue && n.Spec.PodCIDR != "" {
						return nil
					}
					last = fmt.Sprintf("Ready=%s %s: %s (podCIDR %q)", cond.Status, cond.Reason, cond.Message, n.Spec.PodCIDR)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %s (kubelet log %s)", NodeName, last, filepath.Join(c.LogDir, "kubelet.log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitDeployment waits until a Deployment's pods are all updated and available.
func (c *Cluster) WaitDeployment(ctx context.Context, ns, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d *appsv1.Deployment
	var err error
	for {
		d, err = c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && d.Spec.Replicas != nil && d.Status.ObservedGeneration == d.Generation &&
			d.Status.UpdatedReplicas == *d.Spec.Replicas && d.Status.AvailableReplicas == *d.Spec.Replicas && d.Status.Replicas == *d.Spec.Replicas {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("status %+v", d.Status)
			}
			return fmt.Errorf("deployment %s/%s not available after %s: %w (kubectl describe pods -n %s)", ns, name, timeout, err, ns)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// DialContext connects to an address inside the node: a pod IP, a ClusterIP, the node IP.
func (c *Cluster) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return c.node.DialContext(ctx, network, address)
}

// NodeNetns is the path of the node's network namespace: `nsenter --net=<path> curl ...`
// reaches pods and Services from the host's shell.
func (c *Cluster) NodeNetns() string { return c.node.Path }

// Forward listens on listen (such as 127.0.0.1:0) on the host and forwards each connection
// to target inside the node (a ClusterIP: kube-proxy balances each connection over the ready
// endpoints, across pod restarts). It returns the address; Stop closes it.
func (c *Cluster) Forward(listen string, target netip.AddrPort) (netip.AddrPort, error) {
	f, err := forward(c.node, listen, target)
	if err != nil {
		return netip.AddrPort{}, err
	}
	c.mu.Lock()
	c.forwarders = append(c.forwarders, f)
	c.mu.Unlock()
	return f.Addr(), nil
}

// Stop stops the node (every pod first, through the CRI), then the control plane, and
// removes everything the cluster made on the host except WorkDir.
func (c *Cluster) Stop() error {
	var errs []error
	ctx := context.Background()
	for _, d := range []*daemon{c.kubeProxy, c.kubelet} {
		if d != nil {
			d.stop(15 * time.Second)
		}
	}
	if c.containerd != nil && !c.containerd.exited() {
		if err := c.removePods(ctx); err != nil {
			errs = append(errs, err)
		}
		c.containerd.stop(15 * time.Second)
	}
	for i := len(c.daemons) - 1; i >= 0; i-- { // the control plane, etcd last
		c.daemons[i].stop(15 * time.Second)
	}
	c.mu.Lock()
	for _, f := range c.forwarders {
		_ = f.Close()
	}
	c.forwarders = nil
	c.mu.Unlock()
	for _, ns := range []*Netns{c.node, c.drop} {
		if ns != nil {
			ns.Close()
		}
	}
	if c.Slot != nil {
		if err := c.Slot.Release(); err != nil {
			errs = append(errs, fmt.Errorf("cleaning up slot %d: %w", c.Slot.Index, err))
		}
	}
	return errors.Join(errs...)
}

// Kubectl is a kubectl command (the control plane's version) against the cluster.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.AssetsDir, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	return cmd
}

// RepoRoot finds the checkout from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			first := ""
			if sc.Scan() {
				first = strings.TrimSpace(sc.Text())
			}
			f.Close()
			if first == "module "+Module {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside a checkout of %s", Module)
		}
		dir = parent
	}
}

// assets finds a cache directory of binaries: $env, else the hack/ script that builds it once.
func assets(ctx context.Context, repoRoot, env, script string) (string, error) {
	if d := os.Getenv(env); d != "" {
		return d, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "hack", script))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/%s: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}
