package controllers_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/receiver/contract"
)

const token = "s3cret-token-from-the-console"

// fixture creates what the sample needs: a token Secret and a sink Service, and returns a
// CallbackReceiver (not yet created) that uses both.
func fixture(t *testing.T, ns string) *cbv1.CallbackReceiver {
	t.Helper()
	ctx := context.Background()
	must(t, k8sClient.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "im-callback-token", Namespace: ns},
		StringData: map[string]string{"token": token},
	}))
	must(t, k8sClient.Create(ctx, sinkService(ns, "moderation")))
	return &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: ns},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001,
			Path:     "/im/callback",
			Auth:     &cbv1.AuthSpec{TokenSecretRef: cbv1.SecretKeySelector{Name: "im-callback-token", Key: "token"}},
			Sink: &cbv1.Destination{
				Ref: &cbv1.KReference{APIVersion: "v1", Kind: "Service", Name: "moderation"},
				URI: "/events",
			},
			Delivery: &cbv1.DeliverySpec{DeadLetterSink: &cbv1.Destination{URI: "http://dlq.example.com/dead"}},
			// The tests of the Deployment's children; the StatefulSet's have their own
			// (statefulset_test.go).
			Spool: &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir},
		},
	}
}

// newReceiver creates the fixture in a new namespace, changed by change, runs a manager for
// that namespace and creates the CallbackReceiver.
func newReceiver(t *testing.T, o managerOptions, change func(*cbv1.CallbackReceiver)) (string, *cbv1.CallbackReceiver) {
	t.Helper()
	ns := newNamespace(t)
	cr := fixture(t, ns)
	if change != nil {
		change(cr)
	}
	startManager(t, ns, o)
	must(t, k8sClient.Create(context.Background(), cr))
	return ns, cr
}

// waitForDeployment waits until the receiver's Deployment exists.
func waitForDeployment(g Gomega, cr *cbv1.CallbackReceiver) {
	g.Eventually(func() error {
		return k8sClient.Get(context.Background(), client.ObjectKeyFromObject(cr), &appsv1.Deployment{})
	}).Should(Succeed())
}

func sinkService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get[T client.Object](g Gomega, ns, name string, obj T) T {
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
	return obj
}

