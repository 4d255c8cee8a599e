// Package contract is the interface between the manager and the receiver it runs: the
// receiver's flag names, the environment variable of the token, and the defaults the receiver
// applies to every flag the manager leaves out. cmd/receiver parses these flags and the
// manager's pod builder (controllers/resources) writes them, so both name them from here.
//
// It is a leaf package (constants and a helper, no dependencies) so that the manager does not
// link the receiver's data plane to know its contract.
package contract

import (
	"strings"
	"time"
)

// TokenEnv names the environment variable holding the IM console's callback token. The token
// never travels as a flag, where it would show in the pod spec and in process listings.
const TokenEnv = "IM_CALLBACK_TOKEN"

// Flag names of the receiver (without the leading "--").
const (
	FlagSdkAppID        = "sdkappid"
	FlagPath            = "path"
	FlagCommands        = "commands"
	FlagSink            = "sink"
	FlagDeadLetterSink  = "dead-letter-sink"
	FlagRetry           = "retry"
	FlagBackoffPolicy   = "backoff-policy"
	FlagBackoffDelay    = "backoff-delay"
	FlagDeliveryTimeout = "delivery-timeout"
	FlagQueueSize       = "queue-size"
	FlagWorkers         = "workers"
	// FlagMaxConnections bounds the callback port's open connections.
	FlagMaxConnections = "max-connections"
	// FlagDrainOnly runs only the queue and delivery: deliver what --spool-dir holds, accept
	// nothing, exit once it is empty.
	FlagDrainOnly    = "drain-only"
	FlagMaxBodyBytes = "max-body-bytes"
	// FlagMaxBodyBytesInFlight bounds the bytes of all bodies being read at once.
	FlagMaxBodyBytesInFlight = "max-body-bytes-in-flight"
	// FlagReplayWindowSize bounds how many accepted callbacks are remembered to recognise
	// exact replays.
	FlagReplayWindowSize = "replay-window-size"
	// FlagSpoolDir is where accepted callbacks are made durable before their OK.
	FlagSpoolDir = "spool-dir"
	// FlagSpoolMaxBytes bounds the spool's files.
	FlagSpoolMaxBytes   = "spool-max-bytes"
	FlagMaxClockSkew    = "max-clock-skew"
	FlagListen          = "listen"
	FlagAdminListen     = "admin-listen"
	FlagTLSCertFile     = "tls-cert-file"
	FlagTLSKeyFile      = "tls-key-file"
	FlagShutdownDelay   = "shutdown-delay"
	FlagShutdownTimeout = "shutdown-timeout"
	FlagLogLevel        = "log-level"

	// FlagRoute (repeatable) is CMD[,CMD...]=URL: after-callbacks of those commands go to
	// URL instead of FlagSink, with the same delivery settings; see RouteValue.
	FlagRoute = "route"
	// FlagDecision (repeatable) is CMD[,CMD...]=URL: callbacks of those commands are answered
	// synchronously by the decision service at URL; see RouteValue.
	FlagDecision = "decision"
	// FlagDecisionTimeout bounds the whole exchange with the decision service.
	FlagDecisionTimeout = "decision-timeout"
	// FlagDecisionFailure is DecisionFailureAllow or DecisionFailureReject.
	FlagDecisionFailure = "decision-failure"
)

// What the receiver answers IM when the decision service fails (times out, is unreachable,
// answers non-2xx or something that is not a reply).
const (
	DecisionFailureAllow  = "allow"  // {"ActionStatus":"OK","ErrorCode":0,...}: IM's own behaviour
	DecisionFailureReject = "reject" // {"ActionStatus":"FAIL","ErrorCode":1,...}
)

// RouteValue renders the value of FlagRoute or FlagDecision: the commands, comma-separated,
// then "=" and the URL. Commands never contain "=" or ","; the URL may.
func RouteValue(commands []string, url string) string {
	return strings.Join(commands, ",") + "=" + url
}

