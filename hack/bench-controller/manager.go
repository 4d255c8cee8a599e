package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// managerProc is bin/manager running as a child process.
type managerProc struct {
	cmd        *exec.Cmd
	metricsURL string
	probeURL   string
	pprofURL   string
	exited     chan struct{}
	err        error
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startManager(o options, cp *controlPlane, binary, dir string) (*managerProc, error) {
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + cp.managerKubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(mport),
		"--metrics-secure=false",
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(pport),
		"--receiver-image=" + benchImage,
		"--workers=" + strconv.Itoa(o.workers),
		"--kube-api-qps=" + strconv.FormatFloat(o.qps, 'g', -1, 64),
		"--kube-api-burst=" + strconv.Itoa(o.burst),
	}
	m := &managerProc{
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport),
		probeURL:   fmt.Sprintf("http://127.0.0.1:%d/readyz", pport),
		exited:     make(chan struct{}),
	}
	if o.pprofAddr != "" {
		args = append(args, "--pprof-bind-address="+o.pprofAddr)
		m.pprofURL = "http://" + o.pprofAddr + "/debug/pprof/"
	}
	args = append(args, strings.Fields(o.managerArgs)...)
	logFile, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(binary, args...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	// Only what the manager is told: no KUBECONFIG of the caller's.
	m.cmd.Env = append(filteredEnv("KUBECONFIG"), "KUBECONFIG="+cp.managerKubeconfig)
	m.cmd.Env = append(m.cmd.Env, strings.Fields(o.managerEnv)...)
	logf("starting %s %s %s", o.managerEnv, binary, strings.Join(args, " "))
	if err := m.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() {
		m.err = m.cmd.Wait()
		_ = logFile.Close()
		close(m.exited)
	}()
	return m, nil
}

