package controllers

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/controllers/sink"
)

// Facts are what one reconcile learned about a resource and its children. Status is computed
// from them alone, in ComputeStatus: the reconcile steps only gather facts, so their order
// does not matter and a restarted manager computes the same status.
type Facts struct {
	// URL is the in-cluster callback URL.
	URL string
	// TokenProblem is why the token cannot be used (nil when it was found, or without
	// spec.auth).
	TokenProblem *Problem
	// SinkURI and DeadLetterSinkURI are the resolved destinations, valid when SinkProblem
	// is nil.
	SinkURI, DeadLetterSinkURI string
	// SinkProblem is why a sink (main, dead-letter or a route's) did not resolve.
	SinkProblem *sink.Error
	// Routes and Decisions are spec.routes' sinks and spec.decisions' services as resolved
	// (an empty URI where one did not); DecisionProblem is why the first one did not.
	Routes, Decisions []cbv1.ResolvedRoute
	DecisionProblem   *sink.Error
	// Image is the image the receiver runs; IgnoredImage is spec.image when the operator
	// does not allow overrides and runs Image instead.
	Image, IgnoredImage string
	// ApplyError is why writing a child object failed (the operator retries).
	ApplyError error
	// Deployment is the receiver's Deployment as last applied or read; nil when it does not
	// exist or is not this resource's.
	Deployment *appsv1.Deployment
	// StatefulSet is the receivers' StatefulSet (spool type PersistentVolumeClaim) as last
	// applied or read; nil when it does not exist or is not this resource's.
	StatefulSet *appsv1.StatefulSet
	// StorageProblem is why the claims cannot be provisioned (no default StorageClass, or
	// the named one does not exist).
	StorageProblem *Problem
	// Stranded are the spools no receiver pod serves any more, still to be delivered.
	Stranded []cbv1.StrandedSpool

	// Certificate is spec.tls's certificate when its Secret holds a usable one; TLSProblem
	// is why it cannot be served as it should (nil without spec.tls). A problem without a
	// certificate holds the Deployment back (see TLSBlocksDeployment).
	Certificate *Certificate
	TLSProblem  *Problem
	// ServesTLS tells whether the receiver pods serve HTTPS: spec.tls when the Deployment
	// is applied, else what the running Deployment does. status.url follows it.
	ServesTLS bool
	// Ingress and Route are the exposing child as last applied or read; nil when the spec
	// asks for none or it could not be written.
	Ingress *networkingv1.Ingress
	Route   *gwv1.HTTPRoute
	// GatewayAPIProblem is why spec.httpRoute's route cannot be written: the API server
	// serves no HTTPRoutes, or the manager may not list them.
	GatewayAPIProblem *Problem
}

// TLSBlocksDeployment tells whether spec.tls's Secret is unusable, so that receiver pods
// could not start with it. An expired certificate still loads, so it does not.
func (f *Facts) TLSBlocksDeployment() bool { return f.TLSProblem != nil && f.Certificate == nil }

// Problem is something the user has to fix, as a condition reason and a message that says
// what to do.
type Problem struct{ Reason, Message string }

func (p *Problem) Error() string { return p.Message }

