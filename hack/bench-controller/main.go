// Command bench-controller measures the manager (bin/manager, run as a separate process) at
// scale against a real kube-apiserver and etcd (envtest), next to a yardstick: a bare
// server-side apply of the same child objects straight to the same API server.
//
// The run, in order:
//
//  1. envtest starts etcd and kube-apiserver (KUBEBUILDER_ASSETS, else hack/control-plane.sh),
//     installs config/crd/bases and writes an admin kubeconfig (system:masters) to the work
//     directory. The API server writes an audit log of the manager's user only (metadata
//     level), which gives the manager's requests by verb, resource and code.
//  2. Yardstick: in namespace bench-bare, the ServiceAccount, Service and Deployment of N
//     synthetic CallbackReceivers, built by controllers/resources, are applied with
//     server-side apply under the manager's field manager, by as many goroutines as the
//     manager has workers, through a controller-runtime client with the manager's QPS and
//     burst (which, like the manager's, rate-limits each kind separately). The resources are
//     not created: each has a fake UID in its owner references (nothing garbage-collects in
//     envtest). Their spec is the API server's defaulting of the benchmark's spec (a dry-run
//     create), and the sink URI is resolved by controllers/sink, so the objects are byte for
//     byte what the manager applies. The children are deleted afterwards (not timed), so the
//     manager's caches do not hold them.
//     Two more references follow, for the diagnosis: the same applies without client rate
//     limits (-bare-unlimited), and an "ideal controller" (-ideal): CallbackReceivers created
//     as in step 3 and, for each, the writes the manager cannot do without (3 applies, one
//     status merge patch, one Event) straight from goroutines, nothing read or watched.
//  3. bin/manager starts as its own process (--leader-elect=false, metrics on 127.0.0.1 over
//     HTTP), in namespace bench-ctrl N CallbackReceivers are created (no auth; the sink is a
//     Service ref), and the time from the first create until every one has its
//     ServiceAccount, Service and Deployment and status.observedGeneration == generation is
//     measured from watches.
//  4. The manager is left idle for -idle (60 s) after convergence; its writes in that time
//     are read from its own client metrics (rest_client_requests_total).
//
// It prints a table: the times and the ratio, the manager's API requests and writes per
// resource (its own metrics; the breakdown by verb and resource from the audit log), its
// peak RSS (VmHWM), idle writes per minute, CPU time of the manager and of the control plane
// per phase, and the load average.
//
// Run it with `make bench`, or:
//
//	make build && KUBEBUILDER_ASSETS=$(hack/control-plane.sh) go run ./hack/bench-controller
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

type options struct {
	n           int
	workers     int
	qps         float64
	burst       int
	manager     string
	managerArgs string
	managerEnv  string
	crdDir      string
	workDir     string
	keep        bool
	idle        time.Duration
	timeout     time.Duration
	settle      time.Duration
	strict      bool
	pprofAddr   string

	bareUnlimited  bool
	ideal          bool
	skipBare       bool
	apiserverPprof time.Duration
}

