// Package resources builds the child objects of a CallbackReceiver as server-side apply
// configurations. Every function here is pure: the same inputs give the same objects, so the
// reconciler can compare what it would apply with what it applied before and write nothing
// when they are equal.
package resources

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/utils/ptr"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/authtoken"
)

// Ports and timings of the receiver container. The admin port is not exposed by the
// Service: the manager scrapes it at each pod's address.
const (
	ContainerName    = "receiver"
	CallbackPort     = 8080
	AdminPort        = 9090
	CallbackPortName = "http"
	AdminPortName    = "admin"

	// ShutdownDelay keeps accepting callbacks after SIGTERM while the pod leaves the
	// Service's endpoints; ShutdownTimeout bounds the whole shutdown, drain and final
	// scrape included. The grace period leaves the receiver time to exit on its own.
	ShutdownDelay   = 5 * time.Second
	ShutdownTimeout = 25 * time.Second
	GracePeriod     = int64(35)

	// TokenEnv is the variable the receiver reads its token from.
	TokenEnv = authtoken.EnvVar

	// TokenChecksumAnnotation on the pod template changes when the token's value does, so
	// a rotated token rolls the pods.
	TokenChecksumAnnotation = "callbacks.imcallback.dev/token-checksum"

	// RunAsUser is the distroless nonroot user.
	RunAsUser = int64(65532)
)

// Well-known labels on every child object.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelManagedBy = "app.kubernetes.io/managed-by"

	// NameValue and ManagedByValue identify receivers run by this operator; the manager's
	// caches select children by ManagedByValue.
	NameValue      = "callback-receiver"
	ManagedByValue = "callback-operator"
)

// Params are everything the child objects depend on besides the resource itself.
type Params struct {
	// Image runs the receiver unless spec.image overrides it.
	Image string
	// SinkURI and DeadLetterSinkURI are the resolved destinations.
	SinkURI, DeadLetterSinkURI string
	// TokenChecksum identifies the token's value; empty without spec.auth.
	TokenChecksum string
}

// SelectorLabels select the pods of one CallbackReceiver. They never change, as a
// Deployment's selector cannot.
func SelectorLabels(cr *cbv1.CallbackReceiver) map[string]string {
	return map[string]string{LabelName: NameValue, LabelInstance: cr.Name}
}

// Selector is SelectorLabels as a label selector string, for the scale subresource.
func Selector(cr *cbv1.CallbackReceiver) string {
	l := SelectorLabels(cr)
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

// Labels go on every child object and on the pods.
func Labels(cr *cbv1.CallbackReceiver) map[string]string {
	l := SelectorLabels(cr)
	l[LabelComponent] = "receiver"
	l[LabelPartOf] = "callback-operator"
	l[LabelManagedBy] = ManagedByValue
	return l
}

func owner(cr *cbv1.CallbackReceiver) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(cbv1.GroupVersion.String()).
		WithKind("CallbackReceiver").
		WithName(cr.Name).
		WithUID(cr.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// ServiceAccount gives the receiver pods an identity without Kubernetes credentials.
func ServiceAccount(cr *cbv1.CallbackReceiver) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithAutomountServiceAccountToken(false)
}

// Service routes callbacks to the receiver pods' callback port.
func Service(cr *cbv1.CallbackReceiver) *corev1ac.ServiceApplyConfiguration {
	svc := serviceSpec(cr)
	ac := corev1ac.Service(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(svc.Type).
			WithSelector(SelectorLabels(cr)).
			WithPorts(corev1ac.ServicePort().
				WithName(CallbackPortName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(svc.Port).
				WithTargetPort(intstr.FromString(CallbackPortName))))
	if len(svc.Annotations) > 0 {
		ac.WithAnnotations(svc.Annotations)
	}
	return ac
}

// ServicePort is the port the Service listens on.
func ServicePort(cr *cbv1.CallbackReceiver) int32 { return serviceSpec(cr).Port }

func serviceSpec(cr *cbv1.CallbackReceiver) cbv1.ServiceSpec {
	s := cbv1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Port: 80}
	if cr.Spec.Service != nil {
		if cr.Spec.Service.Type != "" {
			s.Type = cr.Spec.Service.Type
		}
		if cr.Spec.Service.Port != 0 {
			s.Port = cr.Spec.Service.Port
		}
		s.Annotations = cr.Spec.Service.Annotations
	}
	return s
}

// Replicas is spec.replicas with its default.
func Replicas(cr *cbv1.CallbackReceiver) int32 { return ptr.Deref(cr.Spec.Replicas, 1) }

// PodDisruptionBudget keeps all but one receiver pod running through voluntary disruptions
// (node drains). It exists only with more than one replica: with one, it would block drains.
func PodDisruptionBudget(cr *cbv1.CallbackReceiver) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	if Replicas(cr) <= 1 {
		return nil
	}
	return policyv1ac.PodDisruptionBudget(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(cr))))
}

// DefaultResources apply unless spec.resources is set.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		},
	}
}

