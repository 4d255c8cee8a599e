package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/internal/testenv"
)

const tlsSecretName = "im-callback-tls"

// certificate makes a key pair valid from now-1h for validFor.
func certificate(t *testing.T, validFor time.Duration, hosts ...string) (crt, key []byte) {
	t.Helper()
	crt, key, err := testenv.SelfSignedCert(hosts, time.Now().Add(-time.Hour), time.Now().Add(validFor))
	must(t, err)
	return crt, key
}

// putTLSSecret creates or replaces the TLS Secret's data, as cert-manager does on renewal.
func putTLSSecret(t *testing.T, ns string, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tlsSecretName, Namespace: ns}}
	err := k8sClient.Get(ctx, client.ObjectKeyFromObject(s), s)
	switch {
	case apierrors.IsNotFound(err):
		s.Type, s.Data = corev1.SecretTypeOpaque, data
		must(t, k8sClient.Create(ctx, s))
	case err == nil:
		s.Data = data
		must(t, k8sClient.Update(ctx, s))
	default:
		t.Fatal(err)
	}
}

func expectTLS(g *WithT, ns string, status metav1.ConditionStatus, reason string, mentions ...string) {
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, "blacklist", &cbv1.CallbackReceiver{})
		c := condition(cr, cbv1.ConditionTLSResolved)
		g.Expect(c.Status).To(Equal(status))
		g.Expect(c.Reason).To(Equal(reason))
		for _, m := range mentions {
			g.Expect(c.Message).To(ContainSubstring(m))
		}
		g.Expect(c.ObservedGeneration).To(Equal(cr.Generation))
	}).Should(Succeed())
}

func withTLS(cr *cbv1.CallbackReceiver) { cr.Spec.TLS = &cbv1.TLSSpec{SecretName: tlsSecretName} }

// TestTLSSecretLaterThenRenewedThenBroken: a receiver waits for its certificate; once there,
// it runs with the Secret as a volume; a renewal changes nothing in the pod template (the
// kubelet refreshes the volume, the receiver reloads); a broken replacement leaves the
// running receiver as it is.
func TestTLSSecretLaterThenRenewedThenBroken(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, withTLS)

	expectTLS(g, ns, metav1.ConditionFalse, cbv1.ReasonTLSSecretNotFound, "kubectl create secret tls "+tlsSecretName)
	g.Consistently(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &appsv1.Deployment{}))
	}, time.Second).Should(BeTrue(), "a Deployment whose pods could not mount their certificate")
	g.Expect(condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionReady).Reason).To(Equal(cbv1.ReasonTLSSecretNotFound))

	// cert-manager issues the certificate: the Secret's watch, not a poll, brings the receiver.
	crt, key := certificate(t, 90*24*time.Hour, "blacklist."+ns+".svc", "im.example.com")
	putTLSSecret(t, ns, map[string][]byte{"tls.crt": crt, "tls.key": key})
	expectTLS(g, ns, metav1.ConditionTrue, cbv1.ReasonCertificateFound, "DNS names blacklist."+ns+".svc, im.example.com")
	d := get(g, ns, cr.Name, &appsv1.Deployment{})
	pod := d.Spec.Template.Spec
	g.Expect(pod.Volumes).To(ContainElement(corev1.Volume{Name: resources.TLSVolumeName, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: tlsSecretName, DefaultMode: new(int32(0o440))},
	}}))
	g.Expect(container(d).VolumeMounts).To(ContainElement(corev1.VolumeMount{Name: resources.TLSVolumeName, MountPath: resources.TLSMountPath, ReadOnly: true}))
	g.Expect(*pod.SecurityContext.FSGroup).To(Equal(resources.RunAsUser))
	g.Expect([]string{arg(d, "tls-cert-file"), arg(d, "tls-key-file")}).To(Equal([]string{resources.TLSCertFile, resources.TLSKeyFile}))
	svc := get(g, ns, cr.Name, &corev1.Service{})
	g.Expect(svc.Spec.Ports).To(HaveLen(1))
	g.Expect(svc.Spec.Ports[0].Name).To(Equal("https"))
	g.Expect(svc.Spec.Ports[0].Port).To(Equal(int32(443)))
	g.Expect(svc.Spec.Ports[0].TargetPort).To(Equal(intstr.FromInt32(resources.CallbackPort)))
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).Status.URL).To(Equal("https://blacklist." + ns + ".svc.cluster.local/im/callback"))
	}).Should(Succeed())

	// Renewed: a new certificate and key in the same Secret. The condition tells the new
	// expiry; the Deployment is not written (no rollout).
	before := get(g, ns, cr.Name, &appsv1.Deployment{}).ResourceVersion
	crt2, key2 := certificate(t, 180*24*time.Hour, "blacklist."+ns+".svc", "im2.example.com")
	putTLSSecret(t, ns, map[string][]byte{"tls.crt": crt2, "tls.key": key2})
	expectTLS(g, ns, metav1.ConditionTrue, cbv1.ReasonCertificateFound, "im2.example.com")
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.Deployment{}).ResourceVersion).To(Equal(before))
	}, time.Second).Should(Succeed())

	// A broken replacement (the key of another certificate): the condition says so, and the
	// running receiver, Service and URL stay as they are.
	_, otherKey := certificate(t, time.Hour, "other.example.com")
	putTLSSecret(t, ns, map[string][]byte{"tls.crt": crt2, "tls.key": otherKey})
	expectTLS(g, ns, metav1.ConditionFalse, cbv1.ReasonTLSSecretInvalid, "private key does not match", "keeps serving its last good certificate")
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.Deployment{}).ResourceVersion).To(Equal(before))
		g.Expect(get(g, ns, cr.Name, &corev1.Service{}).Spec.Ports[0].Name).To(Equal("https"))
	}, time.Second).Should(Succeed())
	g.Expect(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).Status.URL).To(HavePrefix("https://"))
}

