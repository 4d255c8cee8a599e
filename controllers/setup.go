package controllers

import (
	"context"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/controllers/sink"
)

// Field indexes on CallbackReceivers, so that a change to a Secret or a sink finds the
// resources that use it without listing them all.
const (
	indexTokenSecret = "spec.auth.tokenSecretRef"
	indexTLSSecret   = "spec.tls.secretName"
	indexSinkRef     = "sinkRef"
)

// SetupWithManager registers the reconciler and its watches: the resources themselves (spec,
// labels, annotations; not status, which changes with every count), their children, the
// token and TLS Secrets they reference (metadata only) and their sinks. The HTTPRoutes'
// watch starts once the Gateway API is found installed (gatewayAPI).
func (r *CallbackReceiverReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	if r.ClusterDomain == "" {
		r.ClusterDomain = "cluster.local"
	}
	r.sinks = &sink.Resolver{Services: r.Client, Objects: r.APIReader, ClusterDomain: r.ClusterDomain}
	r.tokens = newTokenCache(r.Client, r.APIReader)
	r.certs = newTLSCache(r.Client, r.APIReader)
	r.applied = &appliedVersions{}
	if r.now == nil {
		r.now = time.Now
	}
	var err error
	if r.GatewayAPIRecheck <= 0 {
		r.GatewayAPIRecheck = DefaultGatewayAPIRecheck
	}
	if r.gateways, err = newGatewayAPI(mgr, r.Namespaces, r.GatewayAPIRecheck, r.canList); err != nil {
		return err
	}

	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &cbv1.CallbackReceiver{}, indexTokenSecret, func(o client.Object) []string {
		cr := o.(*cbv1.CallbackReceiver)
		if cr.Spec.Auth == nil {
			return nil
		}
		return []string{cr.Namespace + "/" + cr.Spec.Auth.TokenSecretRef.Name}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &cbv1.CallbackReceiver{}, indexTLSSecret, func(o client.Object) []string {
		cr := o.(*cbv1.CallbackReceiver)
		if cr.Spec.TLS == nil {
			return nil
		}
		return []string{cr.Namespace + "/" + cr.Spec.TLS.SecretName}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &cbv1.CallbackReceiver{}, indexSinkRef, func(o client.Object) []string {
		cr := o.(*cbv1.CallbackReceiver)
		var keys []string
		for _, d := range destinations(cr) {
			if ref, ok := sink.RefOf(cr.Namespace, d.d); ok {
				keys = append(keys, ref.IndexKey())
			}
		}
		return keys
	}); err != nil {
		return err
	}

	secretMeta := &metav1.PartialObjectMetadata{}
	secretMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	c, err := ctrl.NewControllerManagedBy(mgr).
		Named("callbackreceiver").
		For(&cbv1.CallbackReceiver{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			spoolFullChanged()))).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&batchv1.Job{}).
		// Claims of the StatefulSet have no owner (they outlive it): mapped by their labels.
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(claimOwner)).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.Ingress{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.mapByIndex(sinkKey(schema.GroupKind{Kind: "Service"}), indexSinkRef))).
		WatchesMetadata(secretMeta, handler.EnqueueRequestsFromMapFunc(r.mapByIndex(func(o client.Object) string {
			return o.GetNamespace() + "/" + o.GetName()
		}, indexTokenSecret, indexTLSSecret)), builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, workers)}).
		Build(r)
	if err != nil {
		return err
	}
	r.gateways.ctrl = c
	r.kinds = &kindWatcher{ctrl: c, cache: mgr.GetCache(), r: r, watched: map[schema.GroupKind]bool{
		{Kind: "Service"}: true, // watched above
	}}
	return nil
}

// spoolFullChanged passes the status updates the counts controller makes when a spool fills
// up or has room again: the SpoolReady condition follows them.
func spoolFullChanged() predicate.Predicate {
	full := func(o client.Object) bool {
		cr, ok := o.(*cbv1.CallbackReceiver)
		return ok && cr.Status.Spool != nil && cr.Status.Spool.FullPods > 0
	}
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc:  func(e event.UpdateEvent) bool { return full(e.ObjectOld) != full(e.ObjectNew) },
	}
}

func sinkKey(gk schema.GroupKind) func(client.Object) string {
	return func(o client.Object) string { return sink.IndexKey(gk, o.GetNamespace(), o.GetName()) }
}

// mapByIndex maps an object to the CallbackReceivers whose fields of any of the indexes hold
// its key.
func (r *CallbackReceiverReconciler) mapByIndex(key func(client.Object) string, indexes ...string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var reqs []reconcile.Request
		for _, index := range indexes {
			list := &cbv1.CallbackReceiverList{}
			if err := r.Client.List(ctx, list, client.MatchingFields{index: key(o)}); err != nil {
				log.FromContext(ctx).Error(err, "listing CallbackReceivers by index", "index", index)
				continue
			}
			for i := range list.Items {
				req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
				if !slices.Contains(reqs, req) {
					reqs = append(reqs, req)
				}
			}
		}
		return reqs
	}
}

// kindWatcher starts a metadata-only watch on each kind of Addressable sink the first time a
// resource points at one, so that the resource is reconciled when its sink changes.
type kindWatcher struct {
	ctrl  controller.Controller
	cache cache.Cache
	r     *CallbackReceiverReconciler

	mu      sync.Mutex
	watched map[schema.GroupKind]bool
}

func (w *kindWatcher) ensure(ctx context.Context, gvk schema.GroupVersionKind) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watched[gvk.GroupKind()] {
		return
	}
	// Watch only what the manager may list: an informer it may not use would retry forever.
	if !w.r.canList(ctx, gvk) {
		return
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	src := source.Kind(w.cache, client.Object(m), handler.EnqueueRequestsFromMapFunc(w.r.mapByIndex(sinkKey(gvk.GroupKind()), indexSinkRef)))
	if err := w.ctrl.Watch(src); err != nil {
		log.FromContext(ctx).Error(err, "watching sink kind", "kind", gvk.String())
		return
	}
	w.watched[gvk.GroupKind()] = true
}

// canList tells whether the manager may list objects of kind gvk where it watches: in the
// whole cluster, or in each of its namespaces.
func (r *CallbackReceiverReconciler) canList(ctx context.Context, gvk schema.GroupVersionKind) bool {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if len(r.Namespaces) == 0 {
		return r.APIReader.List(ctx, list, client.Limit(1)) == nil
	}
	for _, ns := range r.Namespaces {
		if r.APIReader.List(ctx, list, client.Limit(1), client.InNamespace(ns)) != nil {
			return false
		}
	}
	return true
}

// claimOwner maps a receiver's claim to its resource (the instance label).
func claimOwner(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[resources.LabelName] != resources.NameValue || l[resources.LabelInstance] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: l[resources.LabelInstance]}}}
}
