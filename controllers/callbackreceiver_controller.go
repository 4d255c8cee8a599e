// Package controllers reconciles CallbackReceivers into a ServiceAccount, a Deployment of
// receiver pods, a Service and (with more than one replica) a PodDisruptionBudget, and
// reports their state in the resource's status. Counts in status are written by the
// counts package's scraper.
package controllers

import (
	"context"
	"errors"
	"fmt"
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

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/controllers/sink"
)

// FieldManager owns every child object and the status fields the reconciler writes.
const FieldManager = "callback-operator"

// Condition reasons.
const (
	ReasonReady                  = "Ready"
	ReasonResolved               = "Resolved"
	ReasonAuthenticationDisabled = "AuthenticationDisabled"
	ReasonTokenFound             = "TokenFound"
	ReasonTokenSecretNotFound    = "TokenSecretNotFound"
	ReasonTokenKeyNotFound       = "TokenKeyNotFound"
	ReasonTokenEmpty             = "TokenEmpty"
	ReasonDeploymentNotFound     = "DeploymentNotFound"
	ReasonScaledToZero           = "ScaledToZero"
	ReasonMinimumReplicas        = "MinimumReplicasAvailable"
	ReasonUnavailable            = "MinimumReplicasUnavailable"
	ReasonRollingOut             = "RollingOut"
	ReasonApplyFailed            = "ApplyFailed"
)

// ConditionTokenResolved is True when callbacks are authenticated with a token that was
// found, or authentication is off (reason AuthenticationDisabled).
const ConditionTokenResolved = "TokenResolved"

// CallbackReceiverReconciler reconciles CallbackReceivers.
type CallbackReceiverReconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads what is not cached: Secret values and Addressables of any kind.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Image runs the receivers unless a resource's spec.image overrides it.
	Image string
	// ClusterDomain is the cluster's DNS domain, for status.url and Service sinks.
	ClusterDomain string

	sinks   *sink.Resolver
	tokens  *tokenCache
	kinds   *kindWatcher
	applied *appliedVersions
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
		return ctrl.Result{}, nil // the garbage collector removes the children
	}
	base := cr.DeepCopy()

	err := r.reconcile(ctx, cr)
	if err == nil {
		cr.Status.ObservedGeneration = cr.Generation
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
	// No watch tells when a kind is installed or the manager is allowed to read it.
	if c := meta.FindStatusCondition(cr.Status.Conditions, cbv1.ConditionSinkResolved); c != nil &&
		(c.Reason == sink.ReasonUnknownKind || c.Reason == sink.ReasonForbidden) {
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	}
	return ctrl.Result{}, nil
}

// reconcile does the work and records the outcome in cr.Status. It returns only transient
// errors, which are retried with backoff; what the user must fix is a condition.
func (r *CallbackReceiverReconciler) reconcile(ctx context.Context, cr *cbv1.CallbackReceiver) error {
	st := &cr.Status
	st.URL = r.url(cr)
	st.Selector = resources.Selector(cr)

	checksum, tokenErr := r.tokens.checksum(ctx, cr)
	if err := transient(tokenErr); err != nil {
		return err
	}
	r.setTokenCondition(cr, tokenErr)

	sinkURI, dlsURI, sinkErr := r.resolveSinks(ctx, cr)
	if err := transient(sinkErr); err != nil {
		return err
	}
	// The URIs first: the condition's message names them.
	if sinkErr == nil {
		st.SinkURI, st.DeadLetterSinkURI = sinkURI, dlsURI
	}
	r.setSinkCondition(cr, sinkErr)

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
		return applyChild(ctx, r.Client, r.applied, &corev1.Service{}, resources.Service(cr), corev1ac.ExtractService)
	})
	// The Deployment as the API server returned it from an apply: the cache may not have
	// it yet, and status computed from the cache would be written again a moment later.
	var applied *appsv1.Deployment
	// Without a token or a sink the receiver cannot work: a Deployment that exists keeps
	// running as it is (it still answers callbacks), a new one waits.
	if tokenErr == nil && sinkErr == nil {
		params := resources.Params{Image: r.Image, SinkURI: sinkURI, DeadLetterSinkURI: dlsURI, TokenChecksum: checksum}
		apply("Deployment", func() (string, error) {
			desired := resources.Deployment(cr, params)
			action, err := applyChild(ctx, r.Client, r.applied, &appsv1.Deployment{}, desired, appsv1ac.ExtractDeployment)
			if err == nil && action != "" {
				// Apply filled desired with the response.
				d := &appsv1.Deployment{}
				if fromApplied(desired, d) == nil {
					applied = d
				}
			}
			return action, err
		})
	}
	apply("PodDisruptionBudget", func() (string, error) { return r.applyPDB(ctx, cr) })

	if len(actions) > 0 {
		r.Recorder.Eventf(cr, nil, corev1.EventTypeNormal, "Applied", "Apply", "%s", strings.Join(actions, ", "))
	}
	if len(applyErrs) > 0 {
		err := errors.Join(applyErrs...)
		r.Recorder.Eventf(cr, nil, corev1.EventTypeWarning, ReasonApplyFailed, "Apply", "%v", err)
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: cbv1.ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonApplyFailed,
			Message: truncate("Applying child objects failed, retrying: " + err.Error()), ObservedGeneration: cr.Generation,
		})
		return err
	}

	if err := r.setAvailable(ctx, cr, applied); err != nil {
		return err
	}
	r.setReady(cr)
	return nil
}

