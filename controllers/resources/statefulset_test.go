package resources

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// onClaim is base with the default spool: a claim per pod.
func onClaim() *cbv1.CallbackReceiver {
	cr := base()
	cr.Spec.Spool = nil
	return cr
}

func TestSpoolTypeDefault(t *testing.T) {
	cr := onClaim()
	if SpoolTypeOf(cr) != cbv1.SpoolPersistentVolumeClaim || !SpoolOnClaim(cr) || !SpoolEnabled(cr) {
		t.Fatalf("unset spool: type %s", SpoolTypeOf(cr))
	}
	cr.Spec.Spool = &cbv1.SpoolSpec{}
	if !SpoolOnClaim(cr) {
		t.Fatal("spool {} must be on a claim")
	}
	if SpoolOnClaim(base()) {
		t.Fatal("type None on a claim")
	}
}

func TestStatefulSet(t *testing.T) {
	cases := []struct {
		name   string
		change func(*cbv1.CallbackReceiver)
		check  func(t *testing.T, s *appsv1.StatefulSet)
	}{
		{"defaults: 2 replicas, a 1Gi ReadWriteOnce claim of the default class, retained", nil, func(t *testing.T, s *appsv1.StatefulSet) {
			if *s.Spec.Replicas != 2 {
				t.Errorf("replicas %d", *s.Spec.Replicas)
			}
			if len(s.Spec.VolumeClaimTemplates) != 1 {
				t.Fatalf("claim templates %+v", s.Spec.VolumeClaimTemplates)
			}
			vct := s.Spec.VolumeClaimTemplates[0]
			if vct.Name != SpoolVolumeName || vct.Spec.StorageClassName != nil ||
				!reflect.DeepEqual(vct.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) ||
				!vct.Spec.Resources.Requests.Storage().Equal(resource.MustParse("1Gi")) {
				t.Errorf("claim template %+v", vct)
			}
			if !labels.SelectorFromSet(SelectorLabels(base())).Matches(labels.Set(vct.Labels)) || vct.Labels[LabelManagedBy] != ManagedByValue {
				t.Errorf("claim labels %v: the manager finds claims by them", vct.Labels)
			}
			p := s.Spec.PersistentVolumeClaimRetentionPolicy
			if p == nil || p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
				t.Errorf("retention %+v: claims are drained by the operator before they go", p)
			}
		}},
		{"zero-downtime rollouts: parallel pods, one at a time, held for minReadySeconds", nil, func(t *testing.T, s *appsv1.StatefulSet) {
			if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
				t.Errorf("podManagementPolicy %s", s.Spec.PodManagementPolicy)
			}
			u := s.Spec.UpdateStrategy
			if u.Type != appsv1.RollingUpdateStatefulSetStrategyType || u.RollingUpdate == nil ||
				u.RollingUpdate.MaxUnavailable != nil || ptr.Deref(u.RollingUpdate.Partition, -1) != 0 {
				t.Errorf("update strategy %+v", u)
			}
			if s.Spec.MinReadySeconds != MinReadySeconds || MinReadySeconds < 1 {
				t.Errorf("minReadySeconds %d", s.Spec.MinReadySeconds)
			}
		}},
		{"the pod mounts the claim, with the flags within it and fsGroup", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolPersistentVolumeClaim, Size: ptr.To(resource.MustParse("512Mi")), StorageClassName: ptr.To("fast")}
		}, func(t *testing.T, s *appsv1.StatefulSet) {
			pod := s.Spec.Template.Spec
			if len(pod.Volumes) != 0 {
				t.Errorf("volumes %+v: the claim template makes the spool volume", pod.Volumes)
			}
			c := pod.Containers[0]
			if m := c.VolumeMounts; len(m) != 1 || m[0].Name != SpoolVolumeName || m[0].MountPath != SpoolMountPath {
				t.Errorf("mounts %+v", m)
			}
			// 512Mi less 5% (26843545 bytes) for the file system's own blocks.
			if !slices.Contains(c.Args, "--spool-max-bytes=510027367") || !slices.Contains(c.Args, "--spool-dir="+SpoolMountPath) {
				t.Errorf("args %q", c.Args)
			}
			if ptr.Deref(pod.SecurityContext.FSGroup, 0) != RunAsUser || ptr.Deref(pod.SecurityContext.FSGroupChangePolicy, "") != corev1.FSGroupChangeOnRootMismatch {
				t.Errorf("security context %+v", pod.SecurityContext)
			}
			if sc := s.Spec.VolumeClaimTemplates[0].Spec.StorageClassName; ptr.Deref(sc, "") != "fast" {
				t.Errorf("storage class %v", sc)
			}
			if !s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().Equal(resource.MustParse("512Mi")) {
				t.Errorf("size %v", s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests)
			}
		}},
		{"restricted pods and spreading, as the Deployment's", nil, func(t *testing.T, s *appsv1.StatefulSet) {
			pod := s.Spec.Template.Spec
			c := pod.Containers[0]
			if !*c.SecurityContext.ReadOnlyRootFilesystem || *c.SecurityContext.AllowPrivilegeEscalation || !*pod.SecurityContext.RunAsNonRoot {
				t.Errorf("security %+v %+v", c.SecurityContext, pod.SecurityContext)
			}
			if len(pod.TopologySpreadConstraints) != 1 || c.ReadinessProbe == nil {
				t.Errorf("spread %+v, readiness %+v", pod.TopologySpreadConstraints, c.ReadinessProbe)
			}
			if *pod.TerminationGracePeriodSeconds != GracePeriod {
				t.Errorf("grace %d", *pod.TerminationGracePeriodSeconds)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr := onClaim()
			if c.change != nil {
				c.change(cr)
			}
			c.check(t, decode[appsv1.StatefulSet](t, StatefulSet(cr, params)))
		})
	}
}

