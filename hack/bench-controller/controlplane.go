package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The manager connects as a user of its own, so that the audit log can select its requests.
const (
	adminUser   = "bench-admin"
	managerUser = "bench-manager"
)

type controlPlane struct {
	env     *envtest.Environment
	version string
	dir     string

	admin           *rest.Config
	adminKubeconfig string
	// managerKubeconfig is for the manager's own user (also system:masters).
	managerKubeconfig string
	auditLog          string
	// pids of kube-apiserver and etcd, for their CPU time.
	pids map[string]int
}

// auditPolicy logs the manager's requests only, once each when the response is complete
// (watches also when they start), at metadata level: cheap for the API server.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["` + managerUser + `"]
- level: None
`

func startControlPlane(o options, dir string) (*controlPlane, error) {
	cp := &controlPlane{dir: dir, auditLog: filepath.Join(dir, "audit.log")}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	cp.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{o.crdDir},
		ErrorIfCRDPathMissing: true,
	}
	cp.env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", policy).
		Set("audit-log-path", cp.auditLog).
		Set("audit-log-format", "json").
		// envtest's default /24 holds 254 ClusterIPs; the benchmark makes a Service per resource.
		Set("service-cluster-ip-range", "10.0.0.0/16")
	if _, err := cp.env.Start(); err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			cp.stop()
		}
	}()

	admin, err := cp.env.AddUser(envtest.User{Name: adminUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	cp.admin = admin.Config()
	if cp.adminKubeconfig, err = writeKubeconfig(admin, filepath.Join(dir, "admin.kubeconfig")); err != nil {
		return nil, err
	}
	mgr, err := cp.env.AddUser(envtest.User{Name: managerUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	if cp.managerKubeconfig, err = writeKubeconfig(mgr, filepath.Join(dir, "manager.kubeconfig")); err != nil {
		return nil, err
	}

	dc, err := discovery.NewDiscoveryClientForConfig(cp.admin)
	if err != nil {
		return nil, err
	}
	if v, err := dc.ServerVersion(); err == nil {
		cp.version = v.GitVersion
	}
	cp.pids = childPIDs("kube-apiserver", "etcd")
	ok = true
	return cp, nil
}

func writeKubeconfig(u *envtest.AuthenticatedUser, path string) (string, error) {
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, b, 0o600)
}

func (cp *controlPlane) stop() {
	if cp.env != nil {
		if err := cp.env.Stop(); err != nil {
			logf("stopping envtest: %v", err)
		}
		cp.env = nil
	}
}

// cpu is the CPU time of kube-apiserver and etcd so far.
func (cp *controlPlane) cpu() cpuTimes {
	var t cpuTimes
	for name, pid := range cp.pids {
		s := cpuSeconds(pid)
		switch name {
		case "kube-apiserver":
			t.apiserver = s
		case "etcd":
			t.etcd = s
		}
	}
	return t
}

type cpuTimes struct{ apiserver, etcd float64 }

func (a cpuTimes) sub(b cpuTimes) cpuTimes {
	return cpuTimes{apiserver: a.apiserver - b.apiserver, etcd: a.etcd - b.etcd}
}

// profile saves, when -apiserver-pprof is set, a CPU profile of kube-apiserver over the next
// -apiserver-pprof seconds into <dir>/apiserver-<name>.pprof, in the background.
func (cp *controlPlane) profile(ctx context.Context, o options, name string) {
	if o.apiserverPprof <= 0 {
		return
	}
	hc, err := rest.HTTPClientFor(cp.admin)
	if err != nil {
		logf("apiserver pprof: %v", err)
		return
	}
	file := filepath.Join(cp.dir, "apiserver-"+name+".pprof")
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(cp.admin.Host, "/"), int(o.apiserverPprof.Seconds()))
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			logf("apiserver pprof: %v", err)
			return
		}
		defer func() { _ = resp.Body.Close() }()
		f, err := os.Create(file)
		if err != nil {
			return
		}
		defer func() { _ = f.Close() }()
		if _, err := io.Copy(f, resp.Body); err == nil {
			logf("apiserver CPU profile saved to %s", file)
		}
	}()
}
