package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
)

// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=callbacks.imcallback.dev,resources=callbackreceivers,verbs=update;patch

// SpoolFinalizer holds a resource's deletion until its receivers' claims are drained and
// deleted: a claim holds callbacks that were answered OK and exist nowhere else.
const SpoolFinalizer = "callbacks.imcallback.dev/spool-drain"

// Stranded spool states, as status.strandedSpools reports them.
const (
	StrandedDraining = "Draining"
	StrandedFailed   = "Failed"
	StrandedWaiting  = "Waiting"
)

// errNamespaceTerminating: no drain Job can be made in a namespace being deleted.
var errNamespaceTerminating = errors.New("the namespace is being deleted")

// Annotation marks for storage class defaults.
const (
	defaultClassAnnotation     = "storageclass.kubernetes.io/is-default-class"
	betaDefaultClassAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

// applyStatefulSet applies the receivers' StatefulSet, keeping the claim template (which a
// StatefulSet cannot change) of the one that exists.
func (r *CallbackReceiverReconciler) applyStatefulSet(ctx context.Context, cr *cbv1.CallbackReceiver, params resources.Params, f *Facts) (string, error) {
	desired := resources.StatefulSet(cr, params)
	live := &appsv1.StatefulSet{}
	switch err := r.Client.Get(ctx, client.ObjectKeyFromObject(cr), live); {
	case err == nil && metav1.IsControlledBy(live, cr):
		if len(live.Spec.VolumeClaimTemplates) > 0 {
			keep, err := claimTemplatesOf(live)
			if err != nil {
				return "", err
			}
			desired.Spec.VolumeClaimTemplates = keep
		}
	case client.IgnoreNotFound(err) != nil:
		return "", err
	}
	action, err := applyChild(ctx, r.Client, r.applied, &appsv1.StatefulSet{}, desired, appsv1ac.ExtractStatefulSet)
	if err == nil && action != "" {
		s := &appsv1.StatefulSet{}
		if fromApplied(desired, s) == nil {
			f.StatefulSet = s
		}
	}
	return action, err
}

// claimTemplatesOf turns a live StatefulSet's claim templates into apply configurations of
// the fields this operator sets.
func claimTemplatesOf(s *appsv1.StatefulSet) ([]corev1ac.PersistentVolumeClaimApplyConfiguration, error) {
	out := make([]corev1ac.PersistentVolumeClaimApplyConfiguration, 0, len(s.Spec.VolumeClaimTemplates))
	for _, t := range s.Spec.VolumeClaimTemplates {
		ac := corev1ac.PersistentVolumeClaimApplyConfiguration{}
		ac.WithName(t.Name).WithLabels(t.Labels)
		spec := corev1ac.PersistentVolumeClaimSpec().WithAccessModes(t.Spec.AccessModes...)
		if t.Spec.VolumeMode != nil {
			spec.WithVolumeMode(*t.Spec.VolumeMode)
		}
		if t.Spec.StorageClassName != nil {
			spec.WithStorageClassName(*t.Spec.StorageClassName)
		}
		b, err := json.Marshal(t.Spec.Resources)
		if err != nil {
			return nil, err
		}
		res := corev1ac.VolumeResourceRequirements()
		if err := json.Unmarshal(b, res); err != nil {
			return nil, err
		}
		spec.WithResources(res)
		ac.WithSpec(spec)
		out = append(out, ac)
	}
	return out, nil
}

// ownStatefulSet is the receivers' StatefulSet from the cache; nil when there is none that
// this resource controls.
func (r *CallbackReceiverReconciler) ownStatefulSet(ctx context.Context, cr *cbv1.CallbackReceiver) (*appsv1.StatefulSet, error) {
	s := &appsv1.StatefulSet{}
	switch err := r.Client.Get(ctx, client.ObjectKeyFromObject(cr), s); {
	case err == nil && metav1.IsControlledBy(s, cr):
		return s, nil
	case client.IgnoreNotFound(err) != nil:
		return nil, err
	}
	return nil, nil
}

// checkStorageClass finds the StorageClass the claims would use: spec.spool.storageClassName
// or the cluster's default. A manager that may not read StorageClasses (the namespaced
// installation) cannot tell, and reports no problem.
func (r *CallbackReceiverReconciler) checkStorageClass(ctx context.Context, cr *cbv1.CallbackReceiver) (*Problem, error) {
	if !resources.SpoolOnClaim(cr) {
		return nil, nil
	}
	if name := resources.StorageClassName(cr); name != nil {
		if *name == "" {
			return nil, nil // static provisioning, as Kubernetes means an empty class
		}
		err := r.APIReader.Get(ctx, client.ObjectKey{Name: *name}, &storagev1.StorageClass{})
		switch {
		case apierrors.IsNotFound(err):
			return &Problem{Reason: cbv1.ReasonStorageClassNotFound, Message: fmt.Sprintf(
				"spec.spool.storageClassName %q names no StorageClass: the receivers' claims cannot be provisioned. Name one of `kubectl get storageclass`.", *name)}, nil
		case apierrors.IsForbidden(err):
			return nil, nil
		}
		return nil, err
	}
	list := &storagev1.StorageClassList{}
	switch err := r.APIReader.List(ctx, list); {
	case apierrors.IsForbidden(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	for _, sc := range list.Items {
		if sc.Annotations[defaultClassAnnotation] == "true" || sc.Annotations[betaDefaultClassAnnotation] == "true" {
			return nil, nil
		}
	}
	return &Problem{Reason: cbv1.ReasonNoDefaultStorageClass, Message: "The cluster has no default StorageClass, so the receivers' claims (spec.spool.type PersistentVolumeClaim, the default) cannot be provisioned and no receiver pod starts. Set spec.spool.storageClassName to one of `kubectl get storageclass`, or set spec.spool.type: EmptyDir, accepting that a rollout, a deletion or an eviction loses what a pod still holds after its drainTimeout."}, nil
}

// reconcileSpools drains the claims no receiver pod mounts any more (ordinals at or above
// keep), deleting each once its drain Job succeeded, and gives a scale-up its claims back.
// It returns what is still stranded.
func (r *CallbackReceiverReconciler) reconcileSpools(ctx context.Context, cr *cbv1.CallbackReceiver, params resources.Params, keep int) ([]cbv1.StrandedSpool, []string, error) {
	claims := &corev1.PersistentVolumeClaimList{}
	sel := client.MatchingLabels(resources.SelectorLabels(cr))
	if err := r.Client.List(ctx, claims, client.InNamespace(cr.Namespace), sel); err != nil {
		return nil, nil, err
	}
	jobs := &batchv1.JobList{}
	if err := r.Client.List(ctx, jobs, client.InNamespace(cr.Namespace), client.MatchingLabels{
		resources.LabelInstance: cr.Name, resources.LabelComponent: "spool-drain"}); err != nil {
		return nil, nil, err
	}
	jobByName := map[string]*batchv1.Job{}
	for i := range jobs.Items {
		if metav1.IsControlledBy(&jobs.Items[i], cr) {
			jobByName[jobs.Items[i].Name] = &jobs.Items[i]
		}
	}
	var stranded []cbv1.StrandedSpool
	var actions []string
	var errs []error
	wanted := map[string]bool{}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		n, ok := resources.ClaimOrdinal(cr, pvc.Name)
		if !ok || !pvc.DeletionTimestamp.IsZero() {
			continue
		}
		jobName := resources.DrainJobName(cr, n)
		if n < keep {
			continue // the StatefulSet's pod of this ordinal mounts it (again)
		}
		wanted[jobName] = true
		// The pod of a removed ordinal may still be terminating, delivering.
		pod := &corev1.Pod{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: cr.Namespace, Name: resources.PodName(cr, n)}, pod)
		if err == nil && isStatefulSetPod(pod, cr) {
			stranded = append(stranded, cbv1.StrandedSpool{Name: pvc.Name, Kind: "PersistentVolumeClaim", State: StrandedWaiting,
				Message: fmt.Sprintf("Pod %s is still stopping; its claim is drained once it is gone.", pod.Name)})
			continue
		}
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, err)
			continue
		}
		job := jobByName[jobName]
		switch {
		case job == nil:
			ac := resources.DrainJob(cr, params, n)
			if err := r.Client.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
				if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
					err = errNamespaceTerminating
				}
				errs = append(errs, fmt.Errorf("drain Job %s: %w", jobName, err))
				continue
			}
			actions = append(actions, "Created Job/"+jobName)
			stranded = append(stranded, cbv1.StrandedSpool{Name: pvc.Name, Kind: "PersistentVolumeClaim", State: StrandedDraining,
				Message: fmt.Sprintf("Job %s delivers what the claim holds, then it is deleted.", jobName)})
		case resources.JobSucceeded(job):
			uid := pvc.UID
			if err := r.Client.Delete(ctx, pvc, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("deleting drained claim %s: %w", pvc.Name, err))
				continue
			}
			actions = append(actions, "Deleted drained PersistentVolumeClaim/"+pvc.Name)
		case resources.JobFailed(job):
			stranded = append(stranded, cbv1.StrandedSpool{Name: pvc.Name, Kind: "PersistentVolumeClaim", State: StrandedFailed,
				Message: fmt.Sprintf("Job %s gave up; the claim keeps its events. See: kubectl logs job/%s -n %s; delete the Job to try again.", jobName, jobName, cr.Namespace)})
		default:
			msg := fmt.Sprintf("Job %s delivers what the claim holds, then it is deleted.", jobName)
			if job.Status.Failed > 0 {
				msg = fmt.Sprintf("Job %s delivers what the claim holds; %d attempt(s) ended with events left (the sink does not take them?): see kubectl logs job/%s -n %s.", jobName, job.Status.Failed, jobName, cr.Namespace)
			}
			stranded = append(stranded, cbv1.StrandedSpool{Name: pvc.Name, Kind: "PersistentVolumeClaim", State: StrandedDraining, Message: msg})
		}
	}
	// Jobs of claims that are gone (drained and deleted) or taken back by a scale-up.
	background := metav1.DeletePropagationBackground
	for name, job := range jobByName {
		if wanted[name] {
			continue
		}
		if err := r.Client.Delete(ctx, job, client.PropagationPolicy(background)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting Job %s: %w", name, err))
			continue
		}
		actions = append(actions, "Deleted Job/"+name)
	}
	slices.SortFunc(stranded, func(a, b cbv1.StrandedSpool) int { return strings.Compare(a.Name, b.Name) })
	return stranded, actions, errors.Join(errs...)
}

