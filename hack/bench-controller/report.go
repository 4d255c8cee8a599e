package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

type progressPoint struct {
	frac float64
	at   time.Duration
}

type idleBucket struct {
	from, to     time.Duration
	writes, reqs float64
}

type results struct {
	opts             options
	started          time.Time
	apiserverVersion string
	load             []loadAvg

	bare, bareUnlimited, ideal bareResult

	t0, tConv, tEnd   time.Time
	createsDone, ctrl time.Duration
	progress          []progressPoint
	timedOut          int // converged resources when it gave up; 0 when all converged
	ctrlCPU, idleCPU  cpuTimes

	mgrStart, mgrConv, mgrIdleEnd snapshot
	mgrCPU0, mgrCPU1, mgrCPU2     float64
	rssIdleStart, rssMaxSampled   int64
	hwmConv, rssConv              int64
	hwmEnd, rssEnd                int64
	statusEnd                     map[string]int64
	idleBuckets                   []idleBucket

	// audit counts the manager's requests by phase and "verb resource code".
	audit map[string]map[string]int
}

// Phases of the audit log.
const (
	phaseStartup  = "startup"
	phaseConverge = "converge"
	phaseIdle     = "idle"
	phaseAfter    = "shutdown"
)

type auditEvent struct {
	AuditID string `json:"auditID"`
	Stage   string `json:"stage"`
	Verb    string `json:"verb"`
	User    struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		APIGroup    string `json:"apiGroup"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestURI     string `json:"requestURI"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestReceived time.Time `json:"requestReceivedTimestamp"`
}

func (r *results) readAudit(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	seen := map[string]bool{}
	r.audit = map[string]map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.User.Username != managerUser || seen[e.AuditID] {
			continue
		}
		seen[e.AuditID] = true
		what := e.RequestURI
		if o := e.ObjectRef; o != nil {
			what = o.Resource
			if o.APIGroup != "" {
				what += "." + o.APIGroup
			}
			if o.Subresource != "" {
				what += "/" + o.Subresource
			}
		}
		code := "-"
		if e.ResponseStatus != nil {
			code = fmt.Sprint(e.ResponseStatus.Code)
		}
		phase := phaseAfter
		switch t := e.RequestReceived; {
		case t.Before(r.t0):
			phase = phaseStartup
		case r.tConv.IsZero() || t.Before(r.tConv):
			phase = phaseConverge
		case r.tEnd.IsZero() || t.Before(r.tEnd):
			phase = phaseIdle
		}
		if r.audit[phase] == nil {
			r.audit[phase] = map[string]int{}
		}
		r.audit[phase][e.Verb+" "+what+" "+code]++
	}
	return sc.Err()
}

const mib = 1 << 20

