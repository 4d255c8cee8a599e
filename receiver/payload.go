package receiver

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// This file checks callback bodies without decoding them into Go values: json.Valid proves
// the body is JSON, then a small walker over the (now known valid) bytes finds the few
// members the checks need. Keys are matched exactly; a checked key that appears twice, in
// any letter case, is refused (Go's encoding/json matches keys case-insensitively, with
// Unicode folding: PairList, pairlist and PairLi\u017ft are one field to it), so the receiver
// and the sink can never read different values from one body. A case variant alone is not
// the member: a required member spelled so is missing.

// bodyError is a failed body check: the reason label and the reply's ErrorInfo.
type bodyError struct {
	reason Reason
	body   []byte
}

// topLevel holds the spans of the top-level members the checks need.
type topLevel struct {
	command      span // CallbackCommand (a string token, quotes included)
	pairList     span // PairList
	clientCmd    span // ClientCmd
	adminAccount span // Admin_Account
	forceFlag    span // ForceFlag
}

// span is a value's bytes [start, end) in the body; end == 0 means absent.
type span struct{ start, end int }

func (s span) present() bool { return s.end > 0 }

// checkCommand is check 7: the body is a JSON object whose CallbackCommand equals command.
func checkCommand(body []byte, command string, top *topLevel) *bodyError {
	if !json.Valid(body) {
		return &bodyError{ReasonInvalidJSON, bodyNotJSON}
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return &bodyError{ReasonInvalidJSON, bodyNotObject}
	}
	var seen uint8
	var dup string
	walkObject(body, i, func(key span, keyEscaped bool, val span) bool {
		var dst *span
		k := memberKey(body, key, keyEscaped)
		var n int
		switch string(k) {
		case "CallbackCommand":
			n, dst = 0, &top.command
		case "PairList":
			n, dst = 1, &top.pairList
		case "ClientCmd":
			n, dst = 2, &top.clientCmd
		case "Admin_Account":
			n, dst = 3, &top.adminAccount
		case "ForceFlag":
			n, dst = 4, &top.forceFlag
		default:
			if n = foldedIndex(k, topKeys); n < 0 {
				return true
			}
		}
		if seen&(1<<n) != 0 {
			dup = topKeys[n]
			return false
		}
		seen |= 1 << n
		if dst != nil {
			*dst = val
		}
		return true
	})
	if dup != "" {
		return &bodyError{ReasonInvalidJSON, replyBody(false, "body has the member "+strconv.Quote(dup)+" more than once (in any letter case)")}
	}
	if !top.command.present() || body[top.command.start] != '"' {
		return &bodyError{ReasonCommandMismatch, bodyNoBodyCmd}
	}
	if !stringEquals(body, top.command, command) {
		return &bodyError{ReasonCommandMismatch, bodyCmdMismatch}
	}
	return nil
}

// checkSns is check 9, the typed checks of the four Sns after-callbacks: a non-empty PairList
// of objects with non-empty From_Account and To_Account; Sns.CallbackFriendAdd also needs
// Initiator_Account in each pair, a non-empty ClientCmd, a string Admin_Account and an integer
// ForceFlag. It returns the number of pairs. Other commands pass unchecked with 0 pairs.
func checkSns(body []byte, command string, top *topLevel) (int, *bodyError) {
	friendAdd := false
	switch command {
	case CmdBlackListDelete, CmdBlackListAdd, CmdFriendDelete:
	case CmdFriendAdd:
		friendAdd = true
	default:
		return 0, nil
	}
	if !top.pairList.present() || body[top.pairList.start] != '[' {
		return 0, payloadError("PairList must be a non-empty array")
	}
	pairs := 0
	var perr *bodyError
	walkArray(body, top.pairList.start, func(elem span) bool {
		if body[elem.start] != '{' {
			perr = payloadError("PairList[" + strconv.Itoa(pairs) + "] must be an object")
			return false
		}
		var from, to, initiator span
		var seen uint8
		var dup string
		walkObject(body, elem.start, func(key span, keyEscaped bool, val span) bool {
			var dst *span
			k := memberKey(body, key, keyEscaped)
			var n int
			switch string(k) {
			case "From_Account":
				n, dst = 0, &from
			case "To_Account":
				n, dst = 1, &to
			case "Initiator_Account":
				n, dst = 2, &initiator
			default:
				if n = foldedIndex(k, pairKeys); n < 0 {
					return true
				}
			}
			if seen&(1<<n) != 0 {
				dup = pairKeys[n]
				return false
			}
			seen |= 1 << n
			if dst != nil {
				*dst = val
			}
			return true
		})
		at := "PairList[" + strconv.Itoa(pairs) + "]"
		switch {
		case dup != "":
			perr = payloadError(at + " has the member " + strconv.Quote(dup) + " more than once (in any letter case)")
		case !nonEmptyString(body, from):
			perr = payloadError(at + ".From_Account must be a non-empty string")
		case !nonEmptyString(body, to):
			perr = payloadError(at + ".To_Account must be a non-empty string")
		case friendAdd && !nonEmptyString(body, initiator):
			perr = payloadError(at + ".Initiator_Account must be a non-empty string")
		}
		pairs++
		return perr == nil
	})
	if perr != nil {
		return 0, perr
	}
	if pairs == 0 {
		return 0, payloadError("PairList must be a non-empty array")
	}
	if friendAdd {
		switch {
		case !nonEmptyString(body, top.clientCmd):
			return 0, payloadError("ClientCmd must be a non-empty string")
		case !top.adminAccount.present() || body[top.adminAccount.start] != '"':
			return 0, payloadError("Admin_Account must be a string")
		case !isInteger(body, top.forceFlag):
			return 0, payloadError("ForceFlag must be an integer")
		}
	}
	return pairs, nil
}