var scheme = runtime.NewScheme()

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "CallbackReceivers to create.")
	flag.IntVar(&o.workers, "workers", 8, "Manager --workers, and goroutines of the bare apply.")
	flag.Float64Var(&o.qps, "qps", 100, "Manager --kube-api-qps, and the bare apply client's QPS.")
	flag.IntVar(&o.burst, "burst", 200, "Manager --kube-api-burst, and the bare apply client's burst.")
	flag.StringVar(&o.manager, "manager", "bin/manager", "The manager binary (make build).")
	flag.StringVar(&o.managerArgs, "manager-args", "", "More flags for the manager, space-separated (e.g. --zap-log-level=error).")
	flag.StringVar(&o.managerEnv, "manager-env", "", "Environment variables for the manager only, space-separated (e.g. GOGC=50 GOMEMLIMIT=64MiB).")
	flag.StringVar(&o.crdDir, "crd-dir", "config/crd/bases", "CRDs to install.")
	flag.StringVar(&o.workDir, "dir", "", "Work directory (kubeconfigs, audit log, manager log); a temporary one by default, removed unless -keep.")
	flag.BoolVar(&o.keep, "keep", false, "Keep the work directory.")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "How long the manager stays idle after convergence while its writes are counted.")
	flag.DurationVar(&o.timeout, "timeout", 6*time.Minute, "Give up on convergence (and on the bare apply) after this long.")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "Pause between the phases, so one phase's tail does not load the next.")
	flag.BoolVar(&o.strict, "strict", false, "Exit 1 when a target is missed (by default only the table says so).")
	flag.StringVar(&o.pprofAddr, "pprof", "", "When set (host:port), pass --pprof-bind-address to the manager and save heap and CPU profiles into the work directory.")
	flag.BoolVar(&o.bareUnlimited, "bare-unlimited", true, "Also time the bare apply without client rate limits (for reference: the API server's own limit).")
	flag.BoolVar(&o.ideal, "ideal", true, "Also time an ideal controller: the manager's necessary writes (create, 3 applies, status, Event) straight to the API server, nothing read (for reference: the floor for the ratio).")
	flag.BoolVar(&o.skipBare, "skip-bare", false, "Skip the yardstick (for quick runs of the manager alone; no ratio then).")
	flag.DurationVar(&o.apiserverPprof, "apiserver-pprof", 0, "When set, save CPU profiles of kube-apiserver over this long from the start of each phase into the work directory.")
	flag.Parse()

	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cbv1.AddToScheme} {
		if err := add(scheme); err != nil {
			fatal(err)
		}
	}
	missed, err := run(o)
	if err != nil {
		fatal(err)
	}
	if missed && o.strict {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench-controller:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-controller %s "+format+"\n", append([]any{time.Now().Format("15:04:05.0")}, args...)...)
}

func run(o options) (missed bool, err error) {
	if o.n <= 0 || o.workers <= 0 {
		return false, errors.New("-n and -workers must be positive")
	}
	manager, err := filepath.Abs(o.manager)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(manager); err != nil {
		return false, fmt.Errorf("%w (run make build)", err)
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		logf("KUBEBUILDER_ASSETS is not set: asking hack/control-plane.sh")
		out, err := exec.Command("hack/control-plane.sh").Output()
		if err != nil {
			return false, fmt.Errorf("hack/control-plane.sh: %w", err)
		}
		_ = os.Setenv("KUBEBUILDER_ASSETS", strings.TrimSpace(string(out)))
	}
	dir := o.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "bench-controller-"); err != nil {
			return false, err
		}
		if !o.keep {
			defer func() { _ = os.RemoveAll(dir) }()
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	res := &results{opts: o, started: time.Now()}
	res.load = append(res.load, loadSample("start"))

	cp, err := startControlPlane(o, dir)
	if err != nil {
		return false, err
	}
	defer cp.stop()
	res.apiserverVersion = cp.version
	logf("control plane up (kube-apiserver %s), admin kubeconfig %s", cp.version, cp.adminKubeconfig)

	// Phase 1: the yardstick.
	if !o.skipBare {
		if err := benchBare(ctx, o, cp, res); err != nil {
			return false, fmt.Errorf("bare apply: %w", err)
		}
		res.load = append(res.load, loadSample("after bare apply"))
		time.Sleep(o.settle)
	}

	// Phase 2 and 3: the manager, converging and then idle.
	if err := benchManager(ctx, o, cp, manager, dir, res); err != nil {
		return false, fmt.Errorf("manager: %w", err)
	}
	res.load = append(res.load, loadSample("end"))

	// The audit log is complete for every request that ended before the manager stopped.
	if err := res.readAudit(cp.auditLog); err != nil {
		logf("reading the audit log: %v", err)
	}
	missed = res.print(os.Stdout)
	if o.keep || o.workDir != "" {
		fmt.Printf("\nwork directory (kubeconfigs, audit log, manager log): %s\n", dir)
	}
	return missed, nil
}

// restConfig copies cfg with the given rate limits.
func restConfig(cfg *rest.Config, qps float32, burst int) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = qps, burst
	return c
}
