package resources

import (
	networkingv1 "k8s.io/api/networking/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// Defaults of a Gateway API parent reference, written out: the HTTPRoute's lists are atomic,
// so a value the API server fills in would differ from what this operator applied.
const (
	GatewayGroup = gwv1.GroupName
	GatewayKind  = "Gateway"
)

// Ingress routes exactly spec.path on spec.ingress.host to the receiver's Service; nil
// without spec.ingress. tls says whether the receiver pods serve HTTPS (the Service port's
// name, which the backend names, follows it).
func Ingress(cr *cbv1.CallbackReceiver, tls bool) *networkingv1ac.IngressApplyConfiguration {
	in := cr.Spec.Ingress
	if in == nil {
		return nil
	}
	spec := networkingv1ac.IngressSpec().
		WithRules(networkingv1ac.IngressRule().
			WithHost(in.Host).
			WithHTTP(networkingv1ac.HTTPIngressRuleValue().
				WithPaths(networkingv1ac.HTTPIngressPath().
					WithPath(cr.Spec.Path).
					// Exact: nothing but the callback path reaches the receiver.
					WithPathType(networkingv1.PathTypeExact).
					WithBackend(networkingv1ac.IngressBackend().
						WithService(networkingv1ac.IngressServiceBackend().
							WithName(cr.Name).
							WithPort(networkingv1ac.ServiceBackendPort().WithName(CallbackPortNameFor(tls))))))))
	if in.ClassName != "" {
		spec.WithIngressClassName(in.ClassName)
	}
	if in.TLS != nil {
		spec.WithTLS(networkingv1ac.IngressTLS().WithHosts(in.Host).WithSecretName(in.TLS.SecretName))
	}
	ac := networkingv1ac.Ingress(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(spec)
	if len(in.Annotations) > 0 {
		ac.WithAnnotations(in.Annotations)
	}
	return ac
}

// HTTPRoute attaches to spec.httpRoute's parents and routes exactly spec.path on its
// hostnames to the receiver's Service; nil without spec.httpRoute.
func HTTPRoute(cr *cbv1.CallbackReceiver, tls bool) *gwv1ac.HTTPRouteApplyConfiguration {
	hr := cr.Spec.HTTPRoute
	if hr == nil {
		return nil
	}
	parents := make([]*gwv1ac.ParentReferenceApplyConfiguration, 0, len(hr.ParentRefs))
	for _, p := range hr.ParentRefs {
		ref := gwv1ac.ParentReference().
			WithGroup(gwv1.Group(ParentGroup(p))).
			WithKind(gwv1.Kind(ParentKind(p))).
			WithName(gwv1.ObjectName(p.Name))
		if p.Namespace != "" {
			ref.WithNamespace(gwv1.Namespace(p.Namespace))
		}
		if p.SectionName != "" {
			ref.WithSectionName(gwv1.SectionName(p.SectionName))
		}
		if p.Port != nil {
			ref.WithPort(*p.Port)
		}
		parents = append(parents, ref)
	}
	hostnames := make([]gwv1.Hostname, 0, len(hr.Hostnames))
	for _, h := range hr.Hostnames {
		hostnames = append(hostnames, gwv1.Hostname(h))
	}
	return gwv1ac.HTTPRoute(cr.Name, cr.Namespace).
		WithLabels(Labels(cr)).
		WithOwnerReferences(owner(cr)).
		WithSpec(gwv1ac.HTTPRouteSpec().
			WithParentRefs(parents...).
			WithHostnames(hostnames...).
			WithRules(gwv1ac.HTTPRouteRule().
				WithMatches(gwv1ac.HTTPRouteMatch().
					WithPath(gwv1ac.HTTPPathMatch().WithType(gwv1.PathMatchExact).WithValue(cr.Spec.Path))).
				WithBackendRefs(gwv1ac.HTTPBackendRef().
					WithGroup("").
					WithKind("Service").
					WithName(gwv1.ObjectName(cr.Name)).
					WithPort(ServicePort(cr, tls)).
					WithWeight(1))))
}

// ParentGroup is a parent reference's group, with the Gateway API's default.
func ParentGroup(p cbv1.ParentReference) string {
	if p.Group == nil {
		return GatewayGroup
	}
	return *p.Group
}

// ParentKind is a parent reference's kind, with the Gateway API's default.
func ParentKind(p cbv1.ParentReference) string {
	if p.Kind == nil || *p.Kind == "" {
		return GatewayKind
	}
	return *p.Kind
}
