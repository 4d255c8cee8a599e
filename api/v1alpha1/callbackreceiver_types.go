package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CallbackReceiverSpec declares a receiver for Tencent Cloud IM third-party callbacks of one
// app, and where it forwards them.
// +kubebuilder:validation:XValidation:rule="has(self.sink) || has(self.routes) || has(self.decisions)",message="say where callbacks go: set spec.sink (for spec.commands), spec.routes or spec.decisions"
// +kubebuilder:validation:XValidation:rule="!has(self.commands) || has(self.sink)",message="spec.commands are forwarded to spec.sink: set spec.sink, or move the commands into spec.routes"
// +kubebuilder:validation:XValidation:rule="!has(self.commands) || !has(self.routes) || self.commands.all(c, self.routes.all(r, !(c in r.commands)))",messageExpression="'command ' + self.commands.filter(c, self.routes.exists(r, c in r.commands))[0] + ' is in both spec.commands and spec.routes: list each command once'"
// +kubebuilder:validation:XValidation:rule="!has(self.commands) || !has(self.decisions) || self.commands.all(c, self.decisions.all(d, !(c in d.commands)))",messageExpression="'command ' + self.commands.filter(c, self.decisions.exists(d, c in d.commands))[0] + ' is in both spec.commands and spec.decisions: list each command once'"
// +kubebuilder:validation:XValidation:rule="!has(self.routes) || !has(self.decisions) || self.routes.all(r, r.commands.all(c, self.decisions.all(d, !(c in d.commands))))",message="a command is in both spec.routes and spec.decisions: list each command once"
// +kubebuilder:validation:XValidation:rule="!has(self.routes) || self.routes.all(r, self.routes.exists_one(o, o.commands.exists(c, c in r.commands)))",message="a command is in two of spec.routes: list each command once"
// +kubebuilder:validation:XValidation:rule="!has(self.decisions) || self.decisions.all(d, self.decisions.exists_one(o, o.commands.exists(c, c in d.commands)))",message="a command is in two of spec.decisions: list each command once"
// +kubebuilder:validation:XValidation:rule="!has(self.ingress) || !has(self.httpRoute)",message="set at most one of ingress and httpRoute: the receiver is exposed either through an Ingress or through a Gateway API HTTPRoute"
// +kubebuilder:validation:XValidation:rule="(!has(self.ingress) && !has(self.httpRoute)) || (self.path.matches('^([^%]|%[0-9A-Fa-f]{2})*$') && !self.path.lowerAscii().contains('%2f'))",message="with ingress or httpRoute, path may use '%' only as a percent-escape of two hex digits, and not '%2F': Ingresses and HTTPRoutes refuse other paths"
type CallbackReceiverSpec struct {
	// SdkAppID is the SDKAppID of the IM app, as shown in the IM console. Callbacks whose
	// SdkAppid query parameter differs are refused with 403.
	// +required
	// +kubebuilder:validation:XValidation:rule="self > 0",message="sdkAppID must be the app's SDKAppID from the IM console, a number greater than 0"
	SdkAppID int64 `json:"sdkAppID"`

	// Path is the HTTP path the receiver serves, the path part of the callback URL configured
	// in the IM console (IM appends its own query parameters). Absolute, without query or
	// fragment, at most 256 characters.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="path must be absolute: start it with '/', such as /im/callback"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="path must not contain '?' or '#': IM appends its own query parameters to the callback URL"
	// +kubebuilder:validation:XValidation:rule="!self.contains('//')",message="path must not contain an empty segment ('//')"
	// +kubebuilder:validation:XValidation:rule="!self.contains('/../') && !self.endsWith('/..') && !self.contains('/./') && !self.endsWith('/.')",message="path must not contain '.' or '..' segments"
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9._~!$&\\'()*+,;=:@%/-]*$')",message="path may contain only URL path characters: letters, digits and -._~!$&'()*+,;=:@%/"
	Path string `json:"path"`

	// Commands lists the callback commands (CallbackCommand) forwarded to spec.sink; without
	// it, Sns.CallbackBlackListDelete is, unless a route or decision takes it. One callback
	// URL receives every callback the app has switched on: commands that no list here names
	// are answered OK (so a before-callback never blocks a user) and counted as ignored.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Commands []Command `json:"commands,omitempty"`

	// Auth turns on callback authentication: every callback must carry Sign and RequestTime
	// computed with the token configured in the IM console. Without it, callbacks are not
	// authenticated (the receiver logs a warning).
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`

	// Sink is where the callbacks of spec.commands are delivered as CloudEvents. Optional
	// when spec.routes or spec.decisions say where every callback goes.
	// +optional
	Sink *Destination `json:"sink,omitempty"`

	// Routes send the callbacks of other commands to sinks of their own, with the same
	// delivery settings: one callback URL for the app, several consumers behind it.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Routes []Route `json:"routes,omitempty"`

	// Decisions answer before-callbacks (such as C2C.CallbackBeforeSendMsg) through decision
	// services, whose answers IM applies: moderation, friend-request policies.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Decisions []Decision `json:"decisions,omitempty"`

	// DecisionPolicy bounds the exchange with decision services: timeout and the answer when
	// one fails.
	// +optional
	DecisionPolicy *DecisionPolicy `json:"decisionPolicy,omitempty"`

	// Delivery sets retries, backoff, per-attempt timeout and the dead-letter sink, like
	// Knative's DeliverySpec.
	// +optional
	// +kubebuilder:default={}
	Delivery *DeliverySpec `json:"delivery,omitempty"`

	// Replicas is the number of receiver pods. It is the scale subresource, so
	// `kubectl scale` and a HorizontalPodAutoscaler work. 0 stops the receiver. The default
	// is 2: with one, every rollout of a StatefulSet leaves IM without a receiver for
	// seconds, and IM does not retry a callback.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Replicas *int32 `json:"replicas,omitempty"`

	// Image overrides the receiver's container image. By default the receiver runs from the
	// operator's own image, so operator and receiver versions match. It is honoured only when
	// the operator allows image overrides (manager flag --allow-image-override, off in the
	// default installation), as an image of one's choice could read the token Secret;
	// otherwise the operator's image runs and the ImageResolved condition says so.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.contains(' ')",message="image must be an image reference without spaces, such as ghcr.io/imcallback/callback-operator:v0.1.0"
	Image string `json:"image,omitempty"`

	// Resources of the receiver container. By default it requests 50m CPU and 64Mi memory
	// and is limited to 256Mi memory.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// Spool keeps every accepted callback on disk, synced before its OK, until it is
	// delivered: by default on a PersistentVolumeClaim of 1Gi per receiver pod (the
	// receivers then run as a StatefulSet), so neither a crash, an OOM kill, a rollout, a
	// pod's deletion or eviction nor a scale-down loses a callback once it answered OK.
	// +optional
	// +kubebuilder:default={}
	Spool *SpoolSpec `json:"spool,omitempty"`

	// Service configures the Service in front of the receiver pods.
	// +optional
	// +kubebuilder:default={}
	Service *ServiceSpec `json:"service,omitempty"`

	// TLS makes the receiver serve HTTPS with the certificate of a Secret (the Service then
	// listens on 443 unless service.port says otherwise). Without it the receiver speaks
	// plain HTTP, which is enough behind an Ingress or Gateway that terminates HTTPS.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// Ingress exposes the receiver to IM through an Ingress for exactly spec.path on one
	// host; status.callbackURL is then the URL to paste into the IM console. At most one of
	// ingress and httpRoute. The Exposed condition says whether it is in place.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// HTTPRoute exposes the receiver to IM through a Gateway API HTTPRoute for exactly
	// spec.path on the given hostnames; status.callbackURL is then the URL to paste into
	// the IM console, once a Gateway accepted the route. Needs the Gateway API CRDs
	// (gateway.networking.k8s.io/v1) in the cluster. At most one of ingress and httpRoute.
	// +optional
	HTTPRoute *HTTPRouteSpec `json:"httpRoute,omitempty"`
}

// Command is the name of an IM callback, the CallbackCommand query parameter, such as
// Sns.CallbackBlackListDelete.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=128
// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]+\\\\.[A-Za-z0-9_]+$')",message="each command must look like Sns.CallbackBlackListDelete: a module, a dot and a callback name"
type Command string

// AuthSpec configures callback authentication (Sign and RequestTime).
type AuthSpec struct {
	// TokenSecretRef selects the key of a Secret, in the resource's namespace, that holds the
	// callback authentication token from the IM console. Rotating the Secret's value rolls
	// the receiver pods.
	// +required
	TokenSecretRef SecretKeySelector `json:"tokenSecretRef"`

	// MaxClockSkew bounds replay: a RequestTime further than this from the receiver's clock,
	// in either direction, is refused with 401.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="maxClockSkew must be a duration between 1s and 1h, such as 60s"
	MaxClockSkew *metav1.Duration `json:"maxClockSkew,omitempty"`
}

// SecretKeySelector selects a key of a Secret in the resource's namespace.
type SecretKeySelector struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="tokenSecretRef.name must be a Secret name: lower-case letters, digits, '-' and '.'"
	Name string `json:"name"`

	// Key within the Secret whose value is the token.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="tokenSecretRef.key must be a Secret key: letters, digits, '-', '_' and '.'"
	Key string `json:"key"`
}

// Destination is where events go: a reference to a Kubernetes object, a URI, or both, in
// which case the URI is a path relative to the object's address.
// +kubebuilder:validation:XValidation:rule="has(self.ref) || has(self.uri)",message="set ref, uri or both to say where events go"
// +kubebuilder:validation:XValidation:rule="has(self.ref) || !has(self.uri) || (isURL(self.uri) && url(self.uri).getScheme() in ['http', 'https'] && url(self.uri).getHostname().size() > 0)",message="uri without ref must be an absolute http or https URL, such as http://sink.chat.svc.cluster.local/events"
// +kubebuilder:validation:XValidation:rule="!has(self.ref) || !has(self.uri) || (self.uri.startsWith('/') && !self.uri.startsWith('//'))",message="with ref, uri must be a path relative to the ref's address, such as /events"
type Destination struct {
	// Ref points at the object events are sent to: a Service (port 80 unless it has exactly
	// one port), or any Addressable object, whose status.address.url is used.
	// +optional
	Ref *KReference `json:"ref,omitempty"`

	// URI is an absolute http(s) URL, or, together with ref, a path relative to its address.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	URI string `json:"uri,omitempty"`
}

// KReference refers to a Kubernetes object by API version, kind, name and namespace.
type KReference struct {
	// APIVersion of the referent, such as v1 or serving.knative.dev/v1.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	APIVersion string `json:"apiVersion"`

	// Kind of the referent, such as Service.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Z][A-Za-z0-9]*$')",message="kind must be a Kubernetes kind in CamelCase, such as Service"
	Kind string `json:"kind"`

	// Name of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="name must be an object name: lower-case letters, digits, '-' and '.'"
	Name string `json:"name"`

	// Namespace of the referent; the resource's own namespace when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="namespace must be a namespace name: lower-case letters, digits and '-'"
	Namespace string `json:"namespace,omitempty"`
}

// BackoffPolicy is how the delay between delivery attempts grows.
// +kubebuilder:validation:Enum=exponential;linear
type BackoffPolicy string

const (
	// BackoffExponential waits backoffDelay x 2^n before retry n.
	BackoffExponential BackoffPolicy = "exponential"
	// BackoffLinear waits backoffDelay x n before retry n.
	BackoffLinear BackoffPolicy = "linear"
)

// DeliverySpec says how events are delivered to the sink.
type DeliverySpec struct {
	// Retry is the number of retries after the first attempt. Network errors, timeouts, 5xx,
	// 404, 408, 409 and 429 (honouring Retry-After) are retried; other 4xx are not.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Retry *int32 `json:"retry,omitempty"`

	// BackoffPolicy is exponential (backoffDelay x 2^n before retry n) or linear
	// (backoffDelay x n).
	// +optional
	// +kubebuilder:default=exponential
	BackoffPolicy BackoffPolicy `json:"backoffPolicy,omitempty"`

	// BackoffDelay is the base delay between attempts.
	// +optional
	// +kubebuilder:default="200ms"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="backoffDelay must be a duration between 1ms and 1h, such as 200ms"
	BackoffDelay *metav1.Duration `json:"backoffDelay,omitempty"`

	// Timeout of each delivery attempt.
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('5m')",message="timeout must be a duration between 1ms and 5m, such as 1s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// DeadLetterSink receives events whose delivery failed after the last retry, with the
	// extensions deadletterreason and deadletterattempts. Without it such events are counted
	// as failed and logged whole.
	// +optional
	DeadLetterSink *Destination `json:"deadLetterSink,omitempty"`
}

// ServiceSpec configures the Service in front of the receiver.
type ServiceSpec struct {
	// Type of the Service: ClusterIP, NodePort or LoadBalancer.
	// +optional
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	Type corev1.ServiceType `json:"type,omitempty"`

	// Port the Service listens on for callbacks: 443 when spec.tls is set, else 80.
	// (Resources created by operator versions that defaulted this field hold 80 here
	// explicitly: remove it to get 443 with spec.tls.)
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// Annotations added to the Service, for example to configure a cloud load balancer.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Counts are the callbacks and events the receiver processed over the resource's life,
// summed over all pods and restarts. Received = accepted + rejected + ignored + unavailable +
// decided + duplicate.
type Counts struct {
	// Received callbacks: every HTTP request to the receiver's callback port.
	// +optional
	// +kubebuilder:default=0
	Received int64 `json:"received"`
	// Accepted callbacks: answered OK and queued for delivery.
	// +optional
	// +kubebuilder:default=0
	Accepted int64 `json:"accepted"`
	// Rejected callbacks: refused for bad input (wrong path, method, SdkAppid, signature,
	// body); see the receiver's imcallback_rejected_total metric for reasons.
	// +optional
	// +kubebuilder:default=0
	Rejected int64 `json:"rejected"`
	// Ignored callbacks: commands not in spec.commands, answered OK and not forwarded.
	// +optional
	// +kubebuilder:default=0
	Ignored int64 `json:"ignored"`
	// Unavailable callbacks: refused with 503 because the queue was full or the pod was
	// shutting down.
	// +optional
	// +kubebuilder:default=0
	Unavailable int64 `json:"unavailable"`
	// Duplicate callbacks: exact repeats (same Sign, RequestTime and body) of a callback
	// accepted within maxClockSkew, answered OK and not forwarded again. Only with spec.auth;
	// each pod remembers the callbacks it accepted itself.
	// +optional
	// +kubebuilder:default=0
	Duplicate int64 `json:"duplicate"`
	// Delivered events: accepted by the sink.
	// +optional
	// +kubebuilder:default=0
	Delivered int64 `json:"delivered"`
	// DeadLettered events: sent to the dead-letter sink after the last retry.
	// +optional
	// +kubebuilder:default=0
	DeadLettered int64 `json:"deadLettered"`
	// Failed events: neither delivered nor dead-lettered; each was logged whole.
	// +optional
	// +kubebuilder:default=0
	Failed int64 `json:"failed"`
	// Decided callbacks: before-callbacks answered through a decision service (or its
	// failure policy).
	// +optional
	// +kubebuilder:default=0
	Decided int64 `json:"decided"`
	// Pairs in the PairList of accepted callbacks.
	// +optional
	// +kubebuilder:default=0
	Pairs int64 `json:"pairs"`
}

// IncarnationCounts are the counters last read from one receiver process. They let the
// operator fold counters exactly across pod restarts and its own restarts.
type IncarnationCounts struct {
	// ID is the random incarnation the receiver process chose at start.
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`
	// Pod that runs (or ran) this incarnation.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod,omitempty"`
	// Counts last read from this incarnation.
	Counts Counts `json:"counts"`
}

