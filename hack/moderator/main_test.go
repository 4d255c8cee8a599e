package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/imcallback/callback-operator/receiver"
)

func newModerator(t *testing.T, ban, rewrites string, code int, info string) (*moderator, *httptest.Server) {
	t.Helper()
	p, err := parsePolicy(ban, rewrites, code, info)
	if err != nil {
		t.Fatal(err)
	}
	m := &moderator{policy: p, log: log.New(io.Discard, "", 0)}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv
}

func message(command, target, text string) string {
	return `{"CallbackCommand":"` + command + `","From_Account":"jared",` + target + `,"MsgRandom":2837546,` +
		`"MsgBody":[{"MsgType":"TIMFaceElem","MsgContent":{"Index":6,"Data":"x"}},{"MsgType":"TIMTextElem","MsgContent":{"Text":` +
		mustJSON(text) + `,"Extra":1}}],"CloudCustomData":"c"}`
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestModerationThroughTheReceiver: the sample behind a real receiver (the library, with a
// decision for the send-message before-callbacks): a banned word refused with the configured
// code, a configured word rewritten in MsgBody (every other member kept), other messages and
// other commands allowed.
func TestModerationThroughTheReceiver(t *testing.T) {
	m, srv := newModerator(t, "spam, Scam", "darn=d**n,heck=h*ck", 120001, "your message was blocked")
	cfg := receiver.DefaultConfig()
	cfg.SdkAppID, cfg.Path = 1400000001, "/im/callback"
	cfg.Decisions = []receiver.Decision{{Commands: []string{"C2C.CallbackBeforeSendMsg", "Group.CallbackBeforeSendMsg", "Sns.CallbackPrevFriendAdd"}, URL: srv.URL}}
	cfg.Logger = slog.New(slog.DiscardHandler)
	r, err := receiver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(command, body string) string {
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/im/callback?SdkAppid=1400000001&CallbackCommand="+command, strings.NewReader(body)))
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", command, w.Code, w.Body)
		}
		return w.Body.String()
	}
	c2c := func(text string) string { return message("C2C.CallbackBeforeSendMsg", `"To_Account":"Jonh"`, text) }
	group := func(text string) string {
		return message("Group.CallbackBeforeSendMsg", `"GroupId":"@TGS#2J4SZEAEL"`, text)
	}

	const allow = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`
	const refuse = `{"ActionStatus":"OK","ErrorCode":120001,"ErrorInfo":"your message was blocked"}`
	rewritten := func(text string) string {
		return `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","MsgBody":[{"MsgType":"TIMFaceElem","MsgContent":{"Index":6,"Data":"x"}},` +
			`{"MsgContent":{"Extra":1,"Text":` + mustJSON(text) + `},"MsgType":"TIMTextElem"}]}`
	}
	for _, tc := range []struct{ name, command, body, want string }{
		{"clean C2C message", "C2C.CallbackBeforeSendMsg", c2c("hello there"), allow},
		{"banned word", "C2C.CallbackBeforeSendMsg", c2c("buy cheap SPAM now"), refuse},
		{"banned word in a group", "Group.CallbackBeforeSendMsg", group("a scam"), refuse},
		{"rewritten word, any case", "C2C.CallbackBeforeSendMsg", c2c("Darn, what the heck"), rewritten("d**n, what the h*ck")},
		{"rewritten in a group, unicode kept", "Group.CallbackBeforeSendMsg", group("darn \u4e2d\u6587"), rewritten("d**n \u4e2d\u6587")},
		{"banned beats rewritten", "C2C.CallbackBeforeSendMsg", c2c("darn spam"), refuse},
		{"other command allowed", "Sns.CallbackPrevFriendAdd", `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","From_Account":"a","FriendItem":[{"To_Account":"spam"}]}`, allow},
	} {
		if got := decide(tc.command, tc.body); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	if m.stats.Allowed != 2 || m.stats.Refused != 3 || m.stats.Rewritten != 2 || m.stats.Invalid != 0 {
		t.Errorf("stats %+v", &m.stats)
	}
	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"Allowed":2,"Refused":3,"Rewritten":2,"Invalid":0}` {
		t.Errorf("/stats = %s", b)
	}
}

// TestAnswerIsBinaryCloudEvent: the answer is a binary-mode CloudEvent whose data is the
// reply; something that is not a CloudEvent gets 400 (the receiver's failure policy).
func TestAnswerIsBinaryCloudEvent(t *testing.T) {
	_, srv := newModerator(t, "spam", "", 1, "")
	ev := event.New()
	ev.SetID("abc")
	ev.SetType("com.tencentcloud.im.C2C.CallbackBeforeSendMsg")
	ev.SetSource("/tencentcloud/im/1400000001")
	if err := ev.SetData(event.ApplicationJSON, json.RawMessage(message("C2C.CallbackBeforeSendMsg", `"To_Account":"b"`, "spam"))); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	if err := cehttp.WriteRequest(binding.WithForceBinary(context.Background()), binding.ToMessage(&ev), req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Ce-Type") != answerType || resp.Header.Get("Ce-Id") != "abc" || resp.Header.Get("Ce-Decision") != "refused" ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("answer headers %v", resp.Header)
	}
	answerEv, err := cehttp.NewEventFromHTTPResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(answerEv.Data()); got != `{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"message refused: it contains \"spam\""}` {
		t.Errorf("answer %s", got)
	}

	resp, err = http.Post(srv.URL, "application/json", bytes.NewReader([]byte(`{"ErrorCode":0}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain JSON POST: %d, want 400", resp.StatusCode)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		ban, rewrites string
		code          int
		ok            bool
	}{
		{"a,b", "x=y", 1, true},
		{"", "", 2, true},
		{"", "", 120001, true},
		{"", "", 130000, true},
		{"", "", 0, false},
		{"", "", 3, false},
		{"", "", 130001, false},
		{"", "x", 1, false},
		{"", "=y", 1, false},
	} {
		if _, err := parsePolicy(tc.ban, tc.rewrites, tc.code, ""); (err == nil) != tc.ok {
			t.Errorf("parsePolicy(%q, %q, %d) = %v", tc.ban, tc.rewrites, tc.code, err)
		}
	}
}
