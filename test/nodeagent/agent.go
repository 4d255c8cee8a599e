// Package nodeagent is the callback-operator's own small "kubelet" for the local cluster of
// `make dev` and the end-to-end tests: it registers a Node, binds pending pods to it, and
// runs each pod's containers as local processes in a network namespace of their own, with
// their args and env resolved as a kubelet would, probes, restarts, graceful termination and
// pod status; and it stands in for kube-proxy and cluster DNS (see proxy.go). Container
// images map to local programs (ImageMap). It is a test tool, never part of the operator's
// image.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Options configure an Agent.
type Options struct {
	// Config reaches the API server (an admin user).
	Config *rest.Config
	// Slot is the share of the host the agent uses (AcquireSlot); the caller releases it.
	Slot *Slot
	// NodeName is the Node the agent registers; default "local-node".
	NodeName string
	// Images maps container images to local programs.
	Images ImageMap
	// LogDir receives one log file per container, <namespace>_<pod>_<container>.log.
	LogDir string
	// ShutdownGrace caps pods' grace period when the agent itself stops; default 5s.
	ShutdownGrace time.Duration
	// Logf receives the agent's log lines; default none.
	Logf func(format string, args ...any)
}

// Agent is a running node agent.
type Agent struct {
	opts   Options
	client kubernetes.Interface
	net    *network
	proxy  *proxier
	logf   func(string, ...any)

	objects     *apiObjects
	allocatable corev1.ResourceList
	pods        corelisters.PodLister
	services    corelisters.ServiceLister
	slices      discoverylisters.EndpointSliceLister

	mu        sync.Mutex
	workers   map[types.UID]*podWorker
	sandboxes map[types.UID]sandboxRef
	stopping  bool
	wg        sync.WaitGroup
	hostsKick chan struct{}
}

type sandboxRef struct {
	namespace, pod string
	sb             *sandbox
}

// New checks the options; Run starts the agent.
func New(opts Options) (*Agent, error) {
	if opts.Config == nil || opts.Slot == nil {
		return nil, errors.New("nodeagent: Config and Slot are required")
	}
	if opts.NodeName == "" {
		opts.NodeName = "local-node"
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.Images == nil {
		opts.Images = ImageMap{}
	}
	if opts.LogDir == "" {
		opts.LogDir = opts.Slot.Dir + "/logs"
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, err
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	cfg := rest.CopyConfig(opts.Config)
	cfg.UserAgent = "callback-operator-nodeagent"
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 100, 200
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		opts:      opts,
		client:    cs,
		net:       newNetwork(opts.Slot),
		logf:      opts.Logf,
		workers:   map[types.UID]*podWorker{},
		sandboxes: map[types.UID]sandboxRef{},
		hostsKick: make(chan struct{}, 1),
	}
	a.proxy = newProxier(a)
	a.objects = &apiObjects{a: a}
	a.allocatable = corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: memTotal(),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	return a, nil
}

// NodeName is the name of the agent's Node.
func (a *Agent) NodeName() string { return a.opts.NodeName }

// LogPath is where the agent writes the output of a pod's container.
func (a *Agent) LogPath(namespace, pod, container string) string {
	return fmt.Sprintf("%s/%s_%s_%s.log", a.opts.LogDir, namespace, pod, container)
}

// Run registers the node and runs pods until ctx ends; then it stops every pod's processes
// (within ShutdownGrace), removes the network it made and marks the node NotReady.
// ready, if not nil, is called once the agent serves pods.
func (a *Agent) Run(ctx context.Context, ready func()) error {
	if err := a.net.setup(); err != nil {
		return fmt.Errorf("setting up the pod network: %w", err)
	}
	defer func() {
		if err := a.net.teardown(); err != nil {
			a.logf("removing the pod network: %v", err)
		}
	}()
	apiCtx, stopAPI := context.WithCancel(context.Background())
	apiDone, err := a.serveKubeletAPI(apiCtx)
	if err != nil {
		stopAPI()
		return err
	}
	defer func() { stopAPI(); <-apiDone }()
	if err := a.registerNode(ctx); err != nil {
		return err
	}

	infCtx, stopInformers := context.WithCancel(context.Background())
	defer stopInformers()
	factory := informers.NewSharedInformerFactory(a.client, 0)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	a.services, a.slices = svcInf.Lister(), sliceInf.Lister()
	mine := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.opts.NodeName).String()
	}))
	podInf := mine.Core().V1().Pods()
	a.pods = podInf.Lister()
	unscheduled := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", "").String()
	}))
	pendingInf := unscheduled.Core().V1().Pods()

	kickProxy := func(any) { signal(a.hostsKick) }
	for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), sliceInf.Informer()} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    kickProxy,
			UpdateFunc: func(_, o any) { kickProxy(o) },
			DeleteFunc: kickProxy,
		}); err != nil {
			return err
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.podChanged(ctx, o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { a.podChanged(ctx, o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if pod, ok := o.(*corev1.Pod); ok {
				a.podGone(pod)
			}
		},
	}); err != nil {
		return err
	}
	if _, err := pendingInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.schedule(ctx, o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { a.schedule(ctx, o.(*corev1.Pod)) },
	}); err != nil {
		return err
	}
	factory.Start(infCtx.Done())
	for t, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("syncing the %v cache: %w", t, context.Cause(ctx))
		}
	}
	// Services first, so that the first pods already find their names and addresses.
	if err := a.proxy.sync(); err != nil {
		a.logf("services: %v", err)
	}
	proxyDone := make(chan struct{})
	go func() { defer close(proxyDone); a.proxyLoop(ctx) }()
	mine.Start(infCtx.Done())
	unscheduled.Start(infCtx.Done())
	mine.WaitForCacheSync(ctx.Done())
	unscheduled.WaitForCacheSync(ctx.Done())
	heartbeatDone := make(chan struct{})
	go func() { defer close(heartbeatDone); a.heartbeat(ctx) }()
	a.logf("node %s ready: pods in %s, Services in %s", a.opts.NodeName, a.net.slot.PodCIDR(), a.net.slot.ServiceCIDR())
	if ready != nil {
		ready()
	}

	<-ctx.Done()
	a.mu.Lock()
	a.stopping = true
	n := len(a.workers)
	a.mu.Unlock()
	if n > 0 {
		a.logf("stopping %d pods", n)
	}
	a.wg.Wait() // workers see ctx end and stop their pods
	stopInformers()
	<-proxyDone
	<-heartbeatDone
	a.proxy.close()
	a.markNotReady()
	return nil
}

