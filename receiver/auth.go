package receiver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"time"
)

// Sign returns the protocol's signature of a callback: the lower-case hex SHA-256 of the
// token followed by the decimal RequestTime.
func Sign(token, requestTime string) string {
	var out [64]byte
	signInto(&out, token, requestTime)
	return string(out[:])
}

func signInto(out *[64]byte, token, requestTime string) {
	var stack [256]byte
	msg := append(append(stack[:0], token...), requestTime...)
	sum := sha256.Sum256(msg)
	hex.Encode(out[:], sum[:])
}

// maxRequestTimeDigits keeps the parse far from overflow; Unix seconds need 10 digits until 2286.
const maxRequestTimeDigits = 18

// requestTimeSecs parses a RequestTime of at most maxRequestTimeDigits decimal digits; -1
// when it is not one.
func requestTimeSecs(s string) int64 {
	if s == "" || len(s) > maxRequestTimeDigits {
		return -1
	}
	var secs int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1
		}
		secs = secs*10 + int64(c-'0')
	}
	return secs
}

// checkSignature is check 6. It never puts the token or the expected Sign in its answer.
func checkSignature(token string, p *callbackParams, now time.Time, skew time.Duration) (Reason, []byte, bool) {
	if p.sign == "" {
		return ReasonMissingSignature, bodyNoSign, false
	}
	if p.requestTime == "" {
		return ReasonMissingSignature, bodyNoRequestTime, false
	}
	if len(p.requestTime) > maxRequestTimeDigits {
		return ReasonInvalidRequestTime, bodyBadTime, false
	}
	secs := requestTimeSecs(p.requestTime)
	if secs < 0 {
		return ReasonInvalidRequestTime, bodyBadTime, false
	}
	diff := now.Unix() - secs
	if diff < 0 {
		diff = -diff
	}
	// Whole seconds against a skew with a fraction: 60.5s allows 60s, not 61s.
	if time.Duration(diff) > skew/time.Second {
		return ReasonRequestTimeSkew, nil, false
	}
	var want [64]byte
	signInto(&want, token, p.requestTime)
	var got [64]byte
	if len(p.sign) != len(got) || subtle.ConstantTimeCompare(got[:copy(got[:], p.sign)], want[:]) != 1 {
		return ReasonSignatureMismatch, bodyBadSign, false
	}
	return 0, nil, true
}
