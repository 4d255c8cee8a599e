package controllers

import (
	"context"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete

// DefaultGatewayAPIRecheck is how long the answer "the Gateway API is not installed" is
// trusted, and how long a resource that asks for an HTTPRoute waits before it is looked at
// again: no watch tells when CRDs appear, and asking discovery on every reconcile of every
// such resource would be a storm.
const DefaultGatewayAPIRecheck = time.Minute

var httpRouteGK = schema.GroupKind{Group: gwv1.GroupName, Kind: "HTTPRoute"}

// gatewayAPI knows whether the API server serves gateway.networking.k8s.io/v1 HTTPRoutes,
// and starts the watch on them the first time it finds it does. HTTPRoutes are cached by a
// cache of their own, holding only this operator's routes: a cache's per-type label
// selector must be known when it starts, and the manager's starts before these CRDs may
// exist.
type gatewayAPI struct {
	mapper meta.RESTMapper
	cache  cache.Cache
	// client reads HTTPRoutes from cache and writes them to the API server.
	client client.Client
	ctrl   controller.Controller
	// watch is what the controller does with an HTTPRoute's events.
	watch   handler.EventHandler
	now     func() time.Time
	recheck time.Duration

	mu        sync.Mutex
	watching  bool
	checkedAt time.Time // when the API server last said it serves no HTTPRoutes
}

// newGatewayAPI makes the HTTPRoutes' cache (started with the manager, empty until a watch
// asks for HTTPRoutes) and the client that reads from it.
func newGatewayAPI(mgr ctrl.Manager, namespaces []string, recheck time.Duration) (*gatewayAPI, error) {
	o := cache.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     mgr.GetScheme(),
		Mapper:     mgr.GetRESTMapper(),
		// Unlike a ByObject selector, the default one needs no RESTMapping when the cache is
		// made: the CRDs may come later.
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedByValue}),
		DefaultTransform:     TrimManagedFields,
	}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(mgr.GetConfig(), o)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(routeCache{c}); err != nil {
		return nil, err
	}
	cl, err := client.New(mgr.GetConfig(), client.Options{
		HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		Cache: &client.CacheOptions{Reader: c},
	})
	if err != nil {
		return nil, err
	}
	return &gatewayAPI{
		mapper: mgr.GetRESTMapper(), cache: c, client: cl, now: time.Now, recheck: recheck,
		watch: handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &cbv1.CallbackReceiver{}, handler.OnlyControllerOwner()),
	}, nil
}

// routeCache runs with the manager's caches, which start before the controllers.
type routeCache struct{ cache.Cache }

func (c routeCache) GetCache() cache.Cache { return c.Cache }

// installed tells whether HTTPRoutes are served, and once they are, watches them. A "no" is
// remembered for the recheck interval.
func (g *gatewayAPI) installed(ctx context.Context) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.watching {
		return true, nil
	}
	if !g.checkedAt.IsZero() && g.now().Sub(g.checkedAt) < g.recheck {
		return false, nil
	}
	if _, err := g.mapper.RESTMapping(httpRouteGK, gwv1.GroupVersion.Version); err != nil {
		if meta.IsNoMatchError(err) {
			g.checkedAt = g.now()
			return false, nil
		}
		return false, err
	}
	if err := g.ctrl.Watch(source.Kind(g.cache, client.Object(&gwv1.HTTPRoute{}), g.watch)); err != nil {
		return false, err
	}
	g.watching = true
	return true, nil
}

// applyIngress applies spec.ingress's Ingress, or deletes the one this resource made when the
// field is gone, and records the Ingress in f.
func (r *CallbackReceiverReconciler) applyIngress(ctx context.Context, cr *cbv1.CallbackReceiver, f *Facts) (string, error) {
	desired := resources.Ingress(cr, f.ServesTLS)
	if desired == nil {
		return deleteOwned(ctx, r.Client, cr, &networkingv1.Ingress{})
	}
	live := &networkingv1.Ingress{}
	action, err := applyChild(ctx, r.Client, r.applied, live, desired, networkingv1ac.ExtractIngress)
	if err != nil {
		return "", err
	}
	f.Ingress = appliedOrLive(action, desired, live, &networkingv1.Ingress{})
	return action, nil
}

// applyHTTPRoute does for spec.httpRoute what applyIngress does for spec.ingress. Without the
// Gateway API there is nothing to apply, and no route of this resource can exist to delete.
func (r *CallbackReceiverReconciler) applyHTTPRoute(ctx context.Context, cr *cbv1.CallbackReceiver, f *Facts) (string, error) {
	desired := resources.HTTPRoute(cr, f.ServesTLS)
	installed, err := r.gateways.installed(ctx)
	if err != nil {
		return "", err
	}
	if !installed {
		f.GatewayAPIMissing = desired != nil
		return "", nil
	}
	if desired == nil {
		return deleteOwned(ctx, r.gateways.client, cr, &gwv1.HTTPRoute{})
	}
	live := &gwv1.HTTPRoute{}
	action, err := applyChild(ctx, r.gateways.client, r.applied, live, desired, gwv1ac.ExtractHTTPRoute)
	if err != nil {
		return "", err
	}
	f.Route = appliedOrLive(action, desired, live, &gwv1.HTTPRoute{})
	return action, nil
}

// appliedOrLive is the child as it is now: the API server's answer to the apply (which the
// cache may not have yet), or the object applyChild read when there was nothing to apply.
func appliedOrLive[T client.Object](action string, desired any, live, fresh T) T {
	if action != "" && fromApplied(desired, fresh) == nil {
		return fresh
	}
	return live
}

// deleteOwned deletes the child of cr named like it, if cr controls it: what the spec no
// longer asks for.
func deleteOwned[T client.Object](ctx context.Context, c client.Client, cr *cbv1.CallbackReceiver, obj T) (string, error) {
	if err := c.Get(ctx, client.ObjectKeyFromObject(cr), obj); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, cr) {
		return "", nil
	}
	uid := obj.GetUID()
	if err := c.Delete(ctx, obj, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return "", err
	}
	return "Deleted", nil
}