func (a *Agent) podChanged(ctx context.Context, pod *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, ok := a.workers[pod.UID]; ok {
		w.update(pod)
		return
	}
	if a.stopping || ctx.Err() != nil {
		return
	}
	if pod.DeletionTimestamp != nil {
		// Nothing of it runs here (a previous agent was stopped): let it go.
		go a.forgetPod(pod)
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return
	}
	w := newPodWorker(a, pod)
	a.workers[pod.UID] = w
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		w.run(ctx)
		a.mu.Lock()
		delete(a.workers, pod.UID)
		a.mu.Unlock()
	}()
}

func (a *Agent) forgetPod(pod *corev1.Pod) {
	zero := int64(0)
	uid := pod.UID
	err := a.client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.logf("pod %s/%s: deleting: %v", pod.Namespace, pod.Name, err)
	}
}

func (a *Agent) podGone(pod *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, ok := a.workers[pod.UID]; ok {
		w.gone()
	}
}

// schedule binds a pending pod to this node: the agent is the cluster's scheduler too.
func (a *Agent) schedule(ctx context.Context, pod *corev1.Pod) {
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return
	}
	if s := pod.Spec.SchedulerName; s != "" && s != corev1.DefaultSchedulerName {
		return
	}
	for k, v := range pod.Spec.NodeSelector {
		if a.nodeLabels()[k] != v {
			a.logf("pod %s/%s: nodeSelector %s=%s does not match node %s; left pending", pod.Namespace, pod.Name, k, v, a.opts.NodeName)
			return
		}
	}
	err := a.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.opts.NodeName},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		a.logf("pod %s/%s: binding: %v", pod.Namespace, pod.Name, err)
	}
}

func (a *Agent) nodeLabels() map[string]string {
	return map[string]string{
		corev1.LabelHostname:   a.opts.NodeName,
		corev1.LabelOSStable:   runtime.GOOS,
		corev1.LabelArchStable: runtime.GOARCH,
	}
}

