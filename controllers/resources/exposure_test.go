package resources

import (
	"encoding/json"
	"reflect"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

func ingressRule(host, path, port string) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{
			Path: path, PathType: ptr.To(networkingv1.PathTypeExact),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: "blacklist", Port: networkingv1.ServiceBackendPort{Name: port},
			}},
		}},
	}}}
}

func TestIngress(t *testing.T) {
	cases := []struct {
		name        string
		ingress     *cbv1.IngressSpec
		tls         bool
		want        networkingv1.IngressSpec
		annotations map[string]string
	}{
		{"only a host: the default class, plain HTTP", &cbv1.IngressSpec{Host: "im.example.com"}, false,
			networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{ingressRule("im.example.com", "/im/callback", "http")}}, nil},
		{"class, annotations and TLS at the ingress controller", &cbv1.IngressSpec{
			ClassName: "nginx", Host: "im.example.com", TLS: &cbv1.IngressTLS{SecretName: "im-example-com-tls"},
			Annotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"},
		}, false, networkingv1.IngressSpec{
			IngressClassName: ptr.To("nginx"),
			TLS:              []networkingv1.IngressTLS{{Hosts: []string{"im.example.com"}, SecretName: "im-example-com-tls"}},
			Rules:            []networkingv1.IngressRule{ingressRule("im.example.com", "/im/callback", "http")},
		}, map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}},
		{"the receiver serves HTTPS: the backend is the https port", &cbv1.IngressSpec{Host: "im.example.com"}, true,
			networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{ingressRule("im.example.com", "/im/callback", "https")}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr := base()
			cr.Spec.Ingress = c.ingress
			ing := decode[networkingv1.Ingress](t, Ingress(cr, c.tls))
			if ing.Name != "blacklist" || ing.Namespace != "chat" || len(ing.OwnerReferences) != 1 || !*ing.OwnerReferences[0].Controller {
				t.Fatalf("identity %s/%s owners %+v", ing.Namespace, ing.Name, ing.OwnerReferences)
			}
			if !reflect.DeepEqual(ing.Labels, Labels(cr)) || !reflect.DeepEqual(ing.Annotations, c.annotations) {
				t.Errorf("labels %v annotations %v", ing.Labels, ing.Annotations)
			}
			if !reflect.DeepEqual(ing.Spec, c.want) {
				got, _ := json.Marshal(ing.Spec)
				want, _ := json.Marshal(c.want)
				t.Errorf("spec\n  %s\nwant\n  %s", got, want)
			}
		})
	}
	if Ingress(base(), false) != nil {
		t.Error("an Ingress without spec.ingress")
	}
}

func TestHTTPRoute(t *testing.T) {
	gatewayGroup, gatewayKind := gwv1.Group(gwv1.GroupName), gwv1.Kind("Gateway")
	rule := func(port int32) []gwv1.HTTPRouteRule {
		return []gwv1.HTTPRouteRule{{
			Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptr.To(gwv1.PathMatchExact), Value: ptr.To("/im/callback")}}},
			BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{
					Group: ptr.To(gwv1.Group("")), Kind: ptr.To(gwv1.Kind("Service")), Name: "blacklist", Port: ptr.To(port),
				},
				Weight: ptr.To(int32(1)),
			}}},
		}}
	}
	cases := []struct {
		name  string
		route *cbv1.HTTPRouteSpec
		tls   bool
		want  gwv1.HTTPRouteSpec
	}{
		{"a Gateway by name: the defaults written out", &cbv1.HTTPRouteSpec{
			ParentRefs: []cbv1.ParentReference{{Name: "public"}},
			Hostnames:  []cbv1.Hostname{"im.example.com"},
		}, false, gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Group: &gatewayGroup, Kind: &gatewayKind, Name: "public"}}},
			Hostnames:       []gwv1.Hostname{"im.example.com"},
			Rules:           rule(80),
		}},
		{"a listener of a Gateway elsewhere, two hostnames, HTTPS to the receiver", &cbv1.HTTPRouteSpec{
			ParentRefs: []cbv1.ParentReference{
				{Group: ptr.To(gwv1.GroupName), Kind: ptr.To("Gateway"), Namespace: "infra", Name: "public", SectionName: "https", Port: ptr.To(int32(443))},
				{Group: ptr.To(""), Kind: ptr.To("Service"), Name: "mesh"},
			},
			Hostnames: []cbv1.Hostname{"im.example.com", "im.example.org"},
		}, true, gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{
				{Group: &gatewayGroup, Kind: &gatewayKind, Namespace: ptr.To(gwv1.Namespace("infra")), Name: "public", SectionName: ptr.To(gwv1.SectionName("https")), Port: ptr.To(int32(443))},
				{Group: ptr.To(gwv1.Group("")), Kind: ptr.To(gwv1.Kind("Service")), Name: "mesh"},
			}},
			Hostnames: []gwv1.Hostname{"im.example.com", "im.example.org"},
			Rules:     rule(443),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr := base()
			cr.Spec.HTTPRoute = c.route
			r := decode[gwv1.HTTPRoute](t, HTTPRoute(cr, c.tls))
			if r.Kind != "HTTPRoute" || r.APIVersion != "gateway.networking.k8s.io/v1" || r.Name != "blacklist" || r.Namespace != "chat" {
				t.Fatalf("identity %s %s %s/%s", r.APIVersion, r.Kind, r.Namespace, r.Name)
			}
			if len(r.OwnerReferences) != 1 || !*r.OwnerReferences[0].Controller || !reflect.DeepEqual(r.Labels, Labels(cr)) {
				t.Fatalf("owners %+v labels %v", r.OwnerReferences, r.Labels)
			}
			if !reflect.DeepEqual(r.Spec, c.want) {
				got, _ := json.Marshal(r.Spec)
				want, _ := json.Marshal(c.want)
				t.Errorf("spec\n  %s\nwant\n  %s", got, want)
			}
		})
	}
	if HTTPRoute(base(), false) != nil {
		t.Error("an HTTPRoute without spec.httpRoute")
	}
}