// TestTLSAddedWithAnUnusableSecret: a plain-HTTP receiver that is asked for TLS before its
// Secret is usable keeps running as it is, and the Service keeps facing it as it is (port
// 80, http), so nothing in the cluster stops reaching it.
func TestTLSAddedWithAnUnusableSecret(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, nil)
	waitForDeployment(g, cr)
	expectTLS(g, ns, metav1.ConditionTrue, cbv1.ReasonTLSDisabled)
	before := get(g, ns, cr.Name, &appsv1.Deployment{}).ResourceVersion

	putTLSSecret(t, ns, map[string][]byte{"tls.crt": []byte("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"), "tls.key": []byte("x")})
	g.Eventually(func() error {
		got := &cbv1.CallbackReceiver{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), got); err != nil {
			return err
		}
		withTLS(got)
		return k8sClient.Update(ctx, got)
	}).Should(Succeed())
	expectTLS(g, ns, metav1.ConditionFalse, cbv1.ReasonTLSSecretInvalid, "does not hold a usable key pair")
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &appsv1.Deployment{}).ResourceVersion).To(Equal(before))
		p := get(g, ns, cr.Name, &corev1.Service{}).Spec.Ports[0]
		g.Expect([]any{p.Name, p.Port}).To(Equal([]any{"http", int32(80)}))
		g.Expect(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).Status.URL).To(Equal("http://blacklist." + ns + ".svc.cluster.local/im/callback"))
	}, time.Second).Should(Succeed())

	// Fixed: Deployment, Service and URL switch to HTTPS together.
	crt, key := certificate(t, 24*time.Hour, "blacklist."+ns+".svc")
	putTLSSecret(t, ns, map[string][]byte{"tls.crt": crt, "tls.key": key})
	expectTLS(g, ns, metav1.ConditionTrue, cbv1.ReasonCertificateFound)
	g.Eventually(func(g Gomega) {
		g.Expect(arg(get(g, ns, cr.Name, &appsv1.Deployment{}), "tls-cert-file")).To(Equal(resources.TLSCertFile))
		p := get(g, ns, cr.Name, &corev1.Service{}).Spec.Ports[0]
		g.Expect([]any{p.Name, p.Port}).To(Equal([]any{"https", int32(443)}))
		g.Expect(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}).Status.URL).To(Equal("https://blacklist." + ns + ".svc.cluster.local/im/callback"))
	}).Should(Succeed())
}

// TestExpiredCertificateIsReportedAndServed: an expired certificate still loads, so the
// receiver runs with it (a renewal is then picked up without a restart), and the condition
// says IM refuses it.
func TestExpiredCertificateIsReportedAndServed(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	crt, key, err := testenv.SelfSignedCert([]string{"im.example.com"}, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	must(t, err)
	putTLSSecret(t, ns, map[string][]byte{"tls.crt": crt, "tls.key": key})
	cr := fixture(t, ns)
	withTLS(cr)
	startManager(t, ns, managerOptions{})
	must(t, k8sClient.Create(context.Background(), cr))

	expectTLS(g, ns, metav1.ConditionFalse, cbv1.ReasonTLSCertificateExpired, "IM refuses an expired certificate")
	waitForDeployment(g, cr)
	g.Expect(arg(get(g, ns, cr.Name, &appsv1.Deployment{}), "tls-cert-file")).To(Equal(resources.TLSCertFile))
}

// TestReceiverPodPassesTheRestrictedStandard: a receiver pod with the TLS volume, the token
// and fsGroup is admitted into a namespace that enforces the restricted Pod Security
// Standard, by the API server's own PodSecurity admission; the same pod made privileged is
// not (the namespace really enforces).
func TestReceiverPodPassesTheRestrictedStandard(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	nsObj := &corev1.Namespace{}
	must(t, k8sClient.Get(ctx, client.ObjectKey{Name: ns}, nsObj))
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	must(t, k8sClient.Update(ctx, nsObj))

	crt, key := certificate(t, time.Hour, "im.example.com")
	putTLSSecret(t, ns, map[string][]byte{"tls.crt": crt, "tls.key": key})
	cr := fixture(t, ns)
	withTLS(cr)
	startManager(t, ns, managerOptions{})
	must(t, k8sClient.Create(ctx, cr))
	waitForDeployment(g, cr)
	d := get(g, ns, cr.Name, &appsv1.Deployment{})
	g.Expect(d.Spec.Template.Spec.Volumes).To(HaveLen(2)) // the TLS Secret and the spool's emptyDir

	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       *d.Spec.Template.Spec.DeepCopy(),
		}
	}
	must(t, k8sClient.Create(ctx, pod("receiver")))

	privileged := pod("privileged")
	privileged.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = new(true)
	err := k8sClient.Create(ctx, privileged)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a privileged pod was admitted: %v", err)
	g.Expect(err.Error()).To(ContainSubstring(`violates PodSecurity "restricted:latest"`))
}
