package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

const (
	msgTLSDisabled = "The receiver speaks plain HTTP, which is enough behind an Ingress or a Gateway that terminates HTTPS. Set spec.tls.secretName for the receiver to serve HTTPS itself."
	msgNotExposed  = "The receiver is reachable only in the cluster, at " + statusURL + ". To give IM a URL, set spec.ingress (a host, and tls for HTTPS) or spec.httpRoute (a Gateway and hostnames): status.callbackURL then holds the URL to paste into the IM console."
	msgCertFound   = "The receiver serves HTTPS with the certificate in Secret im-callback-tls (subject CN=im.example.com, DNS names im.example.com, blacklist.chat.svc), valid until 2031-01-02T03:04:05Z; a renewed certificate is served without a restart."
	msgTLSMissing  = "Secret im-callback-tls with the receiver's TLS certificate does not exist: create it."
	msgExpired     = "The certificate in Secret im-callback-tls expired."

	publicURL       = "https://im.example.com/im/callback"
	msgReadyExposed = "Receiving callbacks at " + publicURL + " (in the cluster: " + statusURL + ") and delivering them to " + statusSink + "."
	msgPaste        = "Paste status.callbackURL into the IM console; IM uses a changed URL after about 2 minutes."
	describeRoute   = "kubectl describe httproute blacklist -n chat"
)

func certificate() *Certificate {
	return &Certificate{
		Secret: "im-callback-tls", Subject: "CN=im.example.com", DNSNames: []string{"im.example.com", "blacklist.chat.svc"},
		NotBefore: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), NotAfter: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func ingress(addresses ...networkingv1.IngressLoadBalancerIngress) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: "chat"}}
	ing.Status.LoadBalancer.Ingress = addresses
	return ing
}

// routeStatus is what a Gateway controller writes for one parent: Accepted and ResolvedRefs.
type routeStatus struct {
	ref                gwv1.ParentReference
	accepted, resolved metav1.ConditionStatus
	reason, message    string
	generation         int64
}

func route(generation int64, parents ...routeStatus) *gwv1.HTTPRoute {
	r := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: "chat", Generation: generation}}
	for _, p := range parents {
		ps := gwv1.RouteParentStatus{ParentRef: p.ref, ControllerName: "example.com/gateway"}
		if p.accepted != "" {
			ps.Conditions = append(ps.Conditions, metav1.Condition{Type: "Accepted", Status: p.accepted, Reason: p.reason, Message: p.message, ObservedGeneration: p.generation})
		}
		if p.resolved != "" {
			ps.Conditions = append(ps.Conditions, metav1.Condition{Type: "ResolvedRefs", Status: p.resolved, Reason: p.reason, Message: p.message, ObservedGeneration: p.generation})
		}
		r.Status.Parents = append(r.Status.Parents, ps)
	}
	return r
}

// As a Gateway controller writes parentRef back: the spec's, with the defaults filled in.
var (
	publicRef = gwv1.ParentReference{Group: ptr.To(gwv1.Group(gwv1.GroupName)), Kind: ptr.To(gwv1.Kind("Gateway")), Name: "public"}
	infraRef  = gwv1.ParentReference{Group: ptr.To(gwv1.Group(gwv1.GroupName)), Kind: ptr.To(gwv1.Kind("Gateway")), Namespace: ptr.To(gwv1.Namespace("infra")), Name: "shared", SectionName: ptr.To(gwv1.SectionName("https"))}
)

func withIngress(tls bool) func(*cbv1.CallbackReceiver) {
	return func(cr *cbv1.CallbackReceiver) {
		cr.Spec.Ingress = &cbv1.IngressSpec{ClassName: "nginx", Host: "im.example.com"}
		if tls {
			cr.Spec.Ingress.TLS = &cbv1.IngressTLS{SecretName: "im-example-com"}
		}
	}
}

func withRoute(cr *cbv1.CallbackReceiver) {
	cr.Spec.HTTPRoute = &cbv1.HTTPRouteSpec{
		ParentRefs: []cbv1.ParentReference{{Name: "public"}, {Namespace: "infra", Name: "shared", SectionName: "https"}},
		Hostnames:  []cbv1.Hostname{"im.example.com", "im.example.org"},
	}
}

