// Package authtoken is the one definition of "the callback token" that the receiver (which
// reads it from IM_CALLBACK_TOKEN) and the manager (which reads it from the token Secret)
// share, so that both sides agree on when authentication is on.
//
// It is its own package so that the manager can use it without linking the receiver.
package authtoken

import (
	"errors"
	"strings"

	"github.com/imcallback/callback-operator/receiver/contract"
)

// EnvVar names the environment variable the receiver reads the token from.
const EnvVar = contract.TokenEnv

// ErrBlank is returned for a value that holds nothing but white space: a token that is set
// but blank is a mistake (an empty file, a stray newline), never a request to turn
// authentication off.
var ErrBlank = errors.New("the callback token is blank (empty or only white space)")

// Parse returns the token a configured value holds: the value without surrounding white
// space (a Secret created from a file often ends in a newline; IM's console tokens never
// have surrounding space). A blank value is ErrBlank.
func Parse(value string) (string, error) {
	token := strings.TrimSpace(value)
	if token == "" {
		return "", ErrBlank
	}
	return token, nil
}
