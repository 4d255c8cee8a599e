package resources

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// base is a minimal resource without a spool (spool.type None), so that the tables below
// pin one feature at a time; the spool has its own cases.
func base() *cbv1.CallbackReceiver {
	return &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: "chat", UID: "uid-1"},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001,
			Path:     "/im/callback",
			Sink:     &cbv1.Destination{URI: "http://moderation.chat.svc.cluster.local/events"},
			Spool:    &cbv1.SpoolSpec{Type: cbv1.SpoolNone},
		},
	}
}

var params = Params{Image: "ghcr.io/imcallback/callback-operator:v1", SinkURI: "http://moderation.chat.svc.cluster.local/events"}

// decode turns an apply configuration into the typed object the API server would store.
func decode[T any](t *testing.T, ac any) *T {
	t.Helper()
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestArgs(t *testing.T) {
	cases := []struct {
		name   string
		change func(*cbv1.CallbackReceiver)
		p      Params
		want   []string
	}{
		{"nothing but the required fields: the receiver's defaults apply", nil, params, []string{
			"--sdkappid=1400000001", "--path=/im/callback", "--sink=http://moderation.chat.svc.cluster.local/events",
		}},
		{"everything set", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Commands = []cbv1.Command{"Sns.CallbackBlackListDelete", "Sns.CallbackFriendDelete"}
			cr.Spec.Auth = &cbv1.AuthSpec{MaxClockSkew: &metav1.Duration{Duration: 90 * time.Second}}
			cr.Spec.Delivery = &cbv1.DeliverySpec{
				Retry: ptr.To(int32(0)), BackoffPolicy: cbv1.BackoffLinear,
				BackoffDelay: &metav1.Duration{Duration: time.Second}, Timeout: &metav1.Duration{Duration: 300 * time.Millisecond},
			}
		}, Params{SinkURI: "http://s/e", DeadLetterSinkURI: "http://dlq/x"}, []string{
			"--sdkappid=1400000001", "--path=/im/callback", "--commands=Sns.CallbackBlackListDelete,Sns.CallbackFriendDelete",
			"--sink=http://s/e", "--dead-letter-sink=http://dlq/x",
			"--retry=0", "--backoff-policy=linear", "--backoff-delay=1s", "--delivery-timeout=300ms", "--max-clock-skew=1m30s",
		}},
	}
	cases = append(cases, struct {
		name   string
		change func(*cbv1.CallbackReceiver)
		p      Params
		want   []string
	}{"routes and decisions, one of them unresolved", func(cr *cbv1.CallbackReceiver) {
		cr.Spec.DecisionPolicy = &cbv1.DecisionPolicy{Timeout: &metav1.Duration{Duration: 800 * time.Millisecond}, FailurePolicy: cbv1.DecisionFailureReject}
	}, Params{
		Routes: []cbv1.ResolvedRoute{{Commands: []cbv1.Command{"C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"}, URI: "http://archive/e"}},
		Decisions: []cbv1.ResolvedRoute{
			{Commands: []cbv1.Command{"C2C.CallbackBeforeSendMsg"}, URI: "http://moderator/"},
			{Commands: []cbv1.Command{"Sns.CallbackPrevFriendAdd"}},
		},
	}, []string{
		"--sdkappid=1400000001", "--path=/im/callback",
		"--route=C2C.CallbackAfterSendMsg,Group.CallbackAfterSendMsg=http://archive/e",
		"--decision=C2C.CallbackBeforeSendMsg=http://moderator/",
		"--decision=Sns.CallbackPrevFriendAdd=" + UnresolvedDecisionURI,
		"--decision-timeout=800ms", "--decision-failure=reject",
	}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr := base()
			if c.change != nil {
				c.change(cr)
			}
			if got := Args(cr, c.p); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Args =\n  %q\nwant\n  %q", got, c.want)
			}
		})
	}
}