func (r *CallbackReceiverReconciler) resolveSinks(ctx context.Context, cr *cbv1.CallbackReceiver) (string, string, error) {
	if ref, ok := sink.RefOf(cr.Namespace, &cr.Spec.Sink); ok {
		r.kinds.ensure(ctx, ref.GVK)
	}
	sinkURI, err := r.sinks.Resolve(ctx, cr.Namespace, &cr.Spec.Sink)
	if err != nil {
		return "", "", prefix(err, "spec.sink: ")
	}
	var dls string
	if d := cr.Spec.Delivery; d != nil && d.DeadLetterSink != nil {
		if ref, ok := sink.RefOf(cr.Namespace, d.DeadLetterSink); ok {
			r.kinds.ensure(ctx, ref.GVK)
		}
		if dls, err = r.sinks.Resolve(ctx, cr.Namespace, d.DeadLetterSink); err != nil {
			return "", "", prefix(err, "spec.delivery.deadLetterSink: ")
		}
	}
	return sinkURI, dls, nil
}

func (r *CallbackReceiverReconciler) applyPDB(ctx context.Context, cr *cbv1.CallbackReceiver) (string, error) {
	desired := resources.PodDisruptionBudget(cr)
	if desired != nil {
		return applyChild(ctx, r.Client, r.applied, &policyv1.PodDisruptionBudget{}, desired, policyv1ac.ExtractPodDisruptionBudget)
	}
	// One replica: a budget would block node drains, so there is none.
	pdb := &policyv1.PodDisruptionBudget{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(cr), pdb); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(pdb, cr) {
		return "", nil
	}
	if err := r.Client.Delete(ctx, pdb, client.Preconditions{UID: &pdb.UID}); client.IgnoreNotFound(err) != nil {
		return "", err
	}
	return "Deleted", nil
}

func (r *CallbackReceiverReconciler) url(cr *cbv1.CallbackReceiver) string {
	host := fmt.Sprintf("%s.%s.svc.%s", cr.Name, cr.Namespace, r.ClusterDomain)
	if p := resources.ServicePort(cr); p != 80 {
		host = fmt.Sprintf("%s:%d", host, p)
	}
	return "http://" + host + cr.Spec.Path
}

// transient returns err unless the user has to fix it (a *sink.Error or *userError).
func transient(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := sink.AsError(err); ok {
		return nil
	}
	var ue *userError
	if errors.As(err, &ue) {
		return nil
	}
	return err
}

func prefix(err error, p string) error {
	if se, ok := sink.AsError(err); ok {
		return &sink.Error{Reason: se.Reason, Message: p + se.Message}
	}
	return err
}

// userError is a problem the user has to fix, with the condition reason to report it.
type userError struct{ reason, message string }

func (e *userError) Error() string { return e.message }

// truncate keeps a condition message within the API's limit.
func truncate(s string) string {
	const limit = 32 * 1024
	if len(s) > limit {
		return s[:limit]
	}
	return s
}
