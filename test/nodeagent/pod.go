package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// minGracePeriod is the shortest time between SIGTERM and SIGKILL, as in the kubelet.
	minGracePeriod = 2 * time.Second
	// restartBackoffBase and restartBackoffMax bound CrashLoopBackOff as in the kubelet: the
	// first restart is immediate, then 10s, 20s, ... up to 5 minutes; a container that ran
	// for 10 minutes starts over.
	restartBackoffBase  = 10 * time.Second
	restartBackoffMax   = 5 * time.Minute
	restartBackoffReset = 10 * time.Minute
	// configRetry is how soon a container whose configuration failed (a missing Secret) is
	// tried again.
	configRetry = 2 * time.Second
)

// podWorker runs one pod: its network sandbox, init containers, containers, probes and
// status, and its graceful termination.
type podWorker struct {
	a               *Agent
	uid             types.UID
	namespace, name string
	key             string // namespace/name
	done            chan struct{}

	updates  chan struct{} // a newer pod or its deletion is in pod/deleted
	statusCh chan struct{} // status changed

	mu           sync.Mutex
	pod          *corev1.Pod
	deleted      bool // gone from the API
	sb           *sandbox
	sandboxErr   string
	startTime    metav1.Time
	initDone     bool
	inits        []*container
	containers   []*container
	terminating  bool
	killDeadline time.Time
	phase        corev1.PodPhase // terminal phase once decided, else ""
	conds        map[corev1.PodConditionType]corev1.PodCondition
}

func newPodWorker(a *Agent, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		a:         a,
		uid:       pod.UID,
		namespace: pod.Namespace,
		name:      pod.Name,
		key:       pod.Namespace + "/" + pod.Name,
		done:      make(chan struct{}),
		updates:   make(chan struct{}, 1),
		statusCh:  make(chan struct{}, 1),
		pod:       pod,
		startTime: metav1.Now(),
		conds:     map[corev1.PodConditionType]corev1.PodCondition{},
	}
	for i := range pod.Spec.InitContainers {
		w.inits = append(w.inits, newContainer(w, &pod.Spec.InitContainers[i], true))
	}
	for i := range pod.Spec.Containers {
		w.containers = append(w.containers, newContainer(w, &pod.Spec.Containers[i], false))
	}
	return w
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	// The informer may deliver a version older than one a status update returned.
	if !olderThan(pod, w.pod) {
		w.pod = pod
	}
	w.mu.Unlock()
	signal(w.updates)
}

func (w *podWorker) gone() {
	w.mu.Lock()
	w.deleted = true
	w.mu.Unlock()
	signal(w.updates)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (w *podWorker) notify() { signal(w.statusCh) }

func (w *podWorker) logf(format string, args ...any) {
	w.a.logf("pod %s: "+format, append([]any{w.key}, args...)...)
}

// terminationGrace says whether the pod is to be stopped, and with what grace period.
func (w *podWorker) terminationGrace() (bool, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pod := w.pod
	grace := 30 * time.Second
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	if s := pod.DeletionGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	if grace < minGracePeriod {
		grace = minGracePeriod
	}
	if w.deleted {
		return true, minGracePeriod
	}
	return pod.DeletionTimestamp != nil, grace
}

// run is the pod's life. It returns when the pod's processes are gone and its sandbox is
// removed: after the pod's deletion (then it deletes the pod object, as the kubelet does) or
// the agent's shutdown.
func (w *podWorker) run(ctx context.Context) {
	defer close(w.done)
	statusCtx, stopStatus := context.WithCancel(context.Background())
	statusDone := make(chan struct{})
	go func() { w.syncStatusLoop(statusCtx); close(statusDone) }()

	podCtx, stopPod := context.WithCancel(context.Background())
	lifeDone := make(chan struct{})
	go func() { w.live(podCtx); close(lifeDone) }()
	w.notify()

	shutdown, finished := false, false
	ctxDone, lifeCh := ctx.Done(), (<-chan struct{})(lifeDone)
	for {
		terminate, grace := w.terminationGrace()
		if shutdown {
			// The agent stops: stop the pod quickly, whatever its grace period.
			terminate, grace = true, min(grace, w.a.opts.ShutdownGrace)
		}
		if terminate {
			w.mu.Lock()
			deadline := time.Now().Add(grace)
			if !w.terminating || deadline.Before(w.killDeadline) {
				if !w.terminating {
					w.logf("stopping (grace period %s)", grace)
				}
				w.terminating = true
				w.killDeadline = deadline
			}
			w.mu.Unlock()
			stopPod()
			if finished {
				break
			}
		}
		select {
		case <-w.updates:
		case <-ctxDone:
			shutdown, ctxDone = true, nil
		case <-lifeCh:
			// Either stopped as asked, or every container finished for good (restartPolicy
			// Never or OnFailure): then the pod waits for its deletion.
			finished, lifeCh = true, nil
		}
	}

	w.mu.Lock()
	sb := w.sb
	w.mu.Unlock()
	if sb != nil {
		w.a.unregisterSandbox(w.uid)
		w.a.net.deleteSandbox(sb)
	}
	w.mu.Lock()
	if w.phase == "" {
		w.phase = corev1.PodSucceeded
		for _, c := range w.containers {
			if t := c.state.Terminated; t == nil || t.ExitCode != 0 {
				w.phase = corev1.PodFailed
			}
		}
	}
	deleted := w.deleted
	w.mu.Unlock()

	if shutdown || deleted {
		stopStatus()
		<-statusDone
		return
	}
	// Final status, then remove the object: the API server waits for this before the pod is
	// really gone, so its endpoints stay "terminating" meanwhile.
	w.notify()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !w.statusWritten() {
		time.Sleep(20 * time.Millisecond)
	}
	stopStatus()
	<-statusDone
	zero := int64(0)
	err := w.a.client.CoreV1().Pods(w.namespace).Delete(context.Background(), w.name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &w.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.logf("deleting the pod object: %v", err)
	}
	w.logf("stopped and deleted")
}

func (w *podWorker) deadline() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.killDeadline
}