// Args are the receiver's flags for a resource (see cmd/receiver).
func Args(cr *cbv1.CallbackReceiver, p Params) []string {
	cmds := make([]string, 0, len(cr.Spec.Commands))
	for _, c := range cr.Spec.Commands {
		cmds = append(cmds, string(c))
	}
	if len(cmds) == 0 {
		cmds = append(cmds, cbv1.DefaultCommand)
	}
	d := cr.Spec.Delivery
	if d == nil {
		d = &cbv1.DeliverySpec{}
	}
	policy := d.BackoffPolicy
	if policy == "" {
		policy = cbv1.BackoffExponential
	}
	args := []string{
		"--sdkappid=" + strconv.FormatInt(cr.Spec.SdkAppID, 10),
		"--path=" + cr.Spec.Path,
		"--commands=" + strings.Join(cmds, ","),
		"--sink=" + p.SinkURI,
	}
	if p.DeadLetterSinkURI != "" {
		args = append(args, "--dead-letter-sink="+p.DeadLetterSinkURI)
	}
	args = append(args,
		"--retry="+strconv.Itoa(int(ptr.Deref(d.Retry, 3))),
		"--backoff-policy="+string(policy),
		"--backoff-delay="+duration(d.BackoffDelay, 200*time.Millisecond),
		"--delivery-timeout="+duration(d.Timeout, time.Second),
	)
	if cr.Spec.Auth != nil {
		args = append(args, "--max-clock-skew="+duration(cr.Spec.Auth.MaxClockSkew, time.Minute))
	}
	return append(args,
		fmt.Sprintf("--listen=:%d", CallbackPort),
		fmt.Sprintf("--admin-listen=:%d", AdminPort),
		"--shutdown-delay="+ShutdownDelay.String(),
		"--shutdown-timeout="+ShutdownTimeout.String(),
	)
}

func duration(d *metav1.Duration, def time.Duration) string {
	if d == nil {
		return def.String()
	}
	return d.Duration.String()
}

// Deployment runs the receiver pods, hardened to the restricted Pod Security Standard.
func Deployment(cr *cbv1.CallbackReceiver, p Params) *appsv1ac.DeploymentApplyConfiguration {
	image := p.Image
	if cr.Spec.Image != "" {
		image = cr.Spec.Image
	}
	res := DefaultResources()
	if cr.Spec.Resources != nil {
		res = *cr.Spec.Resources
	}

	container := corev1ac.Container().
		WithName(ContainerName).
		WithImage(image).
		WithCommand("/receiver").
		WithArgs(Args(cr, p)...).
		WithPorts(
			corev1ac.ContainerPort().WithName(CallbackPortName).WithContainerPort(CallbackPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName(AdminPortName).WithContainerPort(AdminPort).WithProtocol(corev1.ProtocolTCP),
		).
		WithResources(resourcesApply(res)).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/readyz").WithPort(intstr.FromString(AdminPortName))).
			WithPeriodSeconds(5).WithTimeoutSeconds(1).WithFailureThreshold(1).WithSuccessThreshold(1)).
		WithLivenessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/healthz").WithPort(intstr.FromString(AdminPortName))).
			WithPeriodSeconds(10).WithTimeoutSeconds(1).WithFailureThreshold(3)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))).
		WithTerminationMessagePolicy(corev1.TerminationMessageFallbackToLogsOnError)

	// The Go runtime keeps its heap under the container's memory limit.
	env := []*corev1ac.EnvVarApplyConfiguration{
		corev1ac.EnvVar().WithName("GOMEMLIMIT").WithValueFrom(corev1ac.EnvVarSource().
			WithResourceFieldRef(corev1ac.ResourceFieldSelector().
				WithContainerName(ContainerName).WithResource("limits.memory").
				// Explicit: the API server would default it, and this operator compares
				// what it applied with what is stored.
				WithDivisor(resource.MustParse("1")))),
	}
	if a := cr.Spec.Auth; a != nil {
		env = append(env, corev1ac.EnvVar().WithName(TokenEnv).WithValueFrom(corev1ac.EnvVarSource().
			WithSecretKeyRef(corev1ac.SecretKeySelector().
				WithName(a.TokenSecretRef.Name).WithKey(a.TokenSecretRef.Key))))
	}
	container.WithEnv(env...)

	template := corev1ac.PodTemplateSpec().
		WithLabels(Labels(cr)).
		WithAnnotations(map[string]string{"kubectl.kubernetes.io/default-container": ContainerName})
	if p.TokenChecksum != "" {
		template.WithAnnotations(map[string]string{TokenChecksumAnnotation: p.TokenChecksum})
	}
	podSpec := corev1ac.PodSpec().
		WithServiceAccountName(cr.Name).
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithTerminationGracePeriodSeconds(GracePeriod).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(RunAsUser).
			WithRunAsGroup(RunAsUser).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container)
	// Spread the pods over nodes, so one node's loss does not take every receiver. Set
	// whatever the replicas, so that scaling does not change the pod template (a rollout).
	podSpec.WithTopologySpreadConstraints(corev1ac.TopologySpreadConstraint().
		WithMaxSkew(1).
		WithTopologyKey(corev1.LabelHostname).
		WithWhenUnsatisfiable(corev1.ScheduleAnyway).
		WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(cr))))
	template.WithSpec(podSpec)

	return appsv1ac.Deployment(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(Replicas(cr)).
			WithRevisionHistoryLimit(3).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(cr))).
			// A new pod is ready before an old one stops: no callback finds no receiver.
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromInt32(1)))).
			WithTemplate(template))
}

func resourcesApply(r corev1.ResourceRequirements) *corev1ac.ResourceRequirementsApplyConfiguration {
	ac := corev1ac.ResourceRequirements()
	if len(r.Requests) > 0 {
		ac.WithRequests(canonical(r.Requests))
	}
	if len(r.Limits) > 0 {
		ac.WithLimits(canonical(r.Limits))
	}
	return ac
}

// canonical re-parses quantities so that "0.5" and "500m" compare equal with what the API
// server stores.
func canonical(l corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(l))
	for k, v := range l {
		out[k] = resource.MustParse(v.String())
	}
	return out
}