func isStatefulSetPod(p *corev1.Pod, cr *cbv1.CallbackReceiver) bool {
	o := metav1.GetControllerOf(p)
	return o != nil && o.Kind == "StatefulSet" && o.Name == cr.Name
}

// migrate removes the workload the spool type no longer runs on, once the new one is ready:
// a Deployment (EmptyDir) replaced by a StatefulSet is deleted once every StatefulSet pod is
// ready, and its pods deliver their backlog for their drain before they stop; a StatefulSet
// replaced by a Deployment is deleted once the Deployment is available, and its claims are
// drained as after a scale-down.
func (r *CallbackReceiverReconciler) migrate(ctx context.Context, cr *cbv1.CallbackReceiver, f *Facts) ([]cbv1.StrandedSpool, string, error) {
	want := resources.Replicas(cr)
	if resources.SpoolOnClaim(cr) {
		d, err := r.ownDeployment(ctx, cr)
		if err != nil || d == nil {
			return nil, "", err
		}
		s := f.StatefulSet
		if s == nil || s.Status.ReadyReplicas < want || s.Status.ObservedGeneration < s.Generation {
			return []cbv1.StrandedSpool{{Name: d.Name, Kind: "Deployment", State: StrandedWaiting,
				Message: "The receivers move to a StatefulSet with a claim per pod; the Deployment's pods keep receiving until every StatefulSet pod is ready."}}, "", nil
		}
		action, err := deleteOwned(ctx, r.Client, cr, &appsv1.Deployment{})
		if action != "" {
			action += " Deployment/" + cr.Name + " (replaced by the StatefulSet; its pods deliver their backlog as they stop)"
		}
		return nil, action, err
	}
	s, err := r.ownStatefulSet(ctx, cr)
	if err != nil || s == nil {
		return nil, "", err
	}
	d := f.Deployment
	if d == nil || d.Status.ReadyReplicas < min(want, 1) {
		return []cbv1.StrandedSpool{{Name: s.Name, Kind: "StatefulSet", State: StrandedWaiting,
			Message: "The receivers move to a Deployment; the StatefulSet's pods keep receiving until it is available."}}, "", nil
	}
	action, err := deleteOwned(ctx, r.Client, cr, &appsv1.StatefulSet{})
	if action != "" {
		action += " StatefulSet/" + cr.Name + " (replaced by the Deployment; its claims are drained)"
	}
	return nil, action, err
}

