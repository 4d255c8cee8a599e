package receiver

import (
	"encoding/json"
	"net/url"
	"strings"
)

// The four relationship-chain after-callbacks the receiver knows the shape of.
const (
	CmdBlackListDelete = "Sns.CallbackBlackListDelete"
	CmdBlackListAdd    = "Sns.CallbackBlackListAdd"
	CmdFriendDelete    = "Sns.CallbackFriendDelete"
	CmdFriendAdd       = "Sns.CallbackFriendAdd"
)

// Reason is why a callback was rejected: the value of imcallback_rejected_total's reason label
// and of the "reason" field of the log line written for it.
type Reason uint8

// The fixed set of reject reasons, in the order of the checks.
const (
	ReasonNotFound           Reason = iota // 404: path is not --path
	ReasonMethodNotAllowed                 // 405: method is not POST
	ReasonBodyTooLarge                     // 413: body above --max-body-bytes
	ReasonUnreadableBody                   // 400: the body could not be read
	ReasonMissingParameter                 // 400: SdkAppid or CallbackCommand absent or empty
	ReasonInvalidParameter                 // 400: a query parameter forwarded as a header holds control characters
	ReasonWrongSdkAppID                    // 403: SdkAppid is not --sdkappid
	ReasonMissingSignature                 // 401: token set, Sign or RequestTime absent
	ReasonInvalidRequestTime               // 401: RequestTime is not a decimal
	ReasonRequestTimeSkew                  // 401: RequestTime further than --max-clock-skew from now
	ReasonSignatureMismatch                // 401: Sign does not match
	ReasonInvalidJSON                      // 400: body is not a JSON object
	ReasonCommandMismatch                  // 400: body's CallbackCommand missing or not the query's
	ReasonInvalidPayload                   // 400: typed check of an Sns callback failed
	// Refused by net/http itself, before the handler (see countingConn):
	ReasonMalformedRequest            // 400: not a well-formed HTTP request
	ReasonHeadersTooLarge             // 431: request line and headers over 64 KiB
	ReasonUnsupportedTransferEncoding // 501: a Transfer-Encoding other than chunked
	ReasonProtocolError               // any other (505 unknown HTTP version, 417 unknown Expect)
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNotFound:           "not_found",
	ReasonMethodNotAllowed:   "method_not_allowed",
	ReasonBodyTooLarge:       "body_too_large",
	ReasonUnreadableBody:     "unreadable_body",
	ReasonMissingParameter:   "missing_parameter",
	ReasonInvalidParameter:   "invalid_parameter",
	ReasonWrongSdkAppID:      "wrong_sdkappid",
	ReasonMissingSignature:   "missing_signature",
	ReasonInvalidRequestTime: "invalid_request_time",
	ReasonRequestTimeSkew:    "request_time_skew",
	ReasonSignatureMismatch:  "signature_mismatch",
	ReasonInvalidJSON:        "invalid_json",
	ReasonCommandMismatch:    "command_mismatch",
	ReasonInvalidPayload:     "invalid_payload",

	ReasonMalformedRequest:            "malformed_request",
	ReasonHeadersTooLarge:             "headers_too_large",
	ReasonUnsupportedTransferEncoding: "unsupported_transfer_encoding",
	ReasonProtocolError:               "protocol_error",
}

func (r Reason) String() string { return reasonNames[r] }

// reply is the protocol's answer body.
type reply struct {
	ActionStatus string
	ErrorCode    int
	ErrorInfo    string
}

func replyBody(ok bool, info string) []byte {
	r := reply{ActionStatus: "OK", ErrorCode: 0, ErrorInfo: info}
	if !ok {
		r.ActionStatus, r.ErrorCode = "FAIL", 1
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a struct of strings and an int always marshals
	}
	return b
}

var (
	bodyOK            = replyBody(true, "")
	bodyQueueFull     = replyBody(false, "receiver queue is full, try again later")
	bodyShuttingDown  = replyBody(false, "receiver is shutting down, try again later")
	bodyBusy          = replyBody(false, "receiver is busy reading other request bodies, try again later")
	bodyNotFound      = replyBody(false, "not found")
	bodyMethod        = replyBody(false, "method not allowed: callbacks are POSTed")
	bodyUnreadable    = replyBody(false, "could not read the request body")
	bodyNoSdkAppID    = replyBody(false, "missing query parameter SdkAppid")
	bodyNoCommand     = replyBody(false, "missing query parameter CallbackCommand")
	bodyWrongApp      = replyBody(false, "SdkAppid does not match this receiver's SDKAppID")
	bodyNoSign        = replyBody(false, "missing query parameter Sign (callback authentication is on)")
	bodyNoRequestTime = replyBody(false, "missing query parameter RequestTime (callback authentication is on)")
	bodyBadTime       = replyBody(false, "RequestTime is not a decimal Unix time in seconds")
	bodyBadSign       = replyBody(false, "Sign does not match the token and RequestTime")
	bodyNotJSON       = replyBody(false, "body is not valid JSON")
	bodyNotObject     = replyBody(false, "body is not a JSON object")
	bodyNoBodyCmd     = replyBody(false, "body has no CallbackCommand string")
	bodyCmdMismatch   = replyBody(false, "CallbackCommand in the body differs from the query's")
)

// callbackParams are the query parameters of a callback, as sent (unescaped).
type callbackParams struct {
	sdkAppID, command, clientIP, optPlatform, requestTime, sign string
	hasClientIP, hasOptPlatform                                 bool
}

// parseParams reads the parameters the receiver uses from a raw query, the way
// url.ParseQuery followed by Values.Get would (first value wins, pairs with a semicolon or a
// bad escape are skipped), without building a map. Names are matched exactly, as the protocol
// spells them.
func parseParams(raw string, p *callbackParams) {
	var seen uint8
	for raw != "" {
		var pair string
		pair, raw = cut(raw, '&')
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		key, value := cut(pair, '=')
		key, err := unescape(key)
		if err != nil {
			continue
		}
		var bit uint8
		var dst *string
		switch key {
		case "SdkAppid":
			bit, dst = 1, &p.sdkAppID
		case "CallbackCommand":
			bit, dst = 2, &p.command
		case "ClientIP":
			bit, dst = 4, &p.clientIP
		case "OptPlatform":
			bit, dst = 8, &p.optPlatform
		case "RequestTime":
			bit, dst = 16, &p.requestTime
		case "Sign":
			bit, dst = 32, &p.sign
		default:
			continue
		}
		if seen&bit != 0 {
			continue
		}
		value, err = unescape(value)
		if err != nil {
			continue
		}
		seen |= bit
		*dst = value
	}
	p.hasClientIP = seen&4 != 0
	p.hasOptPlatform = seen&8 != 0
}

func cut(s string, sep byte) (before, after string) {
	if i := strings.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// unescape is url.QueryUnescape, skipped for the usual parameter without escapes.
func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// validHeaderValue reports whether s can travel as an HTTP header value (it becomes a ce-*
// header): no control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