// live sets up the sandbox, runs the init containers in order, then the containers, until
// ctx ends (termination) or every container finished for good.
func (w *podWorker) live(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		sb, err := w.a.net.createSandbox(w.namespace)
		if err == nil {
			w.mu.Lock()
			w.sb, w.sandboxErr = sb, ""
			w.mu.Unlock()
			w.a.registerSandbox(w.uid, w.namespace, w.name, sb)
			w.logf("sandbox %s, address %s", sb.Netns, sb.IP)
			break
		}
		w.logf("creating the pod sandbox: %v", err)
		w.mu.Lock()
		w.sandboxErr = err.Error()
		w.mu.Unlock()
		w.notify()
		if !sleepCtx(ctx, min(time.Duration(attempt+1)*time.Second, 10*time.Second)) {
			return
		}
	}
	w.notify()

	for _, c := range w.inits {
		if !c.runInit(ctx) {
			return
		}
	}
	w.mu.Lock()
	w.initDone = true
	w.mu.Unlock()
	w.notify()

	var wg sync.WaitGroup
	for _, c := range w.containers {
		wg.Add(1)
		go func() { defer wg.Done(); c.loop(ctx) }()
	}
	wg.Wait()
	w.mu.Lock()
	if !w.terminating {
		// Every container finished and its restart policy says it stays so.
		w.phase = corev1.PodSucceeded
		for _, c := range w.containers {
			if t := c.state.Terminated; t == nil || t.ExitCode != 0 {
				w.phase = corev1.PodFailed
			}
		}
	}
	w.mu.Unlock()
	w.notify()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// podSnapshot is the latest pod with the status fields the downward API reads filled in.
func (w *podWorker) podSnapshot() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	pod := w.pod.DeepCopy()
	hostIP := w.a.net.slot.Gateway().String()
	pod.Status.HostIP = hostIP
	pod.Status.HostIPs = []corev1.HostIP{{IP: hostIP}}
	if w.sb != nil {
		pod.Status.PodIP = w.sb.IP.String()
		pod.Status.PodIPs = []corev1.PodIP{{IP: w.sb.IP.String()}}
	}
	return pod
}

// container is one container of the pod and its runs. Its state is guarded by the worker's mu.
type container struct {
	w    *podWorker
	spec *corev1.Container
	init bool

	state        corev1.ContainerState
	lastRun      *corev1.ContainerStateTerminated // the latest finished run
	prevRun      *corev1.ContainerStateTerminated // the run before it
	restartCount int32
	ready        bool
	started      bool
	containerID  string
	imageID      string
	runs         int
	backoff      time.Duration
}

