// Package controllers reconciles CallbackReceivers into a ServiceAccount, a Deployment of
// receiver pods, a Service, (with more than one replica) a PodDisruptionBudget and (when the
// spec asks to expose the receiver) an Ingress or a Gateway API HTTPRoute, and reports their
// state in the resource's status. Counts in status are written by the
// counts package's scraper.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/controllers/sink"
)

// FieldManager owns every child object and the status fields the reconciler writes.
const FieldManager = "callback-operator"

// CallbackReceiverReconciler reconciles CallbackReceivers.
type CallbackReceiverReconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads what is not cached: Secret values and Addressables of any kind.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Image runs the receivers unless a resource's spec.image overrides it, which only
	// AllowImageOverride permits: an image of one's choice could read the token Secret, so
	// allowing it gives everyone who may edit CallbackReceivers the Secrets they reference.
	Image              string
	AllowImageOverride bool
	// ClusterDomain is the cluster's DNS domain, for status.url and Service sinks.
	ClusterDomain string
	// Namespaces the manager watches (its cache is limited to them, see CacheOptions);
	// empty means the whole cluster.
	Namespaces []string
	// GatewayAPIRecheck is how often the manager looks whether the Gateway API was
	// installed while a resource asks for an HTTPRoute; DefaultGatewayAPIRecheck when zero
	// (tests shorten it).
	GatewayAPIRecheck time.Duration

	sinks    *sink.Resolver
	tokens   *tokenCache
	certs    *tlsCache
	gateways *gatewayAPI
	kinds    *kindWatcher
	applied  *appliedVersions
	now      func() time.Time
}