func TestDeployment(t *testing.T) {
	cases := []struct {
		name   string
		change func(*cbv1.CallbackReceiver)
		p      Params
		check  func(t *testing.T, d *appsv1.Deployment)
	}{
		{"two replicas by default, no auth", nil, params, func(t *testing.T, d *appsv1.Deployment) {
			c := d.Spec.Template.Spec.Containers[0]
			if *d.Spec.Replicas != 2 {
				t.Errorf("replicas %d", *d.Spec.Replicas)
			}
			if c.Image != params.Image {
				t.Errorf("image %q", c.Image)
			}
			if len(c.Env) != 1 || c.Env[0].Name != "GOMEMLIMIT" {
				t.Errorf("env %+v: only GOMEMLIMIT without auth", c.Env)
			}
			if _, ok := d.Spec.Template.Annotations[TokenChecksumAnnotation]; ok {
				t.Error("a token checksum without auth")
			}
			if !reflect.DeepEqual(c.Resources, DefaultResources()) {
				t.Errorf("resources %+v", c.Resources)
			}
		}},
		{"hardened pod", nil, params, func(t *testing.T, d *appsv1.Deployment) {
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			sc := c.SecurityContext
			switch {
			case !*pod.SecurityContext.RunAsNonRoot, *pod.SecurityContext.RunAsUser != 65532,
				pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Errorf("pod security %+v", pod.SecurityContext)
			case *sc.AllowPrivilegeEscalation, !*sc.ReadOnlyRootFilesystem, !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
				t.Errorf("container security %+v", sc)
			case *pod.AutomountServiceAccountToken, *pod.EnableServiceLinks:
				t.Error("credentials or service links mounted")
			case *pod.TerminationGracePeriodSeconds <= int64(contract.DefaultShutdownTimeout/time.Second):
				t.Errorf("grace %d does not cover the shutdown timeout", *pod.TerminationGracePeriodSeconds)
			case c.ReadinessProbe.HTTPGet.Path != "/readyz", c.LivenessProbe.HTTPGet.Path != "/healthz":
				t.Error("probes")
			}
			if d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
				t.Error("a rollout may stop a pod before its replacement is ready")
			}
		}},
		{"auth", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Auth = &cbv1.AuthSpec{TokenSecretRef: cbv1.SecretKeySelector{Name: "tok", Key: "k"}}
		}, Params{Image: "i", SinkURI: "http://s", TokenChecksum: "sha256:abc"}, func(t *testing.T, d *appsv1.Deployment) {
			want := corev1.EnvVar{Name: contract.TokenEnv, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}, Key: "k"}}}
			if env := d.Spec.Template.Spec.Containers[0].Env; len(env) != 2 || !reflect.DeepEqual(env[1], want) {
				t.Errorf("env %+v", env)
			}
			if got := d.Spec.Template.Annotations[TokenChecksumAnnotation]; got != "sha256:abc" {
				t.Errorf("checksum annotation %q", got)
			}
		}},
		{"TLS: the Secret mounted read-only, for the receiver's group only", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "im-callback-tls"}
		}, params, func(t *testing.T, d *appsv1.Deployment) {
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			want := []corev1.Volume{{Name: TLSVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "im-callback-tls", DefaultMode: ptr.To(int32(0o440)),
			}}}}
			if !reflect.DeepEqual(pod.Volumes, want) {
				t.Errorf("volumes %+v", pod.Volumes)
			}
			if m := c.VolumeMounts; len(m) != 1 || m[0].Name != TLSVolumeName || m[0].MountPath != "/etc/imcallback/tls" || !m[0].ReadOnly {
				t.Errorf("mounts %+v", m)
			}
			if fs := pod.SecurityContext.FSGroup; fs == nil || *fs != RunAsUser || *pod.SecurityContext.RunAsGroup != RunAsUser {
				t.Errorf("fsGroup %v: the receiver's group must own the key's files", fs)
			}
			args := strings.Join(c.Args, " ")
			if !strings.Contains(args, "--tls-cert-file=/etc/imcallback/tls/tls.crt") || !strings.Contains(args, "--tls-key-file=/etc/imcallback/tls/tls.key") {
				t.Errorf("args %q", c.Args)
			}
			if c.Ports[0].Name != "https" || c.Ports[0].ContainerPort != CallbackPort {
				t.Errorf("callback port %+v", c.Ports[0])
			}
			// No copy or checksum of the certificate: a renewal must not roll the pods.
			for k := range d.Spec.Template.Annotations {
				if strings.Contains(k, "tls") || strings.Contains(k, "cert") {
					t.Errorf("pod template annotation %s: a renewed certificate would restart the pods", k)
				}
			}
			if !ServesTLS(d) {
				t.Error("ServesTLS does not recognise the Deployment")
			}
		}},
		{"the spool: an emptyDir on disk with its size limit, and the flags within it", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir, SizeLimit: ptr.To(resource.MustParse("512Mi"))}
		}, params, func(t *testing.T, d *appsv1.Deployment) {
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			want := []corev1.Volume{{Name: SpoolVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				SizeLimit: ptr.To(resource.MustParse("512Mi")),
			}}}}
			if !reflect.DeepEqual(pod.Volumes, want) {
				t.Errorf("volumes %+v", pod.Volumes)
			}
			if m := c.VolumeMounts; len(m) != 1 || m[0].Name != SpoolVolumeName || m[0].MountPath != "/var/spool/imcallback" || m[0].ReadOnly {
				t.Errorf("mounts %+v", m)
			}
			if !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Error("the root filesystem must stay read-only: the spool is the one writable place")
			}
			// 512Mi less 1% (5368709 bytes) for the lock file and directory blocks.
			args := strings.Join(c.Args, " ")
			if !strings.Contains(args, "--spool-dir=/var/spool/imcallback --spool-max-bytes=531502203") {
				t.Errorf("args %q", c.Args)
			}
		}},
		{"no TLS: no volume, no fsGroup", nil, params, func(t *testing.T, d *appsv1.Deployment) {
			pod := d.Spec.Template.Spec
			if len(pod.Volumes) != 0 || len(pod.Containers[0].VolumeMounts) != 0 || pod.SecurityContext.FSGroup != nil {
				t.Errorf("volumes %+v, fsGroup %v", pod.Volumes, pod.SecurityContext.FSGroup)
			}
			if pod.Containers[0].Ports[0].Name != "http" || ServesTLS(d) {
				t.Errorf("callback port %+v", pod.Containers[0].Ports[0])
			}
		}},
		{"three replicas spread over nodes", func(cr *cbv1.CallbackReceiver) { cr.Spec.Replicas = ptr.To(int32(3)) }, params,
			func(t *testing.T, d *appsv1.Deployment) {
				ts := d.Spec.Template.Spec.TopologySpreadConstraints
				if *d.Spec.Replicas != 3 || len(ts) != 1 || ts[0].TopologyKey != corev1.LabelHostname {
					t.Errorf("replicas %d, spread %+v", *d.Spec.Replicas, ts)
				}
			}},
		{"the image the controller chose, and resources", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Image = "not.used.here/by-the-builder:v1" // the controller decides whether spec.image runs
			cr.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.5")}}
		}, Params{Image: "registry.example.com/r:v2", SinkURI: "http://s"}, func(t *testing.T, d *appsv1.Deployment) {
			c := d.Spec.Template.Spec.Containers[0]
			if c.Image != "registry.example.com/r:v2" {
				t.Errorf("image %q", c.Image)
			}
			if c.Resources.Requests.Cpu().String() != "500m" || c.Resources.Limits != nil {
				t.Errorf("resources %+v", c.Resources)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr := base()
			if c.change != nil {
				c.change(cr)
			}
			d := decode[appsv1.Deployment](t, Deployment(cr, c.p))
			if d.Name != "blacklist" || d.Namespace != "chat" || len(d.OwnerReferences) != 1 || !*d.OwnerReferences[0].Controller {
				t.Fatalf("identity %s/%s owners %+v", d.Namespace, d.Name, d.OwnerReferences)
			}
			if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, SelectorLabels(cr)) {
				t.Fatalf("selector %v", d.Spec.Selector.MatchLabels)
			}
			c.check(t, d)
		})
	}
}