func newContainer(w *podWorker, spec *corev1.Container, init bool) *container {
	return &container{w: w, spec: spec, init: init, state: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"},
	}}
}

func (c *container) setWaiting(reason, message string) {
	c.w.mu.Lock()
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
	c.w.mu.Unlock()
	c.w.notify()
}

func (c *container) logPath() string {
	pod := c.w.podSnapshot()
	return filepath.Join(c.w.a.opts.LogDir, fmt.Sprintf("%s_%s_%s.log", pod.Namespace, pod.Name, c.spec.Name))
}

// start resolves the container's program, environment and user, and starts it.
func (c *container) start(ctx context.Context) (*process, error) {
	pod := c.w.podSnapshot()
	env, err := ResolveEnv(ctx, c.w.a.objects, pod, c.spec, c.w.a.allocatable)
	if err != nil {
		return nil, err
	}
	command, args := ExpandCommand(c.spec, env)
	prog, err := c.w.a.opts.Images.Resolve(c.spec.Image, command, args)
	if err != nil {
		return nil, err
	}
	cr, err := containerCredentials(pod, c.spec)
	if err != nil {
		return nil, err
	}
	defaults := map[string]string{
		"PATH":     "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME": pod.Name,
		"HOME":     "/",
	}
	if pod.Spec.Hostname != "" {
		defaults["HOSTNAME"] = pod.Spec.Hostname
	}
	var envs []string
	for _, e := range env {
		envs = append(envs, e.Name+"="+e.Value)
		delete(defaults, e.Name)
	}
	for k, v := range defaults {
		envs = append(envs, k+"="+v)
	}
	dir := c.spec.WorkingDir
	if st, err := os.Stat(dir); dir == "" || err != nil || !st.IsDir() {
		dir = "/"
	}
	c.w.mu.Lock()
	netns := c.w.sb.Netns
	c.w.mu.Unlock()
	log, err := os.OpenFile(c.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	argv := commandLine(netns, cr, append([]string{prog.Path}, prog.Args...))
	p, err := startProcess(argv, envs, dir, log)
	if err != nil {
		return nil, err
	}
	c.w.mu.Lock()
	c.imageID = prog.ImageID
	c.containerID = fmt.Sprintf("nodeagent://%s-%d", c.spec.Name, p.pid())
	c.w.mu.Unlock()
	c.w.logf("container %s started: pid %d, %s %s", c.spec.Name, p.pid(), prog.Path, strings.Join(prog.Args, " "))
	return p, nil
}

// waitReason maps a start error to the container's waiting reason, as the kubelet reports it.
func waitReason(err error) (string, string) {
	var ie *ImageError
	if errors.As(err, &ie) {
		return ie.Reason, ie.Message
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return "CreateContainerConfigError", ce.Message
	}
	return "RunContainerError", err.Error()
}

// runOnce starts the container and waits until it exits, running its probes meanwhile; when
// ctx ends it stops the process gracefully (preStop, SIGTERM, SIGKILL at the worker's
// deadline). It reports whether a process ran.
func (c *container) runOnce(ctx context.Context) bool {
	p, err := c.start(ctx)
	if err != nil {
		reason, msg := waitReason(err)
		c.w.logf("container %s: %s: %s", c.spec.Name, reason, msg)
		c.setWaiting(reason, msg)
		return false
	}
	c.w.mu.Lock()
	if c.runs > 0 {
		c.restartCount++
	}
	c.runs++
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(p.started)}}
	c.ready = false
	c.started = c.spec.StartupProbe == nil
	c.w.mu.Unlock()
	c.w.notify()

	probeCtx, stopProbes := context.WithCancel(context.Background())
	probesDone := make(chan struct{})
	restart := make(chan string, 1)
	go func() { c.runProbes(probeCtx, p, restart); close(probesDone) }()

	select {
	case <-p.done:
	case <-ctx.Done():
		c.stop(p, c.w.deadline())
	case why := <-restart:
		c.w.logf("container %s %s, will be restarted", c.spec.Name, why)
		grace := c.w.podGrace()
		if pr := c.spec.LivenessProbe; pr != nil && pr.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pr.TerminationGracePeriodSeconds) * time.Second
		}
		c.stop(p, time.Now().Add(max(grace, minGracePeriod)))
	}
	<-p.done
	stopProbes()
	<-probesDone

	reason := "Completed"
	if p.exitCode != 0 {
		reason = "Error"
	}
	term := &corev1.ContainerStateTerminated{
		ExitCode:    p.exitCode,
		Signal:      int32(p.signal),
		Reason:      reason,
		StartedAt:   metav1.NewTime(p.started),
		FinishedAt:  metav1.NewTime(p.finished),
		ContainerID: c.containerID,
	}
	c.w.mu.Lock()
	c.state = corev1.ContainerState{Terminated: term}
	c.prevRun, c.lastRun = c.lastRun, term
	c.ready = false
	c.started = false
	c.w.mu.Unlock()
	c.w.notify()
	c.w.logf("container %s exited with code %d", c.spec.Name, p.exitCode)
	return true
}

