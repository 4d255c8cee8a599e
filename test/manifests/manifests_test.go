// Package manifests checks the kustomize trees in config/: they build, and what they build
// is what a real cluster needs (names, namespaces, a hardened manager, least privilege).
package manifests

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// build runs `kustomize build config/<dir>` in process and returns its objects.
func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "..", "config", dir))
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func as[T any](t *testing.T, u *unstructured.Unstructured, out *T) *T {
	t.Helper()
	if u == nil {
		t.Fatalf("object missing")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDefaultBuildsTheWholeOperator(t *testing.T) {
	objs := build(t, "default")
	const ns = "callback-operator-system"

	if find(objs, "CustomResourceDefinition", "callbackreceivers.callbacks.imcallback.dev") == nil {
		t.Fatal("the CRD is missing")
	}
	if find(objs, "Namespace", ns) == nil {
		t.Fatalf("namespace %s is missing", ns)
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding":
			continue
		}
		if o.GetNamespace() != ns {
			t.Errorf("%s %s is in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), ns)
		}
	}

	d := as(t, find(objs, "Deployment", "callback-operator-controller-manager"), &appsv1.Deployment{})
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != "callback-operator-controller-manager" {
		t.Errorf("service account %q", pod.ServiceAccountName)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context not restricted: %+v", pod.SecurityContext)
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context not restricted: %+v", sc)
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Error("the manager has no probes")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: %+v", c.Resources)
	}
	var receiverImage string
	for _, e := range c.Env {
		if e.Name == "RECEIVER_IMAGE" {
			receiverImage = e.Value
		}
	}
	if receiverImage != c.Image || c.Image != "ghcr.io/imcallback/callback-operator:dev" {
		t.Errorf("receivers must run the manager's own image: image %q, RECEIVER_IMAGE %q", c.Image, receiverImage)
	}
	if !slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("leader election is off: %v", c.Args)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--allow-image-override") {
			t.Errorf("the default installation allows spec.image (%s): anyone who may edit CallbackReceivers could read the Secrets they reference", a)
		}
	}

	// Every binding points at a role and an account that the build contains.
	for _, o := range objs {
		var roleRef rbacv1.RoleRef
		var subjects []rbacv1.Subject
		switch o.GetKind() {
		case "ClusterRoleBinding":
			b := as(t, o, &rbacv1.ClusterRoleBinding{})
			roleRef, subjects = b.RoleRef, b.Subjects
		case "RoleBinding":
			b := as(t, o, &rbacv1.RoleBinding{})
			roleRef, subjects = b.RoleRef, b.Subjects
		default:
			continue
		}
		if find(objs, roleRef.Kind, roleRef.Name) == nil {
			t.Errorf("%s %s refers to missing %s %s", o.GetKind(), o.GetName(), roleRef.Kind, roleRef.Name)
		}
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && (find(objs, "ServiceAccount", s.Name) == nil || s.Namespace != ns) {
				t.Errorf("%s %s binds missing ServiceAccount %s/%s", o.GetKind(), o.GetName(), s.Namespace, s.Name)
			}
		}
	}
}

// TestManagerRoleIsLeastPrivilege: the generated role deletes only the children a spec change
// or a drained spool removes (the garbage collector removes the rest), never writes Secrets and never uses
// wildcards.
func TestManagerRoleIsLeastPrivilege(t *testing.T) {
	role := as(t, find(build(t, "default"), "ClusterRole", "callback-operator-manager-role"), &rbacv1.ClusterRole{})
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if slices.Contains(r.Verbs, "*") || res == "*" {
				t.Errorf("wildcard in %+v", r)
			}
			if res == "secrets" && !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
				t.Errorf("secrets: %v", r.Verbs)
			}
			if slices.Contains(r.Verbs, "delete") && !slices.Contains(removedBySpec, res) {
				t.Errorf("%s may be deleted: the operator deletes only %v, when the spec no longer asks for them", res, removedBySpec)
			}
		}
	}
}

// removedBySpec are the children the operator deletes itself: the PodDisruptionBudget when
// the replicas drop to one, the Ingress and the HTTPRoute when their field is removed; the
// Deployment or the StatefulSet a change of spec.spool.type replaces, once its pods hold
// nothing; a retained claim once its drain Job delivered it, and that Job.
var removedBySpec = []string{"poddisruptionbudgets", "ingresses", "httproutes",
	"deployments", "statefulsets", "persistentvolumeclaims", "jobs"}