// ComputeStatus returns cr's status as the facts say it is. Counts and incarnations, which the
// counts controller owns, are kept as they are; condition transition times move only when a
// condition's status changes.
func ComputeStatus(cr *cbv1.CallbackReceiver, f Facts) cbv1.CallbackReceiverStatus {
	st := *cr.Status.DeepCopy()
	st.URL = f.URL
	st.Selector = resources.Selector(cr)
	if f.ApplyError == nil {
		st.ObservedGeneration = cr.Generation
	}
	if f.SinkProblem == nil {
		st.SinkURI, st.DeadLetterSinkURI, st.Routes = f.SinkURI, f.DeadLetterSinkURI, f.Routes
	}
	st.Decisions = f.Decisions
	w := workloadOf(cr, f)
	st.Replicas, st.ReadyReplicas = 0, 0
	if w != nil {
		st.Replicas, st.ReadyReplicas = w.replicas, w.ready
	}
	st.StrandedSpools = f.Stranded

	exposed, callbackURL := exposedCondition(cr, f)
	st.CallbackURL = callbackURL
	conditions := []metav1.Condition{
		tokenCondition(cr, f.TokenProblem),
		tlsCondition(cr, f),
		sinkCondition(&st, f.SinkProblem),
		decisionsCondition(cr, f),
		imageCondition(cr, f),
		spoolCondition(cr, f),
		availableCondition(cr, w),
		exposed,
	}
	ready := metav1.Condition{
		Type: cbv1.ConditionReady, Status: metav1.ConditionTrue, Reason: cbv1.ReasonReady,
		Message: fmt.Sprintf("Receiving callbacks at %s.", st.URL),
	}
	if st.CallbackURL != "" {
		ready.Message = fmt.Sprintf("Receiving callbacks at %s (in the cluster: %s) and delivering them to %s.", st.CallbackURL, st.URL, st.SinkURI)
	}
	for _, c := range conditions {
		// Exposure is optional: a receiver reachable only in the cluster can be Ready.
		if c.Type == cbv1.ConditionExposed && c.Reason == cbv1.ReasonNotExposed {
			continue
		}
		if c.Status != metav1.ConditionTrue {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, c.Reason, c.Message
			break
		}
	}
	if f.ApplyError != nil {
		ready.Status, ready.Reason = metav1.ConditionFalse, cbv1.ReasonApplyFailed
		ready.Message = truncate("Applying child objects failed, retrying: " + f.ApplyError.Error())
	}
	advisory := commandsCondition(checkCommands(&cr.Spec))
	for _, c := range append(conditions, ready, advisory) {
		c.ObservedGeneration = cr.Generation
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st
}

func tokenCondition(cr *cbv1.CallbackReceiver, p *Problem) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionTokenResolved}
	switch {
	case p != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, p.Reason, p.Message
	case cr.Spec.Auth == nil:
		c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonAuthenticationDisabled
		c.Message = "Callbacks are not authenticated: anyone who can reach the URL can send them. Set spec.auth.tokenSecretRef to the IM console's callback token to verify Sign."
	default:
		c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonTokenFound
		c.Message = fmt.Sprintf("Callbacks are verified with the token in Secret %s, key %s.", cr.Spec.Auth.TokenSecretRef.Name, cr.Spec.Auth.TokenSecretRef.Key)
	}
	return c
}

func sinkCondition(st *cbv1.CallbackReceiverStatus, p *sink.Error) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionSinkResolved}
	if p != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, p.Reason, truncate(p.Message)
		return c
	}
	c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonResolved
	var parts []string
	if st.SinkURI != "" {
		parts = append(parts, "Events go to "+st.SinkURI)
	}
	for _, r := range st.Routes {
		parts = append(parts, "events of "+commandList(r.Commands)+" to "+r.URI)
	}
	if st.DeadLetterSinkURI != "" {
		parts = append(parts, "undeliverable ones to "+st.DeadLetterSinkURI)
	}
	if len(parts) == 0 {
		c.Message = "No callbacks are forwarded: only decisions are taken."
		return c
	}
	parts[0] = strings.ToUpper(parts[0][:1]) + parts[0][1:]
	c.Message = strings.Join(parts, ", ") + "."
	return c
}

func decisionsCondition(cr *cbv1.CallbackReceiver, f Facts) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionDecisionsResolved, Status: metav1.ConditionTrue}
	switch {
	case len(cr.Spec.Decisions) == 0:
		c.Reason = cbv1.ReasonNoDecisions
		c.Message = "No decision services: before-callbacks are answered OK (allowed) unless spec.commands or spec.routes forward them."
	case f.DecisionProblem != nil:
		c.Status, c.Reason = metav1.ConditionFalse, f.DecisionProblem.Reason
		c.Message = truncate(f.DecisionProblem.Message + ". Meanwhile its callbacks are answered by the failure policy (" + string(failurePolicy(cr)) + ").")
	default:
		c.Reason = cbv1.ReasonResolved
		parts := make([]string, 0, len(f.Decisions))
		for _, d := range f.Decisions {
			parts = append(parts, commandList(d.Commands)+" by "+d.URI)
		}
		c.Message = "Before-callbacks are decided: " + strings.Join(parts, "; ") + " (failure policy " + string(failurePolicy(cr)) + ")."
	}
	return c
}

