package controllers

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
)

func tlsCondition(cr *cbv1.CallbackReceiver, f Facts) metav1.Condition {
	c := metav1.Condition{Type: cbv1.ConditionTLSResolved}
	switch {
	case f.TLSProblem != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, f.TLSProblem.Reason, truncate(f.TLSProblem.Message)
	case cr.Spec.TLS == nil:
		c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonTLSDisabled
		c.Message = "The receiver speaks plain HTTP, which is enough behind an Ingress or a Gateway that terminates HTTPS. Set spec.tls.secretName for the receiver to serve HTTPS itself."
	case f.Certificate == nil:
		// Not reached with facts from a reconcile, which always has one or the other.
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, cbv1.ReasonCertificateFound, "The certificate has not been read yet."
	default:
		cert := f.Certificate
		c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonCertificateFound
		c.Message = truncate(fmt.Sprintf("The receiver serves HTTPS with the certificate in Secret %s (%s), valid until %s; a renewed certificate is served without a restart.",
			cert.Secret, cert.describe(), cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	return c
}

// exposedCondition says whether IM can reach the receiver, and returns the URL to paste into
// the IM console when it can.
func exposedCondition(cr *cbv1.CallbackReceiver, f Facts) (metav1.Condition, string) {
	switch {
	case cr.Spec.Ingress != nil:
		return ingressExposed(cr, f)
	case cr.Spec.HTTPRoute != nil:
		return routeExposed(cr, f)
	}
	c := metav1.Condition{Type: cbv1.ConditionExposed, Status: metav1.ConditionFalse, Reason: cbv1.ReasonNotExposed}
	c.Message = fmt.Sprintf("The receiver is reachable only in the cluster, at %s. To give IM a URL, set spec.ingress (a host, and tls for HTTPS) or spec.httpRoute (a Gateway and hostnames): status.callbackURL then holds the URL to paste into the IM console.", f.URL)
	if cr.Spec.Service != nil && cr.Spec.Service.Type == corev1.ServiceTypeLoadBalancer {
		c.Message += " The Service is of type LoadBalancer: if its address is reachable from the internet, the URL is the scheme, a DNS name of that address, the port and spec.path; the operator cannot know the name."
	}
	return c, ""
}

func ingressExposed(cr *cbv1.CallbackReceiver, f Facts) (metav1.Condition, string) {
	in, ing := cr.Spec.Ingress, f.Ingress
	c := metav1.Condition{Type: cbv1.ConditionExposed, Status: metav1.ConditionFalse}
	if ing == nil {
		c.Reason = cbv1.ReasonIngressNotFound
		c.Message = fmt.Sprintf("The Ingress does not exist yet: see the Ready condition and the events (kubectl describe cbr %s -n %s).", cr.Name, cr.Namespace)
		return c, ""
	}
	scheme := "https"
	if in.TLS == nil {
		scheme = "http"
	}
	url := scheme + "://" + in.Host + cr.Spec.Path
	var b strings.Builder
	fmt.Fprintf(&b, "Ingress %s routes %s to the receiver", ing.Name, url)
	if in.ClassName != "" {
		fmt.Fprintf(&b, " (ingress class %s)", in.ClassName)
	}
	if addrs := ingressAddresses(ing); len(addrs) > 0 {
		fmt.Fprintf(&b, "; its ingress controller published the address %s: point the DNS name %s at it", strings.Join(addrs, ", "), in.Host)
	} else {
		b.WriteString("; no ingress controller has published an address for it yet (is one running for its class?)")
	}
	b.WriteString(". Paste status.callbackURL into the IM console; IM uses a changed URL after about 2 minutes.")
	c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonIngressConfigured
	if in.TLS == nil {
		c.Reason = cbv1.ReasonIngressWithoutTLS
		b.WriteString(" It serves plain HTTP, which IM accepts but does not recommend: set spec.ingress.tls.secretName (with cert-manager, also its cert-manager.io/cluster-issuer annotation in spec.ingress.annotations) for HTTPS.")
	}
	if f.ServesTLS {
		b.WriteString(" The receiver serves HTTPS itself (spec.tls): the ingress controller must be told its backend speaks HTTPS (ingress-nginx: the annotation nginx.ingress.kubernetes.io/backend-protocol: HTTPS).")
	}
	c.Message = truncate(b.String())
	return c, url
}

func ingressAddresses(ing *networkingv1.Ingress) []string {
	var out []string
	for _, a := range ing.Status.LoadBalancer.Ingress {
		switch {
		case a.Hostname != "":
			out = append(out, a.Hostname)
		case a.IP != "":
			out = append(out, a.IP)
		}
	}
	return out
}

// routeExposed reads the HTTPRoute's own status: each parent the spec names must have
// accepted the route, for the route's current generation.
func routeExposed(cr *cbv1.CallbackReceiver, f Facts) (metav1.Condition, string) {
	hr := cr.Spec.HTTPRoute
	c := metav1.Condition{Type: cbv1.ConditionExposed, Status: metav1.ConditionFalse}
	switch {
	case f.GatewayAPIProblem != nil:
		c.Reason, c.Message = f.GatewayAPIProblem.Reason, f.GatewayAPIProblem.Message
		return c, ""
	case f.Route == nil:
		c.Reason = cbv1.ReasonRouteNotFound
		c.Message = fmt.Sprintf("The HTTPRoute does not exist yet: see the Ready condition and the events (kubectl describe cbr %s -n %s).", cr.Name, cr.Namespace)
		return c, ""
	}
	route := f.Route
	url := "https://" + string(hr.Hostnames[0]) + cr.Spec.Path
	describe := fmt.Sprintf("kubectl describe httproute %s -n %s", route.Name, route.Namespace)
	var accepted, pending []string
	for _, ref := range hr.ParentRefs {
		name := parentName(cr.Namespace, ref)
		st := parentStatus(route, cr.Namespace, ref)
		var acc, res *metav1.Condition
		if st != nil {
			acc = meta.FindStatusCondition(st.Conditions, string(gwv1.RouteConditionAccepted))
			res = meta.FindStatusCondition(st.Conditions, string(gwv1.RouteConditionResolvedRefs))
		}
		switch {
		case acc == nil || stale(acc, route):
			pending = append(pending, name)
		case acc.Status != metav1.ConditionTrue:
			c.Reason = cbv1.ReasonRouteNotAccepted
			c.Message = truncate(fmt.Sprintf("%s did not accept HTTPRoute %s: %s. See: %s", name, route.Name, reasonAndMessage(acc), describe))
			return c, ""
		case res != nil && res.Status == metav1.ConditionFalse && !stale(res, route):
			c.Reason = cbv1.ReasonRouteRefsNotResolved
			c.Message = truncate(fmt.Sprintf("%s accepted HTTPRoute %s but cannot reach the receiver's Service: %s. See: %s", name, route.Name, reasonAndMessage(res), describe))
			return c, ""
		default:
			accepted = append(accepted, name)
		}
	}
	if len(pending) > 0 {
		c.Reason = cbv1.ReasonRoutePending
		c.Message = fmt.Sprintf("Waiting for %s to accept HTTPRoute %s for %s: no Gateway controller has reported on its current version yet. Check that the Gateway exists and that its controller runs (%s).", strings.Join(pending, ", "), route.Name, url, describe)
		return c, ""
	}
	c.Status, c.Reason = metav1.ConditionTrue, cbv1.ReasonRouteAccepted
	msg := fmt.Sprintf("%s accepted HTTPRoute %s for %s. Its listener for %s must terminate HTTPS with a certificate for that name. Paste status.callbackURL into the IM console; IM uses a changed URL after about 2 minutes.",
		strings.Join(accepted, ", "), route.Name, url, hr.Hostnames[0])
	if f.ServesTLS {
		msg += fmt.Sprintf(" The receiver serves HTTPS itself (spec.tls): the Gateway speaks HTTPS to it only with a BackendTLSPolicy for Service %s.", cr.Name)
	}
	c.Message = truncate(msg)
	return c, url
}

// reasonAndMessage quotes a Gateway's condition: "Reason: message", or the reason alone when
// the Gateway gave no message (Traefik's NoMatchingListenerHostname has none).
func reasonAndMessage(c *metav1.Condition) string {
	if strings.TrimSpace(c.Message) == "" {
		return c.Reason
	}
	return c.Reason + ": " + c.Message
}

// stale tells whether a Gateway's condition is about an older version of the route. A
// condition without observedGeneration is taken as current.
func stale(c *metav1.Condition, route *gwv1.HTTPRoute) bool {
	return c.ObservedGeneration != 0 && c.ObservedGeneration < route.Generation
}

// parentName is how messages name a parent: "Gateway chat/public" (with its listener).
func parentName(ns string, ref cbv1.ParentReference) string {
	if ref.Namespace != "" {
		ns = ref.Namespace
	}
	s := resources.ParentKind(ref) + " " + ns + "/" + ref.Name
	if ref.SectionName != "" {
		s += " (listener " + ref.SectionName + ")"
	}
	return s
}

// parentStatus is the route's status for the parent ref names, compared with the Gateway
// API's defaults filled in.
func parentStatus(route *gwv1.HTTPRoute, ns string, ref cbv1.ParentReference) *gwv1.RouteParentStatus {
	want := parentKey{
		group: resources.ParentGroup(ref), kind: resources.ParentKind(ref), namespace: ns,
		name: ref.Name, section: ref.SectionName,
	}
	if ref.Namespace != "" {
		want.namespace = ref.Namespace
	}
	if ref.Port != nil {
		want.port = *ref.Port
	}
	for i := range route.Status.Parents {
		if keyOf(route.Status.Parents[i].ParentRef, route.Namespace) == want {
			return &route.Status.Parents[i]
		}
	}
	return nil
}

type parentKey struct {
	group, kind, namespace, name, section string
	port                                  int32
}

func keyOf(p gwv1.ParentReference, routeNamespace string) parentKey {
	k := parentKey{group: resources.GatewayGroup, kind: resources.GatewayKind, namespace: routeNamespace, name: string(p.Name)}
	if p.Group != nil {
		k.group = string(*p.Group)
	}
	if p.Kind != nil && *p.Kind != "" {
		k.kind = string(*p.Kind)
	}
	if p.Namespace != nil && *p.Namespace != "" {
		k.namespace = string(*p.Namespace)
	}
	if p.SectionName != nil {
		k.section = string(*p.SectionName)
	}
	if p.Port != nil {
		k.port = *p.Port
	}
	return k
}