func condition(cr *cbv1.CallbackReceiver, t string) metav1.Condition {
	if c := meta.FindStatusCondition(cr.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func container(d *appsv1.Deployment) corev1.Container {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == resources.ContainerName {
			return c
		}
	}
	return corev1.Container{}
}

func arg(d *appsv1.Deployment, name string) string {
	for _, a := range container(d).Args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return "<absent>"
}

func TestCreatesChildrenAsTheBuildersSay(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, nil)

	d := &appsv1.Deployment{}
	g.Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), d) }).Should(Succeed())
	cr = get(g, ns, cr.Name, &cbv1.CallbackReceiver{})

	// The live Deployment holds exactly what the builder makes for these inputs.
	sinkURI := "http://moderation." + ns + ".svc.cluster.local/events"
	checksum := d.Spec.Template.Annotations[resources.TokenChecksumAnnotation]
	want := resources.Deployment(cr, resources.Params{Image: testImage, SinkURI: sinkURI, DeadLetterSinkURI: "http://dlq.example.com/dead", TokenChecksum: checksum})
	applied, err := appsv1ac.ExtractDeployment(d, controllers.FieldManager)
	g.Expect(err).NotTo(HaveOccurred())
	if diff := cmp.Diff(toMap(t, want), toMap(t, applied)); diff != "" {
		t.Fatalf("the live Deployment differs from the builder's (-builder +live):\n%s", diff)
	}

	// And what that means, spelled out.
	g.Expect(metav1.IsControlledBy(d, cr)).To(BeTrue(), "the CallbackReceiver controls its Deployment")
	g.Expect(checksum).To(HavePrefix("sha256:"))
	g.Expect(checksum).NotTo(ContainSubstring(token))
	pod := d.Spec.Template.Spec
	c := container(d)
	g.Expect(c.Image).To(Equal(testImage))
	g.Expect(c.Command).To(Equal([]string{"/receiver"}))
	g.Expect(c.Args).To(ContainElements("--sdkappid=1400000001", "--path=/im/callback",
		"--sink="+sinkURI, "--dead-letter-sink=http://dlq.example.com/dead",
		"--retry=3", "--backoff-policy=exponential", "--backoff-delay=200ms", "--delivery-timeout=1s",
		"--max-clock-skew=1m0s"))
	g.Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "IM_CALLBACK_TOKEN", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "im-callback-token"}, Key: "token"},
	}}))
	g.Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
	g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
	g.Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
	g.Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
	g.Expect(c.SecurityContext.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}))
	g.Expect(*pod.AutomountServiceAccountToken).To(BeFalse())
	g.Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
	g.Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
	g.Expect(c.ReadinessProbe.HTTPGet.Port).To(Equal(intstr.FromString("admin")))
	g.Expect(*pod.TerminationGracePeriodSeconds).To(BeNumerically(">", int64(contract.DefaultShutdownTimeout/time.Second)))
	g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("50m"))
	g.Expect(c.Resources.Requests.Memory().String()).To(Equal("64Mi"))
	g.Expect(c.Resources.Limits.Memory().String()).To(Equal("256Mi"))
	g.Expect(*d.Spec.Replicas).To(Equal(int32(2)))
	g.Expect(d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue()).To(Equal(0), "a new pod is ready before an old one stops")
	g.Expect(d.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "callback-operator"))

	sa := get(g, ns, cr.Name, &corev1.ServiceAccount{})
	g.Expect(*sa.AutomountServiceAccountToken).To(BeFalse())
	g.Expect(metav1.IsControlledBy(sa, cr)).To(BeTrue())

	svc := get(g, ns, cr.Name, &corev1.Service{})
	g.Expect(metav1.IsControlledBy(svc, cr)).To(BeTrue())
	g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
	g.Expect(svc.Spec.Ports).To(HaveLen(1))
	g.Expect(svc.Spec.Ports[0].Port).To(Equal(int32(80)))
	g.Expect(svc.Spec.Ports[0].Name).To(Equal("http"))
	g.Expect(svc.Spec.Ports[0].TargetPort).To(Equal(intstr.FromInt32(resources.CallbackPort)))
	g.Expect(svc.Spec.Selector).To(Equal(d.Spec.Selector.MatchLabels))

	// Two replicas by default: a PodDisruptionBudget keeps one through node drains.
	pdb := get(g, ns, cr.Name, &policyv1.PodDisruptionBudget{})
	g.Expect(metav1.IsControlledBy(pdb, cr)).To(BeTrue())
	g.Expect(pdb.Spec.MaxUnavailable.IntValue()).To(Equal(1))

	// Status tells where callbacks go and where events go.
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(cr.Status.ObservedGeneration).To(Equal(cr.Generation))
		g.Expect(cr.Status.URL).To(Equal("http://blacklist." + ns + ".svc.cluster.local/im/callback"))
		g.Expect(cr.Status.SinkURI).To(Equal(sinkURI))
		g.Expect(cr.Status.DeadLetterSinkURI).To(Equal("http://dlq.example.com/dead"))
		g.Expect(cr.Status.Selector).To(Equal("app.kubernetes.io/instance=blacklist,app.kubernetes.io/name=callback-receiver"))
		g.Expect(condition(cr, cbv1.ConditionSinkResolved).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(cr, cbv1.ConditionTokenResolved).Reason).To(Equal(cbv1.ReasonTokenFound))
		// No Deployment controller runs here: the Deployment is never observed, so never available.
		g.Expect(condition(cr, cbv1.ConditionAvailable).Reason).To(Equal(cbv1.ReasonRollingOut))
		g.Expect(condition(cr, cbv1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(condition(cr, cbv1.ConditionReady).Reason).To(Equal(cbv1.ReasonRollingOut))
	}).Should(Succeed())

	// kubectl describe tells the story: one event lists what was created.
	g.Eventually(func(g Gomega) {
		evs := &eventsv1.EventList{}
		g.Expect(k8sClient.List(ctx, evs, client.InNamespace(ns))).To(Succeed())
		var notes []string
		for _, e := range evs.Items {
			if e.Regarding.Name == cr.Name && e.Reason == "Applied" {
				notes = append(notes, e.Note)
			}
		}
		g.Expect(notes).To(ContainElement("Created ServiceAccount/blacklist, Created Service/blacklist, Created Deployment/blacklist, Created PodDisruptionBudget/blacklist"))
	}).Should(Succeed())
}

