package catalog

import (
	"go/build"
	"strings"
	"testing"
)

// TestCatalogue pins the catalogue against protocol.md's table: its size, the
// before-callbacks (marked B there), and a name of each module.
func TestCatalogue(t *testing.T) {
	if n := len(All()); n != 54 {
		t.Errorf("catalogue has %d commands, protocol.md lists 54", n)
	}
	wantBefore := []string{
		"C2C.CallbackBeforeSendMsg",
		"Group.CallbackBeforeApplyJoinGroup",
		"Group.CallbackBeforeCreateGroup",
		"Group.CallbackBeforeCreateTopic",
		"Group.CallbackBeforeInviteJoinGroup",
		"Group.CallbackBeforeSendMsg",
		"OfficialAccount.CallbackBeforeAddSubscriber",
		"OfficialAccount.CallbackBeforeCreateOfficialAccount",
		"OfficialAccount.CallbackBeforeSendMsg",
		"Sns.CallbackPrevFriendAdd",
		"Sns.CallbackPrevFriendResponse",
	}
	if got := Before(); strings.Join(got, " ") != strings.Join(wantBefore, " ") {
		t.Errorf("before-callbacks\n got %v\nwant %v", got, wantBefore)
	}
	seen := map[string]bool{}
	for _, c := range All() {
		if seen[c.Name] {
			t.Errorf("%s listed twice", c.Name)
		}
		seen[c.Name] = true
		// Every before-callback's name says so, and no after-callback's does.
		named := strings.Contains(c.Name, ".CallbackBefore") || strings.Contains(c.Name, ".CallbackPrev")
		if named != c.Before {
			t.Errorf("%s: Before = %v, but its name says %v", c.Name, c.Before, named)
		}
		if got, ok := Lookup(c.Name); !ok || got != c || !Known(c.Name) || IsBefore(c.Name) != c.Before {
			t.Errorf("Lookup/Known/IsBefore(%s) disagree with the table", c.Name)
		}
	}
	for _, name := range []string{"Sns.CallbackBlackListDelete", "Alert.RequestOverLimit", "State.StateChange",
		"Follow.CallbackAfterFollowAdd", "ContentCallback.ResultNotify", "Bot.OnGroupMessage", "Push.AllMemberPush",
		"C2C.CallbackAfterC2CMsgExtension", "Group.CallbackOnDailyGroupQuotaAlarm"} {
		if !Known(name) {
			t.Errorf("%s missing", name)
		}
	}
	if Known("sns.callbackblacklistdelete") || IsBefore("C2C.CallbackBeforeSendMsgs") {
		t.Error("lookups must be exact")
	}
	// All returns a copy.
	All()[0].Name = "x"
	if All()[0].Name == "x" {
		t.Error("All exposes the table")
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// letter case
		{"Sns.CallbackBlacklistDelete", "Sns.CallbackBlackListDelete"},
		{"sns.callbackblacklistdelete", "Sns.CallbackBlackListDelete"},
		{"c2c.CallbackBeforeSendMsg", "C2C.CallbackBeforeSendMsg"},
		// module prefix missing
		{"CallbackBlackListAdd", "Sns.CallbackBlackListAdd"},
		{"callbackprevfriendadd", "Sns.CallbackPrevFriendAdd"},
		// typos
		{"Sns.CallbackBlackListDelet", "Sns.CallbackBlackListDelete"},
		{"Sns.CallBackFriendAdd", "Sns.CallbackFriendAdd"},
		{"Group.CallbackBeforeSendMsgs", "Group.CallbackBeforeSendMsg"},
		{"C2C.CallbackBeforeSendMessage", "C2C.CallbackBeforeSendMsg"},
		{"Group.CallbackAfterMemberExits", "Group.CallbackAfterMemberExit"},
		{"C2C.CallbackAfterMsgWithdraw", "C2C.CallbackAfterMsgWithDraw"},
		{"Sns.CallbackFriendDel", "Sns.CallbackFriendDelete"},
		{"Groups.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"},
	} {
		got, ok := Suggest(tc.in)
		if !ok || got != tc.want {
			t.Errorf("Suggest(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	// Nothing close: no suggestion rather than a random command.
	for _, in := range []string{"", "x", "Foo.Bar", "Sns.CallbackBlackListDelete", "Group.CallbackAfterSomethingNew",
		"Live.CallbackAfterRoomCreated", "C2C.CallbackAfterMsgRead"} {
		if got, ok := Suggest(in); ok {
			t.Errorf("Suggest(%q) = %q, want no suggestion", in, got)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		s, t string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"flaw", "lawn", 2}, {"abc", "abc", 0},
	} {
		if got := distance(tc.s, tc.t, 100); got != tc.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.s, tc.t, got, tc.want)
		}
		if got := distance(tc.s, tc.t, 1); tc.want >= 1 && got < 1 {
			t.Errorf("distance(%q, %q) bounded by 1 = %d, want >= 1", tc.s, tc.t, got)
		}
	}
}

// TestLeafPackage: the manager imports this package, so it must not pull in the data plane
// or anything outside the standard library.
func TestLeafPackage(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
			t.Errorf("imports %s: the catalogue must depend on the standard library only", imp)
		}
	}
}