// TestManagerRoleCoversExposure: the role writes Ingresses and HTTPRoutes with exactly the
// verbs the controller uses.
func TestManagerRoleCoversExposure(t *testing.T) {
	role := as(t, find(build(t, "default"), "ClusterRole", "callback-operator-manager-role"), &rbacv1.ClusterRole{})
	want := []string{"create", "delete", "get", "list", "patch", "update", "watch"}
	for group, res := range map[string]string{"networking.k8s.io": "ingresses", "gateway.networking.k8s.io": "httproutes"} {
		var verbs []string
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, res) {
				verbs = append(verbs, r.Verbs...)
			}
		}
		slices.Sort(verbs)
		if !slices.Equal(verbs, want) {
			t.Errorf("%s.%s: verbs %v, want %v", res, group, verbs, want)
		}
	}
}

// TestNamespacedHoldsNoClusterWidePermissions: config/namespaced reconciles its own
// namespace with Roles there; what stays cluster-wide cannot read Secrets or write workloads.
func TestNamespacedHoldsNoClusterWidePermissions(t *testing.T) {
	objs := build(t, "namespaced")
	const ns = "callback-operator-system"

	generated := as(t, find(build(t, "default"), "ClusterRole", "callback-operator-manager-role"), &rbacv1.ClusterRole{})
	role := as(t, find(objs, "Role", "callback-operator-manager-role"), &rbacv1.Role{})
	if role.Namespace != ns || !reflect.DeepEqual(role.Rules, generated.Rules) {
		t.Errorf("Role %s/%s rules %+v, want the generated ones %+v", role.Namespace, role.Name, role.Rules, generated.Rules)
	}
	if find(objs, "ClusterRole", "callback-operator-manager-role") != nil {
		t.Error("the manager's ClusterRole is still there")
	}
	for _, o := range objs {
		if o.GetKind() != "ClusterRoleBinding" {
			continue
		}
		b := as(t, o, &rbacv1.ClusterRoleBinding{})
		cr := as(t, find(objs, "ClusterRole", b.RoleRef.Name), &rbacv1.ClusterRole{})
		for _, r := range cr.Rules {
			for _, res := range r.Resources {
				if res != "tokenreviews" && res != "subjectaccessreviews" {
					t.Errorf("ClusterRoleBinding %s grants %v on %s cluster-wide", b.Name, r.Verbs, res)
				}
			}
		}
		if cr.AggregationRule != nil {
			t.Errorf("ClusterRoleBinding %s binds the aggregated %s cluster-wide", b.Name, cr.Name)
		}
	}
	for _, name := range []string{"callback-operator-manager-rolebinding", "callback-operator-addressable-resolver-rolebinding"} {
		b := as(t, find(objs, "RoleBinding", name), &rbacv1.RoleBinding{})
		if b.Namespace != ns || len(b.Subjects) != 1 || b.Subjects[0].Name != "callback-operator-controller-manager" {
			t.Errorf("RoleBinding %+v", b)
		}
	}
	d := as(t, find(objs, "Deployment", "callback-operator-controller-manager"), &appsv1.Deployment{})
	var watch *corev1.EnvVar
	for i, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "WATCH_NAMESPACES" {
			watch = &d.Spec.Template.Spec.Containers[0].Env[i]
		}
	}
	if watch == nil || watch.ValueFrom == nil || watch.ValueFrom.FieldRef == nil || watch.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("the manager does not watch its own namespace only: %+v", watch)
	}
}

func TestSamplesBuild(t *testing.T) {
	objs := build(t, "samples")
	for _, want := range []struct{ kind, name string }{
		{"Secret", "im-callback-token"}, {"Deployment", "moderation"}, {"Service", "moderation"}, {"CallbackReceiver", "blacklist"},
	} {
		if find(objs, want.kind, want.name) == nil {
			t.Errorf("config/samples has no %s %s", want.kind, want.name)
		}
	}
}

func TestCRDBuilds(t *testing.T) {
	objs := build(t, "crd")
	if len(objs) != 1 || objs[0].GetKind() != "CustomResourceDefinition" {
		t.Fatalf("config/crd builds %d objects", len(objs))
	}
}