func TestDeploymentAndServiceFollowTheSpec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns, _ := newReceiver(t, managerOptions{allowImageOverride: true}, nil)

	cases := []struct {
		name   string
		change func(*cbv1.CallbackReceiverSpec)
		check  func(g Gomega, d *appsv1.Deployment, svc *corev1.Service)
	}{
		{"sdkAppID", func(s *cbv1.CallbackReceiverSpec) { s.SdkAppID = 1400000999 },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(arg(d, "sdkappid")).To(Equal("1400000999"))
			}},
		{"path", func(s *cbv1.CallbackReceiverSpec) { s.Path = "/im/v2/callback" },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(arg(d, "path")).To(Equal("/im/v2/callback"))
			}},
		{"commands", func(s *cbv1.CallbackReceiverSpec) {
			s.Commands = []cbv1.Command{"Sns.CallbackBlackListDelete", "Sns.CallbackFriendAdd"}
		}, func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
			g.Expect(arg(d, "commands")).To(Equal("Sns.CallbackBlackListDelete,Sns.CallbackFriendAdd"))
		}},
		{"delivery", func(s *cbv1.CallbackReceiverSpec) {
			s.Delivery.Retry = ptr.To(int32(7))
			s.Delivery.BackoffPolicy = cbv1.BackoffLinear
			s.Delivery.BackoffDelay = &metav1.Duration{Duration: 2 * time.Second}
			s.Delivery.Timeout = &metav1.Duration{Duration: 500 * time.Millisecond}
			s.Delivery.DeadLetterSink = nil
		}, func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
			g.Expect([]string{arg(d, "retry"), arg(d, "backoff-policy"), arg(d, "backoff-delay"), arg(d, "delivery-timeout"), arg(d, "dead-letter-sink")}).
				To(Equal([]string{"7", "linear", "2s", "500ms", "<absent>"}))
		}},
		{"max clock skew", func(s *cbv1.CallbackReceiverSpec) { s.Auth.MaxClockSkew = &metav1.Duration{Duration: 30 * time.Second} },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(arg(d, "max-clock-skew")).To(Equal("30s"))
			}},
		{"sink uri", func(s *cbv1.CallbackReceiverSpec) { s.Sink.URI = "/v2/events" },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(arg(d, "sink")).To(Equal("http://moderation." + ns + ".svc.cluster.local/v2/events"))
			}},
		{"image", func(s *cbv1.CallbackReceiverSpec) { s.Image = "registry.example.com/receiver:v9" },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(container(d).Image).To(Equal("registry.example.com/receiver:v9"))
			}},
		{"resources", func(s *cbv1.CallbackReceiverSpec) {
			s.Resources = &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.5")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
			}
		}, func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
			r := container(d).Resources
			g.Expect(r.Requests.Cpu().String()).To(Equal("500m"))
			g.Expect(r.Requests.Memory().IsZero()).To(BeTrue())
			g.Expect(r.Limits.Memory().String()).To(Equal("1Gi"))
		}},
		{"replicas", func(s *cbv1.CallbackReceiverSpec) { s.Replicas = ptr.To(int32(3)) },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(*d.Spec.Replicas).To(Equal(int32(3)))
				g.Expect(d.Spec.Template.Spec.TopologySpreadConstraints).To(HaveLen(1))
				pdb := get(g, ns, "blacklist", &policyv1.PodDisruptionBudget{})
				g.Expect(pdb.Spec.MaxUnavailable.IntValue()).To(Equal(1))
			}},
		{"back to one replica", func(s *cbv1.CallbackReceiverSpec) { s.Replicas = ptr.To(int32(1)) },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(*d.Spec.Replicas).To(Equal(int32(1)))
				err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "blacklist"}, &policyv1.PodDisruptionBudget{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the budget is deleted: %v", err)
			}},
		{"service", func(s *cbv1.CallbackReceiverSpec) {
			s.Service = &cbv1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Port: 8088, Annotations: map[string]string{"example.com/lb": "internal"}}
		}, func(g Gomega, _ *appsv1.Deployment, svc *corev1.Service) {
			g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))
			g.Expect(svc.Spec.Ports[0].Port).To(Equal(int32(8088)))
			g.Expect(svc.Annotations).To(HaveKeyWithValue("example.com/lb", "internal"))
			cr := get(g, ns, "blacklist", &cbv1.CallbackReceiver{})
			g.Expect(cr.Status.URL).To(Equal("http://blacklist." + ns + ".svc.cluster.local:8088/im/v2/callback"))
		}},
		{"auth off", func(s *cbv1.CallbackReceiverSpec) { s.Auth = nil },
			func(g Gomega, d *appsv1.Deployment, _ *corev1.Service) {
				g.Expect(slices.ContainsFunc(container(d).Env, func(e corev1.EnvVar) bool { return e.Name == "IM_CALLBACK_TOKEN" })).To(BeFalse())
				g.Expect(d.Spec.Template.Annotations).NotTo(HaveKey(resources.TokenChecksumAnnotation))
				g.Expect(arg(d, "max-clock-skew")).To(Equal("<absent>"))
				cr := get(g, ns, "blacklist", &cbv1.CallbackReceiver{})
				g.Expect(condition(cr, cbv1.ConditionTokenResolved).Reason).To(Equal(cbv1.ReasonAuthenticationDisabled))
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Eventually(func() error {
				cr := &cbv1.CallbackReceiver{}
				if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "blacklist"}, cr); err != nil {
					return err
				}
				c.change(&cr.Spec)
				return k8sClient.Update(ctx, cr)
			}).Should(Succeed())
			g.Eventually(func(g Gomega) {
				d := get(g, ns, "blacklist", &appsv1.Deployment{})
				svc := get(g, ns, "blacklist", &corev1.Service{})
				c.check(g, d, svc)
			}).Should(Succeed())
		})
	}
}