// Backoff policies, named as in Knative's DeliverySpec.
const (
	BackoffExponential = "exponential" // delay x 2^n before retry n (n = 1, 2, ...)
	BackoffLinear      = "linear"      // delay x n before retry n
)

// Defaults of the receiver's flags: what a flag the manager does not write means.
const (
	DefaultCommand         = "Sns.CallbackBlackListDelete"
	DefaultRetry           = 3
	DefaultBackoffPolicy   = BackoffExponential
	DefaultBackoffDelay    = 200 * time.Millisecond
	DefaultDeliveryTimeout = time.Second
	DefaultQueueSize       = 10000
	DefaultWorkers         = 64
	DefaultMaxBodyBytes    = 1 << 20
	DefaultMaxClockSkew    = 60 * time.Second
	DefaultCallbackPort    = 8080
	DefaultAdminPort       = 9090
	DefaultShutdownDelay   = 5 * time.Second
	DefaultShutdownTimeout = 25 * time.Second
	DefaultDecisionTimeout = time.Second
	// DefaultSpoolMaxBytes bounds the spool's files.
	DefaultSpoolMaxBytes   = 1 << 30
	DefaultDecisionFailure = DecisionFailureAllow
)

// Arg renders one flag as the manager writes it into the pod: --name=value.
func Arg(name, value string) string { return "--" + name + "=" + value }

// Metrics the manager reads from the receiver's admin port (/metrics): the counts in a
// CallbackReceiver's status come from these alone.
const (
	// MetricCallbacks counts callback requests by LabelOutcome; their sum is "received".
	MetricCallbacks = "imcallback_callbacks_total"
	// MetricDecisions counts decided callbacks (OutcomeDecided) by LabelResult, one of the
	// Decision* values.
	MetricDecisions = "imcallback_decisions_total"
	// MetricEvents counts accepted callbacks whose delivery ended, by LabelResult.
	MetricEvents = "imcallback_events_total"
	// MetricPairs counts the PairList entries of accepted callbacks.
	MetricPairs = "imcallback_pairs_total"
	// MetricInfo is 1, labelled with LabelIncarnation (random per process start) and version.
	MetricInfo = "imcallback_receiver_info"

	// MetricSpoolEvents, MetricSpoolBytes and MetricSpoolMaxBytes are gauges of what a
	// receiver's spool holds and may hold (0 without a spool).
	MetricSpoolEvents   = "imcallback_spool_events"
	MetricSpoolBytes    = "imcallback_spool_bytes"
	MetricSpoolMaxBytes = "imcallback_spool_max_bytes"

	LabelOutcome     = "outcome"
	LabelResult      = "result"
	LabelIncarnation = "incarnation"
)

// Values of LabelOutcome.
const (
	OutcomeAccepted    = "accepted"
	OutcomeRejected    = "rejected"
	OutcomeIgnored     = "ignored"
	OutcomeUnavailable = "unavailable"
	// OutcomeDecided: answered with a decision (the decision service's, or the failure
	// policy's). Received = accepted + rejected + ignored + unavailable + decided.
	OutcomeDecided = "decided"
	// OutcomeDuplicate: an exact replay of a callback accepted within the skew window (same
	// Sign, RequestTime and body), answered OK and not forwarded again.
	OutcomeDuplicate = "duplicate"
)

// Values of LabelResult.
const (
	ResultDelivered    = "delivered"
	ResultDeadLettered = "dead_lettered"
	ResultFailed       = "failed"
)

// Values of LabelResult in MetricDecisions.
const (
	DecisionAllowed        = "allowed"         // the service's answer, ErrorCode 0 (or an empty 2xx)
	DecisionRejected       = "rejected"        // the service's answer, ErrorCode != 0
	DecisionFailedAllowed  = "failed_allowed"  // the service failed; allowed by the failure policy
	DecisionFailedRejected = "failed_rejected" // the service failed; rejected by the failure policy
)
