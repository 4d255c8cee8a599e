package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// daemon is one of the cluster's processes, running in the node's network namespace, its
// output in <LogDir>/<name>.log.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startDaemon runs binary with args in the node's namespace.
func (c *Cluster) startDaemon(name, binary string, args ...string) (*daemon, error) {
	log, err := os.OpenFile(filepath.Join(c.LogDir, name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := c.node.Command(context.Background(), binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group (a Ctrl-C on the terminal reaches only dev, which stops the
	// daemons in order), killed if this process dies (a sweep cleans up the rest).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); log.Close(); close(d.done) }()
	c.daemons = append(c.daemons, d)
	return d, nil
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL after grace.
func (d *daemon) stop(grace time.Duration) {
	if d.exited() {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// tail is the end of a daemon's log, for error messages.
func (c *Cluster) tail(name string, n int) string {
	b, _ := os.ReadFile(filepath.Join(c.LogDir, name+".log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exitedErr names the daemon that exited, with its last log lines.
func (c *Cluster) exitedErr(d *daemon) error {
	return fmt.Errorf("%s exited: %v; last lines of %s:\n%s", d.name, d.cmd.ProcessState,
		filepath.Join(c.LogDir, d.name+".log"), c.tail(d.name, 15))
}

func (c *Cluster) cp(name string) string { return filepath.Join(c.AssetsDir, name) }
func (c *Cluster) np(name string) string { return filepath.Join(c.NodeAssetsDir, name) }

func (c *Cluster) startEtcd() error {
	_, err := c.startDaemon("etcd", c.cp("etcd"),
		"--name=local",
		"--data-dir="+c.paths.join("etcd"),
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=local=http://127.0.0.1:2380",
		"--listen-metrics-urls=",
		"--log-level=warn",
	)
	return err
}

func (c *Cluster) startAPIServer() error {
	s, pk := c.Slot, c.pki
	_, err := c.startDaemon("kube-apiserver", c.cp("kube-apiserver"),
		"--advertise-address="+s.NodeIP().String(),
		"--bind-address=0.0.0.0",
		"--secure-port=6443",
		"--etcd-servers=http://127.0.0.1:2379",
		"--client-ca-file="+pk.path("ca.crt"),
		"--tls-cert-file="+pk.path("apiserver.crt"),
		"--tls-private-key-file="+pk.path("apiserver.key"),
		"--service-cluster-ip-range="+s.ServiceCIDR().String(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pk.path("sa.pub"),
		"--service-account-signing-key-file="+pk.path("sa.key"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate="+pk.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+pk.path("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+pk.path("ca.crt"),
		// By address: resolving the node's name would ask the host's DNS server.
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	)
	return err
}

func (c *Cluster) startControllerManager(kubeconfig string) error {
	s, pk := c.Slot, c.pki
	_, err := c.startDaemon("kube-controller-manager", c.cp("kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--allocate-node-cidrs=true",
		"--cluster-cidr="+s.PodCIDR().String(),
		"--node-cidr-mask-size=24",
		"--service-cluster-ip-range="+s.ServiceCIDR().String(),
		"--cluster-signing-cert-file="+pk.path("ca.crt"),
		"--cluster-signing-key-file="+pk.path("ca.key"),
		"--root-ca-file="+pk.path("ca.crt"),
		"--service-account-private-key-file="+pk.path("sa.key"),
		"--use-service-account-credentials=true",
		"--kube-api-qps=100", "--kube-api-burst=200",
		"--concurrent-gc-syncs=5",
		"--v=1",
	)
	return err
}

func (c *Cluster) startScheduler(kubeconfig string) error {
	_, err := c.startDaemon("kube-scheduler", c.np("kube-scheduler"),
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--v=1",
	)
	return err
}

func (c *Cluster) startContainerd() error {
	var err error
	c.containerd, err = c.startDaemon("containerd", c.np("containerd"), "--config="+c.paths.containerdConfig())
	return err
}

func (c *Cluster) startKubelet(kubeconfig, config string) error {
	var err error
	c.kubelet, err = c.startDaemon("kubelet", c.np("kubelet"),
		"--config="+config,
		"--kubeconfig="+kubeconfig,
		"--hostname-override="+NodeName,
		"--node-ip="+c.Slot.NodeIP().String(),
		"--root-dir="+c.paths.kubeletDir(),
		"--cert-dir="+c.paths.join("kubelet", "pki"),
		// Root may not lower its oom_score_adj here (no CAP_SYS_RESOURCE).
		"--oom-score-adj=0",
		"--v=1",
	)
	return err
}

func (c *Cluster) startKubeProxy(config string) error {
	var err error
	c.kubeProxy, err = c.startDaemon("kube-proxy", c.np("kube-proxy"), "--config="+config, "--v=1")
	return err
}
