// Package localcluster starts a small real Kubernetes cluster on this machine for `make dev`
// and the end-to-end tests: etcd and kube-apiserver (through controller-runtime's envtest,
// which provisions certificates, ports and an admin user), kube-controller-manager with the
// controllers the operator relies on, the project's CRDs, and the node agent
// (test/nodeagent) that runs pods as local processes. All of it comes from the binaries
// hack/control-plane.sh builds; nothing is faked.
package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/imcallback/callback-operator/test/nodeagent"
)

// Module is the Go module whose checkout the cluster serves.
const Module = "github.com/imcallback/callback-operator"

// Controllers are the kube-controller-manager controllers the local cluster runs: what
// Deployments, Services, garbage collection, namespaces and PodDisruptionBudgets need.
// (No service-account token controller: receiver pods do not mount tokens.)
var Controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"endpointslice-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"disruption-controller",
}

// Options configure a local cluster.
type Options struct {
	// AssetsDir holds etcd, kube-apiserver, kube-controller-manager and kubectl. Default
	// $KUBEBUILDER_ASSETS, else what hack/control-plane.sh prints (building them if needed).
	AssetsDir string
	// RepoRoot is the checkout; default: found from the working directory.
	RepoRoot string
	// CRDDirs are installed at start; default <RepoRoot>/config/crd/bases.
	CRDDirs []string
	// WorkDir receives kubeconfig and logs/ (control plane and every container's output);
	// default the slot's scratch directory, removed at Stop.
	WorkDir string
	// Images maps container images to local programs for the node agent.
	Images nodeagent.ImageMap
	// WithoutNodeAgent starts only the control plane.
	WithoutNodeAgent bool
	// Logf receives progress and the node agent's log; default none.
	Logf func(format string, args ...any)
}

// Cluster is a running local cluster.
type Cluster struct {
	// Config is the admin user's client configuration.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of the admin kubeconfig file.
	Kubeconfig string
	// AssetsDir holds the control-plane binaries, kubectl among them.
	AssetsDir string
	// LogDir holds the control plane's logs and one file per container.
	LogDir string
	// Slot is the cluster's share of the host (addresses, names).
	Slot *nodeagent.Slot
	// Agent is the node agent, nil WithoutNodeAgent.
	Agent *nodeagent.Agent

	logf       func(string, ...any)
	env        *envtest.Environment
	kcm        *exec.Cmd
	kcmDone    chan struct{}
	stopAgent  context.CancelFunc
	agentDone  chan error
	closeLogs  []io.Closer
	slotConfig string
	manager    *exec.Cmd
	managerEnd chan struct{}
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
	if opts.AssetsDir == "" {
		if opts.AssetsDir, err = Assets(ctx, opts.RepoRoot); err != nil {
			return nil, err
		}
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"} {
		if _, err := os.Stat(filepath.Join(opts.AssetsDir, b)); err != nil {
			return nil, fmt.Errorf("control-plane binary missing (run hack/control-plane.sh): %w", err)
		}
	}
	if len(opts.CRDDirs) == 0 {
		opts.CRDDirs = []string{filepath.Join(opts.RepoRoot, "config", "crd", "bases")}
	}

	slot, err := nodeagent.AcquireSlot(logf)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Slot: slot, AssetsDir: opts.AssetsDir, logf: logf}
	defer func() {
		if err != nil {
			_ = c.Stop()
			c = nil
		}
	}()
	workDir := opts.WorkDir
	if workDir == "" {
		workDir = slot.Dir
	}
	c.LogDir = filepath.Join(workDir, "logs")
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return c, err
	}
	logf("local cluster: slot %d (pods %s, Services %s), logs in %s", slot.Index, slot.PodCIDR(), slot.ServiceCIDR(), c.LogDir)

	etcdLog, err := c.logFile("etcd.log")
	if err != nil {
		return c, err
	}
	apiLog, err := c.logFile("kube-apiserver.log")
	if err != nil {
		return c, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    opts.AssetsDir,
		CRDDirectoryPaths:        opts.CRDDirs,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Everything under the slot directory, so that a sweep after a crash finds the processes.
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(slot.Dir, "etcd"), Out: etcdLog, Err: etcdLog}
	api := env.ControlPlane.GetAPIServer()
	api.CertDir = filepath.Join(slot.Dir, "apiserver")
	api.Out, api.Err = apiLog, apiLog
	api.Configure().Set("service-cluster-ip-range", slot.ServiceCIDR().String())
	for _, d := range []string{env.ControlPlane.Etcd.DataDir, api.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return c, err
		}
	}
	c.env = env
	if c.Config, err = env.Start(); err != nil {
		return c, fmt.Errorf("starting etcd and kube-apiserver (logs in %s): %w", c.LogDir, err)
	}
	logf("local cluster: API server %s up after %s", c.Config.Host, time.Since(begin).Round(time.Millisecond))
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return c, err
	}
	c.slotConfig = filepath.Join(slot.Dir, "kubeconfig")
	if err := os.WriteFile(c.slotConfig, env.KubeConfig, 0o600); err != nil {
		return c, err
	}
	c.Kubeconfig = c.slotConfig
	if workDir != slot.Dir {
		c.Kubeconfig = filepath.Join(workDir, "kubeconfig")
		if err := os.WriteFile(c.Kubeconfig, env.KubeConfig, 0o600); err != nil {
			return c, err
		}
	}

	if err := c.startControllerManager(); err != nil {
		return c, err
	}
	if err := c.waitControllerManager(ctx); err != nil {
		return c, err
	}
	logf("local cluster: kube-controller-manager up after %s", time.Since(begin).Round(time.Millisecond))

	if !opts.WithoutNodeAgent {
		c.Agent, err = nodeagent.New(nodeagent.Options{
			Config: c.Config,
			Slot:   slot,
			Images: opts.Images,
			LogDir: c.LogDir,
			Logf:   func(f string, a ...any) { logf("nodeagent: "+f, a...) },
		})
		if err != nil {
			return c, err
		}
		agentCtx, stop := context.WithCancel(context.Background())
		c.stopAgent, c.agentDone = stop, make(chan error, 1)
		ready := make(chan struct{})
		go func() { c.agentDone <- c.Agent.Run(agentCtx, func() { close(ready) }) }()
		select {
		case <-ready:
		case err := <-c.agentDone:
			c.agentDone <- err
			return c, fmt.Errorf("node agent: %w", err)
		case <-ctx.Done():
			return c, context.Cause(ctx)
		}
	}
	logf("local cluster: ready after %s; kubeconfig %s", time.Since(begin).Round(time.Millisecond), c.Kubeconfig)
	return c, nil
}