// TestImageOverrideNeedsPermission: without --allow-image-override, spec.image does not run
// (it could read the token Secret); the operator's image does, and the status says why.
func TestImageOverrideNeedsPermission(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, cr := newReceiver(t, managerOptions{}, func(cr *cbv1.CallbackReceiver) { cr.Spec.Image = "registry.example.com/mine:v1" })
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		c := condition(got, cbv1.ConditionImageResolved)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(cbv1.ReasonImageOverrideNotAllowed))
		g.Expect(c.Message).To(ContainSubstring("--allow-image-override"))
		g.Expect(condition(got, cbv1.ConditionReady).Reason).To(Equal(cbv1.ReasonImageOverrideNotAllowed))
		g.Expect(container(get(g, ns, cr.Name, &appsv1.Deployment{})).Image).To(Equal(testImage))
	}).Should(Succeed())

	// Removing spec.image resolves it.
	got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
	got.Spec.Image = ""
	must(t, k8sClient.Update(context.Background(), got))
	g.Eventually(func(g Gomega) {
		c := condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionImageResolved)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(cbv1.ReasonOperatorImage))
	}).Should(Succeed())
}

func TestRotatedTokenRollsThePods(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, nil)

	var before string
	g.Eventually(func(g Gomega) {
		before = get(g, ns, cr.Name, &appsv1.Deployment{}).Spec.Template.Annotations[resources.TokenChecksumAnnotation]
		g.Expect(before).NotTo(BeEmpty())
	}).Should(Succeed())

	// A label change is not a new token: the pods stay.
	secret := get(g, ns, "im-callback-token", &corev1.Secret{})
	secret.Labels = map[string]string{"rotated": "no"}
	must(t, k8sClient.Update(ctx, secret))
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.Deployment{}).Spec.Template.Annotations).To(HaveKeyWithValue(resources.TokenChecksumAnnotation, before))
	}, 2*time.Second).Should(Succeed())

	secret = get(g, ns, "im-callback-token", &corev1.Secret{})
	secret.Data["token"] = []byte("a-new-token")
	must(t, k8sClient.Update(ctx, secret))
	var after string
	g.Eventually(func(g Gomega) {
		after = get(g, ns, cr.Name, &appsv1.Deployment{}).Spec.Template.Annotations[resources.TokenChecksumAnnotation]
		g.Expect(after).To(HavePrefix("sha256:"))
		g.Expect(after).NotTo(Equal(before))
	}).Should(Succeed())

	// The same token with the newline a file leaves is the same token for the receiver
	// (authtoken.Parse on both sides), so the pods stay.
	secret = get(g, ns, "im-callback-token", &corev1.Secret{})
	secret.Data["token"] = []byte("a-new-token\n")
	must(t, k8sClient.Update(ctx, secret))
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.Deployment{}).Spec.Template.Annotations).To(HaveKeyWithValue(resources.TokenChecksumAnnotation, after))
		g.Expect(condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionTokenResolved).Reason).To(Equal(cbv1.ReasonTokenFound))
	}, 2*time.Second).Should(Succeed())

	// A blank token is refused, and the running Deployment is left as it is: its pods would
	// refuse to start with it.
	secret = get(g, ns, "im-callback-token", &corev1.Secret{})
	secret.Data["token"] = []byte(" \n")
	must(t, k8sClient.Update(ctx, secret))
	g.Eventually(func(g Gomega) {
		c := condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionTokenResolved)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(cbv1.ReasonTokenEmpty))
	}).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.Deployment{}).Spec.Template.Annotations).To(HaveKeyWithValue(resources.TokenChecksumAnnotation, after))
	}, 2*time.Second).Should(Succeed())
}

