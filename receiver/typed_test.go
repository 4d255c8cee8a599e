package receiver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Example bodies of the send-message callbacks and Sns.CallbackPrevFriendAdd, as Tencent's
// documentation shows them.
const (
	c2cBeforeBody     = `{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"jared","To_Account":"Jonh","MsgSeq":48374,"MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"48374_2837546_1557481126","OnlineOnlyFlag":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data"}`
	c2cAfterBody      = `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh","MsgSeq":48374,"MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"48374_2837546_1557481126","OnlineOnlyFlag":1,"SendMsgResult":0,"ErrorInfo":"send msg succeed","UnreadMsgNum":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data"}`
	groupBeforeBody   = `{"CallbackCommand":"Group.CallbackBeforeSendMsg","GroupId":"@TGS#2J4SZEAEL","Type":"Community","From_Account":"jared","Operator_Account":"admin","Random":123456,"OnlineOnlyFlag":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data","TopicId":"@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic","EventTime":"1670574414123"}`
	groupAfterBody    = `{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"jared","Operator_Account":"admin","Random":123456,"MsgSeq":123,"MsgTime":1490686222,"OnlineOnlyFlag":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}},{"MsgType":"TIMFaceElem","MsgContent":{"Index":6,"Data":"abc\u0000\u0001"}}],"CloudCustomData":"your cloud custom data"}`
	prevFriendAddBody = `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","Requester_Account":"id","From_Account":"id","FriendItem":[{"To_Account":"id1","Remark":"remark1","GroupName":"group1","AddSource":"AddSource_Type_Android","AddWording":"this is id1!"},{"To_Account":"id2","Remark":"remark2","GroupName":"group2","AddSource":"AddSource_Type_Android","AddWording":"this is id2!"}],"AddType":"Add_Type_Both","ForceAddFlags":1,"EventTime":1670574414123}`
)

// typedCommands are the commands with typed checks beyond the Sns after-callbacks.
var typedBody = map[string]string{
	CmdC2CBeforeSendMsg:   c2cBeforeBody,
	CmdC2CAfterSendMsg:    c2cAfterBody,
	CmdGroupBeforeSendMsg: groupBeforeBody,
	CmdGroupAfterSendMsg:  groupAfterBody,
	CmdPrevFriendAdd:      prevFriendAddBody,
}

