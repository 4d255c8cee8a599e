package counts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
)

// FieldManager owns status.counts and status.incarnations; the main reconciler never
// writes them, so the two never overwrite each other.
const FieldManager = "callback-operator-counts"

// maxMetricsBytes bounds what one scrape reads, against a misbehaving pod.
const maxMetricsBytes = 4 << 20

// Reconciler scrapes the receiver pods of each CallbackReceiver and writes exact counts to
// its status. It runs as a controller of its own, so slow or unreachable pods never delay
// the reconciliation of child objects.
type Reconciler struct {
	Client client.Client
	// HTTP scrapes the pods; its timeout bounds one scrape.
	HTTP *http.Client
	// Interval between scrapes of one resource; terminating pods are scraped more often,
	// so that their final counters are read before they exit.
	Interval, TerminatingInterval time.Duration
	// AdminPort is the receivers' admin port.
	AdminPort int
	// Workers bounds how many resources are scraped at once.
	Workers int

	mu    sync.Mutex
	state map[types.NamespacedName]*tracked
}

// tracked is the last state written (or to be written) for one resource.
type tracked struct {
	uid   types.UID
	state State
	// spool is each live pod's last spool reading; spoolStatus their sum, as last written.
	spool       map[string]SpoolReading
	spoolStatus *cbv1.SpoolStatus
	dirty       bool // folded but not yet written
}

// SetupWithManager registers the scraper: it runs on the leader only, like every
// controller, so one manager at a time writes counts.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.AdminPort == 0 {
		r.AdminPort = resources.AdminPort
	}
	if r.TerminatingInterval == 0 {
		r.TerminatingInterval = min(2*time.Second, r.Interval)
	}
	r.state = map[types.NamespacedName]*tracked{}
	return ctrl.NewControllerManagedBy(mgr).
		Named("counts").
		For(&cbv1.CallbackReceiver{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A pod coming, going or terminating is worth a scrape now.
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(ownerOfSlice)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Complete(r)
}

// ownerOfSlice maps an EndpointSlice of a receiver's Service to the receiver, which has the
// Service's name.
func ownerOfSlice(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[resources.LabelManagedBy] != resources.ManagedByValue {
		return nil
	}
	svc := l[discoveryv1.LabelServiceName]
	if svc == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: svc}}}
}

// Reconcile scrapes one resource's pods, folds their counters and writes them if changed.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	cr := &cbv1.CallbackReceiver{}
	if err := r.Client.Get(ctx, req.NamespacedName, cr); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	t := r.tracked(req.NamespacedName, cr)

	targets, terminating, err := r.targets(ctx, cr)
	if err != nil {
		return reconcile.Result{}, err
	}
	snap := Snapshot{Pods: map[string]bool{}}
	for _, tg := range targets {
		snap.Pods[tg.pod] = true
	}
	snap.Observations = r.scrapeAll(ctx, targets)

	next := Fold(t.state, snap)
	if !reflect.DeepEqual(next, t.state) {
		t.state, t.dirty = next, true
	}
	if sp := t.foldSpool(snap); !reflect.DeepEqual(sp, t.spoolStatus) {
		t.spoolStatus, t.dirty = sp, true
	}
	if t.dirty {
		if err := r.write(ctx, cr, t.state, t.spoolStatus); err != nil {
			return reconcile.Result{}, err
		}
		t.dirty = false
	}
	switch {
	case terminating:
		return reconcile.Result{RequeueAfter: r.TerminatingInterval}, nil
	case len(targets) == 0:
		// Nothing to read: the EndpointSlice watch brings the resource back when pods come.
		return reconcile.Result{}, nil
	default:
		return reconcile.Result{RequeueAfter: r.Interval}, nil
	}
}