func TestComputeStatusTLSAndExposure(t *testing.T) {
	cases := []struct {
		name        string
		change      func(*cbv1.CallbackReceiver)
		facts       func(*Facts)
		want        map[string]cond
		callbackURL string
	}{
		{"a usable certificate", func(cr *cbv1.CallbackReceiver) { cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "im-callback-tls"} },
			func(f *Facts) { f.Certificate = certificate() }, map[string]cond{
				cbv1.ConditionTLSResolved: {metav1.ConditionTrue, cbv1.ReasonCertificateFound, msgCertFound},
				cbv1.ConditionReady:       {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
			}, ""},
		{"a missing TLS Secret is TLSResolved and Ready", func(cr *cbv1.CallbackReceiver) { cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "im-callback-tls"} },
			func(f *Facts) {
				f.TLSProblem = &Problem{cbv1.ReasonTLSSecretNotFound, msgTLSMissing}
				f.Deployment = nil
			}, map[string]cond{
				cbv1.ConditionTLSResolved: {metav1.ConditionFalse, cbv1.ReasonTLSSecretNotFound, msgTLSMissing},
				cbv1.ConditionAvailable:   {metav1.ConditionFalse, cbv1.ReasonDeploymentNotFound, msgNoDeployment},
				cbv1.ConditionReady:       {metav1.ConditionFalse, cbv1.ReasonTLSSecretNotFound, msgTLSMissing},
			}, ""},
		{"an invalid TLS Secret passes through", func(cr *cbv1.CallbackReceiver) { cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "im-callback-tls"} },
			func(f *Facts) { f.TLSProblem = &Problem{cbv1.ReasonTLSSecretInvalid, "no tls.key"} }, map[string]cond{
				cbv1.ConditionTLSResolved: {metav1.ConditionFalse, cbv1.ReasonTLSSecretInvalid, "no tls.key"},
				cbv1.ConditionReady:       {metav1.ConditionFalse, cbv1.ReasonTLSSecretInvalid, "no tls.key"},
			}, ""},
		{"an expired certificate, still served", func(cr *cbv1.CallbackReceiver) { cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "im-callback-tls"} },
			func(f *Facts) {
				f.Certificate, f.TLSProblem = certificate(), &Problem{cbv1.ReasonTLSCertificateExpired, msgExpired}
			}, map[string]cond{
				cbv1.ConditionTLSResolved: {metav1.ConditionFalse, cbv1.ReasonTLSCertificateExpired, msgExpired},
				cbv1.ConditionAvailable:   {metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable, msgTwoReady},
				cbv1.ConditionReady:       {metav1.ConditionFalse, cbv1.ReasonTLSCertificateExpired, msgExpired},
			}, ""},
		{"the token comes before TLS in Ready", func(cr *cbv1.CallbackReceiver) { cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "im-callback-tls"} },
			func(f *Facts) {
				f.TokenProblem = &Problem{cbv1.ReasonTokenEmpty, "empty"}
				f.TLSProblem = &Problem{cbv1.ReasonTLSSecretNotFound, msgTLSMissing}
			}, map[string]cond{
				cbv1.ConditionReady: {metav1.ConditionFalse, cbv1.ReasonTokenEmpty, "empty"},
			}, ""},
		{"not exposed, a LoadBalancer Service: a hint, and still Ready", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Service = &cbv1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}
		}, nil, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonNotExposed, msgNotExposed + " The Service is of type LoadBalancer: if its address is reachable from the internet, the URL is the scheme, a DNS name of that address, the port and spec.path; the operator cannot know the name."},
			cbv1.ConditionReady:   {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}, ""},
		{"an Ingress terminating TLS, with an address", withIngress(true), func(f *Facts) {
			f.Ingress = ingress(networkingv1.IngressLoadBalancerIngress{IP: "203.0.113.7"}, networkingv1.IngressLoadBalancerIngress{Hostname: "lb.example.net"})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionTrue, cbv1.ReasonIngressConfigured, "Ingress blacklist routes " + publicURL + " to the receiver (ingress class nginx); its ingress controller published the address 203.0.113.7, lb.example.net: point the DNS name im.example.com at it. " + msgPaste},
			cbv1.ConditionReady:   {metav1.ConditionTrue, cbv1.ReasonReady, msgReadyExposed},
		}, publicURL},
		{"an Ingress without TLS and no address yet: http, and IM recommends HTTPS", withIngress(false), func(f *Facts) { f.Ingress = ingress() }, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionTrue, cbv1.ReasonIngressWithoutTLS, "Ingress blacklist routes http://im.example.com/im/callback to the receiver (ingress class nginx); no ingress controller has published an address for it yet (is one running for its class?). " + msgPaste + " It serves plain HTTP, which IM accepts but does not recommend: set spec.ingress.tls.secretName (with cert-manager, also its cert-manager.io/cluster-issuer annotation in spec.ingress.annotations) for HTTPS."},
			cbv1.ConditionReady:   {metav1.ConditionTrue, cbv1.ReasonReady, "Receiving callbacks at http://im.example.com/im/callback (in the cluster: " + statusURL + ") and delivering them to " + statusSink + "."},
		}, "http://im.example.com/im/callback"},
		{"an Ingress in front of a receiver that serves HTTPS: a hint for the backend protocol", withIngress(true), func(f *Facts) { f.Ingress, f.ServesTLS = ingress(), true }, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionTrue, cbv1.ReasonIngressConfigured, "Ingress blacklist routes " + publicURL + " to the receiver (ingress class nginx); no ingress controller has published an address for it yet (is one running for its class?). " + msgPaste + " The receiver serves HTTPS itself (spec.tls): the ingress controller must be told its backend speaks HTTPS (ingress-nginx: the annotation nginx.ingress.kubernetes.io/backend-protocol: HTTPS)."},
		}, publicURL},
		{"an Ingress that could not be written", withIngress(true), nil, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonIngressNotFound, "The Ingress does not exist yet: see the Ready condition and the events (kubectl describe cbr blacklist -n chat)."},
			cbv1.ConditionReady:   {metav1.ConditionFalse, cbv1.ReasonIngressNotFound, "The Ingress does not exist yet: see the Ready condition and the events (kubectl describe cbr blacklist -n chat)."},
		}, ""},
		{"no Gateway API, or no access to it", withRoute, func(f *Facts) { f.GatewayAPIProblem = &Problem{cbv1.ReasonGatewayAPINotInstalled, "install it"} }, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonGatewayAPINotInstalled, "install it"},
			cbv1.ConditionReady:   {metav1.ConditionFalse, cbv1.ReasonGatewayAPINotInstalled, "install it"},
		}, ""},
		{"an HTTPRoute that could not be written", withRoute, nil, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonRouteNotFound, "The HTTPRoute does not exist yet: see the Ready condition and the events (kubectl describe cbr blacklist -n chat)."},
		}, ""},
		{"an HTTPRoute no Gateway reported on", withRoute, func(f *Facts) { f.Route = route(1) }, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonRoutePending, "Waiting for Gateway chat/public, Gateway infra/shared (listener https) to accept HTTPRoute blacklist for " + publicURL + ": no Gateway controller has reported on its current version yet. Check that the Gateway exists and that its controller runs (" + describeRoute + ")."},
		}, ""},
		{"one Gateway accepted, the other reported on an older version", withRoute, func(f *Facts) {
			f.Route = route(3,
				routeStatus{ref: publicRef, accepted: metav1.ConditionTrue, resolved: metav1.ConditionTrue, generation: 3},
				routeStatus{ref: infraRef, accepted: metav1.ConditionTrue, generation: 2})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonRoutePending, "Waiting for Gateway infra/shared (listener https) to accept HTTPRoute blacklist for " + publicURL + ": no Gateway controller has reported on its current version yet. Check that the Gateway exists and that its controller runs (" + describeRoute + ")."},
		}, ""},
		{"a Gateway refused the route: its reason and message", withRoute, func(f *Facts) {
			f.Route = route(3,
				routeStatus{ref: publicRef, accepted: metav1.ConditionTrue, generation: 3},
				routeStatus{ref: infraRef, accepted: metav1.ConditionFalse, reason: "NotAllowedByListeners", message: "namespace chat is not allowed", generation: 3})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonRouteNotAccepted, "Gateway infra/shared (listener https) did not accept HTTPRoute blacklist: NotAllowedByListeners: namespace chat is not allowed. See: " + describeRoute},
			cbv1.ConditionReady:   {metav1.ConditionFalse, cbv1.ReasonRouteNotAccepted, "Gateway infra/shared (listener https) did not accept HTTPRoute blacklist: NotAllowedByListeners: namespace chat is not allowed. See: " + describeRoute},
		}, ""},
		{"a Gateway refused the route without a message (Traefik's NoMatchingListenerHostname): its reason alone", withRoute, func(f *Facts) {
			f.Route = route(3,
				routeStatus{ref: publicRef, accepted: metav1.ConditionTrue, generation: 3},
				routeStatus{ref: infraRef, accepted: metav1.ConditionFalse, reason: "NoMatchingListenerHostname", generation: 3})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonRouteNotAccepted, "Gateway infra/shared (listener https) did not accept HTTPRoute blacklist: NoMatchingListenerHostname. See: " + describeRoute},
			cbv1.ConditionReady:   {metav1.ConditionFalse, cbv1.ReasonRouteNotAccepted, "Gateway infra/shared (listener https) did not accept HTTPRoute blacklist: NoMatchingListenerHostname. See: " + describeRoute},
		}, ""},
		{"accepted, but the Service is out of reach", withRoute, func(f *Facts) {
			f.Route = route(3,
				routeStatus{ref: publicRef, accepted: metav1.ConditionTrue, resolved: metav1.ConditionFalse, reason: "BackendNotFound", message: "service chat/blacklist not found", generation: 3},
				routeStatus{ref: infraRef, accepted: metav1.ConditionTrue, generation: 3})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonRouteRefsNotResolved, "Gateway chat/public accepted HTTPRoute blacklist but cannot reach the receiver's Service: BackendNotFound: service chat/blacklist not found. See: " + describeRoute},
		}, ""},
		{"every Gateway accepted: the first hostname is the URL", withRoute, func(f *Facts) {
			f.Route = route(3,
				routeStatus{ref: publicRef, accepted: metav1.ConditionTrue, resolved: metav1.ConditionTrue, generation: 3},
				// A condition without observedGeneration counts as current.
				routeStatus{ref: infraRef, accepted: metav1.ConditionTrue})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionTrue, cbv1.ReasonRouteAccepted, "Gateway chat/public, Gateway infra/shared (listener https) accepted HTTPRoute blacklist for " + publicURL + ". Its listener for im.example.com must terminate HTTPS with a certificate for that name. " + msgPaste},
			cbv1.ConditionReady:   {metav1.ConditionTrue, cbv1.ReasonReady, msgReadyExposed},
		}, publicURL},
		{"accepted, in front of a receiver that serves HTTPS: a hint for BackendTLSPolicy", withRoute, func(f *Facts) {
			f.ServesTLS = true
			f.Route = route(3,
				routeStatus{ref: publicRef, accepted: metav1.ConditionTrue, generation: 3},
				routeStatus{ref: infraRef, accepted: metav1.ConditionTrue, generation: 3})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionTrue, cbv1.ReasonRouteAccepted, "Gateway chat/public, Gateway infra/shared (listener https) accepted HTTPRoute blacklist for " + publicURL + ". Its listener for im.example.com must terminate HTTPS with a certificate for that name. " + msgPaste + " The receiver serves HTTPS itself (spec.tls): the Gateway speaks HTTPS to it only with a BackendTLSPolicy for Service blacklist."},
		}, publicURL},
		{"a status entry for another listener is not this parent's", withRoute, func(f *Facts) {
			other := *infraRef.DeepCopy()
			other.SectionName = ptr.To(gwv1.SectionName("http"))
			f.Route = route(3,
				routeStatus{ref: publicRef, accepted: metav1.ConditionTrue, generation: 3},
				routeStatus{ref: other, accepted: metav1.ConditionTrue, generation: 3})
		}, map[string]cond{
			cbv1.ConditionExposed: {metav1.ConditionFalse, cbv1.ReasonRoutePending, "Waiting for Gateway infra/shared (listener https) to accept HTTPRoute blacklist for " + publicURL + ": no Gateway controller has reported on its current version yet. Check that the Gateway exists and that its controller runs (" + describeRoute + ")."},
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, st := checkComputedStatus(t, c.change, c.facts, c.want)
			if st.CallbackURL != c.callbackURL {
				t.Errorf("callbackURL %q, want %q", st.CallbackURL, c.callbackURL)
			}
		})
	}
}