func (a *Agent) nodeStatus(ready bool) corev1.NodeStatus {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	readyCond := cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "callback-operator node agent is posting ready status")
	if !ready {
		readyCond = cond(corev1.NodeReady, corev1.ConditionFalse, "KubeletNotReady", "callback-operator node agent stopped")
	}
	return corev1.NodeStatus{
		Capacity:    a.allocatable,
		Allocatable: a.allocatable,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "node agent does not track memory pressure"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "node agent does not track disk pressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "node agent does not track PID pressure"),
			readyCond,
		},
		// Only the InternalIP: the API server would prefer a Hostname address for reaching
		// the kubelet API (kubectl logs), and the node's name does not resolve.
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.net.slot.Gateway().String()},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: KubeletPort}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "v1.37.2",
			ContainerRuntimeVersion: "nodeagent://0.1.0",
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
			OSImage:                 "callback-operator local node agent (pods are local processes)",
		},
	}
}

func (a *Agent) registerNode(ctx context.Context) error {
	nodes := a.client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.opts.NodeName, Labels: a.nodeLabels()},
		Spec: corev1.NodeSpec{
			PodCIDR:  a.net.slot.PodCIDR().String(),
			PodCIDRs: []string{a.net.slot.PodCIDR().String()},
		},
	}
	existing, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, err = nodes.Get(ctx, a.opts.NodeName, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("registering node %s: %w", a.opts.NodeName, err)
	}
	existing.Status = a.nodeStatus(true)
	if _, err := nodes.UpdateStatus(ctx, existing, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("reporting node %s ready: %w", a.opts.NodeName, err)
	}
	return nil
}

// heartbeat refreshes the Ready condition, as a kubelet does (nothing here watches it, but
// `kubectl get nodes` should not look stale).
func (a *Agent) heartbeat(ctx context.Context) {
	for sleepCtx(ctx, 40*time.Second) {
		if err := a.updateNodeStatus(ctx, true); err != nil && ctx.Err() == nil {
			a.logf("node heartbeat: %v", err)
		}
	}
}

func (a *Agent) updateNodeStatus(ctx context.Context, ready bool) error {
	node, err := a.client.CoreV1().Nodes().Get(ctx, a.opts.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	node.Status = a.nodeStatus(ready)
	_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

func (a *Agent) markNotReady() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.updateNodeStatus(ctx, false)
}

// proxyLoop applies Service and EndpointSlice changes to the proxy and the pods' hosts files.
func (a *Agent) proxyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.hostsKick:
		}
		if err := a.proxy.sync(); err != nil {
			a.logf("services: %v", err)
		}
		a.mu.Lock()
		refs := make([]sandboxRef, 0, len(a.sandboxes))
		for _, r := range a.sandboxes {
			refs = append(refs, r)
		}
		a.mu.Unlock()
		for _, r := range refs {
			if err := writeHosts(r.sb, a.hostsFile(r.namespace, r.pod, r.sb.IP)); err != nil && !errors.Is(err, os.ErrNotExist) {
				a.logf("pod %s/%s: hosts file: %v", r.namespace, r.pod, err)
			}
		}
		// Coalesce bursts of changes.
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

func (a *Agent) registerSandbox(uid types.UID, namespace, pod string, sb *sandbox) {
	if err := writeHosts(sb, a.hostsFile(namespace, pod, sb.IP)); err != nil {
		a.logf("pod %s/%s: hosts file: %v", namespace, pod, err)
	}
	a.mu.Lock()
	a.sandboxes[uid] = sandboxRef{namespace: namespace, pod: pod, sb: sb}
	a.mu.Unlock()
}

func (a *Agent) unregisterSandbox(uid types.UID) {
	a.mu.Lock()
	delete(a.sandboxes, uid)
	a.mu.Unlock()
}

// PodAddresses lists the addresses of the pods running here (for tests).
func (a *Agent) PodAddresses() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]netip.Addr, 0, len(a.sandboxes))
	for _, r := range a.sandboxes {
		out = append(out, r.sb.IP)
	}
	return out
}

// apiObjects reads what pods refer to: Secrets and ConfigMaps straight from the API (as
// they are needed only at container start), Services from the informer.
type apiObjects struct{ a *Agent }

func (o *apiObjects) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return o.a.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (o *apiObjects) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return o.a.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (o *apiObjects) Services(ns string, links bool) []*corev1.Service {
	var out []*corev1.Service
	if links {
		out, _ = o.a.services.Services(ns).List(labels.Everything())
	}
	if ns != metav1.NamespaceDefault || !links {
		if k, err := o.a.services.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			out = append(out, k)
		}
	}
	return out
}

func memTotal() resource.Quantity {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			return *resource.NewQuantity(kb*1024, resource.BinarySI)
		}
	}
	return resource.MustParse("4Gi")
}
