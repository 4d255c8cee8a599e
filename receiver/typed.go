package receiver

import (
	"bytes"
	"strconv"
)

// Commands with typed checks beyond the Sns after-callbacks (checkSns): those most often
// routed or decided.
const (
	CmdC2CBeforeSendMsg   = "C2C.CallbackBeforeSendMsg"
	CmdC2CAfterSendMsg    = "C2C.CallbackAfterSendMsg"
	CmdGroupBeforeSendMsg = "Group.CallbackBeforeSendMsg"
	CmdGroupAfterSendMsg  = "Group.CallbackAfterSendMsg"
	CmdPrevFriendAdd      = "Sns.CallbackPrevFriendAdd"
)

// Member names the typed checks read. A body holding one of them twice, or in another
// letter case (which Go's encoding/json would read as the same member), is refused, so the
// receiver and a consumer never read different values from one body.
var (
	messageMembers    = []string{"From_Account", "To_Account", "GroupId", "MsgBody"}
	elementMembers    = []string{"MsgType", "MsgContent"}
	prevFriendMembers = []string{"From_Account", "FriendItem"}
	friendItemMembers = []string{"To_Account"}
)

// checkTyped is the typed check of the send-message callbacks and Sns.CallbackPrevFriendAdd
// (body already known to be a JSON object with the right CallbackCommand); other commands pass.
//   - C2C send-message callbacks: non-empty string From_Account and To_Account, and a
//     non-empty MsgBody array of elements, each an object with a non-empty string MsgType and
//     an object MsgContent;
//   - Group send-message callbacks: the same with GroupId instead of To_Account;
//   - Sns.CallbackPrevFriendAdd: non-empty string From_Account, and a non-empty FriendItem
//     array of objects with a non-empty string To_Account.
//
// Every other member is optional and kept: the body is forwarded byte for byte.
func checkTyped(body []byte, command string) *bodyError {
	switch command {
	case CmdC2CBeforeSendMsg, CmdC2CAfterSendMsg:
		return checkMessage(body, "To_Account")
	case CmdGroupBeforeSendMsg, CmdGroupAfterSendMsg:
		return checkMessage(body, "GroupId")
	case CmdPrevFriendAdd:
		return checkPrevFriendAdd(body)
	}
	return nil
}

func checkMessage(body []byte, target string) *bodyError {
	var m [4]span // messageMembers
	if dup := findMembers(body, skipSpace(body, 0), messageMembers, m[:]); dup != "" {
		return duplicateMember("body ", dup)
	}
	from, to, group, msgBody := m[0], m[1], m[2], m[3]
	switch {
	case !nonEmptyString(body, from):
		return payloadError("From_Account must be a non-empty string")
	case target == "To_Account" && !nonEmptyString(body, to):
		return payloadError("To_Account must be a non-empty string")
	case target == "GroupId" && !nonEmptyString(body, group):
		return payloadError("GroupId must be a non-empty string")
	}
	return eachObject(body, msgBody, "MsgBody", elementMembers, func(at string, e []span) *bodyError {
		switch {
		case !nonEmptyString(body, e[0]):
			return payloadError(at + ".MsgType must be a non-empty string")
		case !e[1].present() || body[e[1].start] != '{':
			return payloadError(at + ".MsgContent must be an object")
		}
		return nil
	})
}

func checkPrevFriendAdd(body []byte) *bodyError {
	var m [2]span // prevFriendMembers
	if dup := findMembers(body, skipSpace(body, 0), prevFriendMembers, m[:]); dup != "" {
		return duplicateMember("body ", dup)
	}
	if !nonEmptyString(body, m[0]) {
		return payloadError("From_Account must be a non-empty string")
	}
	return eachObject(body, m[1], "FriendItem", friendItemMembers, func(at string, e []span) *bodyError {
		if !nonEmptyString(body, e[0]) {
			return payloadError(at + ".To_Account must be a non-empty string")
		}
		return nil
	})
}

// eachObject checks the member arr, named name, of a body: a non-empty array of objects,
// each holding members at most once (in any letter case); check gets each one's members
// (in the order of members) and its place for messages, such as MsgBody[2].
func eachObject(body []byte, arr span, name string, members []string, check func(at string, m []span) *bodyError) *bodyError {
	if !arr.present() || body[arr.start] != '[' {
		return payloadError(name + " must be a non-empty array")
	}
	n := 0
	var perr *bodyError
	fields := make([]span, len(members))
	walkArray(body, arr.start, func(elem span) bool {
		at := name + "[" + strconv.Itoa(n) + "]"
		n++
		if body[elem.start] != '{' {
			perr = payloadError(at + " must be an object")
			return false
		}
		clear(fields)
		if dup := findMembers(body, elem.start, members, fields); dup != "" {
			perr = duplicateMember(at+" ", dup)
			return false
		}
		perr = check(at, fields)
		return perr == nil
	})
	if perr != nil {
		return perr
	}
	if n == 0 {
		return payloadError(name + " must be a non-empty array")
	}
	return nil
}

// findMembers stores in out[i] the value of the member named names[i] of the object at
// b[obj] (matched exactly). It returns the name of a member found twice or in another
// letter case (as encoding/json folds names), "" when there is none.
func findMembers(b []byte, obj int, names []string, out []span) string {
	dup := ""
	walkObject(b, obj, func(key span, escaped bool, val span) bool {
		k := memberKey(b, key, escaped)
		for i, name := range names {
			if !bytes.EqualFold(k, []byte(name)) {
				continue
			}
			if out[i].present() || string(k) != name {
				dup = name
				return false
			}
			out[i] = val
			return true
		}
		return true
	})
	return dup
}

func duplicateMember(at, name string) *bodyError {
	return payloadError(at + "has the member " + strconv.Quote(name) + " more than once or in another letter case")
}