func (c *Cluster) logFile(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.LogDir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c.closeLogs = append(c.closeLogs, f)
	return f, nil
}

func (c *Cluster) startControllerManager() error {
	log, err := c.logFile("kube-controller-manager.log")
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.AssetsDir, "kube-controller-manager"),
		"--kubeconfig="+c.slotConfig,
		"--controllers="+strings.Join(Controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--kube-api-qps=100", "--kube-api-burst=200",
		"--concurrent-gc-syncs=5",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	c.kcm, c.kcmDone = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(c.kcmDone) }()
	return nil
}

// waitControllerManager waits until the controllers work: the serviceaccount controller has
// made the "default" ServiceAccount.
func (c *Cluster) waitControllerManager(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-c.kcmDone:
			return fmt.Errorf("kube-controller-manager exited: %s", c.tail("kube-controller-manager.log"))
		case <-ctx.Done():
			return fmt.Errorf("kube-controller-manager did not start its controllers: %w (see %s)", ctx.Err(), filepath.Join(c.LogDir, "kube-controller-manager.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.LogDir, name))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// StartManager runs the operator's manager (bin/manager) against the cluster, with
// leader election, the metrics endpoint and a fixed health port off (several clusters may run
// on this machine), args appended, and RECEIVER_IMAGE set to receiverImage. Its output goes
// to manager.log in LogDir. Stop stops it first.
func (c *Cluster) StartManager(binary, receiverImage string, args ...string) error {
	if c.manager != nil {
		return errors.New("the manager is already running")
	}
	log, err := c.logFile("manager.log")
	if err != nil {
		return err
	}
	// The slot's copy of the kubeconfig, so that a sweep after a crash recognizes the manager.
	all := append([]string{"--kubeconfig=" + c.slotConfig, "--leader-elect=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0"}, args...)
	cmd := exec.Command(binary, all...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.slotConfig, "RECEIVER_IMAGE="+receiverImage)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", binary, err)
	}
	c.logf("local cluster: manager %s %s (RECEIVER_IMAGE=%s)", binary, strings.Join(all, " "), receiverImage)
	c.manager, c.managerEnd = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(c.managerEnd) }()
	return nil
}

// ManagerExited is closed when the manager exits (nil before StartManager).
func (c *Cluster) ManagerExited() <-chan struct{} { return c.managerEnd }

// StopManager stops the manager: SIGTERM, SIGKILL after 15s.
func (c *Cluster) StopManager() {
	if c.manager == nil {
		return
	}
	stopProcess(c.manager, c.managerEnd, 15*time.Second)
	c.manager = nil
}

func stopProcess(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Stop stops the manager, the node agent (and every pod's processes),
// kube-controller-manager, the API server and etcd, and removes everything the cluster made
// on the host except WorkDir.
func (c *Cluster) Stop() error {
	var errs []error
	c.StopManager()
	if c.stopAgent != nil {
		c.stopAgent()
		if err := <-c.agentDone; err != nil {
			errs = append(errs, fmt.Errorf("node agent: %w", err))
		}
		c.stopAgent = nil
	}
	if c.kcm != nil {
		stopProcess(c.kcm, c.kcmDone, 10*time.Second)
		c.kcm = nil
	}
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the API server and etcd: %w", err))
		}
		c.env = nil
	}
	for _, f := range c.closeLogs {
		f.Close()
	}
	c.closeLogs = nil
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

// Assets finds the control-plane binaries: $KUBEBUILDER_ASSETS, else hack/control-plane.sh
// (which builds them once, into a cache).
func Assets(ctx context.Context, repoRoot string) (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "hack", "control-plane.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/control-plane.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