// TestTypedReplies has a row per typed check of the send-message callbacks and
// Sns.CallbackPrevFriendAdd, with the exact reply. The commands are routed (a forwarded
// before-callback is still checked), so a valid body is accepted.
func TestTypedReplies(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Routes = []Route{{Commands: []string{CmdC2CBeforeSendMsg, CmdC2CAfterSendMsg, CmdGroupBeforeSendMsg, CmdGroupAfterSendMsg, CmdPrevFriendAdd}, Sink: "http://127.0.0.1:2"}}
	r := newReceiver(t, cfg)
	c2c := func(members string) string {
		return `{"CallbackCommand":"C2C.CallbackBeforeSendMsg",` + members + `}`
	}
	msg := `"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]`
	group := func(members string) string {
		return `{"CallbackCommand":"Group.CallbackAfterSendMsg",` + members + `}`
	}
	friend := func(members string) string {
		return `{"CallbackCommand":"Sns.CallbackPrevFriendAdd",` + members + `}`
	}
	cmdOf := func(body string) string {
		var v struct{ CallbackCommand string }
		_ = json.Unmarshal([]byte(body), &v)
		return v.CallbackCommand
	}
	for _, tc := range []struct {
		name, body string
		reply      string // "" means accepted
	}{
		{"C2C.CallbackBeforeSendMsg example", c2cBeforeBody, ""},
		{"C2C.CallbackAfterSendMsg example", c2cAfterBody, ""},
		{"Group.CallbackBeforeSendMsg example (EventTime as a string)", groupBeforeBody, ""},
		{"Group.CallbackAfterSendMsg example (two elements)", groupAfterBody, ""},
		{"Sns.CallbackPrevFriendAdd example", prevFriendAddBody, ""},
		{"unknown members kept, escaped keys", c2c(`"Fr\u006fm_Account":"a","To_Account":"b",` + msg + `,"New":{"x":[1,{"MsgBody":null}]}`), ""},
		{"element with unknown members", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"TIMCustomElem","MsgContent":{},"Extra":1}]`), ""},

		{"From_Account missing", c2c(`"To_Account":"b",` + msg), fail("From_Account must be a non-empty string")},
		{"From_Account empty", c2c(`"From_Account":"","To_Account":"b",` + msg), fail("From_Account must be a non-empty string")},
		{"From_Account a number", c2c(`"From_Account":7,"To_Account":"b",` + msg), fail("From_Account must be a non-empty string")},
		{"To_Account missing (C2C)", c2c(`"From_Account":"a",` + msg), fail("To_Account must be a non-empty string")},
		{"To_Account null", c2c(`"From_Account":"a","To_Account":null,` + msg), fail("To_Account must be a non-empty string")},
		{"GroupId missing (Group)", group(`"From_Account":"a","To_Account":"b",` + msg), fail("GroupId must be a non-empty string")},
		{"GroupId a number", group(`"From_Account":"a","GroupId":1,` + msg), fail("GroupId must be a non-empty string")},
		{"MsgBody missing", c2c(`"From_Account":"a","To_Account":"b"`), fail("MsgBody must be a non-empty array")},
		{"MsgBody empty", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[ ]`), fail("MsgBody must be a non-empty array")},
		{"MsgBody an object", c2c(`"From_Account":"a","To_Account":"b","MsgBody":{"MsgType":"TIMTextElem","MsgContent":{}}`), fail("MsgBody must be a non-empty array")},
		{"MsgBody a string", c2c(`"From_Account":"a","To_Account":"b","MsgBody":"hi"`), fail("MsgBody must be a non-empty array")},
		{"element not an object", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{}},"hi"]`), fail("MsgBody[1] must be an object")},
		{"MsgType missing", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[{"MsgContent":{}}]`), fail("MsgBody[0].MsgType must be a non-empty string")},
		{"MsgType empty", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"","MsgContent":{}}]`), fail("MsgBody[0].MsgType must be a non-empty string")},
		{"MsgContent missing", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"TIMTextElem"}]`), fail("MsgBody[0].MsgContent must be an object")},
		{"MsgContent a string", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":"hi"}]`), fail("MsgBody[0].MsgContent must be an object")},
		{"MsgContent null in the second element", group(`"From_Account":"a","GroupId":"g","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{}},{"MsgType":"TIMTextElem","MsgContent":null}]`), fail("MsgBody[1].MsgContent must be an object")},
		{"MsgBody twice", c2c(`"From_Account":"a","To_Account":"b",` + msg + `,` + msg), fail(`body has the member \"MsgBody\" more than once or in another letter case`)},
		{"MsgBody and msgbody", c2c(`"From_Account":"a","To_Account":"b",` + msg + `,"msgbody":[]`), fail(`body has the member \"MsgBody\" more than once or in another letter case`)},
		{"only from_account in lower case", c2c(`"from_account":"a","To_Account":"b",` + msg), fail(`body has the member \"From_Account\" more than once or in another letter case`)},
		{"MsgBody and MſgBody (a long s, which encoding/json folds to s)", c2c(`"From_Account":"a","To_Account":"b",` + msg + ",\"M\u017FgBody\":[]"), fail(`body has the member \"MsgBody\" more than once or in another letter case`)},
		{"To_Account twice", c2c(`"From_Account":"a","To_Account":"b","To_Account":"c",` + msg), fail(`body has the member \"To_Account\" more than once or in another letter case`)},
		{"MsgType twice in an element", c2c(`"From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{},"msgType":"TIMImageElem"}]`), fail(`MsgBody[0] has the member \"MsgType\" more than once or in another letter case`)},

		{"FriendItem missing", friend(`"From_Account":"a"`), fail("FriendItem must be a non-empty array")},
		{"FriendItem empty", friend(`"From_Account":"a","FriendItem":[]`), fail("FriendItem must be a non-empty array")},
		{"PrevFriendAdd From_Account missing", friend(`"FriendItem":[{"To_Account":"b"}]`), fail("From_Account must be a non-empty string")},
		{"FriendItem entry not an object", friend(`"From_Account":"a","FriendItem":["b"]`), fail("FriendItem[0] must be an object")},
		{"FriendItem To_Account missing", friend(`"From_Account":"a","FriendItem":[{"To_Account":"b"},{"Remark":"x"}]`), fail("FriendItem[1].To_Account must be a non-empty string")},
		{"FriendItem To_Account twice", friend(`"From_Account":"a","FriendItem":[{"To_Account":"b","TO_ACCOUNT":"c"}]`), fail(`FriendItem[0] has the member \"To_Account\" more than once or in another letter case`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			before := countsOf(r)
			w := httptest.NewRecorder()
			r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(cmdOf(body)), strings.NewReader(body)))
			after := countsOf(r)
			if tc.reply == "" {
				if w.Code != 200 || w.Body.String() != replyOK || after.accepted != before.accepted+1 {
					t.Errorf("want accepted, got %d %s", w.Code, w.Body)
				}
				takeQueued(t, r)
				return
			}
			if w.Code != 400 || w.Body.String() != tc.reply {
				t.Errorf("got %d %s\nwant 400 %s", w.Code, w.Body, tc.reply)
			}
			if after.rejected != before.rejected+1 || reasonCount(t, r, "invalid_payload") == 0 {
				t.Errorf("not counted as invalid_payload")
			}
		})
	}
}

