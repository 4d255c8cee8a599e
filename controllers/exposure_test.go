package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers"
	"github.com/imcallback/callback-operator/controllers/resources"
)

// updateSpec changes the resource's spec, retrying on conflicts.
func updateSpec(g *WithT, ns string, change func(*cbv1.CallbackReceiverSpec)) {
	g.Eventually(func() error {
		cr := &cbv1.CallbackReceiver{}
		if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "blacklist"}, cr); err != nil {
			return err
		}
		change(&cr.Spec)
		return k8sClient.Update(context.Background(), cr)
	}).Should(Succeed())
}

func expectExposed(g *WithT, ns string, status metav1.ConditionStatus, reason, callbackURL string, mentions ...string) {
	expectExposedIn(g, k8sClient, ns, status, reason, callbackURL, mentions...)
}

// expectExposedIn is expectExposed on the API server of c.
func expectExposedIn(g *WithT, c client.Client, ns string, status metav1.ConditionStatus, reason, callbackURL string, mentions ...string) {
	g.Eventually(func(g Gomega) {
		cr := &cbv1.CallbackReceiver{}
		g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "blacklist"}, cr)).To(Succeed())
		c := condition(cr, cbv1.ConditionExposed)
		g.Expect(c.ObservedGeneration).To(Equal(cr.Generation))
		g.Expect(c.Status).To(Equal(status))
		g.Expect(c.Reason).To(Equal(reason))
		for _, m := range mentions {
			g.Expect(c.Message).To(ContainSubstring(m))
		}
		g.Expect(cr.Status.CallbackURL).To(Equal(callbackURL))
	}).Should(Succeed())
}

// touch makes the controller reconcile the resource again (an annotation change).
func touch(g *WithT, ns, value string) {
	g.Eventually(func() error {
		cr := &cbv1.CallbackReceiver{}
		if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "blacklist"}, cr); err != nil {
			return err
		}
		cr.Annotations = map[string]string{"touch": value}
		return k8sClient.Update(context.Background(), cr)
	}).Should(Succeed())
}