func TestMissingTokenSecretIsAConditionNotACrashLoop(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	must(t, k8sClient.Create(ctx, sinkService(ns, "moderation")))
	cr := &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: ns},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001, Path: "/im/callback",
			Auth:  &cbv1.AuthSpec{TokenSecretRef: cbv1.SecretKeySelector{Name: "later", Key: "token"}},
			Sink:  &cbv1.Destination{Ref: &cbv1.KReference{APIVersion: "v1", Kind: "Service", Name: "moderation"}},
			Spool: &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir},
		},
	}
	startManager(t, ns, managerOptions{})
	must(t, k8sClient.Create(ctx, cr))

	expectToken := func(reason string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
			c := condition(cr, cbv1.ConditionTokenResolved)
			g.Expect(c.Reason).To(Equal(reason))
			if reason != cbv1.ReasonTokenFound {
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(condition(cr, cbv1.ConditionReady).Reason).To(Equal(reason))
				g.Expect(condition(cr, cbv1.ConditionReady).Message).To(ContainSubstring("later"))
			}
		}).Should(Succeed())
	}
	expectToken(cbv1.ReasonTokenSecretNotFound)
	// No Deployment whose pods could not start; the Service and ServiceAccount are there.
	g.Consistently(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &appsv1.Deployment{}))
	}, time.Second).Should(BeTrue())
	get(g, ns, cr.Name, &corev1.Service{})

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: ns}, StringData: map[string]string{"other": "x"}}
	must(t, k8sClient.Create(ctx, secret))
	expectToken(cbv1.ReasonTokenKeyNotFound)

	secret = get(g, ns, "later", &corev1.Secret{})
	secret.Data["token"] = []byte{}
	must(t, k8sClient.Update(ctx, secret))
	expectToken(cbv1.ReasonTokenEmpty)

	// Only white space (a file holding a newline) is as empty as nothing: the receiver
	// would refuse it at start, so no Deployment is made.
	secret = get(g, ns, "later", &corev1.Secret{})
	secret.Data["token"] = []byte("\n \t")
	must(t, k8sClient.Update(ctx, secret))
	expectToken(cbv1.ReasonTokenEmpty)
	g.Consistently(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &appsv1.Deployment{}))
	}, time.Second).Should(BeTrue())

	secret = get(g, ns, "later", &corev1.Secret{})
	secret.Data["token"] = []byte(token)
	must(t, k8sClient.Update(ctx, secret))
	expectToken(cbv1.ReasonTokenFound)
	waitForDeployment(g, cr)
}

func TestSinkServiceRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, nil)

	expectSink := func(status metav1.ConditionStatus, reason string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			c := condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionSinkResolved)
			g.Expect(c.Status).To(Equal(status))
			g.Expect(c.Reason).To(Equal(reason))
		}).Should(Succeed())
	}
	expectSink(metav1.ConditionTrue, cbv1.ReasonResolved)
	d := get(g, ns, cr.Name, &appsv1.Deployment{})

	must(t, k8sClient.Delete(ctx, sinkService(ns, "moderation")))
	expectSink(metav1.ConditionFalse, "SinkNotFound")
	cond := condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionSinkResolved)
	g.Expect(cond.Message).To(ContainSubstring("Service " + ns + "/moderation does not exist"))
	// The receiver keeps running as it was: it still answers callbacks and retries delivery.
	g.Expect(get(g, ns, cr.Name, &appsv1.Deployment{}).ResourceVersion).To(Equal(d.ResourceVersion))

	// A Service with another port changes the URI; the watch, not a poll, brings it.
	svc := sinkService(ns, "moderation")
	svc.Spec.Ports[0].Port = 8081
	must(t, k8sClient.Create(ctx, svc))
	expectSink(metav1.ConditionTrue, cbv1.ReasonResolved)
	g.Eventually(func(g Gomega) {
		g.Expect(arg(get(g, ns, cr.Name, &appsv1.Deployment{}), "sink")).To(Equal("http://moderation." + ns + ".svc.cluster.local:8081/events"))
	}).Should(Succeed())
}