// +kubebuilder:rbac:groups=callbacks.imcallback.dev,resources=callbackreceivers,verbs=get;list;watch
// +kubebuilder:rbac:groups=callbacks.imcallback.dev,resources=callbackreceivers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=callbacks.imcallback.dev,resources=callbackreceivers/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the children of one CallbackReceiver to what its spec says and writes
// its status, in one place, whatever happened.
func (r *CallbackReceiverReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cr := &cbv1.CallbackReceiver{}
	if err := r.Client.Get(ctx, req.NamespacedName, cr); err != nil {
		if apierrors.IsNotFound(err) {
			r.applied.forgetOwner(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cr.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, cr)
	}
	if resources.SpoolOnClaim(cr) && !controllerutil.ContainsFinalizer(cr, SpoolFinalizer) {
		// Before any claim exists: a deleted resource's claims are drained first. (It stays
		// after a move off claims, until their drains are done at the deletion.)
		patch := client.MergeFrom(cr.DeepCopy())
		controllerutil.AddFinalizer(cr, SpoolFinalizer)
		if err := r.Client.Patch(ctx, cr, patch, client.FieldOwner(FieldManager)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}

	f, err := r.reconcile(ctx, cr)
	if err != nil && f == nil {
		return ctrl.Result{}, err // nothing learned: the status stays as it is
	}
	base := cr.DeepCopy()
	cr.Status = ComputeStatus(cr, *f)
	if c := meta.FindStatusCondition(cr.Status.Conditions, cbv1.ConditionCommandsRecognized); c != nil && c.Status == metav1.ConditionFalse {
		if old := meta.FindStatusCondition(base.Status.Conditions, cbv1.ConditionCommandsRecognized); old == nil || old.Message != c.Message {
			r.Recorder.Eventf(cr, nil, corev1.EventTypeWarning, c.Reason, "CheckCommands", "%s", c.Message)
		}
	}
	if !equality.Semantic.DeepEqual(base.Status, cr.Status) {
		// A merge patch without resourceVersion: counts and incarnations, which the
		// scraper writes, are not in it.
		if perr := r.Client.Status().Patch(ctx, cr, client.MergeFrom(base), client.FieldOwner(FieldManager)); perr != nil {
			err = errors.Join(err, fmt.Errorf("writing status: %w", perr))
		}
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.recheckAfter(f)}, nil
}

// recheckAfter is when what no watch reports may have changed: a sink kind installed or
// made readable, the Gateway API installed or made usable, a certificate's validity begun or
// ended.
func (r *CallbackReceiverReconciler) recheckAfter(f *Facts) time.Duration {
	var after []time.Duration
	if p := f.SinkProblem; p != nil && (p.Reason == cbv1.ReasonSinkKindUnknown || p.Reason == cbv1.ReasonSinkForbidden) {
		after = append(after, time.Minute)
	}
	if f.GatewayAPIProblem != nil {
		after = append(after, r.GatewayAPIRecheck)
	}
	if d := nextValidityChange(f.Certificate, r.now()); d > 0 {
		after = append(after, d)
	}
	if f.StorageProblem != nil {
		after = append(after, 30*time.Second) // a default StorageClass may be installed
	}
	if len(f.Stranded) > 0 {
		after = append(after, 5*time.Second) // pods stopping, Jobs draining
	}
	if len(after) == 0 {
		return 0
	}
	return slices.Min(after)
}

// reconcile applies the children and gathers the facts status is computed from. What the
// user has to fix is a fact (a Problem), not an error; errors are transient and retried with
// backoff. It returns no facts when it failed before learning enough to compute status.
func (r *CallbackReceiverReconciler) reconcile(ctx context.Context, cr *cbv1.CallbackReceiver) (*Facts, error) {
	f := &Facts{Image: r.Image}
	switch {
	case cr.Spec.Image == "":
	case r.AllowImageOverride:
		f.Image = cr.Spec.Image
	default:
		f.IgnoredImage = cr.Spec.Image
	}

	checksum, err := r.tokens.checksum(ctx, cr)
	if f.TokenProblem, err = problem(err); err != nil {
		return nil, err
	}
	if f.Certificate, f.TLSProblem, err = r.certs.check(ctx, cr, r.now()); err != nil {
		return nil, err
	}
	dests, err := r.resolveDestinations(ctx, cr)
	if err != nil {
		return nil, err
	}
	f.SinkURI, f.DeadLetterSinkURI, f.SinkProblem = dests.sinkURI, dests.deadLetterSinkURI, dests.sinkProblem
	f.Routes, f.Decisions, f.DecisionProblem = dests.routes, dests.decisions, dests.decisionProblem

	// Without a token, a sink or a usable certificate the receiver cannot work: a
	// Deployment that exists keeps running as it is (it still answers callbacks), a new one
	// waits. The Service, the Ingress and status.url then follow what the running pods serve.
	deploy := f.TokenProblem == nil && f.SinkProblem == nil && !f.TLSBlocksDeployment()
	f.ServesTLS = cr.Spec.TLS != nil
	if f.StorageProblem, err = r.checkStorageClass(ctx, cr); err != nil {
		return nil, err
	}
	if !deploy {
		if f.Deployment, err = r.ownDeployment(ctx, cr); err != nil {
			return nil, err
		}
		if f.StatefulSet, err = r.ownStatefulSet(ctx, cr); err != nil {
			return nil, err
		}
		switch {
		case f.StatefulSet != nil && resources.SpoolOnClaim(cr):
			f.ServesTLS = resources.TemplateServesTLS(f.StatefulSet.Spec.Template)
		case f.Deployment != nil:
			f.ServesTLS = resources.ServesTLS(f.Deployment)
		case f.StatefulSet != nil:
			f.ServesTLS = resources.TemplateServesTLS(f.StatefulSet.Spec.Template)
		}
	}
	f.URL = r.url(cr, f.ServesTLS)

	var actions []string
	var applyErrs []error
	apply := func(kind string, f func() (string, error)) {
		action, err := f()
		if err != nil {
			applyErrs = append(applyErrs, fmt.Errorf("%s: %w", kind, err))
			return
		}
		if action != "" {
			actions = append(actions, action+" "+kind+"/"+cr.Name)
		}
	}
	apply("ServiceAccount", func() (string, error) {
		return applyChild(ctx, r.Client, r.applied, &corev1.ServiceAccount{}, resources.ServiceAccount(cr), corev1ac.ExtractServiceAccount)
	})
	apply("Service", func() (string, error) {
		return applyChild(ctx, r.Client, r.applied, &corev1.Service{}, resources.Service(cr, f.ServesTLS), corev1ac.ExtractService)
	})
	params := resources.Params{
		Image: f.Image, SinkURI: f.SinkURI, DeadLetterSinkURI: f.DeadLetterSinkURI,
		Routes: f.Routes, Decisions: f.Decisions, TokenChecksum: checksum,
	}
	if deploy && resources.SpoolOnClaim(cr) {
		apply("StatefulSet", func() (string, error) { return r.applyStatefulSet(ctx, cr, params, f) })
	}
	if deploy && !resources.SpoolOnClaim(cr) {
		apply("Deployment", func() (string, error) {
			desired := resources.Deployment(cr, params)
			action, err := applyChild(ctx, r.Client, r.applied, &appsv1.Deployment{}, desired, appsv1ac.ExtractDeployment)
			if err == nil && action != "" {
				// The Deployment as the API server returned it (apply filled desired): the
				// cache may not have it yet, and status computed from the cache would be
				// written again a moment later.
				d := &appsv1.Deployment{}
				if fromApplied(desired, d) == nil {
					f.Deployment = d
				}
			}
			return action, err
		})
	}
	if f.StatefulSet == nil {
		if f.StatefulSet, err = r.ownStatefulSet(ctx, cr); err != nil {
			return nil, err
		}
	}
	if f.Deployment == nil {
		if f.Deployment, err = r.ownDeployment(ctx, cr); err != nil {
			return nil, err
		}
	}
	if deploy {
		// The workload the spool type no longer runs on goes once the new one is ready.
		moving, action, err := r.migrate(ctx, cr, f)
		if err != nil {
			applyErrs = append(applyErrs, fmt.Errorf("replacing the receivers' workload: %w", err))
		}
		if action != "" {
			actions = append(actions, action)
		}
		f.Stranded = append(f.Stranded, moving...)
		keep := 0
		if resources.SpoolOnClaim(cr) {
			keep = int(resources.Replicas(cr))
		}
		stranded, acts, err := r.reconcileSpools(ctx, cr, params, keep)
		if err != nil {
			applyErrs = append(applyErrs, fmt.Errorf("draining retained claims: %w", err))
		}
		actions = append(actions, acts...)
		f.Stranded = append(f.Stranded, stranded...)
	}
	apply("PodDisruptionBudget", func() (string, error) { return r.applyPDB(ctx, cr) })
	apply("Ingress", func() (string, error) { return r.applyIngress(ctx, cr, f) })
	apply("HTTPRoute", func() (string, error) { return r.applyHTTPRoute(ctx, cr, f) })

	if len(actions) > 0 {
		r.Recorder.Eventf(cr, nil, corev1.EventTypeNormal, "Applied", "Apply", "%s", strings.Join(actions, ", "))
	}
	if len(applyErrs) > 0 {
		f.ApplyError = errors.Join(applyErrs...)
		r.Recorder.Eventf(cr, nil, corev1.EventTypeWarning, cbv1.ReasonApplyFailed, "Apply", "%v", f.ApplyError)
	}
	return f, f.ApplyError
}

// reconcileDelete drains and deletes the receivers' claims, reporting in status what is
// still stranded, before it lets the resource go (the garbage collector removes the rest).
func (r *CallbackReceiverReconciler) reconcileDelete(ctx context.Context, cr *cbv1.CallbackReceiver) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(cr, SpoolFinalizer) {
		return ctrl.Result{}, nil
	}
	f := &Facts{Image: r.Image}
	if cr.Spec.Image != "" && r.AllowImageOverride {
		f.Image = cr.Spec.Image
	}
	dests, err := r.resolveDestinations(ctx, cr)
	if err != nil {
		return ctrl.Result{}, err
	}
	params := resources.Params{Image: f.Image, SinkURI: dests.sinkURI, DeadLetterSinkURI: dests.deadLetterSinkURI,
		Routes: dests.routes, Decisions: dests.decisions}
	done, stranded, err := r.finalize(ctx, cr, params)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !done {
		if !equality.Semantic.DeepEqual(cr.Status.StrandedSpools, stranded) {
			base := cr.DeepCopy()
			cr.Status.StrandedSpools = stranded
			if err := r.Client.Status().Patch(ctx, cr, client.MergeFrom(base), client.FieldOwner(FieldManager)); err != nil {
				return ctrl.Result{}, client.IgnoreNotFound(err)
			}
		}
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	}
	patch := client.MergeFrom(cr.DeepCopy())
	controllerutil.RemoveFinalizer(cr, SpoolFinalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, cr, patch, client.FieldOwner(FieldManager)))
}