func failurePolicy(cr *cbv1.CallbackReceiver) cbv1.DecisionFailurePolicy {
	if p := cr.Spec.DecisionPolicy; p != nil && p.FailurePolicy != "" {
		return p.FailurePolicy
	}
	return cbv1.DecisionFailureAllow
}

func commandList(cmds []cbv1.Command) string {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

func imageCondition(cr *cbv1.CallbackReceiver, f Facts) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionImageResolved, Status: metav1.ConditionTrue}
	switch {
	case f.IgnoredImage != "":
		c.Status, c.Reason = metav1.ConditionFalse, cbv1.ReasonImageOverrideNotAllowed
		c.Message = fmt.Sprintf("spec.image %s is not used: this operator runs receivers only from its own image %s, because an image of one's choice could read the token Secret. Remove spec.image, or have the operator's administrator start the manager with --allow-image-override.", f.IgnoredImage, f.Image)
	case cr.Spec.Image != "":
		c.Reason = cbv1.ReasonImageOverridden
		c.Message = fmt.Sprintf("Receivers run spec.image %s, as this operator allows image overrides.", f.Image)
	default:
		c.Reason = cbv1.ReasonOperatorImage
		c.Message = fmt.Sprintf("Receivers run the operator's image %s.", f.Image)
	}
	return c
}

// spoolCondition reads what the counts controller last wrote of the pods' spools, and
// whether the claims can be provisioned and stranded spools drained.
func spoolCondition(cr *cbv1.CallbackReceiver, f Facts) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionSpoolReady, Status: metav1.ConditionTrue}
	switch sp := cr.Status.Spool; {
	case !resources.SpoolEnabled(cr):
		c.Reason = cbv1.ReasonSpoolDisabled
		c.Message = "spec.spool.type is None: accepted callbacks wait for delivery in memory, so a receiver killed without warning (an OOM kill, a node failure) loses those not yet delivered."
	case f.StorageProblem != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, f.StorageProblem.Reason, f.StorageProblem.Message
	case sp != nil && sp.FullPods > 0:
		c.Status, c.Reason = metav1.ConditionFalse, cbv1.ReasonSpoolFull
		size := "spec.spool.size (new claims only)"
		if !resources.SpoolOnClaim(cr) {
			size = "spec.spool.sizeLimit"
		}
		c.Message = fmt.Sprintf("The spool of %d receiver pod(s) is 90%% full or more: at full they answer callbacks with 503. The sink has not taken events for long: see SinkResolved, the receivers' logs and imcallback_deliveries_held; fix the sink, or raise %s.", sp.FullPods, size)
	case len(f.Stranded) > 0:
		// True: every callback is still answered; the backlog of removed pods is on its way.
		c.Reason = cbv1.ReasonSpoolsStranded
		names := make([]string, len(f.Stranded))
		for i, s := range f.Stranded {
			names[i] = s.Kind + " " + s.Name + " (" + s.State + ")"
		}
		c.Message = truncate("Spools no receiver pod serves any more are being delivered: " + strings.Join(names, ", ") + "; status.strandedSpools says more.")
	case !resources.SpoolOnClaim(cr):
		c.Reason = cbv1.ReasonSpoolOnEmptyDir
		c.Message = fmt.Sprintf("spec.spool.type is EmptyDir: accepted callbacks survive a container restart, but a pod that is rolled, deleted, evicted or scaled away delivers its backlog for %s at most (spec.spool.drainTimeout) and loses the rest, as does a lost node. Use type PersistentVolumeClaim to keep them.", resources.DrainTimeout(cr))
	default:
		c.Reason = cbv1.ReasonSpoolHasRoom
		c.Message = "Accepted callbacks are kept on each pod's claim until delivered, across rollouts, deletions, evictions and scale-downs; status.spool shows how many wait."
	}
	return c
}

// workload is what status reads of the receivers' Deployment or StatefulSet.
type workload struct {
	kind, name, namespace string
	generation, observed  int64
	replicas, ready       int32
	available             bool
	unavailableMessage    string
}