// appliedEvents are the notes of the resource's "Applied" events: what kubectl describe shows.
func appliedEvents(g Gomega, ns string) []string {
	evs := &eventsv1.EventList{}
	g.Expect(k8sClient.List(context.Background(), evs, client.InNamespace(ns))).To(Succeed())
	var notes []string
	for _, e := range evs.Items {
		if e.Regarding.Name == "blacklist" && e.Reason == "Applied" {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

func TestIngressCreatedChangedRemoved(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, func(cr *cbv1.CallbackReceiver) {
		cr.Spec.Ingress = &cbv1.IngressSpec{Host: "im.example.com"}
	})

	// Created as the builder says, owned by the resource; plain HTTP is exposed, with advice.
	expectExposed(g, ns, metav1.ConditionTrue, cbv1.ReasonIngressWithoutTLS, "http://im.example.com/im/callback",
		"no ingress controller has published an address", "IM accepts but does not recommend")
	ing := get(g, ns, cr.Name, &networkingv1.Ingress{})
	cr = get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
	applied, err := networkingv1ac.ExtractIngress(ing, controllers.FieldManager)
	g.Expect(err).NotTo(HaveOccurred())
	if diff := cmp.Diff(toMap(t, resources.Ingress(cr, false)), toMap(t, applied)); diff != "" {
		t.Fatalf("the live Ingress differs from the builder's (-builder +live):\n%s", diff)
	}
	g.Expect(metav1.IsControlledBy(ing, cr)).To(BeTrue())
	g.Expect(*ing.Spec.Rules[0].HTTP.Paths[0].PathType).To(Equal(networkingv1.PathTypeExact))
	g.Eventually(func(g Gomega) {
		g.Expect(appliedEvents(g, ns)).To(ContainElement(ContainSubstring("Created Ingress/blacklist")))
	}).Should(Succeed())

	// Reconciling again writes nothing: every default the API server would fill is written out.
	before := ing.ResourceVersion
	touch(g, ns, "1")
	touch(g, ns, "2")
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &networkingv1.Ingress{}).ResourceVersion).To(Equal(before))
	}, 2*time.Second).Should(Succeed())

	// TLS at the ingress controller, a class and cert-manager's annotation: https.
	updateSpec(g, ns, func(s *cbv1.CallbackReceiverSpec) {
		s.Ingress = &cbv1.IngressSpec{
			ClassName: "nginx", Host: "im.example.com", TLS: &cbv1.IngressTLS{SecretName: "im-example-com-tls"},
			Annotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"},
		}
	})
	expectExposed(g, ns, metav1.ConditionTrue, cbv1.ReasonIngressConfigured, "https://im.example.com/im/callback", "ingress class nginx")
	ing = get(g, ns, cr.Name, &networkingv1.Ingress{})
	g.Expect(*ing.Spec.IngressClassName).To(Equal("nginx"))
	g.Expect(ing.Spec.TLS).To(Equal([]networkingv1.IngressTLS{{Hosts: []string{"im.example.com"}, SecretName: "im-example-com-tls"}}))
	g.Expect(ing.Annotations).To(HaveKeyWithValue("cert-manager.io/cluster-issuer", "letsencrypt"))

	// The ingress controller publishes its address: the message tells where DNS points.
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}}
	must(t, k8sClient.Status().Update(ctx, ing))
	expectExposed(g, ns, metav1.ConditionTrue, cbv1.ReasonIngressConfigured, "https://im.example.com/im/callback",
		"published the address 203.0.113.7: point the DNS name im.example.com at it")
	markAvailable(g, ns)
	g.Eventually(func(g Gomega) {
		ready := condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(ready.Message).To(ContainSubstring("Receiving callbacks at https://im.example.com/im/callback (in the cluster: http://blacklist." + ns))
	}).Should(Succeed())

	// Removed from the spec: the Ingress goes, and the URL with it.
	updateSpec(g, ns, func(s *cbv1.CallbackReceiverSpec) { s.Ingress = nil })
	expectExposed(g, ns, metav1.ConditionFalse, cbv1.ReasonNotExposed, "", "reachable only in the cluster")
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &networkingv1.Ingress{}))
	}).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(appliedEvents(g, ns)).To(ContainElement(ContainSubstring("Deleted Ingress/blacklist")))
	}).Should(Succeed())
}

// markAvailable writes what the Deployment controller (which envtest does not run) writes
// once the receiver's pod is ready.
func markAvailable(g *WithT, ns string) {
	g.Eventually(func() error {
		d := &appsv1.Deployment{}
		if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "blacklist"}, d); err != nil {
			return err
		}
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}},
		}
		return k8sClient.Status().Update(context.Background(), d)
	}).Should(Succeed())
}

// setRouteStatus writes what a Gateway controller writes into the route's status: one entry
// per parent with Accepted (and ResolvedRefs) for the route's current generation.
func setRouteStatus(g *WithT, ns string, accepted metav1.ConditionStatus, reason, message string) {
	setRouteStatusIn(g, k8sClient, ns, accepted, reason, message)
}

func setRouteStatusIn(g *WithT, c client.Client, ns string, accepted metav1.ConditionStatus, reason, message string) {
	g.Eventually(func() error {
		r := &gwv1.HTTPRoute{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "blacklist"}, r); err != nil {
			return err
		}
		r.Status.Parents = nil
		for _, p := range r.Spec.ParentRefs {
			r.Status.Parents = append(r.Status.Parents, gwv1.RouteParentStatus{
				ParentRef: p, ControllerName: "example.com/gateway-controller",
				Conditions: []metav1.Condition{
					{Type: "Accepted", Status: accepted, Reason: reason, Message: message, ObservedGeneration: r.Generation, LastTransitionTime: metav1.Now()},
					{Type: "ResolvedRefs", Status: metav1.ConditionTrue, Reason: "ResolvedRefs", ObservedGeneration: r.Generation, LastTransitionTime: metav1.Now()},
				},
			})
		}
		return c.Status().Update(context.Background(), r)
	}).Should(Succeed())
}