// TestScalingDoesNotRollThePods: only spec.replicas differs between scales, so a scale is
// never a rollout.
func TestScalingDoesNotRollThePods(t *testing.T) {
	one, three := base(), base()
	three.Spec.Replicas = ptr.To(int32(3))
	a, _ := json.Marshal(decode[appsv1.Deployment](t, Deployment(one, params)).Spec.Template)
	b, _ := json.Marshal(decode[appsv1.Deployment](t, Deployment(three, params)).Spec.Template)
	if string(a) != string(b) {
		t.Fatalf("the pod template changes with the replicas:\n%s\n%s", a, b)
	}
}

func TestDeploymentIsPure(t *testing.T) {
	a, _ := json.Marshal(Deployment(base(), params))
	b, _ := json.Marshal(Deployment(base(), params))
	if string(a) != string(b) {
		t.Fatal("the same inputs gave two Deployments")
	}
}

func TestService(t *testing.T) {
	cases := []struct {
		name        string
		svc         *cbv1.ServiceSpec
		tls         bool
		wantType    corev1.ServiceType
		wantPort    int32
		wantName    string
		annotations map[string]string
	}{
		{"defaults", nil, false, corev1.ServiceTypeClusterIP, 80, "http", nil},
		{"load balancer", &cbv1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Port: 443, Annotations: map[string]string{"a": "b"}}, false,
			corev1.ServiceTypeLoadBalancer, 443, "http", map[string]string{"a": "b"}},
		{"TLS: 443 by default", nil, true, corev1.ServiceTypeClusterIP, 443, "https", nil},
		{"TLS: 443 when the port is not set", &cbv1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}, true, corev1.ServiceTypeClusterIP, 443, "https", nil},
		{"TLS on the port the spec says", &cbv1.ServiceSpec{Port: 8443}, true, corev1.ServiceTypeClusterIP, 8443, "https", nil},
		{"TLS on port 80 when a resource holds it explicitly", &cbv1.ServiceSpec{Port: 80}, true, corev1.ServiceTypeClusterIP, 80, "https", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr := base()
			cr.Spec.Service = c.svc
			s := decode[corev1.Service](t, Service(cr, c.tls))
			p := s.Spec.Ports
			// The target is the container port's number: pods with and without TLS (a rollout)
			// are endpoints alike.
			if s.Spec.Type != c.wantType || len(p) != 1 || p[0].Port != c.wantPort || p[0].Name != c.wantName || p[0].TargetPort.IntValue() != CallbackPort {
				t.Fatalf("type %s ports %+v", s.Spec.Type, p)
			}
			if got := ServicePort(cr, c.tls); got != c.wantPort {
				t.Fatalf("ServicePort = %d, want %d", got, c.wantPort)
			}
			if !reflect.DeepEqual(s.Annotations, c.annotations) || !reflect.DeepEqual(s.Spec.Selector, SelectorLabels(cr)) {
				t.Fatalf("annotations %v selector %v", s.Annotations, s.Spec.Selector)
			}
		})
	}
}

func TestPodDisruptionBudgetOnlyWithSeveralReplicas(t *testing.T) {
	for replicas, want := range map[int32]bool{0: false, 1: false, 2: true, 10: true} {
		cr := base()
		cr.Spec.Replicas = ptr.To(replicas)
		ac := PodDisruptionBudget(cr)
		if (ac != nil) != want {
			t.Errorf("replicas %d: budget %v, want %v", replicas, ac != nil, want)
		}
		if ac != nil {
			pdb := decode[policyv1.PodDisruptionBudget](t, ac)
			if pdb.Spec.MaxUnavailable.IntValue() != 1 || !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, SelectorLabels(cr)) {
				t.Errorf("budget %+v", pdb.Spec)
			}
		}
	}
}

func TestServiceAccountHasNoToken(t *testing.T) {
	sa := decode[corev1.ServiceAccount](t, ServiceAccount(base()))
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Fatal("the receiver's ServiceAccount mounts a token")
	}
}

func TestSelector(t *testing.T) {
	if got := Selector(base()); got != "app.kubernetes.io/instance=blacklist,app.kubernetes.io/name=callback-receiver" {
		t.Fatalf("Selector = %q", got)
	}
}