func filteredEnv(drop string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, drop+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func (m *managerProc) pid() int { return m.cmd.Process.Pid }

func (m *managerProc) alive() error {
	select {
	case <-m.exited:
		return fmt.Errorf("the manager exited (see manager.log): %w", m.err)
	default:
		return nil
	}
}

func (m *managerProc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := m.alive(); err != nil {
			return err
		}
		resp, err := metricsClient.Get(m.probeURL)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if _, err := scrapeMetrics(m.metricsURL); err == nil {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the manager did not become ready")
}

func (m *managerProc) stop() {
	if m.alive() != nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// save fetches a pprof endpoint into a file.
func (m *managerProc) save(ctx context.Context, path, file string) {
	if m.pprofURL == "" {
		return
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.pprofURL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		logf("pprof %s: %v", path, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	f, err := os.Create(file)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	_, _ = io.Copy(f, resp.Body)
	logf("pprof %s saved to %s", path, file)
}

// watcher tells, from a watch of its own on CallbackReceivers, how many have
// status.observedGeneration == generation. The manager sets it only after every child was
// applied, so that is when the children exist; they are checked with one list each at the
// end rather than watched, to keep the benchmark's own load on the API server small.
type watcher struct {
	cache cache.Cache
}

func metaList(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadataList {
	l := &metav1.PartialObjectMetadataList{}
	l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	return l
}

var childKinds = []schema.GroupVersionKind{
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
	corev1.SchemeGroupVersion.WithKind("Service"),
	appsv1.SchemeGroupVersion.WithKind("Deployment"),
}

func startWatcher(ctx context.Context, cp *controlPlane) (*watcher, error) {
	c, err := cache.New(restConfig(cp.admin, -1, 0), cache.Options{
		Scheme:            scheme,
		DefaultNamespaces: map[string]cache.Config{ctrlNamespace: {}},
	})
	if err != nil {
		return nil, err
	}
	if _, err := c.GetInformer(ctx, &cbv1.CallbackReceiver{}); err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("the benchmark's own watch did not sync")
	}
	return &watcher{cache: c}, nil
}

// observed counts the resources whose status.observedGeneration is current.
func (w *watcher) observed(ctx context.Context) (int, error) {
	crs := &cbv1.CallbackReceiverList{}
	if err := w.cache.List(ctx, crs, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	n := 0
	for _, cr := range crs.Items {
		if cr.Generation != 0 && cr.Status.ObservedGeneration == cr.Generation {
			n++
		}
	}
	return n, nil
}

// withChildren counts the resources that have all three children, listing them from the
// API server (metadata only).
func withChildren(ctx context.Context, c client.Client, n int) (int, error) {
	count := map[string]int{}
	for _, gvk := range childKinds {
		l := metaList(gvk)
		if err := c.List(ctx, l, client.InNamespace(ctrlNamespace)); err != nil {
			return 0, err
		}
		for _, it := range l.Items {
			count[it.Name]++
		}
	}
	done := 0
	for i := range n {
		if count[crName(i)] == len(childKinds) {
			done++
		}
	}
	return done, nil
}

func benchManager(ctx context.Context, o options, cp *controlPlane, binary, dir string, res *results) error {
	setup, err := setupClient(cp)
	if err != nil {
		return err
	}
	if err := namespaceWithSink(ctx, setup, ctrlNamespace); err != nil {
		return err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := startWatcher(wctx, cp)
	if err != nil {
		return err
	}

	m, err := startManager(o, cp, binary, dir)
	if err != nil {
		return err
	}
	defer m.stop()
	if err := m.waitReady(time.Minute); err != nil {
		return err
	}
	// Let it list and watch its (nearly empty) caches before the clock starts.
	time.Sleep(3 * time.Second)
	pid := m.pid()
	s0, err := scrapeMetrics(m.metricsURL)
	if err != nil {
		return err
	}
	res.mgrStart = s0
	res.mgrCPU0 = cpuSeconds(pid)
	_, res.rssIdleStart = memory(pid)

	if m.pprofURL != "" {
		secs := int(min(o.timeout, 60*time.Second) / time.Second)
		go m.save(ctx, fmt.Sprintf("profile?seconds=%d", secs), filepath.Join(dir, "cpu-converge.pprof"))
	}

	logf("creating %d CallbackReceivers in namespace %s (no auth, sink: Service %s)", o.n, ctrlNamespace, sinkName)
	cp.profile(ctx, o, "controller")
	cpu0 := cp.cpu()
	res.t0 = time.Now()
	var createErr atomic.Value
	createsDone := make(chan time.Time, 1)
	go func() {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range o.workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= o.n {
						return
					}
					if err := setup.Create(ctx, newCR(ctrlNamespace, crName(i))); err != nil {
						createErr.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		createsDone <- time.Now()
	}()

	deadline := res.t0.Add(o.timeout)
	lastLog := time.Now()
	thresholds := []float64{0.5, 0.9, 0.99, 1}
	for {
		if err, _ := createErr.Load().(error); err != nil {
			return fmt.Errorf("creating CallbackReceivers: %w", err)
		}
		if err := m.alive(); err != nil {
			return err
		}
		select {
		case t := <-createsDone:
			res.createsDone = t.Sub(res.t0)
			logf("all %d created after %s", o.n, res.createsDone.Round(time.Millisecond))
		default:
		}
		if _, rss := memory(pid); rss > res.rssMaxSampled {
			res.rssMaxSampled = rss
		}
		n, err := w.observed(ctx)
		if err != nil {
			return err
		}
		if n == o.n {
			// Expected at once; if not, it is polled like the rest.
			if n, err = withChildren(ctx, setup, o.n); err != nil {
				return err
			}
			if n < o.n {
				logf("observedGeneration current everywhere, but only %d of %d have all children", n, o.n)
			}
		}
		now := time.Now()
		for len(thresholds) > 0 && float64(n) >= thresholds[0]*float64(o.n) {
			res.progress = append(res.progress, progressPoint{frac: thresholds[0], at: now.Sub(res.t0)})
			thresholds = thresholds[1:]
		}
		if n == o.n {
			res.ctrl = now.Sub(res.t0)
			break
		}
		if now.After(deadline) {
			res.ctrl = now.Sub(res.t0)
			res.timedOut = n
			logf("gave up after %s: %d of %d converged", o.timeout, n, o.n)
			break
		}
		if now.Sub(lastLog) >= 5*time.Second {
			logf("%d of %d converged after %s", n, o.n, now.Sub(res.t0).Round(time.Second))
			lastLog = now
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.tConv = time.Now()
	res.ctrlCPU = cp.cpu().sub(cpu0)
	res.mgrCPU1 = cpuSeconds(pid)
	res.hwmConv, res.rssConv = memory(pid)
	s1, err := scrapeMetrics(m.metricsURL)
	if err != nil {
		return err
	}
	res.mgrConv = s1
	if res.timedOut > 0 {
		return nil
	}
	logf("converged after %s; idle for %s", res.ctrl.Round(time.Millisecond), o.idle)
	m.save(ctx, "heap", filepath.Join(dir, "heap-converged.pprof"))

	// Idle: count writes in buckets, so a tail right after convergence shows as such.
	const bucket = 10 * time.Second
	prev := s1
	idleCPU0 := cp.cpu()
	end := res.tConv.Add(o.idle)
	for time.Now().Before(end) {
		time.Sleep(min(bucket, time.Until(end)))
		if err := m.alive(); err != nil {
			return err
		}
		s, err := scrapeMetrics(m.metricsURL)
		if err != nil {
			return err
		}
		res.idleBuckets = append(res.idleBuckets, idleBucket{
			from: prev.at.Sub(res.tConv), to: s.at.Sub(res.tConv),
			writes: writes(diff(s.requests(), prev.requests())),
			reqs:   sum(diff(s.requests(), prev.requests())),
		})
		prev = s
	}
	res.mgrIdleEnd = prev
	res.idleCPU = cp.cpu().sub(idleCPU0)
	res.mgrCPU2 = cpuSeconds(pid)
	res.hwmEnd, res.rssEnd = memory(pid)
	res.statusEnd = procStatus(pid)
	res.tEnd = time.Now()
	m.save(ctx, "heap", filepath.Join(dir, "heap-idle.pprof"))
	m.stop()
	return nil
}
