package nodeagent

import (
	"context"
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "alpha", "B": "beta", "EMPTY": ""}
	mapping := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string]string{
		"":                 "",
		"plain":            "plain",
		"$(A)":             "alpha",
		"x$(A)y$(B)z":      "xalphaybetaz",
		"$(EMPTY)|":        "|",
		"$(MISSING)":       "$(MISSING)",
		"$$(A)":            "$(A)",
		"$$$(A)":           "$alpha",
		"$A":               "$A",
		"$":                "$",
		"a$":               "a$",
		"$(A":              "$(A",
		"$(A)$(":           "alpha$(",
		"--sink=$(A)/$(B)": "--sink=alpha/beta",
		"$()":              "$()",
		"$$":               "$",
	} {
		if got := Expand(in, mapping); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

type fakeObjects struct {
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
	services   []*corev1.Service
}

func (f fakeObjects) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func (f fakeObjects) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if c, ok := f.configMaps[ns+"/"+name]; ok {
		return c, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f fakeObjects) Services(ns string, links bool) []*corev1.Service {
	var out []*corev1.Service
	for _, s := range f.services {
		if (links && s.Namespace == ns) || (s.Namespace == "default" && s.Name == "kubernetes") {
			out = append(out, s)
		}
	}
	return out
}

func envMap(env []corev1.EnvVar) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		m[e.Name] = e.Value
	}
	return m
}

func TestResolveEnvLikeTheKubelet(t *testing.T) {
	objs := fakeObjects{
		secrets: map[string]*corev1.Secret{"chat/token": {Data: map[string][]byte{"token": []byte("s3cret")}}},
		configMaps: map[string]*corev1.ConfigMap{
			"chat/cfg": {Data: map[string]string{"level": "debug", "region": "ap-guangzhou"}},
		},
		services: []*corev1.Service{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "moderation-api"}, Spec: corev1.ServiceSpec{
				ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"}, Spec: corev1.ServiceSpec{
				ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "elsewhere"}, Spec: corev1.ServiceSpec{
				ClusterIP: "10.96.0.30", Ports: []corev1.ServicePort{{Port: 80}}}},
		},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "blacklist-abc", UID: "uid-1", Labels: map[string]string{"app": "x"}},
		Spec:       corev1.PodSpec{NodeName: "local-node", ServiceAccountName: "blacklist"},
		Status:     corev1.PodStatus{PodIP: "10.244.3.7", HostIP: "10.244.3.1"},
	}
	optional := true
	c := &corev1.Container{
		Name:    "receiver",
		Command: []string{"/receiver"},
		Args:    []string{"--sink=$(SINK)", "--name=$(POD_NAME)", "--keep=$(UNKNOWN)", "--escaped=$$(POD_NAME)"},
		EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		Env: []corev1.EnvVar{
			{Name: "IM_CALLBACK_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "token"}, Key: "token"}}},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "LEVEL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "level"}}},
			{Name: "SINK", Value: "http://$(MODERATION_API_SERVICE_HOST)/$(POD_NAMESPACE)/$(LATER)"},
			{Name: "LATER", Value: "too-late"},
			{Name: "MAYBE", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k", Optional: &optional}}},
			{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
				Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
		},
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}},
	}
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	env, err := ResolveEnv(context.Background(), objs, pod, c, alloc)
	if err != nil {
		t.Fatal(err)
	}
	got := envMap(env)
	want := map[string]string{
		"IM_CALLBACK_TOKEN": "s3cret",
		"POD_NAME":          "blacklist-abc",
		"POD_NAMESPACE":     "chat",
		"POD_IP":            "10.244.3.7",
		"APP":               "x",
		"LEVEL":             "debug",
		"CFG_level":         "debug",
		"CFG_region":        "ap-guangzhou",
		// Only variables defined before are expanded in a value.
		"SINK":  "http://10.96.0.20/chat/$(LATER)",
		"LATER": "too-late",
		"MEM":   "256",
		"CPU":   "2",
		// Service links for the pod's namespace, and the kubernetes Service.
		"MODERATION_API_SERVICE_HOST":      "10.96.0.20",
		"MODERATION_API_SERVICE_PORT":      "80",
		"MODERATION_API_SERVICE_PORT_HTTP": "80",
		"MODERATION_API_PORT":              "tcp://10.96.0.20:80",
		"MODERATION_API_PORT_80_TCP":       "tcp://10.96.0.20:80",
		"MODERATION_API_PORT_80_TCP_PROTO": "tcp",
		"MODERATION_API_PORT_80_TCP_PORT":  "80",
		"MODERATION_API_PORT_80_TCP_ADDR":  "10.96.0.20",
		"KUBERNETES_SERVICE_HOST":          "10.96.0.1",
		"KUBERNETES_SERVICE_PORT":          "443",
		"KUBERNETES_SERVICE_PORT_HTTPS":    "443",
		"KUBERNETES_PORT":                  "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP":          "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO":    "tcp",
		"KUBERNETES_PORT_443_TCP_PORT":     "443",
		"KUBERNETES_PORT_443_TCP_ADDR":     "10.96.0.1",
	}
	if !reflect.DeepEqual(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected %s=%q", k, v)
			}
		}
	}
	cmd, args := ExpandCommand(c, env)
	if !reflect.DeepEqual(cmd, []string{"/receiver"}) {
		t.Errorf("command = %q", cmd)
	}
	wantArgs := []string{"--sink=http://10.96.0.20/chat/$(LATER)", "--name=blacklist-abc", "--keep=$(UNKNOWN)", "--escaped=$(POD_NAME)"}
	if !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("args = %q, want %q", args, wantArgs)
	}

	// Without service links only the kubernetes Service's variables remain.
	no := false
	pod.Spec.EnableServiceLinks = &no
	env, err = ResolveEnv(context.Background(), objs, pod, c, alloc)
	if err != nil {
		t.Fatal(err)
	}
	got = envMap(env)
	if _, ok := got["MODERATION_API_SERVICE_HOST"]; ok {
		t.Error("enableServiceLinks=false still set MODERATION_API_SERVICE_HOST")
	}
	if got["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" || got["SINK"] != "http://$(MODERATION_API_SERVICE_HOST)/chat/$(LATER)" {
		t.Errorf("without service links: KUBERNETES_SERVICE_HOST=%q SINK=%q", got["KUBERNETES_SERVICE_HOST"], got["SINK"])
	}
}

