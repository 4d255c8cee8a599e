package v1alpha1

// Condition types of a CallbackReceiver. Ready summarises the others: it is True when all of
// them are, else it carries the reason and message of the first that is not, in this order.
const (
	// ConditionReady is True when the receiver accepts callbacks and knows where to deliver them.
	ConditionReady = "Ready"
	// ConditionTokenResolved is True when callbacks are verified with a token that was found,
	// or when authentication is off (reason AuthenticationDisabled).
	ConditionTokenResolved = "TokenResolved"
	// ConditionSinkResolved is True when spec.sink (and delivery.deadLetterSink, if set)
	// resolved to a URI.
	ConditionSinkResolved = "SinkResolved"
	// ConditionDecisionsResolved is True when every decision service of spec.decisions
	// resolved to a URI, or there are none (reason NoDecisions). While one does not, the
	// receiver answers its commands by the failure policy.
	ConditionDecisionsResolved = "DecisionsResolved"
	// ConditionCommandsRecognized is advisory (Ready does not summarise it): False when a
	// command is in no IM callback catalogue (most likely a typo: the message suggests the
	// intended one), a before-callback is forwarded instead of decided (it is answered OK at
	// once), or an after-callback is decided (IM ignores the answer).
	ConditionCommandsRecognized = "CommandsRecognized"
	// ConditionImageResolved is True when the receiver runs the image the spec asks for: the
	// operator's own, or spec.image where the operator allows overrides.
	ConditionImageResolved = "ImageResolved"
	// ConditionAvailable is True when the receiver's Deployment has ready pods.
	ConditionAvailable = "Available"
)

// Reasons of the Ready condition.
const (
	// ReasonReady: every other condition is True.
	ReasonReady = "Ready"
	// ReasonApplyFailed: writing a child object failed; the operator retries.
	ReasonApplyFailed = "ApplyFailed"
)

// Reasons of the TokenResolved condition.
const (
	ReasonAuthenticationDisabled = "AuthenticationDisabled"
	ReasonTokenFound             = "TokenFound"
	ReasonTokenSecretNotFound    = "TokenSecretNotFound"
	ReasonTokenKeyNotFound       = "TokenKeyNotFound"
	ReasonTokenEmpty             = "TokenEmpty"
)

// Reasons of the SinkResolved condition. The ones other than ReasonResolved also say why a
// dead-letter sink, a route's sink or (in DecisionsResolved) a decision service did not
// resolve.
const (
	ReasonResolved           = "Resolved"
	ReasonSinkNotFound       = "SinkNotFound"
	ReasonSinkNotAddressable = "SinkNotAddressable"
	ReasonSinkForbidden      = "SinkForbidden"
	ReasonSinkKindUnknown    = "SinkKindUnknown"
	ReasonSinkPortAmbiguous  = "SinkPortAmbiguous"
	ReasonSinkInvalid        = "SinkInvalid"
)

// Reasons of the ImageResolved condition.
const (
	// ReasonOperatorImage: no spec.image; receivers run the operator's own image.
	ReasonOperatorImage = "OperatorImage"
	// ReasonImageOverridden: spec.image runs, as the operator allows overrides.
	ReasonImageOverridden = "ImageOverridden"
	// ReasonImageOverrideNotAllowed: spec.image is ignored and the operator's image runs.
	ReasonImageOverrideNotAllowed = "ImageOverrideNotAllowed"
)

// Reasons of the DecisionsResolved condition, besides ReasonResolved and the ReasonSink* of
// a decision service that does not resolve.
const (
	// ReasonNoDecisions: spec.decisions is empty; before-callbacks are answered OK unless
	// forwarded.
	ReasonNoDecisions = "NoDecisions"
)

// Reasons of the CommandsRecognized condition.
const (
	ReasonCommandsKnown           = "CommandsKnown"
	ReasonUnknownCommand          = "UnknownCommand"
	ReasonBeforeCallbackForwarded = "BeforeCallbackForwarded"
	ReasonAfterCallbackDecided    = "AfterCallbackDecided"
)

// Reasons of the Available condition.
const (
	ReasonDeploymentNotFound         = "DeploymentNotFound"
	ReasonScaledToZero               = "ScaledToZero"
	ReasonMinimumReplicasAvailable   = "MinimumReplicasAvailable"
	ReasonMinimumReplicasUnavailable = "MinimumReplicasUnavailable"
	ReasonRollingOut                 = "RollingOut"
)