// print writes the report and tells whether a target was missed.
func (r *results) print(out io.Writer) (missed bool) {
	o := r.opts
	n := float64(o.n)
	fmt.Fprintf(out, "\n== controller benchmark: %d CallbackReceivers (no auth, sink: a Service ref) ==\n", o.n)
	fmt.Fprintf(out, "kube-apiserver %s and etcd (envtest, no kube-controller-manager); manager --workers=%d --kube-api-qps=%g --kube-api-burst=%d; %d CPUs\n",
		r.apiserverVersion, o.workers, o.qps, o.burst, runtime.NumCPU())
	fmt.Fprint(out, "load average (1/5/15 min):")
	for i, l := range r.load {
		sep := ";"
		if i == len(r.load)-1 {
			sep = ""
		}
		fmt.Fprintf(out, " %s %s/%s/%s%s", l.when, l.one, l.five, l.fift, sep)
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out)

	reqConv := r.mgrConv.requests()
	idleW := writes(diff(r.mgrIdleEnd.requests(), r.mgrConv.requests()))
	idleMin := 0.0
	if !r.mgrIdleEnd.at.IsZero() {
		idleMin = r.mgrIdleEnd.at.Sub(r.mgrConv.at).Minutes()
	}
	ratio := r.ctrl.Seconds() / r.bare.took.Seconds()
	hwm := max(r.hwmEnd, r.hwmConv)

	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		missed = true
		return "MISSED"
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tvalue\ttarget\t")
	if r.bare.applies > 0 {
		fmt.Fprintf(tw, "bare server-side apply (%d applies, %d goroutines, %s)\t%.1f s\tyardstick\t\n", r.bare.applies, o.workers, r.bare.label, r.bare.took.Seconds())
	}
	if u := r.bareUnlimited; u.applies > 0 {
		fmt.Fprintf(tw, "  for reference: the same, %s\t%.1f s\t\t\n", u.label, u.took.Seconds())
	}
	if u := r.ideal; u.applies > 0 {
		fmt.Fprintf(tw, "  for reference: ideal controller (%s)\t%.1f s\t\t\n", u.label, u.took.Seconds())
	}
	ctrlLabel := "controller: first create -> all children + observedGeneration"
	switch {
	case r.timedOut > 0:
		fmt.Fprintf(tw, "%s\tgave up at %.1f s (%d of %d)\t\t%s\n", ctrlLabel, r.ctrl.Seconds(), r.timedOut, o.n, verdict(false))
	case r.bare.applies == 0:
		fmt.Fprintf(tw, "%s\t%.1f s\t\t\n", ctrlLabel, r.ctrl.Seconds())
	default:
		fmt.Fprintf(tw, "%s\t%.1f s\t\t\n", ctrlLabel, r.ctrl.Seconds())
		fmt.Fprintf(tw, "ratio controller / bare\t%.2f\t<= 1.2\t%s\n", ratio, verdict(ratio <= 1.2))
		if r.ideal.applies > 0 {
			fmt.Fprintf(tw, "  for reference: ideal controller / bare; controller / ideal\t%.2f; %.2f\t\t\n",
				r.ideal.took.Seconds()/r.bare.took.Seconds(), r.ctrl.Seconds()/r.ideal.took.Seconds())
		}
		// CPU time is steadier than wall time on a shared machine.
		if b := r.bare.cpu.apiserver; b > 0 {
			line := fmt.Sprintf("%.2f", r.ctrlCPU.apiserver/b)
			if r.ideal.applies > 0 {
				line += fmt.Sprintf("; ideal %.2f", r.ideal.cpu.apiserver/b)
			}
			fmt.Fprintf(tw, "  kube-apiserver CPU seconds, phase / bare apply\t%s\t\t\n", line)
		}
	}
	fmt.Fprintf(tw, "manager API requests per resource (start -> converged)\t%.2f\t\t\n", sum(reqConv)/n)
	fmt.Fprintf(tw, "  of which writes (POST/PUT/PATCH/DELETE)\t%.2f\t\t\n", writes(reqConv)/n)
	fmt.Fprintf(tw, "manager peak RSS (VmHWM)\t%.1f MiB\t< 100 MiB\t%s\n", float64(hwm)/mib, verdict(hwm < 100*mib))
	if r.timedOut == 0 && idleMin > 0 {
		fmt.Fprintf(tw, "manager writes per minute once idle (%.0f s)\t%.1f\t0\t%s\n", idleMin*60, idleW/idleMin, verdict(idleW == 0))
	}
	_ = tw.Flush()

	fmt.Fprintln(out, "\nconvergence:")
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	if r.createsDone > 0 {
		fmt.Fprintf(tw, "  all %d created (%d creators, not rate-limited)\t%.1f s\n", o.n, o.workers, r.createsDone.Seconds())
	}
	for _, p := range r.progress {
		fmt.Fprintf(tw, "  %g%% with observedGeneration current\t%.1f s\n", p.frac*100, p.at.Seconds())
	}
	for _, b := range []bareResult{r.bare, r.bareUnlimited} {
		if b.applies > 0 {
			fmt.Fprintf(tw, "  bare apply rate, %s\t%.0f applies/s\n", b.label, float64(b.applies)/b.took.Seconds())
		}
	}
	_ = tw.Flush()

	fmt.Fprintln(out, "\nCPU seconds (user+system):")
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  phase\twall\tkube-apiserver\tetcd\tmanager\t")
	for _, b := range []bareResult{r.bare, r.bareUnlimited} {
		if b.applies > 0 {
			fmt.Fprintf(tw, "  bare apply, %s\t%.1f\t%.1f\t%.1f\t-\t\n", b.label, b.took.Seconds(), b.cpu.apiserver, b.cpu.etcd)
		}
	}
	if b := r.ideal; b.applies > 0 {
		fmt.Fprintf(tw, "  ideal controller\t%.1f\t%.1f\t%.1f\t-\t\n", b.took.Seconds(), b.cpu.apiserver, b.cpu.etcd)
	}
	fmt.Fprintf(tw, "  controller\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.ctrl.Seconds(), r.ctrlCPU.apiserver, r.ctrlCPU.etcd, r.mgrCPU1-r.mgrCPU0)
	if idleMin > 0 {
		fmt.Fprintf(tw, "  idle\t%.1f\t%.1f\t%.1f\t%.1f\t\n", idleMin*60, r.idleCPU.apiserver, r.idleCPU.etcd, r.mgrCPU2-r.mgrCPU1)
	}
	_ = tw.Flush()

	fmt.Fprintln(out, "\nmanager memory:")
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  RSS before the creates\t%.1f MiB\n", float64(r.rssIdleStart)/mib)
	fmt.Fprintf(tw, "  VmHWM / RSS at convergence\t%.1f / %.1f MiB\n", float64(r.hwmConv)/mib, float64(r.rssConv)/mib)
	if r.hwmEnd > 0 {
		fmt.Fprintf(tw, "  VmHWM / RSS after idle\t%.1f / %.1f MiB\n", float64(r.hwmEnd)/mib, float64(r.rssEnd)/mib)
	}
	if m := r.statusEnd; m != nil {
		fmt.Fprintf(tw, "  RSS after idle: anonymous / file (binary) \t%.1f / %.1f MiB\n", float64(m["RssAnon"])/mib, float64(m["RssFile"])/mib)
	}
	for _, g := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes"} {
		if f := r.mgrConv.families[g]; f != nil && len(f.GetMetric()) > 0 {
			fmt.Fprintf(tw, "  %s at convergence\t%.1f MiB\n", g, value(f.GetMetric()[0])/mib)
		}
	}
	_ = tw.Flush()

	fmt.Fprintln(out, "\nmanager client requests (rest_client_requests_total), start -> converged, by method and code:")
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	byMC := r.mgrConv.sumBy("rest_client_requests_total", "method", "code")
	for _, k := range sortedKeys(byMC) {
		fmt.Fprintf(tw, "  %s\t%.0f\t%.3f/resource\n", k, byMC[k], byMC[k]/n)
	}
	_ = tw.Flush()

	fmt.Fprintln(out, "\nreconciles (controller_runtime_reconcile_total), start -> converged:")
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	rec := r.mgrConv.sumBy("controller_runtime_reconcile_total", "controller", "result")
	for _, k := range sortedKeys(rec) {
		if rec[k] > 0 {
			fmt.Fprintf(tw, "  %s\t%.0f\t%.2f/resource\n", k, rec[k], rec[k]/n)
		}
	}
	if !r.mgrIdleEnd.at.IsZero() {
		recIdle := diff(r.mgrIdleEnd.sumBy("controller_runtime_reconcile_total", "controller", "result"), rec)
		for _, k := range sortedKeys(recIdle) {
			if recIdle[k] > 0 {
				fmt.Fprintf(tw, "  idle: %s\t%.0f\t\n", k, recIdle[k])
			}
		}
	}
	_ = tw.Flush()

	for _, phase := range []string{phaseStartup, phaseConverge, phaseIdle} {
		a := r.audit[phase]
		if len(a) == 0 {
			continue
		}
		total := 0
		for _, c := range a {
			total += c
		}
		fmt.Fprintf(out, "\nmanager requests seen by the API server (audit log), %s phase: %d\n", phase, total)
		tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
		keys := sortedKeys(a)
		sort.SliceStable(keys, func(i, j int) bool { return a[keys[i]] > a[keys[j]] })
		fmt.Fprintln(tw, "  verb\tresource\tcode\tcount\tper resource\t")
		for _, k := range keys {
			f := strings.Fields(k)
			for len(f) < 3 {
				f = append(f, "")
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%.3f\t\n", f[0], f[1], f[2], a[k], float64(a[k])/n)
		}
		_ = tw.Flush()
	}

	if len(r.idleBuckets) > 0 {
		fmt.Fprintln(out, "\nidle, after convergence (manager client metrics):")
		tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
		for _, b := range r.idleBuckets {
			fmt.Fprintf(tw, "  %4.0f-%3.0f s\t%.0f requests\t%.0f writes\n", b.from.Seconds(), b.to.Seconds(), b.reqs, b.writes)
		}
		_ = tw.Flush()
	}
	return missed
}