func TestAddressableSink(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	cr := fixture(t, ns)
	cr.Spec.Sink = &cbv1.Destination{
		Ref: &cbv1.KReference{APIVersion: testSinkGVK.GroupVersion().String(), Kind: testSinkGVK.Kind, Name: "broker"},
		URI: "/im",
	}
	startManager(t, ns, managerOptions{})

	ts := &unstructured.Unstructured{}
	ts.SetGroupVersionKind(testSinkGVK)
	ts.SetNamespace(ns)
	ts.SetName("broker")
	must(t, k8sClient.Create(ctx, ts))
	must(t, k8sClient.Create(ctx, cr))

	g.Eventually(func(g Gomega) {
		c := condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionSinkResolved)
		g.Expect(c.Reason).To(Equal("SinkNotAddressable"))
		g.Expect(c.Message).To(ContainSubstring("has no status.address.url"))
	}).Should(Succeed())

	setURL := func(u string) {
		t.Helper()
		g.Eventually(func() error {
			ts := &unstructured.Unstructured{}
			ts.SetGroupVersionKind(testSinkGVK)
			if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "broker"}, ts); err != nil {
				return err
			}
			_ = unstructured.SetNestedField(ts.Object, u, "status", "address", "url")
			return k8sClient.Status().Update(ctx, ts)
		}).Should(Succeed())
	}
	setURL("http://broker-ingress.knative-eventing.svc.cluster.local/" + ns + "/default")
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(condition(cr, cbv1.ConditionSinkResolved).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(cr.Status.SinkURI).To(Equal("http://broker-ingress.knative-eventing.svc.cluster.local/im"))
		g.Expect(arg(get(g, ns, cr.Name, &appsv1.Deployment{}), "sink")).To(Equal(cr.Status.SinkURI))
	}).Should(Succeed())

	// The sink moves: the Deployment follows.
	setURL("https://elsewhere.example.com/base/")
	g.Eventually(func(g Gomega) {
		g.Expect(arg(get(g, ns, cr.Name, &appsv1.Deployment{}), "sink")).To(Equal("https://elsewhere.example.com/im"))
	}).Should(Succeed())
}

func TestScaleAndAvailability(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, nil)
	waitForDeployment(g, cr)

	// kubectl scale cbr blacklist --replicas=3
	scaleTo(g, cr, 3)
	g.Eventually(func(g Gomega) {
		g.Expect(*get(g, ns, cr.Name, &appsv1.Deployment{}).Spec.Replicas).To(Equal(int32(3)))
	}).Should(Succeed())

	// What the Deployment controller would report once the pods are ready.
	setDeploymentStatus := func(ready int32, available corev1.ConditionStatus) {
		t.Helper()
		g.Eventually(func() error {
			d := &appsv1.Deployment{}
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), d); err != nil {
				return err
			}
			d.Status = appsv1.DeploymentStatus{
				ObservedGeneration: d.Generation, Replicas: 3, ReadyReplicas: ready, AvailableReplicas: ready, UpdatedReplicas: 3,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: available, Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability."}},
			}
			return k8sClient.Status().Update(ctx, d)
		}).Should(Succeed())
	}
	setDeploymentStatus(3, corev1.ConditionTrue)
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(cr.Status.Replicas).To(Equal(int32(3)))
		g.Expect(cr.Status.ReadyReplicas).To(Equal(int32(3)))
		g.Expect(condition(cr, cbv1.ConditionAvailable).Status).To(Equal(metav1.ConditionTrue))
		ready := condition(cr, cbv1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(ready.Message).To(ContainSubstring(cr.Status.URL))
		// The scale subresource reports what runs.
		s := &autoscalingv1.Scale{}
		g.Expect(k8sClient.SubResource("scale").Get(ctx, cr, s)).To(Succeed())
		g.Expect(s.Status.Replicas).To(Equal(int32(3)))
		g.Expect(s.Status.Selector).To(Equal(cr.Status.Selector))
	}).Should(Succeed())

	setDeploymentStatus(0, corev1.ConditionFalse)
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(condition(cr, cbv1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(condition(cr, cbv1.ConditionAvailable).Message).To(ContainSubstring("0 of 3 receiver pods are ready"))
	}).Should(Succeed())

	scaleTo(g, cr, 0)
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(condition(cr, cbv1.ConditionAvailable).Reason).To(Equal(cbv1.ReasonScaledToZero))
		g.Expect(condition(cr, cbv1.ConditionReady).Message).To(ContainSubstring("kubectl scale cbr blacklist --replicas=2"))
	}).Should(Succeed())
}