func TestHTTPRouteCreatedAcceptedChangedRemoved(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, func(cr *cbv1.CallbackReceiver) {
		cr.Spec.HTTPRoute = &cbv1.HTTPRouteSpec{
			ParentRefs: []cbv1.ParentReference{{Name: "public", Namespace: "infra", SectionName: "https"}},
			Hostnames:  []cbv1.Hostname{"im.example.com"},
		}
	})

	// Created as the builder says; no Gateway has answered yet: not exposed, no URL.
	expectExposed(g, ns, metav1.ConditionFalse, cbv1.ReasonRoutePending, "", "Waiting for Gateway infra/public (listener https)")
	route := get(g, ns, cr.Name, &gwv1.HTTPRoute{})
	cr = get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
	applied, err := gwv1ac.ExtractHTTPRoute(route, controllers.FieldManager)
	g.Expect(err).NotTo(HaveOccurred())
	if diff := cmp.Diff(toMap(t, resources.HTTPRoute(cr, false)), toMap(t, applied)); diff != "" {
		t.Fatalf("the live HTTPRoute differs from the builder's (-builder +live):\n%s", diff)
	}
	g.Expect(metav1.IsControlledBy(route, cr)).To(BeTrue())
	// A route no Gateway accepted makes the receiver not Ready, once all else is.
	markAvailable(g, ns)
	g.Eventually(func(g Gomega) {
		g.Expect(condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionReady).Reason).To(Equal(cbv1.ReasonRoutePending))
	}).Should(Succeed())

	// The Gateway accepts it: the route's own status, through the route watch, makes it exposed.
	setRouteStatus(g, ns, metav1.ConditionTrue, "Accepted", "")
	expectExposed(g, ns, metav1.ConditionTrue, cbv1.ReasonRouteAccepted, "https://im.example.com/im/callback",
		"Gateway infra/public (listener https) accepted HTTPRoute blacklist")

	// Nothing is written again on reconciles (the atomic lists hold no server defaults).
	before := get(g, ns, cr.Name, &gwv1.HTTPRoute{}).ResourceVersion
	touch(g, ns, "1")
	touch(g, ns, "2")
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, cr.Name, &gwv1.HTTPRoute{}).ResourceVersion).To(Equal(before))
	}, 2*time.Second).Should(Succeed())

	// The Gateway refuses it: its reason and message are the condition's.
	setRouteStatus(g, ns, metav1.ConditionFalse, "NotAllowedByListeners", "no listener allows routes from namespace "+ns)
	expectExposed(g, ns, metav1.ConditionFalse, cbv1.ReasonRouteNotAccepted, "",
		"NotAllowedByListeners: no listener allows routes from namespace "+ns)

	// A new hostname: the route changes, and the Gateway's word on the old version no
	// longer counts.
	setRouteStatus(g, ns, metav1.ConditionTrue, "Accepted", "")
	expectExposed(g, ns, metav1.ConditionTrue, cbv1.ReasonRouteAccepted, "https://im.example.com/im/callback")
	updateSpec(g, ns, func(s *cbv1.CallbackReceiverSpec) { s.HTTPRoute.Hostnames = []cbv1.Hostname{"callbacks.example.com"} })
	expectExposed(g, ns, metav1.ConditionFalse, cbv1.ReasonRoutePending, "", "https://callbacks.example.com/im/callback")
	g.Expect(get(g, ns, cr.Name, &gwv1.HTTPRoute{}).Spec.Hostnames).To(Equal([]gwv1.Hostname{"callbacks.example.com"}))
	setRouteStatus(g, ns, metav1.ConditionTrue, "Accepted", "")
	expectExposed(g, ns, metav1.ConditionTrue, cbv1.ReasonRouteAccepted, "https://callbacks.example.com/im/callback")

	// From a route to an Ingress: the route goes, the Ingress comes.
	updateSpec(g, ns, func(s *cbv1.CallbackReceiverSpec) {
		s.HTTPRoute = nil
		s.Ingress = &cbv1.IngressSpec{Host: "im.example.com", TLS: &cbv1.IngressTLS{SecretName: "im-tls"}}
	})
	expectExposed(g, ns, metav1.ConditionTrue, cbv1.ReasonIngressConfigured, "https://im.example.com/im/callback")
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), &gwv1.HTTPRoute{}))
	}).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(appliedEvents(g, ns)).To(ContainElement(ContainSubstring("Deleted HTTPRoute/blacklist")))
	}).Should(Succeed())
}
