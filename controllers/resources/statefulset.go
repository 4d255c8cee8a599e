package resources

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// MinReadySeconds holds a StatefulSet's rollout after each new pod is ready, so that the
// Service's endpoints (kube-proxy, an ingress controller) route to it before the next old
// pod stops: with two or more replicas there is always a ready receiver.
const MinReadySeconds = 5

// StatefulSet runs the receiver pods of spool type PersistentVolumeClaim: each pod has a
// claim of its own (spool-<name>-<ordinal>), which a replaced pod gets back. Pods start and
// stop in parallel (a scale-down removes the highest ordinals at once), rollouts replace one
// pod at a time, each only once the one before is ready for MinReadySeconds. Claims are
// retained on scale-down and deletion: the operator drains them (DrainJob), then deletes
// them.
func StatefulSet(cr *cbv1.CallbackReceiver, p Params) *appsv1ac.StatefulSetApplyConfiguration {
	return appsv1ac.StatefulSet(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(appsv1ac.StatefulSetSpec().
			WithReplicas(Replicas(cr)).
			WithServiceName(cr.Name).
			WithRevisionHistoryLimit(3).
			WithPodManagementPolicy(appsv1.ParallelPodManagement).
			WithMinReadySeconds(MinReadySeconds).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(cr))).
			WithUpdateStrategy(appsv1ac.StatefulSetUpdateStrategy().
				WithType(appsv1.RollingUpdateStatefulSetStrategyType).
				// One pod at a time (maxUnavailable is left unset: it needs a feature gate,
				// and the API server would drop it where that is off).
				WithRollingUpdate(appsv1ac.RollingUpdateStatefulSetStrategy().WithPartition(0))).
			WithPersistentVolumeClaimRetentionPolicy(appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicy().
				WithWhenScaled(appsv1.RetainPersistentVolumeClaimRetentionPolicyType).
				WithWhenDeleted(appsv1.RetainPersistentVolumeClaimRetentionPolicyType)).
			WithVolumeClaimTemplates(ClaimTemplate(cr)).
			WithTemplate(podTemplate(cr, p)))
}

// ClaimTemplate is the StatefulSet's claim template. A StatefulSet's templates cannot
// change: the reconciler keeps the one a StatefulSet was made with.
func ClaimTemplate(cr *cbv1.CallbackReceiver) *corev1ac.PersistentVolumeClaimApplyConfiguration {
	spec := corev1ac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithVolumeMode(corev1.PersistentVolumeFilesystem).
		WithResources(corev1ac.VolumeResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceStorage: canonicalQuantity(SpoolSize(cr))}))
	if sc := StorageClassName(cr); sc != nil {
		spec.WithStorageClassName(*sc)
	}
	pvc := &corev1ac.PersistentVolumeClaimApplyConfiguration{}
	pvc.WithName(SpoolVolumeName).WithLabels(Labels(cr)).WithSpec(spec)
	return pvc
}

// ClaimName is the claim of one ordinal, as the StatefulSet controller names it.
func ClaimName(cr *cbv1.CallbackReceiver, ordinal int) string {
	return fmt.Sprintf("%s-%s-%d", SpoolVolumeName, cr.Name, ordinal)
}

// PodName is the StatefulSet's pod of one ordinal.
func PodName(cr *cbv1.CallbackReceiver, ordinal int) string {
	return fmt.Sprintf("%s-%d", cr.Name, ordinal)
}

// ClaimOrdinal is the ordinal of one of the resource's claims; false for other names.
func ClaimOrdinal(cr *cbv1.CallbackReceiver, claim string) (int, bool) {
	rest, ok := strings.CutPrefix(claim, SpoolVolumeName+"-"+cr.Name+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// DrainJobName is the Job that drains the claim of one ordinal.
func DrainJobName(cr *cbv1.CallbackReceiver, ordinal int) string {
	return fmt.Sprintf("%s-drain-%d", cr.Name, ordinal)
}

// DrainAttempt bounds one run of the drain Job's receiver: a sink still down after it
// fails the attempt (the events stay in the claim), and the Job runs it again.
const DrainAttempt = 5 * time.Minute

// drainLabels are the drain Job's pods' labels: not the receiver's selector, so that no
// Service routes callbacks to them and no StatefulSet counts them.
func drainLabels(cr *cbv1.CallbackReceiver) map[string]string {
	return map[string]string{
		LabelName:      NameValue + "-drain",
		LabelInstance:  cr.Name,
		LabelComponent: "spool-drain",
		LabelPartOf:    "callback-operator",
		LabelManagedBy: ManagedByValue,
	}
}

// DrainJob delivers what a retained claim holds, under the resource's current delivery
// settings (sinks, routes, retries, dead-letter sink), with the receiver in drain-only mode:
// it accepts no callbacks and exits 0 once the spool is empty. It retries (the sink may be
// down) until it succeeds; the reconciler then deletes the claim and the Job.
func DrainJob(cr *cbv1.CallbackReceiver, p Params, ordinal int) *batchv1ac.JobApplyConfiguration {
	tmpl := podTemplate(cr, p)
	spec := tmpl.Spec
	c := &spec.Containers[0]
	args := []string{contract.Arg(contract.FlagDrainOnly, "true"),
		contract.Arg(contract.FlagShutdownTimeout, DrainAttempt.String())}
	for _, a := range c.Args {
		// Neither the certificate (no callbacks are served) nor the token (none verified) is
		// mounted in the Job.
		if strings.HasPrefix(a, "--"+contract.FlagTLSCertFile+"=") || strings.HasPrefix(a, "--"+contract.FlagTLSKeyFile+"=") {
			continue
		}
		args = append(args, a)
	}
	c.Args = args
	c.Ports = nil
	c.ReadinessProbe, c.LivenessProbe = nil, nil
	var env []corev1ac.EnvVarApplyConfiguration
	for _, e := range c.Env {
		if e.Name != nil && *e.Name == contract.TokenEnv {
			continue
		}
		env = append(env, e)
	}
	c.Env = env
	var mounts []corev1ac.VolumeMountApplyConfiguration
	for _, m := range c.VolumeMounts {
		if m.Name != nil && *m.Name == SpoolVolumeName {
			mounts = append(mounts, m)
		}
	}
	c.VolumeMounts = mounts
	spec.Volumes = []corev1ac.VolumeApplyConfiguration{*corev1ac.Volume().WithName(SpoolVolumeName).
		WithPersistentVolumeClaim(corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(ClaimName(cr, ordinal)))}
	spec.WithRestartPolicy(corev1.RestartPolicyOnFailure)
	spec.TopologySpreadConstraints = nil
	spec.WithTerminationGracePeriodSeconds(int64(DrainAttempt/time.Second) + 10)
	podTmpl := corev1ac.PodTemplateSpec().WithLabels(drainLabels(cr)).WithSpec(spec)
	return batchv1ac.Job(DrainJobName(cr, ordinal), cr.Namespace).
		WithLabels(drainLabels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(batchv1ac.JobSpec().
			WithBackoffLimit(1000).
			WithCompletions(1).
			WithParallelism(1).
			WithTemplate(podTmpl))
}

// JobSucceeded and JobFailed read a Job's terminal conditions.
func JobSucceeded(j *batchv1.Job) bool { return jobCondition(j, batchv1.JobComplete) }

// JobFailed tells whether the Job gave up.
func JobFailed(j *batchv1.Job) bool { return jobCondition(j, batchv1.JobFailed) }

func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