func (w *podWorker) podGrace() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.pod.Spec.TerminationGracePeriodSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return 30 * time.Second
}

// stop runs the preStop hook, sends SIGTERM, and SIGKILL once deadline (which may move
// earlier, as the kubelet honors a shorter grace period of a second delete) has passed.
func (c *container) stop(p *process, deadline time.Time) {
	if h := c.spec.Lifecycle; h != nil && h.PreStop != nil {
		hookCtx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := c.runHandler(hookCtx, p, h.PreStop); err != nil {
			c.w.logf("container %s: preStop hook: %v", c.spec.Name, err)
		}
		cancel()
	}
	p.kill(syscall.SIGTERM)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
			if d := c.w.deadline(); !d.IsZero() && d.Before(deadline) {
				deadline = d
			}
			if time.Now().After(deadline) {
				c.w.logf("container %s did not stop within its grace period: SIGKILL", c.spec.Name)
				p.kill(syscall.SIGKILL)
				<-p.done
				return
			}
		}
	}
}

// loop runs a regular container and restarts it according to the pod's restartPolicy.
func (c *container) loop(ctx context.Context) {
	policy := c.w.podSnapshot().Spec.RestartPolicy
	for ctx.Err() == nil {
		ran := c.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if !ran {
			if !sleepCtx(ctx, configRetry) {
				return
			}
			continue
		}
		c.w.mu.Lock()
		term := c.state.Terminated
		c.w.mu.Unlock()
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && term.ExitCode == 0) {
			return
		}
		if d := c.nextBackoff(term); d > 0 {
			msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", d, c.spec.Name, c.w.key)
			c.w.mu.Lock()
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}}
			c.w.mu.Unlock()
			c.w.notify()
			if !sleepCtx(ctx, d) {
				c.w.mu.Lock()
				c.state = corev1.ContainerState{Terminated: term}
				c.w.mu.Unlock()
				return
			}
		}
	}
}

func (c *container) nextBackoff(term *corev1.ContainerStateTerminated) time.Duration {
	if term.FinishedAt.Sub(term.StartedAt.Time) >= restartBackoffReset {
		c.backoff = 0
	}
	d := c.backoff
	if c.backoff == 0 {
		c.backoff = restartBackoffBase
	} else {
		c.backoff = min(2*c.backoff, restartBackoffMax)
	}
	return d
}

// runInit runs an init container to completion, retrying a failure unless the pod's
// restartPolicy is Never (then the pod fails). It reports whether the pod may go on.
func (c *container) runInit(ctx context.Context) bool {
	policy := c.w.podSnapshot().Spec.RestartPolicy
	for ctx.Err() == nil {
		if !c.runOnce(ctx) {
			if !sleepCtx(ctx, configRetry) {
				return false
			}
			continue
		}
		c.w.mu.Lock()
		term := c.state.Terminated
		c.w.mu.Unlock()
		if ctx.Err() != nil {
			return false
		}
		if term.ExitCode == 0 {
			return true
		}
		if policy == corev1.RestartPolicyNever {
			c.w.mu.Lock()
			c.w.phase = corev1.PodFailed
			c.w.mu.Unlock()
			c.w.notify()
			return false
		}
		if d := c.nextBackoff(term); d > 0 && !sleepCtx(ctx, d) {
			return false
		}
	}
	return false
}

// syncStatusLoop writes the pod's status whenever it changed.
func (w *podWorker) syncStatusLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.statusCh:
		}
		if err := w.writeStatus(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.logf("writing status: %v", err)
			sleepCtx(ctx, time.Second)
			w.notify()
		}
	}
}

