package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/controllers/sink"
)

const idealNamespace = "bench-ideal"

// idealRun is a second reference: the writes the manager cannot do without, straight to the
// API server, with nothing read, cached or watched. CallbackReceivers are created as in the
// manager's run (o.workers creators, no client rate limit) and, as each is created, one of
// o.workers "reconcilers" applies its three children, writes a status like the manager's
// with a merge patch and creates one Event, through a client with the manager's QPS and
// burst. Its time is the floor for any controller that writes what the design asks.
func idealRun(ctx context.Context, o options, cp *controlPlane, setup client.Client, image string) (bareResult, error) {
	r := bareResult{label: "CR create + 3 applies + status patch + Event, nothing read"}
	if err := namespaceWithSink(ctx, setup, idealNamespace); err != nil {
		return r, err
	}
	resolver := &sink.Resolver{Services: setup, Objects: setup, ClusterDomain: "cluster.local"}
	probe := newCR(idealNamespace, "probe")
	sinkURI, err := resolver.Resolve(ctx, idealNamespace, "spec.sink", probe.Spec.Sink)
	if err != nil {
		return r, err
	}
	params := resources.Params{Image: image, SinkURI: sinkURI}
	c, err := client.New(restConfig(cp.admin, float32(o.qps), o.burst), client.Options{Scheme: scheme})
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	logf("ideal controller: %d x (create, 3 applies, status, Event), %d creators and %d writers", o.n, o.workers, o.workers)
	var firstErr atomic.Value
	fail := func(err error) {
		firstErr.CompareAndSwap(nil, err)
		cancel()
	}
	created := make(chan *cbv1.CallbackReceiver, o.n)
	var writes atomic.Int64
	cp.profile(ctx, o, "ideal")
	cpu0 := cp.cpu()
	start := time.Now()
	var creators, writers sync.WaitGroup
	var next atomic.Int64
	for range o.workers {
		creators.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= o.n {
					return
				}
				cr := newCR(idealNamespace, crName(i))
				if err := setup.Create(ctx, cr); err != nil {
					fail(err)
					return
				}
				created <- cr
			}
		})
	}
	go func() { creators.Wait(); close(created) }()
	for range o.workers {
		writers.Go(func() {
			for cr := range created {
				if err := idealReconcile(ctx, c, cr, params, sinkURI); err != nil {
					fail(fmt.Errorf("%s: %w", cr.Name, err))
					return
				}
				writes.Add(5)
			}
		})
	}
	writers.Wait()
	r.took = time.Since(start)
	r.cpu = cp.cpu().sub(cpu0)
	r.applies = int(writes.Load())
	if err, ok := firstErr.Load().(error); ok {
		return r, err
	}
	logf("ideal controller: done in %s", r.took.Round(time.Millisecond))

	t := time.Now()
	bg := context.Background()
	if err := setup.DeleteAllOf(bg, &cbv1.CallbackReceiver{}, client.InNamespace(idealNamespace)); err != nil {
		return r, err
	}
	if err := deleteChildren(bg, setup, idealNamespace, o.n); err != nil {
		return r, err
	}
	logf("ideal controller: objects deleted in %s", time.Since(t).Round(time.Millisecond))
	return r, nil
}

func idealReconcile(ctx context.Context, c client.Client, cr *cbv1.CallbackReceiver, params resources.Params, sinkURI string) error {
	deployment := resources.Deployment(cr, params)
	for _, ac := range []namedApply{resources.ServiceAccount(cr), resources.Service(cr, false), deployment} {
		if err := c.Apply(ctx, ac, client.FieldOwner(controllers.FieldManager), client.ForceOwnership); err != nil {
			return err
		}
	}
	// The status the manager computes from the same facts: the Deployment as applied.
	d := &appsv1.Deployment{}
	if err := fromApplyConfiguration(deployment, d); err != nil {
		return err
	}
	base := cr.DeepCopy()
	cr.Status = controllers.ComputeStatus(cr, controllers.Facts{
		URL:        "http://" + cr.Name + "." + cr.Namespace + ".svc.cluster.local" + cr.Spec.Path,
		SinkURI:    sinkURI,
		Image:      params.Image,
		Deployment: d,
	})
	if err := c.Status().Patch(ctx, cr, client.MergeFrom(base), client.FieldOwner(controllers.FieldManager)); err != nil {
		return err
	}
	now := metav1.NowMicro()
	return c.Create(ctx, &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: cr.Namespace, Name: fmt.Sprintf("%s.%x", cr.Name, now.UnixNano())},
		EventTime:           now,
		ReportingController: "callback-operator",
		ReportingInstance:   "bench-controller",
		Action:              "Apply",
		Reason:              "Applied",
		Type:                corev1.EventTypeNormal,
		Regarding: corev1.ObjectReference{
			APIVersion: cbv1.GroupVersion.String(), Kind: "CallbackReceiver",
			Namespace: cr.Namespace, Name: cr.Name, UID: cr.UID, ResourceVersion: cr.ResourceVersion,
		},
		Note: fmt.Sprintf("Created ServiceAccount/%s, Service/%s, Deployment/%s", cr.Name, cr.Name, cr.Name),
	})
}

// fromApplyConfiguration converts an apply configuration that Apply filled with the API
// server's response into the object it describes.
func fromApplyConfiguration(ac any, into any) error {
	b, err := json.Marshal(ac)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}
