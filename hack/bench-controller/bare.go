package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/controllers/sink"
)

const (
	bareNamespace = "bench-bare"
	ctrlNamespace = "bench-ctrl"
	benchImage    = "ghcr.io/imcallback/callback-operator:bench"
	sinkName      = "sink"
)

// newCR is the benchmark's CallbackReceiver: no auth, a Service as sink, defaults for the rest.
func newCR(ns, name string) *cbv1.CallbackReceiver {
	return &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001,
			Path:     "/im/callback",
			Sink:     &cbv1.Destination{Ref: &cbv1.KReference{APIVersion: "v1", Kind: "Service", Name: sinkName}},
		},
	}
}

func crName(i int) string { return fmt.Sprintf("cbr-%04d", i) }

// setupClient is the benchmark's own client: not rate-limited, so setup and creates are not
// held back on this side.
func setupClient(cp *controlPlane) (client.Client, error) {
	return client.New(restConfig(cp.admin, -1, 0), client.Options{Scheme: scheme})
}

// namespaceWithSink creates a namespace and the sink Service in it.
func namespaceWithSink(ctx context.Context, c client.Client, ns string) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	return c.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sinkName},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": sinkName},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	})
}

func benchBare(ctx context.Context, o options, cp *controlPlane, res *results) error {
	setup, err := setupClient(cp)
	if err != nil {
		return err
	}
	if err := namespaceWithSink(ctx, setup, bareNamespace); err != nil {
		return err
	}
	// The spec as the API server defaults it, from a dry-run create: the children are then
	// exactly those the manager builds for the resources it will create.
	tmpl := newCR(bareNamespace, "template")
	if err := setup.Create(ctx, tmpl, client.DryRunAll); err != nil {
		return fmt.Errorf("dry-run create: %w", err)
	}
	resolver := &sink.Resolver{Services: setup, Objects: setup, ClusterDomain: "cluster.local"}
	sinkURI, err := resolver.Resolve(ctx, bareNamespace, "spec.sink", tmpl.Spec.Sink)
	if err != nil {
		return fmt.Errorf("resolving the sink: %w", err)
	}
	params := resources.Params{Image: benchImage, SinkURI: sinkURI}

	crs := make([]*cbv1.CallbackReceiver, o.n)
	for i := range crs {
		cr := tmpl.DeepCopy()
		cr.Name = crName(i)
		cr.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
		cr.ResourceVersion, cr.Generation, cr.CreationTimestamp = "", 1, metav1.Time{}
		crs[i] = cr
	}

	// The yardstick, with the manager's limits: controller-runtime gives each kind its own
	// rate limiter with these QPS and burst, as it does in the manager.
	label := fmt.Sprintf("QPS %g burst %d per kind", o.qps, o.burst)
	if res.bare, err = bareRun(ctx, o, cp, setup, crs, params, restConfig(cp.admin, float32(o.qps), o.burst), label, "bare"); err != nil {
		return err
	}
	if o.ideal {
		time.Sleep(o.settle)
		if res.ideal, err = idealRun(ctx, o, cp, setup, params.Image); err != nil {
			return fmt.Errorf("ideal controller: %w", err)
		}
	}
	if o.bareUnlimited {
		// For reference: how fast the API server takes the same applies when the client
		// does not hold them back.
		time.Sleep(o.settle)
		if res.bareUnlimited, err = bareRun(ctx, o, cp, setup, crs, params, restConfig(cp.admin, -1, 0), "no client rate limit", "bare-unlimited"); err != nil {
			return err
		}
	}
	return nil
}

// bareRun applies the children of crs with o.workers goroutines through a client made from
// cfg, then deletes them (not timed).
func bareRun(ctx context.Context, o options, cp *controlPlane, setup client.Client, crs []*cbv1.CallbackReceiver,
	params resources.Params, cfg *rest.Config, label, profile string) (bareResult, error) {
	var r bareResult
	r.label = label
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	apply := func(ac namedApply) error {
		return c.Apply(ctx, ac, client.FieldOwner(controllers.FieldManager), client.ForceOwnership)
	}

	logf("bare apply: %d x (ServiceAccount, Service, Deployment), %d goroutines, %s", len(crs), o.workers, label)
	cp.profile(ctx, o, profile)
	cpu0 := cp.cpu()
	var next, applies atomic.Int64
	errs := make(chan error, o.workers)
	var wg sync.WaitGroup
	start := time.Now()
	for range o.workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(crs) {
					return
				}
				cr := crs[i]
				for _, ac := range []namedApply{
					resources.ServiceAccount(cr), resources.Service(cr, false), resources.Deployment(cr, params),
				} {
					if err := apply(ac); err != nil {
						errs <- fmt.Errorf("%s: %w", cr.Name, err)
						cancel()
						return
					}
					applies.Add(1)
				}
			}
		})
	}
	wg.Wait()
	r.took = time.Since(start)
	r.cpu = cp.cpu().sub(cpu0)
	r.applies = int(applies.Load())
	select {
	case err := <-errs:
		return r, err
	default:
	}
	logf("bare apply: %d applies in %s", r.applies, r.took.Round(time.Millisecond))

	// Not timed: remove the children so that the manager's caches never see them.
	t := time.Now()
	if err := deleteBare(context.Background(), setup, crs); err != nil {
		return r, fmt.Errorf("deleting the bare apply's objects: %w", err)
	}
	logf("bare apply: objects deleted in %s", time.Since(t).Round(time.Millisecond))
	return r, nil
}

type bareResult struct {
	label   string
	took    time.Duration
	cpu     cpuTimes
	applies int
}

type namedApply interface {
	runtime.ApplyConfiguration
	GetName() *string
}

func deleteBare(ctx context.Context, c client.Client, crs []*cbv1.CallbackReceiver) error {
	return deleteChildren(ctx, c, bareNamespace, len(crs))
}

// deleteChildren deletes the children of resources crName(0..n-1) in namespace ns.
func deleteChildren(ctx context.Context, c client.Client, ns string, n int) error {
	for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.ServiceAccount{}} {
		if err := c.DeleteAllOf(ctx, o, client.InNamespace(ns),
			client.MatchingLabels{resources.LabelManagedBy: resources.ManagedByValue}); err != nil {
			return err
		}
	}
	// Services have no delete-collection.
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: crName(i)}}
				if err := client.IgnoreNotFound(c.Delete(ctx, svc)); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
