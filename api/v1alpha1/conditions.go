package v1alpha1

// Condition types of a CallbackReceiver. Ready summarises the others: it is True when all of
// them are, else it carries the reason and message of the first that is not, in this order.
// Exposed counts only when the spec asks for exposure (spec.ingress or spec.httpRoute):
// a receiver that is only reachable in the cluster (reason NotExposed) can be Ready.
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
	// ConditionSpoolReady is True when the receivers' spools have room (or there is no
	// spool: reason SpoolDisabled); False while a pod's spool is (nearly) full.
	ConditionSpoolReady = "SpoolReady"
	// ConditionAvailable is True when the receiver's Deployment has ready pods.
	ConditionAvailable = "Available"
	// ConditionTLSResolved is True when the receiver serves HTTPS with a usable certificate
	// from spec.tls.secretName, or when spec.tls is not set (reason TLSDisabled).
	ConditionTLSResolved = "TLSResolved"
	// ConditionExposed is True when IM can reach the receiver at status.callbackURL: the
	// Ingress exists, or every parent Gateway accepted the HTTPRoute.
	ConditionExposed = "Exposed"
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

// Reasons of the SpoolReady condition.
const (
	ReasonSpoolHasRoom  = "SpoolHasRoom"
	ReasonSpoolDisabled = "SpoolDisabled"
	ReasonSpoolFull     = "SpoolFull"
	// ReasonSpoolOnEmptyDir: type EmptyDir; True, with the risk it takes stated.
	ReasonSpoolOnEmptyDir = "SpoolOnEmptyDir"
	// ReasonNoDefaultStorageClass: type PersistentVolumeClaim without storageClassName, and
	// the cluster has no default StorageClass: no claim can be provisioned.
	ReasonNoDefaultStorageClass = "NoDefaultStorageClass"
	// ReasonStorageClassNotFound: spec.spool.storageClassName names no StorageClass.
	ReasonStorageClassNotFound = "StorageClassNotFound"
	// ReasonSpoolsStranded: claims of removed ordinals (or the pods of a replaced
	// Deployment) still hold events; the operator is delivering them (status.strandedSpools).
	ReasonSpoolsStranded = "SpoolsStranded"
)

// Reasons of the Available condition.
const (
	ReasonDeploymentNotFound         = "DeploymentNotFound"
	ReasonStatefulSetNotFound        = "StatefulSetNotFound"
	ReasonScaledToZero               = "ScaledToZero"
	ReasonMinimumReplicasAvailable   = "MinimumReplicasAvailable"
	ReasonMinimumReplicasUnavailable = "MinimumReplicasUnavailable"
	ReasonRollingOut                 = "RollingOut"
)

// Reasons of the TLSResolved condition.
const (
	// ReasonTLSDisabled: no spec.tls; the receiver speaks plain HTTP.
	ReasonTLSDisabled = "TLSDisabled"
	// ReasonCertificateFound: the Secret holds a certificate and matching key, valid now.
	ReasonCertificateFound = "CertificateFound"
	// ReasonTLSSecretNotFound: spec.tls.secretName names no Secret.
	ReasonTLSSecretNotFound = "TLSSecretNotFound"
	// ReasonTLSSecretInvalid: the Secret lacks tls.crt or tls.key, or they do not parse or
	// do not match.
	ReasonTLSSecretInvalid = "TLSSecretInvalid"
	// ReasonTLSCertificateExpired: the certificate's validity ended; the receiver serves it
	// all the same, and IM refuses it.
	ReasonTLSCertificateExpired = "TLSCertificateExpired"
	// ReasonTLSCertificateNotYetValid: the certificate's validity has not begun.
	ReasonTLSCertificateNotYetValid = "TLSCertificateNotYetValid"
)

// Reasons of the Exposed condition.
const (
	// ReasonNotExposed: neither spec.ingress nor spec.httpRoute; status.callbackURL is
	// empty. It does not make Ready False.
	ReasonNotExposed = "NotExposed"
	// ReasonIngressConfigured: the Ingress exists and its ingress controller terminates
	// HTTPS (spec.ingress.tls).
	ReasonIngressConfigured = "IngressConfigured"
	// ReasonIngressWithoutTLS: the Ingress exists and serves plain HTTP; IM recommends HTTPS.
	ReasonIngressWithoutTLS = "IngressWithoutTLS"
	// ReasonIngressNotFound: the Ingress could not be written yet (see ApplyFailed).
	ReasonIngressNotFound = "IngressNotFound"
	// ReasonRouteAccepted: every parent Gateway accepted the HTTPRoute.
	ReasonRouteAccepted = "RouteAccepted"
	// ReasonRoutePending: a parent Gateway has not reported on the current HTTPRoute yet.
	ReasonRoutePending = "RoutePending"
	// ReasonRouteNotAccepted: a parent Gateway refused the HTTPRoute; the message has its
	// reason and message.
	ReasonRouteNotAccepted = "RouteNotAccepted"
	// ReasonRouteRefsNotResolved: a parent Gateway accepted the HTTPRoute but cannot reach
	// the receiver's Service.
	ReasonRouteRefsNotResolved = "RouteRefsNotResolved"
	// ReasonRouteNotFound: the HTTPRoute could not be written yet (see ApplyFailed).
	ReasonRouteNotFound = "RouteNotFound"
	// ReasonGatewayAPINotInstalled: the API server does not serve
	// gateway.networking.k8s.io/v1 HTTPRoutes.
	ReasonGatewayAPINotInstalled = "GatewayAPINotInstalled"
	// ReasonHTTPRoutesForbidden: the operator's role does not let it list HTTPRoutes.
	ReasonHTTPRoutesForbidden = "HTTPRoutesForbidden"
)