func TestEmptyDirDrainTimeout(t *testing.T) {
	cr := base()
	cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir, DrainTimeout: &metav1.Duration{Duration: 2 * time.Minute}}
	d := decode[appsv1.Deployment](t, Deployment(cr, params))
	if g := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != 130 {
		t.Errorf("grace period %d: the drain and 10 s", g)
	}
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--shutdown-timeout=2m0s") {
		t.Errorf("args %q", d.Spec.Template.Spec.Containers[0].Args)
	}
	cr.Spec.Spool.DrainTimeout = nil
	d = decode[appsv1.Deployment](t, Deployment(cr, params))
	if g := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != GracePeriod {
		t.Errorf("default grace period %d", g)
	}
	if strings.Contains(strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "), "shutdown-timeout") {
		t.Errorf("default drain: the receiver's own default, no flag: %q", d.Spec.Template.Spec.Containers[0].Args)
	}
}

func TestDrainJob(t *testing.T) {
	cr := onClaim()
	cr.Spec.Auth = &cbv1.AuthSpec{TokenSecretRef: cbv1.SecretKeySelector{Name: "tok", Key: "token"}}
	cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "cert"}
	p := params
	p.DeadLetterSinkURI = "http://dlq/x"
	j := decode[batchv1.Job](t, DrainJob(cr, p, 3))
	if j.Name != "blacklist-drain-3" || j.Namespace != "chat" || len(j.OwnerReferences) != 1 {
		t.Errorf("job %s/%s owners %+v", j.Namespace, j.Name, j.OwnerReferences)
	}
	pod := j.Spec.Template.Spec
	want := []corev1.Volume{{Name: SpoolVolumeName, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "spool-blacklist-3"}}}}
	if !reflect.DeepEqual(pod.Volumes, want) {
		t.Errorf("volumes %+v: the claim of ordinal 3 only", pod.Volumes)
	}
	if pod.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("restart policy %s", pod.RestartPolicy)
	}
	c := pod.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, w := range []string{"--drain-only=true", "--shutdown-timeout=5m0s", "--sink=" + params.SinkURI, "--dead-letter-sink=http://dlq/x", "--spool-dir=" + SpoolMountPath} {
		if !strings.Contains(args, w) {
			t.Errorf("args %q lack %s", args, w)
		}
	}
	if strings.Contains(args, "tls-") {
		t.Errorf("args %q: no callbacks are served, no certificate", args)
	}
	for _, e := range c.Env {
		if e.Name == "IM_CALLBACK_TOKEN" {
			t.Error("the token is not needed to deliver")
		}
	}
	if len(c.Ports) != 0 || c.ReadinessProbe != nil {
		t.Errorf("ports %+v probe %+v", c.Ports, c.ReadinessProbe)
	}
	if labels.SelectorFromSet(SelectorLabels(cr)).Matches(labels.Set(j.Spec.Template.Labels)) {
		t.Errorf("pod labels %v match the receivers' selector: the Service would route callbacks to the drain", j.Spec.Template.Labels)
	}
	if !*c.SecurityContext.ReadOnlyRootFilesystem || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the drain runs as restricted as the receiver")
	}
}

func TestClaimOrdinal(t *testing.T) {
	cr := onClaim()
	for name, want := range map[string]int{"spool-blacklist-0": 0, "spool-blacklist-12": 12} {
		if n, ok := ClaimOrdinal(cr, name); !ok || n != want {
			t.Errorf("%s: %d %v", name, n, ok)
		}
	}
	for _, name := range []string{"spool-blacklist-x", "spool-blacklist-01", "spool-other-1", "spool-blacklist-", "spool-blacklist-1-2"} {
		if _, ok := ClaimOrdinal(cr, name); ok {
			t.Errorf("%s is not a claim of blacklist", name)
		}
	}
	if ClaimName(cr, 4) != "spool-blacklist-4" || PodName(cr, 4) != "blacklist-4" {
		t.Error("names")
	}
}