// CallbackReceiverStatus is the observed state of a CallbackReceiver.
type CallbackReceiverStatus struct {
	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: TokenResolved, TLSResolved, SinkResolved, DecisionsResolved, ImageResolved,
	// Available and Exposed, and Ready, which summarises them (see each condition's reason
	// and message for what to do). Exposed counts in Ready only when spec.ingress or
	// spec.httpRoute is set; CommandsRecognized is advisory, not part of Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// URL is the in-cluster callback URL, including the path: https when the receiver
	// serves TLS (spec.tls).
	// +optional
	URL string `json:"url,omitempty"`

	// CallbackURL is the URL to paste into the IM console's callback settings: the scheme,
	// the public host of spec.ingress or spec.httpRoute, and spec.path. It is https when the
	// Ingress terminates TLS (spec.ingress.tls) and for an HTTPRoute (whose Gateway listener
	// is expected to terminate it), http for an Ingress without TLS. Empty until the
	// receiver is exposed (the Exposed condition says what is missing).
	// +optional
	CallbackURL string `json:"callbackURL,omitempty"`

	// SinkURI is the resolved address events are sent to.
	// +optional
	SinkURI string `json:"sinkURI,omitempty"`

	// DeadLetterSinkURI is the resolved address of the dead-letter sink, if any.
	// +optional
	DeadLetterSinkURI string `json:"deadLetterSinkURI,omitempty"`

	// Routes are the resolved sinks of spec.routes, in the same order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Routes []ResolvedRoute `json:"routes,omitempty"`

	// Decisions are the resolved decision services of spec.decisions, in the same order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Decisions []ResolvedRoute `json:"decisions,omitempty"`

	// Replicas is the number of receiver pods (the scale subresource's status).
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// ReadyReplicas is the number of receiver pods ready to take callbacks.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Selector is the label selector of the receiver pods, for the scale subresource.
	// +optional
	Selector string `json:"selector,omitempty"`

	// Spool is what the receiver pods' spools hold, from their last scrape; absent without
	// a spool.
	// +optional
	Spool *SpoolStatus `json:"spool,omitempty"`

	// StrandedSpools are spools no receiver pod serves any more (claims of ordinals a
	// scale-down removed, the Deployment replaced by a StatefulSet) that still hold or may
	// hold events: the operator delivers them, then removes them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	StrandedSpools []StrandedSpool `json:"strandedSpools,omitempty"`

	// Counts are the exact totals of callbacks and events processed.
	// +optional
	// +kubebuilder:default={}
	Counts Counts `json:"counts"`

	// Incarnations holds the counters last read from each live receiver process; the
	// operator's bookkeeping for exact counts, not meant for users.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=512
	Incarnations []IncarnationCounts `json:"incarnations,omitempty"`
}

// CallbackReceiver runs a receiver for Tencent Cloud IM third-party callbacks of one app and
// forwards the selected callbacks to a sink as CloudEvents.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=cbr,categories=imcallback
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Received",type=integer,JSONPath=`.status.counts.received`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.counts.delivered`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.counts.failed`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Sink",type=string,priority=1,JSONPath=`.status.sinkURI`
// +kubebuilder:printcolumn:name="Callback URL",type=string,priority=1,JSONPath=`.status.callbackURL`
// +kubebuilder:printcolumn:name="Decided",type=integer,priority=1,JSONPath=`.status.counts.decided`
// +kubebuilder:printcolumn:name="Waiting",type=integer,priority=1,JSONPath=`.status.spool.events`
// +kubebuilder:printcolumn:name="Stranded",type=string,JSONPath=`.status.strandedSpools[*].name`
type CallbackReceiver struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec declares the receiver.
	// +required
	Spec CallbackReceiverSpec `json:"spec"`

	// Status is the receiver's observed state.
	// +optional
	Status CallbackReceiverStatus `json:"status,omitempty"`
}

// CallbackReceiverList is a list of CallbackReceivers.
//
// +kubebuilder:object:root=true
type CallbackReceiverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CallbackReceiver `json:"items"`
}