// The checked members, in the order of the bits checkCommand and checkSns keep for them.
var (
	topKeys  = []string{"CallbackCommand", "PairList", "ClientCmd", "Admin_Account", "ForceFlag"}
	pairKeys = []string{"From_Account", "To_Account", "Initiator_Account"}
)

// foldedIndex returns the index of the key in keys that k equals under Unicode case folding,
// as encoding/json matches them, or -1.
func foldedIndex(k []byte, keys []string) int {
	for i, key := range keys {
		if bytes.EqualFold(k, []byte(key)) {
			return i
		}
	}
	return -1
}

func payloadError(info string) *bodyError {
	return &bodyError{ReasonInvalidPayload, replyBody(false, info)}
}

// The walker below assumes json.Valid(body) holds.

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"' and whether it holds
// an escape.
func skipString(b []byte, i int) (int, bool) {
	escaped := false
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return i, escaped
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := skipString(b, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i, _ = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
			i++
		}
		return i
	}
}

// walkObject calls fn for each member of the object starting at b[i] == '{' until fn
// returns false. key spans the key's quotes.
func walkObject(b []byte, i int, fn func(key span, keyEscaped bool, val span) bool) {
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		kEnd, esc := skipString(b, i)
		key := span{i, kEnd}
		i = skipSpace(b, kEnd) + 1 // ':'
		i = skipSpace(b, i)
		vEnd := skipValue(b, i)
		if !fn(key, esc, span{i, vEnd}) {
			return
		}
		i = skipSpace(b, vEnd)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}

// walkArray calls fn for each element of the array starting at b[i] == '[' until fn returns
// false.
func walkArray(b []byte, i int, fn func(elem span) bool) {
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != ']' {
		end := skipValue(b, i)
		if !fn(span{i, end}) {
			return
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}

// memberKey returns the key's text; only an escaped key costs an allocation.
func memberKey(b []byte, key span, escaped bool) []byte {
	if !escaped {
		return b[key.start+1 : key.end-1]
	}
	var s string
	if json.Unmarshal(b[key.start:key.end], &s) != nil {
		return nil
	}
	return []byte(s)
}

// stringEquals reports whether the JSON string token at sp decodes to want.
func stringEquals(b []byte, sp span, want string) bool {
	raw := b[sp.start+1 : sp.end-1]
	for _, c := range raw {
		// Escapes and non-ASCII (possibly invalid UTF-8, which decoders replace) take the
		// decoder's path, so the comparison agrees with what a consumer decodes.
		if c == '\\' || c >= 0x80 {
			var s string
			return json.Unmarshal(b[sp.start:sp.end], &s) == nil && s == want
		}
	}
	return string(raw) == want
}

// nonEmptyString reports whether sp is a string token holding at least one character (an
// escape always decodes to at least one).
func nonEmptyString(b []byte, sp span) bool {
	return sp.present() && b[sp.start] == '"' && sp.end-sp.start > 2
}

// isInteger reports whether sp is a JSON number without fraction or exponent.
func isInteger(b []byte, sp span) bool {
	if !sp.present() {
		return false
	}
	n := b[sp.start:sp.end]
	if n[0] == '-' {
		n = n[1:]
	}
	if len(n) == 0 {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