func (w *podWorker) statusWritten() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.computeStatusLocked(w.pod)
	return equality.Semantic.DeepEqual(statusWeOwn(w.pod.Status), st)
}

// statusWeOwn drops the conditions other writers own, for comparison.
func statusWeOwn(st corev1.PodStatus) corev1.PodStatus {
	st = *st.DeepCopy()
	st.Conditions = nil
	return st
}

func (w *podWorker) writeStatus(ctx context.Context) error {
	w.mu.Lock()
	base := w.pod
	st := w.computeStatusLocked(base)
	ours := w.conditionsLocked()
	w.mu.Unlock()
	for attempt := 0; attempt < 3; attempt++ {
		if equality.Semantic.DeepEqual(statusWeOwn(base.Status), st) && conditionsIncluded(base.Status.Conditions, ours) {
			return nil
		}
		pod := base.DeepCopy()
		conds := append([]corev1.PodCondition(nil), ours...)
		for _, cond := range pod.Status.Conditions {
			if !ownedCondition(cond.Type) {
				conds = append(conds, cond)
			}
		}
		sort.SliceStable(conds, func(i, j int) bool { return conditionOrder(conds[i].Type) < conditionOrder(conds[j].Type) })
		pod.Status = st
		pod.Status.Conditions = conds
		updated, err := w.a.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		if err == nil {
			w.mu.Lock()
			if w.pod.ResourceVersion == base.ResourceVersion || olderThan(w.pod, updated) {
				w.pod = updated
			}
			w.mu.Unlock()
			return nil
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh, gerr := w.a.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			if apierrors.IsNotFound(gerr) {
				return nil
			}
			return gerr
		}
		if fresh.UID != w.uid {
			return nil
		}
		base = fresh
		w.mu.Lock()
		if olderThan(w.pod, fresh) {
			w.pod = fresh
		}
		w.mu.Unlock()
	}
	return errors.New("status update conflicts persisted")
}

// olderThan compares resource versions (decimal strings from etcd) of two copies of a pod.
func olderThan(a, b *corev1.Pod) bool {
	if len(a.ResourceVersion) != len(b.ResourceVersion) {
		return len(a.ResourceVersion) < len(b.ResourceVersion)
	}
	return a.ResourceVersion < b.ResourceVersion
}

func conditionsIncluded(have, want []corev1.PodCondition) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h.Type == w.Type && h.Status == w.Status && h.Reason == w.Reason && h.Message == w.Message {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func ownedCondition(t corev1.PodConditionType) bool {
	switch t {
	case corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady:
		return true
	}
	return false
}

func conditionOrder(t corev1.PodConditionType) int {
	switch t {
	case corev1.PodReadyToStartContainers:
		return 0
	case corev1.PodInitialized:
		return 1
	case corev1.PodReady:
		return 2
	case corev1.ContainersReady:
		return 3
	case corev1.PodScheduled:
		return 4
	}
	return 5
}

// setCondition records a condition of ours, keeping its transition time while its status
// stays the same.
func (w *podWorker) setConditionLocked(t corev1.PodConditionType, ok bool, reason, message string) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
		reason, message = "", ""
	}
	prev, had := w.conds[t]
	cond := corev1.PodCondition{Type: t, Status: status, Reason: reason, Message: message, LastTransitionTime: metav1.Now()}
	if had && prev.Status == status {
		cond.LastTransitionTime = prev.LastTransitionTime
	} else if !had {
		for _, c := range w.pod.Status.Conditions {
			if c.Type == t && c.Status == status {
				cond.LastTransitionTime = c.LastTransitionTime
			}
		}
	}
	cond.LastTransitionTime = metav1.NewTime(cond.LastTransitionTime.Rfc3339Copy().Time)
	w.conds[t] = cond
}

func (w *podWorker) conditionsLocked() []corev1.PodCondition {
	out := make([]corev1.PodCondition, 0, len(w.conds))
	for _, c := range w.conds {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return conditionOrder(out[i].Type) < conditionOrder(out[j].Type) })
	return out
}