func TestResolveEnvConfigErrors(t *testing.T) {
	objs := fakeObjects{secrets: map[string]*corev1.Secret{"ns/s": {Data: map[string][]byte{"a": []byte("1")}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	for name, tc := range map[string]struct {
		env  corev1.EnvVar
		want string
	}{
		"missing secret": {corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "a"}}}, `secret "nope" not found`},
		"missing key": {corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "b"}}}, "couldn't find key b in Secret ns/s"},
		"missing configmap": {corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "c"}, Key: "a"}}}, `configmap "c" not found`},
		"bad field path": {corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
			FieldPath: "spec.nope"}}}, `unsupported fieldRef fieldPath "spec.nope"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ResolveEnv(context.Background(), objs, pod, &corev1.Container{Env: []corev1.EnvVar{tc.env}}, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Message != tc.want {
				t.Fatalf("err = %v, want ConfigError %q", err, tc.want)
			}
		})
	}
}

func TestContainerCredentials(t *testing.T) {
	u := func(v int64) *int64 { return &v }
	yes, no := true, false
	pod := func(psc *corev1.PodSecurityContext) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}, Spec: corev1.PodSpec{SecurityContext: psc}}
	}
	// The contract's receiver: non-root 65532 from the pod, no privilege escalation.
	cr, err := containerCredentials(pod(&corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: u(65532)}),
		&corev1.Container{Name: "receiver", SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no}})
	if err != nil || cr.uid != 65532 || cr.gid != 0 || !cr.noNewPrivileges {
		t.Fatalf("credentials = %+v, %v", cr, err)
	}
	argv := commandLine("cbr03-p7", cr, []string{"/bin/receiver", "--x"})
	want := []string{"ip", "netns", "exec", "cbr03-p7", "setpriv", "--reuid", "65532", "--regid", "0", "--clear-groups", "--no-new-privs", "--", "/bin/receiver", "--x"}
	if !reflect.DeepEqual(argv, want) {
		t.Errorf("commandLine = %q, want %q", argv, want)
	}
	// Container settings win over the pod's.
	cr, err = containerCredentials(pod(&corev1.PodSecurityContext{RunAsUser: u(1), RunAsGroup: u(2), SupplementalGroups: []int64{5}, FSGroup: u(6)}),
		&corev1.Container{SecurityContext: &corev1.SecurityContext{RunAsUser: u(1000), RunAsGroup: u(3000)}})
	if err != nil || cr.uid != 1000 || cr.gid != 3000 || !reflect.DeepEqual(cr.groups, []int64{5, 6}) {
		t.Fatalf("credentials = %+v, %v", cr, err)
	}
	// runAsNonRoot without a user: the kubelet refuses, our "images" run as root.
	_, err = containerCredentials(pod(&corev1.PodSecurityContext{RunAsNonRoot: &yes}), &corev1.Container{Name: "c"})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Message != `container has runAsNonRoot and image will run as root (pod: "ns/p", container: c)` {
		t.Fatalf("err = %v", err)
	}
	// No settings at all: root, no setpriv.
	cr, err = containerCredentials(pod(nil), &corev1.Container{})
	if err != nil || len(commandLine("n", cr, []string{"/x"})) != 5 {
		t.Fatalf("root container: %+v %v %q", cr, err, commandLine("n", cr, []string{"/x"}))
	}
}
