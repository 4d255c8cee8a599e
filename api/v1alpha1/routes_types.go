package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Route sends the callbacks of some commands to a sink of their own, as CloudEvents, with the
// delivery settings (retries, backoff, dead-letter sink) of spec.delivery.
type Route struct {
	// Commands whose callbacks take this route. A command is listed in at most one of
	// spec.commands, spec.routes and spec.decisions.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Commands []Command `json:"commands"`

	// Sink receives the route's events: a Service, any Addressable, or a URI, as spec.sink.
	// +required
	Sink Destination `json:"sink"`
}

// Decision answers the before-callbacks of some commands through a decision service: IM waits
// for the answer, which can allow, refuse or change the user's action (a message, a friend
// request, a group). Every check a forwarded callback passes (path, SdkAppid, Sign, body)
// comes first; then the callback goes to the service as a CloudEvent, and the service's JSON
// answer is relayed to IM as is. Decisions are not queued and not retried: IM waits 2 seconds
// in all.
type Decision struct {
	// Commands answered by this decision service, such as C2C.CallbackBeforeSendMsg. A
	// command is listed in at most one of spec.commands, spec.routes and spec.decisions.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Commands []Command `json:"commands"`

	// Subscriber is the decision service: a Service, any Addressable, or a URI, as spec.sink.
	// It gets each callback as a CloudEvent (HTTP binary mode) and answers with the JSON IM
	// expects (ErrorCode 0 allows; see the protocol for refusing, dropping and changing); an
	// empty 2xx answer allows.
	// +required
	Subscriber Destination `json:"subscriber"`
}

// DecisionFailurePolicy is the answer to IM when a decision service fails.
// +kubebuilder:validation:Enum=Allow;Reject
type DecisionFailurePolicy string

const (
	// DecisionFailureAllow lets the user's action proceed, as IM itself does when a
	// before-callback fails.
	DecisionFailureAllow DecisionFailurePolicy = "Allow"
	// DecisionFailureReject refuses the action.
	DecisionFailureReject DecisionFailurePolicy = "Reject"
)

// DecisionPolicy bounds the exchange with decision services.
type DecisionPolicy struct {
	// Timeout bounds the whole exchange with a decision service. IM waits 2 seconds for the
	// receiver's answer, so it is at most 1.5s. Default 1s.
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('1500ms')",message="decisionPolicy.timeout must be a duration between 1ms and 1.5s, inside IM's 2-second budget, such as 1s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// FailurePolicy is the answer when a decision service times out, cannot be reached,
	// answers with an error status or with something that is not IM's JSON: Allow (the
	// default, as IM itself does) lets the action proceed, Reject refuses it.
	// +optional
	// +kubebuilder:default=Allow
	FailurePolicy DecisionFailurePolicy `json:"failurePolicy,omitempty"`
}

// ResolvedRoute is where the callbacks of some commands go, as resolved by the operator.
type ResolvedRoute struct {
	// Commands of the route or decision.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Commands []Command `json:"commands"`
	// URI the operator resolved its sink or subscriber to; empty while it does not resolve.
	// +optional
	URI string `json:"uri,omitempty"`
}
