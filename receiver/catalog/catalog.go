// Package catalog lists every callback command Tencent Cloud IM sends to an app's one callback
// URL, and which of them are before-callbacks (IM waits for their answer, which can refuse or
// change the user's action). The controller uses it to flag a command that is in no catalogue
// (most likely a typo, which would silently match nothing) and a before-callback listed as a
// plain forwarded command (it would be answered OK without a decision).
//
// It is a leaf package (the standard library only), so the manager can import it without
// linking the receiver's data plane. The receiver never refuses an unknown command on the
// wire: IM keeps adding commands, so the catalogue advises, it does not decide.
package catalog

import (
	"sort"
	"strings"
)

// Command is one callback command of the catalogue.
type Command struct {
	// Name is the CallbackCommand as IM sends it, e.g. "Sns.CallbackBlackListDelete".
	Name string
	// Before is true for a before-callback: IM waits for the answer, which decides the action.
	Before bool
}

// b and a mark before- and after-callbacks in the table below.
const (
	b = true
	a = false
)

// commands is the catalogue, in the order of Tencent's callback list (module by module).
var commands = []Command{
	// Alert
	{"Alert.RequestOverLimit", a},
	// State
	{"State.StateChange", a},
	// Profile and relationship chain
	{"Profile.CallbackPortraitSet", a},
	{"Sns.CallbackPrevFriendAdd", b},
	{"Sns.CallbackPrevFriendResponse", b},
	{"Sns.CallbackFriendAdd", a},
	{"Sns.CallbackFriendDelete", a},
	{"Sns.CallbackBlackListAdd", a},
	{"Sns.CallbackBlackListDelete", a},
	// Follow
	{"Follow.CallbackAfterFollowAdd", a},
	{"Follow.CallbackAfterFollowDelete", a},
	// One-to-one messages
	{"C2C.CallbackBeforeSendMsg", b},
	{"C2C.CallbackAfterSendMsg", a},
	{"C2C.CallbackAfterMsgReport", a},
	{"C2C.CallbackAfterMsgWithDraw", a},
	{"C2C.CallbackAfterC2CMsgExtension", a},
	// Groups and communities
	{"Group.CallbackBeforeCreateGroup", b},
	{"Group.CallbackAfterCreateGroup", a},
	{"Group.CallbackBeforeApplyJoinGroup", b},
	{"Group.CallbackBeforeInviteJoinGroup", b},
	{"Group.CallbackAfterNewMemberJoin", a},
	{"Group.CallbackAfterMemberExit", a},
	{"Group.CallbackBeforeSendMsg", b},
	{"Group.CallbackAfterSendMsg", a},
	{"Group.CallbackAfterGroupFull", a},
	{"Group.CallbackAfterGroupDestroyed", a},
	{"Group.CallbackAfterGroupInfoChanged", a},
	{"Group.CallbackOnMemberStateChange", a},
	{"Group.CallbackSendMsgException", a},
	{"Group.CallbackBeforeCreateTopic", b},
	{"Group.CallbackAfterCreateTopic", a},
	{"Group.CallbackAfterTopicDestroyed", a},
	{"Group.CallbackAfterTopicInfoChanged", a},
	{"Group.CallbackAfterMemberFieldChanged", a},
	{"Group.CallbackAfterGroupAttrChanged", a},
	{"Group.CallbackAfterReadReceipt", a},
	{"Group.CallbackAfterChangeGroupOwner", a},
	{"Group.CallbackOnDailyGroupQuotaAlarm", a},
	// Moderation
	{"ContentCallback.ResultNotify", a},
	// Bots
	{"Bot.OnC2CMessage", a},
	{"Bot.OnGroupMessage", a},
	// Official accounts
	{"OfficialAccount.CallbackBeforeCreateOfficialAccount", b},
	{"OfficialAccount.CallbackAfterCreateOfficialAccount", a},
	{"OfficialAccount.CallbackAfterOfficialAccountInfoChanged", a},
	{"OfficialAccount.CallbackAfterOfficialAccountDestroyed", a},
	{"OfficialAccount.CallbackBeforeAddSubscriber", b},
	{"OfficialAccount.CallbackAfterAddSubscriber", a},
	{"OfficialAccount.CallbackAfterOfficialAccountFull", a},
	{"OfficialAccount.CallbackAfterDeleteSubscriber", a},
	{"OfficialAccount.CallbackBeforeSendMsg", b},
	{"OfficialAccount.CallbackAfterSendMsg", a},
	{"OfficialAccount.CallbackAfterMsgWithDraw", a},
	// Push plugin
	{"Push.OfflinePush", a},
	{"Push.AllMemberPush", a},
}

var byName = func() map[string]Command {
	m := make(map[string]Command, len(commands))
	for _, c := range commands {
		m[c.Name] = c
	}
	return m
}()

// All returns the catalogue, in the order of Tencent's callback list.
func All() []Command { return append([]Command(nil), commands...) }

// Lookup returns the command of that exact name (names are case-sensitive, as IM sends them).
func Lookup(name string) (Command, bool) {
	c, ok := byName[name]
	return c, ok
}

// Known reports whether name is a command of the catalogue, spelled exactly.
func Known(name string) bool {
	_, ok := byName[name]
	return ok
}

// IsBefore reports whether name is a before-callback of the catalogue.
func IsBefore(name string) bool { return byName[name].Before }

// Before returns the names of the before-callbacks, sorted.
func Before() []string {
	var out []string
	for _, c := range commands {
		if c.Before {
			out = append(out, c.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Suggest returns the catalogue command a name in no catalogue most likely means, and false
// when nothing is close enough to suggest. In order: the same name in another letter case
// ("Sns.CallbackBlacklistDelete"), the name without its module prefix
// ("CallbackBlackListDelete"), then the closest name by edit distance, ignoring case and
// reading "Message" as IM's "Msg", within a distance of 3 (ties go to the longer common
// prefix). A name of the catalogue suggests nothing.
func Suggest(name string) (string, bool) {
	if Known(name) || name == "" {
		return "", false
	}
	lower := strings.ToLower(name)
	for _, c := range commands {
		if strings.ToLower(c.Name) == lower {
			return c.Name, true
		}
	}
	if !strings.Contains(name, ".") {
		for _, c := range commands {
			if _, suffix, _ := strings.Cut(c.Name, "."); strings.ToLower(suffix) == lower {
				return c.Name, true
			}
		}
	}
	const limit = 3
	norm := strings.ReplaceAll(lower, "message", "msg")
	best, bestDist, bestPrefix := "", limit+1, 0
	for _, c := range commands {
		cl := strings.ToLower(c.Name)
		d := distance(norm, cl, bestDist+1)
		if d > limit || d > bestDist {
			continue
		}
		if p := commonPrefix(norm, cl); d < bestDist || p > bestPrefix {
			best, bestDist, bestPrefix = c.Name, d, p
		}
	}
	return best, best != ""
}

func commonPrefix(s, t string) int {
	n := 0
	for n < len(s) && n < len(t) && s[n] == t[n] {
		n++
	}
	return n
}

// distance is the Levenshtein distance between s and t (bytes), or any value >= bound once
// it is known to be at least bound.
func distance(s, t string, bound int) int {
	if d := len(s) - len(t); d >= bound || -d >= bound {
		return bound
	}
	prev := make([]int, len(t)+1)
	cur := make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= bound {
			return bound
		}
		prev, cur = cur, prev
	}
	return prev[len(t)]
}
