// Package resources builds the child objects of a CallbackReceiver as server-side apply
// configurations. Every function here is pure: the same inputs give the same objects, so the
// reconciler can compare what it would apply with what it applied before and write nothing
// when they are equal.
package resources

import (
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/utils/ptr"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Ports of the receiver container: the receiver's default ports, as the manager writes no
// --listen flags. The admin port is not exposed by the Service: the manager scrapes it at
// each pod's address.
const (
	ContainerName    = "receiver"
	CallbackPort     = contract.DefaultCallbackPort
	AdminPort        = contract.DefaultAdminPort
	CallbackPortName = "http"
	AdminPortName    = "admin"
	// CallbackTLSPortName names the callback port when the receiver serves HTTPS.
	CallbackTLSPortName = "https"

	// GracePeriod leaves the receiver time to finish its own shutdown (drain and final
	// scrape, bounded by its default --shutdown-timeout) and exit before the kubelet kills it.
	GracePeriod = int64(contract.DefaultShutdownTimeout/time.Second) + 10

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
	// Image is the receiver's image, as the controller chose it (the operator's own, or
	// spec.image where the operator allows overrides).
	Image string
	// SinkURI and DeadLetterSinkURI are the resolved destinations ("" for none).
	SinkURI, DeadLetterSinkURI string
	// Routes and Decisions are spec.routes' sinks and spec.decisions' services, resolved. A
	// decision service that did not resolve (empty URI) still gets a flag, to an address
	// that cannot answer, so that the receiver applies the failure policy to its commands.
	Routes, Decisions []cbv1.ResolvedRoute
	// TokenChecksum identifies the token's value; empty without spec.auth.
	TokenChecksum string
}

// SelectorLabels select the pods of one CallbackReceiver. They never change, as a
// Deployment's selector cannot.
func SelectorLabels(cr *cbv1.CallbackReceiver) map[string]string {
	return map[string]string{LabelName: NameValue, LabelInstance: cr.Name}
}

// Selector is SelectorLabels as a label selector string, for the scale subresource.
func Selector(cr *cbv1.CallbackReceiver) string { return labels.Set(SelectorLabels(cr)).String() }

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

// Service routes callbacks to the receiver pods' callback port. tls says whether the pods
// that run serve HTTPS (see ServesTLS): it names the port and chooses its default number.
// The target is the container port's number, not its name, which changes with TLS: while
// pods of both kinds run during a rollout, every one of them stays an endpoint.
func Service(cr *cbv1.CallbackReceiver, tls bool) *corev1ac.ServiceApplyConfiguration {
	svc := serviceSpec(cr, tls)
	ac := corev1ac.Service(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(svc.Type).
			WithSelector(SelectorLabels(cr)).
			WithPorts(corev1ac.ServicePort().
				WithName(CallbackPortNameFor(tls)).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(svc.Port).
				WithTargetPort(intstr.FromInt32(CallbackPort))))
	if len(svc.Annotations) > 0 {
		ac.WithAnnotations(svc.Annotations)
	}
	return ac
}

// ServicePort is the port the Service listens on: spec.service.port, else 443 when the
// receiver serves HTTPS, else 80.
func ServicePort(cr *cbv1.CallbackReceiver, tls bool) int32 { return serviceSpec(cr, tls).Port }

// CallbackPortNameFor names the callback port of the container and the Service.
func CallbackPortNameFor(tls bool) string {
	if tls {
		return CallbackTLSPortName
	}
	return CallbackPortName
}

func serviceSpec(cr *cbv1.CallbackReceiver, tls bool) cbv1.ServiceSpec {
	s := cbv1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Port: 80}
	if tls {
		s.Port = 443
	}
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
func Replicas(cr *cbv1.CallbackReceiver) int32 { return ptr.Deref(cr.Spec.Replicas, DefaultReplicas) }

// DefaultReplicas applies when spec.replicas is not set (the schema sets it).
const DefaultReplicas = 2

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

// Args are the receiver's flags for a resource: only those the spec (or a resolved sink)
// sets, so that the receiver's own defaults are the one copy of what an unset field means.
func Args(cr *cbv1.CallbackReceiver, p Params) []string {
	args := []string{
		contract.Arg(contract.FlagSdkAppID, strconv.FormatInt(cr.Spec.SdkAppID, 10)),
		contract.Arg(contract.FlagPath, cr.Spec.Path),
	}
	if len(cr.Spec.Commands) > 0 {
		args = append(args, contract.Arg(contract.FlagCommands, strings.Join(commandNames(cr.Spec.Commands), ",")))
	}
	if p.SinkURI != "" {
		args = append(args, contract.Arg(contract.FlagSink, p.SinkURI))
	}
	for _, r := range p.Routes {
		args = append(args, contract.Arg(contract.FlagRoute, contract.RouteValue(commandNames(r.Commands), r.URI)))
	}
	for _, d := range p.Decisions {
		uri := d.URI
		if uri == "" {
			uri = UnresolvedDecisionURI
		}
		args = append(args, contract.Arg(contract.FlagDecision, contract.RouteValue(commandNames(d.Commands), uri)))
	}
	if dp := cr.Spec.DecisionPolicy; dp != nil {
		args = appendDuration(args, contract.FlagDecisionTimeout, dp.Timeout)
		if dp.FailurePolicy != "" {
			args = append(args, contract.Arg(contract.FlagDecisionFailure, strings.ToLower(string(dp.FailurePolicy))))
		}
	}
	if p.DeadLetterSinkURI != "" {
		args = append(args, contract.Arg(contract.FlagDeadLetterSink, p.DeadLetterSinkURI))
	}
	if d := cr.Spec.Delivery; d != nil {
		if d.Retry != nil {
			args = append(args, contract.Arg(contract.FlagRetry, strconv.Itoa(int(*d.Retry))))
		}
		if d.BackoffPolicy != "" {
			args = append(args, contract.Arg(contract.FlagBackoffPolicy, string(d.BackoffPolicy)))
		}
		args = appendDuration(args, contract.FlagBackoffDelay, d.BackoffDelay)
		args = appendDuration(args, contract.FlagDeliveryTimeout, d.Timeout)
	}
	if a := cr.Spec.Auth; a != nil {
		args = appendDuration(args, contract.FlagMaxClockSkew, a.MaxClockSkew)
	}
	if cr.Spec.TLS != nil {
		args = append(args,
			contract.Arg(contract.FlagTLSCertFile, TLSCertFile),
			contract.Arg(contract.FlagTLSKeyFile, TLSKeyFile))
	}
	return append(args, spoolArgs(cr)...)
}

// UnresolvedDecisionURI stands for a decision service that does not resolve: the .invalid
// top-level domain never resolves (RFC 2606), so the receiver's failure policy answers.
const UnresolvedDecisionURI = "http://decision-service-unresolved.invalid/"

func commandNames(cmds []cbv1.Command) []string {
	out := make([]string, 0, len(cmds))
	for _, c := range cmds {
		out = append(out, string(c))
	}
	return out
}

func appendDuration(args []string, flag string, d *metav1.Duration) []string {
	if d == nil {
		return args
	}
	return append(args, contract.Arg(flag, d.Duration.String()))
}

// podTemplate is the receiver pod, hardened to the restricted Pod Security Standard, as
// the Deployment and the StatefulSet run it.
func podTemplate(cr *cbv1.CallbackReceiver, p Params) *corev1ac.PodTemplateSpecApplyConfiguration {
	res := DefaultResources()
	if cr.Spec.Resources != nil {
		res = *cr.Spec.Resources
	}

	container := corev1ac.Container().
		WithName(ContainerName).
		WithImage(p.Image).
		WithCommand("/receiver").
		WithArgs(Args(cr, p)...).
		WithPorts(
			corev1ac.ContainerPort().WithName(CallbackPortNameFor(cr.Spec.TLS != nil)).WithContainerPort(CallbackPort).WithProtocol(corev1.ProtocolTCP),
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
		env = append(env, corev1ac.EnvVar().WithName(contract.TokenEnv).WithValueFrom(corev1ac.EnvVarSource().
			WithSecretKeyRef(corev1ac.SecretKeySelector().
				WithName(a.TokenSecretRef.Name).WithKey(a.TokenSecretRef.Key))))
	}
	container.WithEnv(env...)
	podSecurity := corev1ac.PodSecurityContext().
		WithRunAsNonRoot(true).
		WithRunAsUser(RunAsUser).
		WithRunAsGroup(RunAsUser).
		WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
	var volumes []*corev1ac.VolumeApplyConfiguration
	if v, m := spoolVolume(cr); m != nil {
		if v != nil { // a claim of the StatefulSet's volumeClaimTemplates otherwise
			volumes = append(volumes, v)
		}
		container.WithVolumeMounts(m)
	}
	if SpoolOnClaim(cr) {
		// The claim's files belong to the receiver's group on volumes that support it; the
		// walk happens only when the volume's root does not have it yet.
		podSecurity.WithFSGroup(RunAsUser).WithFSGroupChangePolicy(corev1.FSGroupChangeOnRootMismatch)
	}
	if t := cr.Spec.TLS; t != nil {
		v, m := tlsVolume(t)
		volumes = append(volumes, v)
		container.WithVolumeMounts(m)
		// The kubelet gives the Secret's files this group, so the receiver (not root) can
		// read a key that others cannot.
		podSecurity.WithFSGroup(RunAsUser)
	}

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
		WithTerminationGracePeriodSeconds(GracePeriodFor(cr)).
		WithSecurityContext(podSecurity).
		WithContainers(container)
	if len(volumes) > 0 {
		podSpec.WithVolumes(volumes...)
	}
	// Spread the pods over nodes, so one node's loss does not take every receiver. Set
	// whatever the replicas, so that scaling does not change the pod template (a rollout).
	podSpec.WithTopologySpreadConstraints(corev1ac.TopologySpreadConstraint().
		WithMaxSkew(1).
		WithTopologyKey(corev1.LabelHostname).
		WithWhenUnsatisfiable(corev1.ScheduleAnyway).
		WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(cr))))
	template.WithSpec(podSpec)
	return template
}

// Deployment runs the receiver pods of the spool types that need no claim (EmptyDir, None).
func Deployment(cr *cbv1.CallbackReceiver, p Params) *appsv1ac.DeploymentApplyConfiguration {
	template := podTemplate(cr, p)
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