// tracked returns the state of a resource, starting from its status when first seen (after
// a manager restart, status is where the previous leader left the counts).
func (r *Reconciler) tracked(key types.NamespacedName, cr *cbv1.CallbackReceiver) *tracked {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.state[key]
	if t == nil || t.uid != cr.UID {
		incs := append([]cbv1.IncarnationCounts(nil), cr.Status.Incarnations...)
		if len(incs) == 0 {
			incs = nil
		}
		t = &tracked{uid: cr.UID, state: State{Total: cr.Status.Counts, Incarnations: incs}, spool: map[string]SpoolReading{}, spoolStatus: cr.Status.Spool}
		r.state[key] = t
	}
	return t
}

func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.state, key)
}

type target struct{ pod, addr string }

// targets lists every endpoint of the receiver's Service, ready, not ready or terminating:
// a terminating pod still holds counters to read.
func (r *Reconciler) targets(ctx context.Context, cr *cbv1.CallbackReceiver) ([]target, bool, error) {
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.Client.List(ctx, slices, client.InNamespace(cr.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: cr.Name, resources.LabelManagedBy: resources.ManagedByValue}); err != nil {
		return nil, false, err
	}
	var out []target
	terminating := false
	seen := map[string]bool{}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			addr := ep.Addresses[0]
			pod := addr
			if ep.TargetRef != nil && ep.TargetRef.Name != "" {
				pod = ep.TargetRef.Name
			}
			if seen[pod] {
				continue // an endpoint can be listed by two slices while they are rebalanced
			}
			seen[pod] = true
			if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
				terminating = true
			}
			out = append(out, target{pod: pod, addr: net.JoinHostPort(addr, strconv.Itoa(r.AdminPort))})
		}
	}
	return out, terminating, nil
}

func (r *Reconciler) scrapeAll(ctx context.Context, targets []target) []Observation {
	obs := make([]Observation, len(targets))
	ok := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd, err := r.scrape(ctx, tg.addr)
			if err != nil {
				log.FromContext(ctx).V(1).Info("scrape failed; the pod is read again later", "pod", tg.pod, "address", tg.addr, "error", err.Error())
				return
			}
			obs[i], ok[i] = Observation{Pod: tg.pod, Incarnation: rd.Incarnation, Counts: rd.Counts, Spool: rd.Spool}, true
		}()
	}
	wg.Wait()
	out := obs[:0]
	for i := range obs {
		if ok[i] {
			out = append(out, obs[i])
		}
	}
	return out
}

func (r *Reconciler) scrape(ctx context.Context, addr string) (Reading, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return Reading{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return Reading{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return Reading{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return Parse(io.LimitReader(resp.Body, maxMetricsBytes))
}

// foldSpool keeps each answering pod's spool reading (a pod that did not answer keeps its
// last one, a pod that left is dropped) and returns their sum; nil when no pod has a spool.
func (t *tracked) foldSpool(snap Snapshot) *cbv1.SpoolStatus {
	for pod := range t.spool {
		if !snap.Pods[pod] {
			delete(t.spool, pod)
		}
	}
	for _, o := range snap.Observations {
		if o.Spool == nil {
			delete(t.spool, o.Pod)
		} else {
			t.spool[o.Pod] = *o.Spool
		}
	}
	if len(t.spool) == 0 {
		return nil
	}
	out := &cbv1.SpoolStatus{}
	for _, s := range t.spool {
		out.Events += s.Events
		out.Bytes += s.Bytes
		if s.Full() {
			out.FullPods++
		}
	}
	return out
}

// write replaces status.counts, status.incarnations and status.spool with a merge patch. It
// carries no resourceVersion: this controller is their only writer, and the main
// reconciler's status writes touch other fields.
func (r *Reconciler) write(ctx context.Context, cr *cbv1.CallbackReceiver, s State, spool *cbv1.SpoolStatus) error {
	// No live incarnation, no spool: null removes the field.
	var incs, sp any
	if len(s.Incarnations) > 0 {
		incs = s.Incarnations
	}
	if spool != nil {
		sp = spool
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"counts": s.Total, "incarnations": incs, "spool": sp}})
	if err != nil {
		return err
	}
	return r.Client.Status().Patch(ctx, cr, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(FieldManager))
}
