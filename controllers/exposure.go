package controllers

import (
	"context"
	"fmt"
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

// DefaultGatewayAPIRecheck is how long the answer "HTTPRoutes cannot be used" (not installed,
// or not readable by the manager) is trusted, and how long a resource that asks for an
// HTTPRoute waits before it is looked at again: no watch tells when CRDs appear or RBAC
// changes, and asking on every reconcile of every such resource would be a storm.
const DefaultGatewayAPIRecheck = time.Minute

var httpRouteGK = schema.GroupKind{Group: gwv1.GroupName, Kind: "HTTPRoute"}

// gatewayAPI knows whether the API server serves gateway.networking.k8s.io/v1 HTTPRoutes
// that the manager may list, and starts the watch on them the first time it finds so.
// HTTPRoutes are cached by a
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
	watch handler.EventHandler
	// canList tells whether the manager may list a kind where it watches: an informer it
	// may not use would never sync, and reads from it would wait forever.
	canList func(context.Context, schema.GroupVersionKind) bool
	now     func() time.Time
	recheck time.Duration

	mu        sync.Mutex
	watching  bool
	checkedAt time.Time // of the last answer that HTTPRoutes cannot be used
	problem   *Problem  // that answer
}

// newGatewayAPI makes the HTTPRoutes' cache (started with the manager, empty until a watch
// asks for HTTPRoutes) and the client that reads from it.
func newGatewayAPI(mgr ctrl.Manager, namespaces []string, recheck time.Duration, canList func(context.Context, schema.GroupVersionKind) bool) (*gatewayAPI, error) {
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
		mapper: mgr.GetRESTMapper(), cache: c, client: cl, now: time.Now, recheck: recheck, canList: canList,
		watch: handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &cbv1.CallbackReceiver{}, handler.OnlyControllerOwner()),
	}, nil
}

// routeCache runs with the manager's caches, which start before the controllers.
type routeCache struct{ cache.Cache }

func (c routeCache) GetCache() cache.Cache { return c.Cache }

// usable returns why HTTPRoutes cannot be used, or nil once they are watched. The answer
// "cannot" is remembered for the recheck interval.
func (g *gatewayAPI) usable(ctx context.Context) (*Problem, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.watching {
		return nil, nil
	}
	if g.problem != nil && g.now().Sub(g.checkedAt) < g.recheck {
		return g.problem, nil
	}
	g.problem = nil
	if _, err := g.mapper.RESTMapping(httpRouteGK, gwv1.GroupVersion.Version); err != nil {
		if !meta.IsNoMatchError(err) {
			return nil, err
		}
		g.problem = &Problem{cbv1.ReasonGatewayAPINotInstalled, fmt.Sprintf("The API server does not serve %s HTTPRoutes: install the Gateway API CRDs (standard channel) and a Gateway controller, or use spec.ingress. The operator looks again every minute.", gwv1.GroupVersion)}
	} else if !g.canList(ctx, httpRouteGK.WithVersion(gwv1.GroupVersion.Version)) {
		g.problem = &Problem{cbv1.ReasonHTTPRoutesForbidden, "The operator may not list HTTPRoutes: give its role get, list, watch, create, update, patch and delete on httproutes.gateway.networking.k8s.io (config/rbac/role.yaml has them), or use spec.ingress. The operator looks again every minute."}
	}
	if g.problem != nil {
		g.checkedAt = g.now()
		return g.problem, nil
	}
	if err := g.ctrl.Watch(source.Kind(g.cache, client.Object(&gwv1.HTTPRoute{}), g.watch)); err != nil {
		return nil, err
	}
	g.watching = true
	return nil, nil
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
	p, err := r.gateways.usable(ctx)
	if err != nil {
		return "", err
	}
	if p != nil {
		if desired != nil {
			f.GatewayAPIProblem = p
		}
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