// ownDeployment is the receiver's Deployment from the cache; nil when there is none that
// this resource controls.
func (r *CallbackReceiverReconciler) ownDeployment(ctx context.Context, cr *cbv1.CallbackReceiver) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	switch err := r.Client.Get(ctx, client.ObjectKeyFromObject(cr), d); {
	case err == nil && metav1.IsControlledBy(d, cr):
		return d, nil
	case client.IgnoreNotFound(err) != nil:
		return nil, err
	}
	return nil, nil
}

func (r *CallbackReceiverReconciler) applyPDB(ctx context.Context, cr *cbv1.CallbackReceiver) (string, error) {
	desired := resources.PodDisruptionBudget(cr)
	if desired != nil {
		return applyChild(ctx, r.Client, r.applied, &policyv1.PodDisruptionBudget{}, desired, policyv1ac.ExtractPodDisruptionBudget)
	}
	// One replica: a budget would block node drains, so there is none.
	return deleteOwned(ctx, r.Client, cr, &policyv1.PodDisruptionBudget{})
}

// url is the in-cluster callback URL, with the port unless it is the scheme's default.
func (r *CallbackReceiverReconciler) url(cr *cbv1.CallbackReceiver, tls bool) string {
	scheme, defaultPort := "http", int32(80)
	if tls {
		scheme, defaultPort = "https", 443
	}
	host := fmt.Sprintf("%s.%s.svc.%s", cr.Name, cr.Namespace, r.ClusterDomain)
	if p := resources.ServicePort(cr, tls); p != defaultPort {
		host = fmt.Sprintf("%s:%d", host, p)
	}
	return scheme + "://" + host + cr.Spec.Path
}

// problem separates what the user has to fix (a *Problem) from a transient error.
func problem(err error) (*Problem, error) {
	var p *Problem
	if errors.As(err, &p) {
		return p, nil
	}
	return nil, err
}