// workloadOf is the workload the spool type runs on; while the other one still runs (a
// change of spool type), it counts instead until the new one exists.
func workloadOf(cr *cbv1.CallbackReceiver, f Facts) *workload {
	fromSTS := func(s *appsv1.StatefulSet) *workload {
		return &workload{kind: "StatefulSet", name: s.Name, namespace: s.Namespace, generation: s.Generation, observed: s.Status.ObservedGeneration,
			replicas: s.Status.Replicas, ready: s.Status.ReadyReplicas, available: s.Status.AvailableReplicas > 0 && s.Status.ReadyReplicas > 0}
	}
	fromDeploy := func(d *appsv1.Deployment) *workload {
		w := &workload{kind: "Deployment", name: d.Name, namespace: d.Namespace, generation: d.Generation, observed: d.Status.ObservedGeneration,
			replicas: d.Status.Replicas, ready: d.Status.ReadyReplicas}
		avail := deploymentCondition(d, appsv1.DeploymentAvailable)
		w.available = avail != nil && avail.Status == corev1.ConditionTrue && d.Status.ReadyReplicas > 0
		if avail != nil {
			w.unavailableMessage = avail.Message
		}
		return w
	}
	switch {
	case resources.SpoolOnClaim(cr) && f.StatefulSet != nil:
		return fromSTS(f.StatefulSet)
	case !resources.SpoolOnClaim(cr) && f.Deployment != nil:
		return fromDeploy(f.Deployment)
	case f.StatefulSet != nil:
		return fromSTS(f.StatefulSet)
	case f.Deployment != nil:
		return fromDeploy(f.Deployment)
	}
	return nil
}

// availableCondition reads the workload's own status: replicas, ready replicas, availability.
func availableCondition(cr *cbv1.CallbackReceiver, w *workload) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionAvailable, Status: metav1.ConditionFalse}
	if w == nil {
		c.Reason = cbv1.ReasonDeploymentNotFound
		c.Message = "The receiver's Deployment does not exist yet: see the TokenResolved, TLSResolved and SinkResolved conditions."
		if resources.SpoolOnClaim(cr) {
			c.Reason = cbv1.ReasonStatefulSetNotFound
			c.Message = "The receiver's StatefulSet does not exist yet: see the TokenResolved, TLSResolved and SinkResolved conditions."
		}
		return c
	}
	want := resources.Replicas(cr)
	switch {
	case want == 0:
		c.Reason = cbv1.ReasonScaledToZero
		c.Message = fmt.Sprintf("spec.replicas is 0: no pod receives callbacks. Scale up with: kubectl scale cbr %s --replicas=2", cr.Name)
	case w.observed < w.generation:
		c.Status = conditionStatus(w.available)
		c.Reason, c.Message = cbv1.ReasonRollingOut, "The "+w.kind+" controller has not yet seen the latest change."
	case w.available:
		c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable
		c.Message = fmt.Sprintf("%d of %d receiver pods are ready.", w.ready, want)
		if want == 1 && resources.SpoolOnClaim(cr) {
			c.Message += " With one replica every rollout (a spec change, an operator upgrade) stops the only receiver before its replacement starts: IM gets no answer for seconds and does not retry those callbacks. Set spec.replicas to 2 or more."
		} else if want == 1 {
			c.Message += " With one replica a node drain or an eviction leaves IM without a receiver for seconds, and IM does not retry: set spec.replicas to 2 or more."
		}
	default:
		c.Reason = cbv1.ReasonMinimumReplicasUnavailable
		c.Message = fmt.Sprintf("%d of %d receiver pods are ready", w.ready, want)
		if w.unavailableMessage != "" {
			c.Message += ": " + w.unavailableMessage
		}
		c.Message += fmt.Sprintf(". See: kubectl describe %s %s -n %s", strings.ToLower(w.kind), w.name, w.namespace)
	}
	return c
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func conditionStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// truncate keeps a condition message within the API's limit.
func truncate(s string) string {
	const limit = 32 * 1024
	if len(s) > limit {
		return s[:limit]
	}
	return s
}
