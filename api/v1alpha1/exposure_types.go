package v1alpha1

// TLSSpec makes the receiver serve HTTPS itself.
type TLSSpec struct {
	// SecretName names a Secret in the resource's namespace with the certificate (tls.crt,
	// PEM, the chain with the leaf first) and its private key (tls.key, PEM): a
	// kubernetes.io/tls Secret, as cert-manager's Certificate or
	// `kubectl create secret tls` writes. It is mounted read-only into the receiver pods;
	// a renewed certificate is served without a restart once the kubelet has refreshed
	// the volume (within its sync period, a minute or two). A missing or unusable Secret is reported in the
	// TLSResolved condition: a new receiver waits for it, a running one keeps serving its
	// last good certificate.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a Secret name: lower-case letters, digits, '-' and '.'"
	SecretName string `json:"secretName"`
}

// IngressSpec exposes the receiver through a networking.k8s.io/v1 Ingress.
type IngressSpec struct {
	// ClassName is the IngressClass of the ingress controller that serves the Ingress
	// (its spec.ingressClassName); the cluster's default IngressClass when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="className must be an IngressClass name: lower-case letters, digits, '-' and '.'"
	ClassName string `json:"className,omitempty"`

	// Host is the public DNS name IM calls, such as im-callback.example.com: the Ingress
	// routes requests for exactly this host and spec.path to the receiver, and
	// status.callbackURL is built from it. Point the name's DNS record at the ingress
	// controller's address.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && !self.matches('^[0-9.]+$')",message="host must be a lower-case DNS name such as im-callback.example.com, without scheme, port, path or wildcard, and not an IP address"
	Host string `json:"host"`

	// Annotations added to the Ingress: settings of the ingress controller, or
	// cert-manager's cert-manager.io/cluster-issuer to have it issue the certificate of
	// tls.secretName. With spec.tls the receiver speaks HTTPS, which most ingress
	// controllers must be told (ingress-nginx: nginx.ingress.kubernetes.io/backend-protocol: HTTPS).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// TLS has the ingress controller terminate HTTPS for host, with the certificate in a
	// Secret of the resource's namespace; status.callbackURL is then https. Without it the
	// Ingress serves plain HTTP, which IM accepts but does not recommend.
	// +optional
	TLS *IngressTLS `json:"tls,omitempty"`
}

// IngressTLS is the certificate the ingress controller presents for the host.
type IngressTLS struct {
	// SecretName names the kubernetes.io/tls Secret, in the resource's namespace, that the
	// ingress controller serves for host. The ingress controller reads it (cert-manager
	// creates it when the Ingress carries its annotation), the operator does not.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a Secret name: lower-case letters, digits, '-' and '.'"
	SecretName string `json:"secretName"`
}

// HTTPRouteSpec exposes the receiver through a Gateway API (gateway.networking.k8s.io/v1)
// HTTPRoute attached to one or more Gateways. The Gateway's listener for the hostnames is
// expected to terminate HTTPS: status.callbackURL is https.
type HTTPRouteSpec struct {
	// ParentRefs are the Gateways (or listeners of them, by sectionName) the route
	// attaches to, as in the HTTPRoute's own spec.parentRefs. A Gateway in another
	// namespace must allow routes from this one (its listeners' allowedRoutes).
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	ParentRefs []ParentReference `json:"parentRefs"`

	// Hostnames IM calls, such as im-callback.example.com: the route matches requests for
	// these hosts and spec.path exactly. The first one is the host of
	// status.callbackURL. Wildcards are not allowed: the console needs one exact URL.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Hostnames []Hostname `json:"hostnames"`
}

// Hostname is a lower-case DNS name, without wildcard.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && !self.matches('^[0-9.]+$')",message="each hostname must be a lower-case DNS name such as im-callback.example.com, without wildcard, port or scheme, and not an IP address"
type Hostname string

// ParentReference identifies a parent of the HTTPRoute, usually a Gateway. It mirrors the
// Gateway API's ParentReference.
type ParentReference struct {
	// Group of the parent: gateway.networking.k8s.io (a Gateway) by default; "" for the
	// core API group.
	// +optional
	// +kubebuilder:default="gateway.networking.k8s.io"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="group must be an API group such as gateway.networking.k8s.io, or empty for the core group"
	Group *string `json:"group,omitempty"`

	// Kind of the parent: Gateway by default.
	// +optional
	// +kubebuilder:default="Gateway"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$')",message="kind must be a Kubernetes kind such as Gateway"
	Kind *string `json:"kind,omitempty"`

	// Namespace of the parent; the resource's own namespace when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="namespace must be a namespace name: lower-case letters, digits and '-'"
	Namespace string `json:"namespace,omitempty"`

	// Name of the parent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// SectionName selects a part of the parent: for a Gateway, the name of one listener
	// (such as the HTTPS listener for the hostnames). The whole parent when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="sectionName must be a listener name: lower-case letters, digits, '-' and '.'"
	SectionName string `json:"sectionName,omitempty"`

	// Port selects the parent's listeners on this port (Gateway API extended support).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`
}
