package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestNamespaceScopedWithARoleOnly runs the manager as config/namespaced installs it: an
// identity whose only permissions are the generated rules as a Role in one namespace. It
// reconciles a resource there completely, without any cluster-wide access.
func TestNamespaceScopedWithARoleOnly(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	user, asManager := roleOnlyIdentity(t, ns, generatedRules(t))

	// The identity really has nothing outside the namespace.
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"},
	}}
	must(t, k8sClient.Create(ctx, review))
	g.Expect(review.Status.Allowed).To(BeFalse(), "the test identity may list Secrets cluster-wide")

	cr := fixture(t, ns)
	cr.Spec.HTTPRoute = &cbv1.HTTPRouteSpec{ParentRefs: []cbv1.ParentReference{{Name: "public"}}, Hostnames: []cbv1.Hostname{"im.example.com"}}
	// A second receiver, exposed by an Ingress.
	public := cr.DeepCopy()
	public.Name, public.Spec.HTTPRoute = "public", nil
	public.Spec.Ingress = &cbv1.IngressSpec{Host: "public.example.com"}
	startManager(t, ns, managerOptions{config: asManager})
	must(t, k8sClient.Create(ctx, cr))
	must(t, k8sClient.Create(ctx, public))
	waitForDeployment(g, cr)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		g.Expect(condition(got, cbv1.ConditionTokenResolved).Reason).To(Equal(cbv1.ReasonTokenFound))
		g.Expect(condition(got, cbv1.ConditionSinkResolved).Reason).To(Equal(cbv1.ReasonResolved))
		g.Expect(condition(got, cbv1.ConditionAvailable).Reason).To(Equal(cbv1.ReasonRollingOut))
		g.Expect(condition(got, cbv1.ConditionExposed).Reason).To(Equal(cbv1.ReasonRoutePending))
		got = get(g, ns, public.Name, &cbv1.CallbackReceiver{})
		g.Expect(condition(got, cbv1.ConditionExposed).Reason).To(Equal(cbv1.ReasonIngressWithoutTLS))
	}).Should(Succeed())
	get(g, ns, cr.Name, &appsv1.Deployment{})
	get(g, ns, cr.Name, &gwv1.HTTPRoute{})
	get(g, ns, public.Name, &networkingv1.Ingress{})
}

// generatedRules are the manager's rules from config/rbac/role.yaml.
func generatedRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	must(t, err)
	generated := &rbacv1.ClusterRole{}
	must(t, yaml.Unmarshal(raw, generated))
	return generated.Rules
}

// roleOnlyIdentity makes a user whose only permissions are rules as a Role in ns, and returns
// its name and a client configuration acting as it.
func roleOnlyIdentity(t *testing.T, ns string, rules []rbacv1.PolicyRule) (string, *rest.Config) {
	t.Helper()
	ctx := context.Background()
	must(t, k8sClient.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "manager-role", Namespace: ns}, Rules: rules}))
	user := "system:serviceaccount:" + ns + ":controller-manager"
	must(t, k8sClient.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "manager-rolebinding", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "manager-role"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
	}))
	config, err := env.User(user)
	must(t, err)
	return user, config
}

// TestHTTPRoutesForbiddenIsACondition: a manager whose role predates HTTPRoutes says so in
// the condition of a resource that asks for one, and reconciles everything else, the other
// resources included, as usual (no informer that can never sync).
func TestHTTPRoutesForbiddenIsACondition(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	var rules []rbacv1.PolicyRule
	for _, r := range generatedRules(t) {
		if !slices.Contains(r.Resources, "httproutes") {
			rules = append(rules, r)
		}
	}
	_, asManager := roleOnlyIdentity(t, ns, rules)

	cr := fixture(t, ns)
	cr.Spec.HTTPRoute = &cbv1.HTTPRouteSpec{ParentRefs: []cbv1.ParentReference{{Name: "public"}}, Hostnames: []cbv1.Hostname{"im.example.com"}}
	other := cr.DeepCopy()
	other.Name, other.Spec.HTTPRoute = "other", nil
	startManager(t, ns, managerOptions{config: asManager, gatewayAPIRecheck: time.Second})
	must(t, k8sClient.Create(ctx, cr))
	must(t, k8sClient.Create(ctx, other))
	expectExposed(g, ns, metav1.ConditionFalse, cbv1.ReasonHTTPRoutesForbidden, "", "httproutes.gateway.networking.k8s.io")
	waitForDeployment(g, cr)
	waitForDeployment(g, other)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, other.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		g.Expect(condition(got, cbv1.ConditionExposed).Reason).To(Equal(cbv1.ReasonNotExposed))
	}).Should(Succeed())
}