// computeStatusLocked derives the pod status from the worker's state, as the kubelet's
// status manager does; base supplies what others own (conditions other than ours).
func (w *podWorker) computeStatusLocked(base *corev1.Pod) corev1.PodStatus {
	st := corev1.PodStatus{
		QOSClass:  base.Status.QOSClass,
		StartTime: &w.startTime,
	}
	st.StartTime = &metav1.Time{Time: w.startTime.Rfc3339Copy().Time}
	hostIP := w.a.net.slot.Gateway().String()
	st.HostIP = hostIP
	st.HostIPs = []corev1.HostIP{{IP: hostIP}}
	if w.sb != nil {
		st.PodIP = w.sb.IP.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	for _, c := range w.inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.statusLocked())
	}
	for _, c := range w.containers {
		st.ContainerStatuses = append(st.ContainerStatuses, c.statusLocked())
	}

	sandboxReady := w.sb != nil && (w.phase == "" || !w.terminating)
	w.setConditionLocked(corev1.PodReadyToStartContainers, sandboxReady, "", "")
	if w.initDone || len(w.inits) == 0 {
		w.setConditionLocked(corev1.PodInitialized, true, "", "")
	} else {
		var pending []string
		for _, c := range w.inits {
			if t := c.state.Terminated; t == nil || t.ExitCode != 0 {
				pending = append(pending, c.spec.Name)
			}
		}
		w.setConditionLocked(corev1.PodInitialized, false, "ContainersNotInitialized",
			fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(pending, " ")))
	}
	var unready []string
	for _, c := range w.containers {
		if !c.ready {
			unready = append(unready, c.spec.Name)
		}
	}
	if len(unready) == 0 {
		w.setConditionLocked(corev1.ContainersReady, true, "", "")
	} else {
		w.setConditionLocked(corev1.ContainersReady, false, "ContainersNotReady",
			fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " ")))
	}
	ready, reason, message := len(unready) == 0, "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if ready {
		var gates []string
		for _, g := range base.Spec.ReadinessGates {
			ok := false
			for _, c := range base.Status.Conditions {
				if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
					ok = true
				}
			}
			if !ok {
				gates = append(gates, string(g.ConditionType))
			}
		}
		if len(gates) > 0 {
			ready, reason, message = false, "ReadinessGatesNotReady", fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", gates[0])
		}
	}
	if w.phase == corev1.PodSucceeded {
		reason = "PodCompleted"
	}
	w.setConditionLocked(corev1.PodReady, ready, reason, message)
	st.Phase = w.phaseLocked()
	if w.sandboxErr != "" && w.sb == nil {
		st.Message = "creating the pod sandbox: " + w.sandboxErr
	}
	return st
}

// phaseLocked follows the kubelet's getPhase.
func (w *podWorker) phaseLocked() corev1.PodPhase {
	if w.phase != "" {
		return w.phase
	}
	if !w.initDone && len(w.inits) > 0 {
		return corev1.PodPending
	}
	var running, waiting, stopped int
	for _, c := range w.containers {
		switch {
		case c.state.Running != nil:
			running++
		case c.state.Terminated != nil:
			stopped++
		case c.state.Waiting != nil && c.lastRun != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		return corev1.PodRunning // restarting, or about to be given a terminal phase
	}
	return corev1.PodPending
}

func (c *container) statusLocked() corev1.ContainerStatus {
	started := c.started && c.state.Running != nil
	cs := corev1.ContainerStatus{
		Name:         c.spec.Name,
		State:        *c.state.DeepCopy(),
		Ready:        c.ready,
		RestartCount: c.restartCount,
		Image:        c.spec.Image,
		ImageID:      c.imageID,
		ContainerID:  c.containerID,
		Started:      &started,
	}
	// While the latest run is the current state, the last termination is the one before.
	last := c.lastRun
	if c.state.Terminated != nil {
		last = c.prevRun
	}
	if last != nil {
		cs.LastTerminationState = corev1.ContainerState{Terminated: last.DeepCopy()}
	}
	roundTimes(&cs.State)
	roundTimes(&cs.LastTerminationState)
	return cs
}

// roundTimes drops sub-second parts, as the API stores them, so that a written status
// compares equal to what comes back.
func roundTimes(s *corev1.ContainerState) {
	if s.Running != nil {
		s.Running.StartedAt = metav1.NewTime(s.Running.StartedAt.Rfc3339Copy().Time)
	}
	if t := s.Terminated; t != nil {
		t.StartedAt = metav1.NewTime(t.StartedAt.Rfc3339Copy().Time)
		t.FinishedAt = metav1.NewTime(t.FinishedAt.Rfc3339Copy().Time)
	}
}