// TestTypedChecksOnlyForHandledCommands: an ignored command is never checked, so a
// send-message callback nobody asked for is answered OK whatever its body.
func TestTypedChecksOnlyForHandledCommands(t *testing.T) {
	r := newReceiver(t, testConfig("http://127.0.0.1:1"))
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(CmdC2CBeforeSendMsg),
		strings.NewReader(`{"CallbackCommand":"C2C.CallbackBeforeSendMsg"}`)))
	if w.Code != 200 || w.Body.String() != replyOK || countsOf(r).ignored != 1 {
		t.Errorf("unhandled before-callback: %d %s", w.Code, w.Body)
	}
}

// FuzzTypedChecks: whatever the typed checks accept, encoding/json (which matches names
// case-insensitively and keeps the last duplicate) reads the same shape from.
func FuzzTypedChecks(f *testing.F) {
	for cmd, body := range typedBody {
		f.Add(cmd, []byte(body))
	}
	f.Add(CmdC2CBeforeSendMsg, []byte(`{"From_Account":"a","from_account":"","To_Account":"b","MsgBody":[{"MsgType":"t","MsgContent":{}}]}`))
	f.Add(CmdGroupAfterSendMsg, []byte(`{"From_Account":"\u0000","GroupId":"g","MsgBody":[{"MsgType":"t","MsgContent":{},"MSGCONTENT":1}]}`))
	f.Add(CmdPrevFriendAdd, []byte(`{"From_Account":"a","FriendItem":[{"To_Account":"b","to_account":""}]}`))
	type element struct {
		MsgType    *string
		MsgContent map[string]any
	}
	type message struct {
		From_Account, To_Account, GroupId *string
		MsgBody                           []element
	}
	type friendAdd struct {
		From_Account *string
		FriendItem   []struct{ To_Account *string }
	}
	nonEmpty := func(s *string) bool { return s != nil && *s != "" }
	f.Fuzz(func(t *testing.T, cmd string, body []byte) {
		if !json.Valid(body) || !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
			return // checkCommand refuses these before the typed checks run
		}
		if checkTyped(body, cmd) != nil {
			return
		}
		switch cmd {
		case CmdC2CBeforeSendMsg, CmdC2CAfterSendMsg, CmdGroupBeforeSendMsg, CmdGroupAfterSendMsg:
			var m message
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("accepted %s, encoding/json: %v", body, err)
			}
			target := m.To_Account
			if strings.HasPrefix(cmd, "Group.") {
				target = m.GroupId
			}
			if !nonEmpty(m.From_Account) || !nonEmpty(target) || len(m.MsgBody) == 0 {
				t.Fatalf("accepted %s, encoding/json reads %+v", body, m)
			}
			for _, e := range m.MsgBody {
				if !nonEmpty(e.MsgType) || e.MsgContent == nil {
					t.Fatalf("accepted %s, encoding/json reads element %+v", body, e)
				}
			}
		case CmdPrevFriendAdd:
			var m friendAdd
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("accepted %s, encoding/json: %v", body, err)
			}
			if !nonEmpty(m.From_Account) || len(m.FriendItem) == 0 {
				t.Fatalf("accepted %s, encoding/json reads %+v", body, m)
			}
			for _, it := range m.FriendItem {
				if !nonEmpty(it.To_Account) {
					t.Fatalf("accepted %s, encoding/json reads item %+v", body, it)
				}
			}
		}
	})
}