// scaleTo does what kubectl scale does: read the scale subresource, write it back.
func scaleTo(g Gomega, cr *cbv1.CallbackReceiver, replicas int32) {
	g.Eventually(func() error {
		scale := &autoscalingv1.Scale{}
		if err := k8sClient.SubResource("scale").Get(context.Background(), cr, scale); err != nil {
			return err
		}
		scale.Spec.Replicas = replicas
		return k8sClient.SubResource("scale").Update(context.Background(), cr, client.WithSubResourceBody(scale))
	}).Should(Succeed())
}

// TestIdleWritesNothing: once reconciled, neither repeated reconciles nor the scraper write
// to the children or the resource.
func TestIdleWritesNothing(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{scrapeInterval: 100 * time.Millisecond}, func(cr *cbv1.CallbackReceiver) {
		cr.Spec.Replicas = ptr.To(int32(2)) // with a PodDisruptionBudget too
	})
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(cr.Status.ObservedGeneration).To(Equal(cr.Generation))
		get(g, ns, cr.Name, &policyv1.PodDisruptionBudget{})
	}).Should(Succeed())
	time.Sleep(time.Second) // let the reconciles that the creations themselves caused settle

	versions := func(g Gomega) map[string]string {
		return map[string]string{
			"Deployment":          get(g, ns, cr.Name, &appsv1.Deployment{}).ResourceVersion,
			"Service":             get(g, ns, cr.Name, &corev1.Service{}).ResourceVersion,
			"ServiceAccount":      get(g, ns, cr.Name, &corev1.ServiceAccount{}).ResourceVersion,
			"PodDisruptionBudget": get(g, ns, cr.Name, &policyv1.PodDisruptionBudget{}).ResourceVersion,
		}
	}
	before := versions(g)
	crBefore := get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).ResourceVersion

	// Idle: the scraper runs every 100ms and must not write.
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).ResourceVersion).To(Equal(crBefore))
		g.Expect(versions(g)).To(Equal(before))
	}, 3*time.Second, 100*time.Millisecond).Should(Succeed())

	// Reconcile again and again (an annotation change triggers one): still nothing written
	// to the children.
	for i := range 10 {
		g.Eventually(func() error {
			cr := &cbv1.CallbackReceiver{}
			if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "blacklist"}, cr); err != nil {
				return err
			}
			cr.Annotations = map[string]string{"touch": string(rune('a' + i))}
			return k8sClient.Update(ctx, cr)
		}).Should(Succeed())
	}
	g.Consistently(func(g Gomega) { g.Expect(versions(g)).To(Equal(before)) }, 2*time.Second).Should(Succeed())
}

// TestDriftIsRepaired: a child changed behind the operator's back is put back.
func TestDriftIsRepaired(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, nil)
	waitForDeployment(g, cr)

	d := get(g, ns, cr.Name, &appsv1.Deployment{})
	d.Spec.Replicas = ptr.To(int32(5))
	d.Spec.Template.Spec.Containers[0].Image = "evil.example.com/receiver:latest"
	must(t, k8sClient.Update(ctx, d, client.FieldOwner("kubectl-edit")))
	g.Eventually(func(g Gomega) {
		d := get(g, ns, cr.Name, &appsv1.Deployment{})
		g.Expect(*d.Spec.Replicas).To(Equal(int32(2)))
		g.Expect(container(d).Image).To(Equal(testImage))
	}).Should(Succeed())
}

// toMap turns an object into plain JSON values, for comparisons that ignore Go types.
func toMap(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