// finalize runs while the resource is being deleted: its receivers stop (the StatefulSet
// scaled to 0), every claim is drained and deleted, and only then the finalizer goes and
// the garbage collector removes the rest. It returns whether it is done.
func (r *CallbackReceiverReconciler) finalize(ctx context.Context, cr *cbv1.CallbackReceiver, params resources.Params) (bool, []cbv1.StrandedSpool, error) {
	if s, err := r.ownStatefulSet(ctx, cr); err != nil {
		return false, nil, err
	} else if s != nil && ptr.Deref(s.Spec.Replicas, 1) != 0 {
		ac := appsv1ac.StatefulSet(cr.Name, cr.Namespace).WithSpec(appsv1ac.StatefulSetSpec().WithReplicas(0))
		// A field manager of its own: the reconciler's applies would otherwise drop the
		// other fields it owns.
		if err := r.Client.Apply(ctx, ac, client.FieldOwner(FieldManager+"-finalizer"), client.ForceOwnership); err != nil {
			return false, nil, err
		}
	}
	stranded, _, err := r.reconcileSpools(ctx, cr, params, 0)
	if errors.Is(err, errNamespaceTerminating) {
		// The namespace's deletion deletes the claims whatever the operator does, and no
		// Job can run there any more: holding the resource would only hold the namespace.
		return true, nil, nil
	}
	if err != nil {
		return false, stranded, err
	}
	claims := &corev1.PersistentVolumeClaimList{}
	if err := r.Client.List(ctx, claims, client.InNamespace(cr.Namespace), client.MatchingLabels(resources.SelectorLabels(cr))); err != nil {
		return false, stranded, err
	}
	for _, c := range claims.Items {
		// A drained claim being deleted (its protection finalizer still on) counts as gone.
		if _, ok := resources.ClaimOrdinal(cr, c.Name); ok && c.DeletionTimestamp.IsZero() {
			return false, stranded, nil
		}
	}
	return true, nil, nil
}
