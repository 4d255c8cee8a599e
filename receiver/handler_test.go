package receiver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Exact reply bodies, spelled out so the test pins the wire format.
const (
	replyOK = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`
)

func fail(info string) string {
	return `{"ActionStatus":"FAIL","ErrorCode":1,"ErrorInfo":"` + info + `"}`
}

// TestHandlerReplies has a row per reply of the receiver's checks (in serveCallback's order),
// with the exact status, body and counted outcome/reason.
func TestHandlerReplies(t *testing.T) {
	okQuery := signedQuery(CmdBlackListDelete)
	at := func(secs int64) string { return strconv.FormatInt(secs, 10) }
	signedAt := func(secs int64) string {
		ts := at(secs)
		return query("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", ts, "Sign", Sign(exampleToken, ts))
	}
	q := func(pairs ...string) string { return query(pairs...) }
	withPair := func(pair string) string {
		return `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[` + pair + `]}`
	}
	friendAdd := func(mutate func(string) string) string { return mutate(friendAddBody) }

	type row struct {
		name    string
		noToken bool   // receiver without a token
		method  string // default POST
		path    string // default testPath
		query   string
		body    string
		chunked bool // send without Content-Length
		again   bool // the same request was accepted just before

		status  int
		reply   string
		outcome string
		reason  string // for rejected
		pairs   float64
	}
	rows := []row{
		// 1: path
		{name: "wrong path", path: "/other", query: okQuery, body: blackListDeleteBody,
			status: 404, reply: fail("not found"), outcome: OutcomeRejected, reason: "not_found"},
		{name: "path with trailing slash", path: testPath + "/", query: okQuery, body: blackListDeleteBody,
			status: 404, reply: fail("not found"), outcome: OutcomeRejected, reason: "not_found"},
		{name: "path with an escaped letter is not the path", path: "/im/%63allback", query: okQuery, body: blackListDeleteBody,
			status: 404, reply: fail("not found"), outcome: OutcomeRejected, reason: "not_found"},
		{name: "path with an escaped slash is not the path", path: "/im%2Fcallback", query: okQuery, body: blackListDeleteBody,
			status: 404, reply: fail("not found"), outcome: OutcomeRejected, reason: "not_found"},
		{name: "root path", path: "/", status: 404, reply: fail("not found"), outcome: OutcomeRejected, reason: "not_found"},
		// 2: method
		{name: "GET", method: http.MethodGet, query: okQuery,
			status: 405, reply: fail("method not allowed: callbacks are POSTed"), outcome: OutcomeRejected, reason: "method_not_allowed"},
		{name: "PUT", method: http.MethodPut, query: okQuery, body: blackListDeleteBody,
			status: 405, reply: fail("method not allowed: callbacks are POSTed"), outcome: OutcomeRejected, reason: "method_not_allowed"},
		// 3: size (the table receiver allows 4096 bytes)
		{name: "body over max-body-bytes", query: okQuery, body: withPair(`{"From_Account":"` + strings.Repeat("a", 4096) + `","To_Account":"b"}`),
			status: 413, reply: fail("body larger than 4096 bytes (--max-body-bytes)"), outcome: OutcomeRejected, reason: "body_too_large"},
		{name: "chunked body over max-body-bytes", chunked: true, query: okQuery, body: withPair(`{"From_Account":"` + strings.Repeat("a", 4096) + `","To_Account":"b"}`),
			status: 413, reply: fail("body larger than 4096 bytes (--max-body-bytes)"), outcome: OutcomeRejected, reason: "body_too_large"},
		{name: "chunked body within max-body-bytes", chunked: true, query: okQuery, body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		// 4: query parameters
		{name: "no query", body: blackListDeleteBody,
			status: 400, reply: fail("missing query parameter SdkAppid"), outcome: OutcomeRejected, reason: "missing_parameter"},
		{name: "empty SdkAppid", query: q("SdkAppid", "", "CallbackCommand", CmdBlackListDelete), body: blackListDeleteBody,
			status: 400, reply: fail("missing query parameter SdkAppid"), outcome: OutcomeRejected, reason: "missing_parameter"},
		{name: "SdkAppID spelled with capital D is not SdkAppid", query: q("SdkAppID", "1400000001", "CallbackCommand", CmdBlackListDelete), body: blackListDeleteBody,
			status: 400, reply: fail("missing query parameter SdkAppid"), outcome: OutcomeRejected, reason: "missing_parameter"},
		{name: "no CallbackCommand", query: q("SdkAppid", "1400000001"), body: blackListDeleteBody,
			status: 400, reply: fail("missing query parameter CallbackCommand"), outcome: OutcomeRejected, reason: "missing_parameter"},
		{name: "ClientIP with a line break", query: okQuery + "&ClientIP=1.2.3.4%0D%0AX-Evil:%201", body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3}, // first ClientIP wins, like url.Values.Get
		{name: "only ClientIP with a line break", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "ClientIP", "1.2.3.4\r\nX: 1", "RequestTime", exampleRequestTime, "Sign", exampleSign), body: blackListDeleteBody,
			status: 400, reply: fail("query parameter ClientIP contains control characters"), outcome: OutcomeRejected, reason: "invalid_parameter"},
		{name: "OptPlatform with a control character", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "OptPlatform", "iOS\x00", "RequestTime", exampleRequestTime, "Sign", exampleSign), body: blackListDeleteBody,
			status: 400, reply: fail("query parameter OptPlatform contains control characters"), outcome: OutcomeRejected, reason: "invalid_parameter"},
		// 5: application
		{name: "other SdkAppid", query: q("SdkAppid", "1400000002", "CallbackCommand", CmdBlackListDelete, "RequestTime", exampleRequestTime, "Sign", exampleSign), body: blackListDeleteBody,
			status: 403, reply: fail("SdkAppid does not match this receiver's SDKAppID"), outcome: OutcomeRejected, reason: "wrong_sdkappid"},
		{name: "SdkAppid with a leading zero", query: q("SdkAppid", "01400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", exampleRequestTime, "Sign", exampleSign), body: blackListDeleteBody,
			status: 403, reply: fail("SdkAppid does not match this receiver's SDKAppID"), outcome: OutcomeRejected, reason: "wrong_sdkappid"},
		// 6: authentication
		{name: "Tencent's signature example", query: okQuery, body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		{name: "no Sign", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", exampleRequestTime), body: blackListDeleteBody,
			status: 401, reply: fail("missing query parameter Sign (callback authentication is on)"), outcome: OutcomeRejected, reason: "missing_signature"},
		{name: "no RequestTime", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "Sign", exampleSign), body: blackListDeleteBody,
			status: 401, reply: fail("missing query parameter RequestTime (callback authentication is on)"), outcome: OutcomeRejected, reason: "missing_signature"},
		{name: "RequestTime in milliseconds is skewed", query: signedAt(1669872112000), body: blackListDeleteBody,
			status: 401, reply: fail("RequestTime is more than 1m0s away from the receiver's clock"), outcome: OutcomeRejected, reason: "request_time_skew"},
		{name: "RequestTime not decimal", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", "0x63885c70", "Sign", exampleSign), body: blackListDeleteBody,
			status: 401, reply: fail("RequestTime is not a decimal Unix time in seconds"), outcome: OutcomeRejected, reason: "invalid_request_time"},
		{name: "RequestTime negative", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", "-1669872112", "Sign", exampleSign), body: blackListDeleteBody,
			status: 401, reply: fail("RequestTime is not a decimal Unix time in seconds"), outcome: OutcomeRejected, reason: "invalid_request_time"},
		{name: "RequestTime huge", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", strings.Repeat("9", 40), "Sign", exampleSign), body: blackListDeleteBody,
			status: 401, reply: fail("RequestTime is not a decimal Unix time in seconds"), outcome: OutcomeRejected, reason: "invalid_request_time"},
		{name: "RequestTime 61s old", query: signedAt(1669872112 - 61), body: blackListDeleteBody,
			status: 401, reply: fail("RequestTime is more than 1m0s away from the receiver's clock"), outcome: OutcomeRejected, reason: "request_time_skew"},
		{name: "RequestTime 61s ahead", query: signedAt(1669872112 + 61), body: blackListDeleteBody,
			status: 401, reply: fail("RequestTime is more than 1m0s away from the receiver's clock"), outcome: OutcomeRejected, reason: "request_time_skew"},
		{name: "RequestTime 60s old is within the skew", query: signedAt(1669872112 - 60), body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		{name: "RequestTime 60s ahead is within the skew", query: signedAt(1669872112 + 60), body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		{name: "Sign of another token", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", exampleRequestTime, "Sign", Sign("other", exampleRequestTime)), body: blackListDeleteBody,
			status: 401, reply: fail("Sign does not match the token and RequestTime"), outcome: OutcomeRejected, reason: "signature_mismatch"},
		{name: "Sign of another RequestTime", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", "1669872113", "Sign", exampleSign), body: blackListDeleteBody,
			status: 401, reply: fail("Sign does not match the token and RequestTime"), outcome: OutcomeRejected, reason: "signature_mismatch"},
		{name: "Sign in upper case", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", exampleRequestTime, "Sign", strings.ToUpper(exampleSign)), body: blackListDeleteBody,
			status: 401, reply: fail("Sign does not match the token and RequestTime"), outcome: OutcomeRejected, reason: "signature_mismatch"},
		{name: "Sign truncated", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", exampleRequestTime, "Sign", exampleSign[:63]), body: blackListDeleteBody,
			status: 401, reply: fail("Sign does not match the token and RequestTime"), outcome: OutcomeRejected, reason: "signature_mismatch"},
		{name: "without a token no Sign is needed", noToken: true, query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete), body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		{name: "without a token a wrong Sign is not checked", noToken: true, query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "Sign", "bad"), body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		// 7: body and command
		{name: "empty body", query: okQuery, body: "",
			status: 400, reply: fail("body is not valid JSON"), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "body not JSON", query: okQuery, body: "CallbackCommand=Sns.CallbackBlackListDelete",
			status: 400, reply: fail("body is not valid JSON"), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "truncated JSON", query: okQuery, body: blackListDeleteBody[:40],
			status: 400, reply: fail("body is not valid JSON"), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "two JSON values", query: okQuery, body: blackListDeleteBody + " {}",
			status: 400, reply: fail("body is not valid JSON"), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "body a JSON array", query: okQuery, body: `[` + blackListDeleteBody + `]`,
			status: 400, reply: fail("body is not a JSON object"), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "body a JSON string", query: okQuery, body: `"Sns.CallbackBlackListDelete"`,
			status: 400, reply: fail("body is not a JSON object"), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "CallbackCommand twice", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 400, reply: fail(`body has the member \"CallbackCommand\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_json"},
		// encoding/json matches keys case-insensitively (Unicode folding): a consumer reads one
		// of these, the receiver checked the other.
		{name: "PairList and pairlist", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"b"}],"pairlist":[{"From_Account":"","To_Account":""}]}`,
			status: 400, reply: fail(`body has the member \"PairList\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "pairlist before PairList", query: okQuery, body: `{"pairList":7,"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 400, reply: fail(`body has the member \"PairList\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "CallbackCommand with a Kelvin sign", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","Callbac\u212aCommand":"Sns.CallbackBlackListAdd","PairList":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 400, reply: fail(`body has the member \"CallbackCommand\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "PairList with a long s, unescaped", query: okQuery, body: "{\"CallbackCommand\":\"Sns.CallbackBlackListDelete\",\"PairList\":[{\"From_Account\":\"a\",\"To_Account\":\"b\"}],\"PairLi\u017ft\":[]}",
			status: 400, reply: fail(`body has the member \"PairList\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_json"},
		{name: "pairlist alone is not PairList", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","pairlist":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 400, reply: fail("PairList must be a non-empty array"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "To_Account and to_account", query: okQuery, body: withPair(`{"From_Account":"a","To_Account":"b","to_account":""}`),
			status: 400, reply: fail(`PairList[0] has the member \"To_Account\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "FROM_ACCOUNT before From_Account", query: okQuery, body: withPair(`{"FROM_ACCOUNT":"","From_Account":"a","To_Account":"b"}`),
			status: 400, reply: fail(`PairList[0] has the member \"From_Account\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "other members in other cases are fine", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","eventtime":1,"EventTime":2,"PairList":[{"From_Account":"a","To_Account":"b","note":1,"Note":2}]}`,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 1},
		{name: "body without CallbackCommand", query: okQuery, body: `{"PairList":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 400, reply: fail("body has no CallbackCommand string"), outcome: OutcomeRejected, reason: "command_mismatch"},
		{name: "CallbackCommand in other case is another member", query: okQuery, body: `{"callbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 400, reply: fail("body has no CallbackCommand string"), outcome: OutcomeRejected, reason: "command_mismatch"},
		{name: "CallbackCommand not a string", query: okQuery, body: `{"CallbackCommand":1,"PairList":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 400, reply: fail("body has no CallbackCommand string"), outcome: OutcomeRejected, reason: "command_mismatch"},
		{name: "body command differs from query", query: okQuery, body: blackListAddBody,
			status: 400, reply: fail("CallbackCommand in the body differs from the query's"), outcome: OutcomeRejected, reason: "command_mismatch"},
		{name: "escaped CallbackCommand key and value", query: okQuery, body: `{"Callback\u0043ommand":"Sns.Callback\u0042lackListDelete","PairList":[{"From_Account":"a","To_Account":"b"}]}`,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 1},
		// exact repeats (with a token): answered OK, not queued again
		{name: "the same signed callback again is a duplicate", again: true, query: okQuery, body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeDuplicate},
		{name: "the same chunked callback again is a duplicate", again: true, chunked: true, query: okQuery, body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeDuplicate},
		{name: "without a token the same callback again is forwarded again", again: true, noToken: true, query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete), body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		// 8: selection
		{name: "unselected Sns command is ignored", query: signedQuery("Sns.CallbackFriendImport"), body: `{"CallbackCommand":"Sns.CallbackFriendImport"}`,
			status: 200, reply: replyOK, outcome: OutcomeIgnored},
		{name: "before-callback is ignored, never failed", query: signedQuery("Sns.CallbackPrevFriendAdd"), body: `{"CallbackCommand":"Sns.CallbackPrevFriendAdd","PairList":[]}`,
			status: 200, reply: replyOK, outcome: OutcomeIgnored},
		{name: "other product's command is ignored", query: signedQuery("Group.CallbackAfterNewMemberJoin"), body: `{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"@TGS#2J4SZEAEL"}`,
			status: 200, reply: replyOK, outcome: OutcomeIgnored},
		// 9: typed checks
		{name: "PairList missing", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete"}`,
			status: 400, reply: fail("PairList must be a non-empty array"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "PairList empty", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[ ]}`,
			status: 400, reply: fail("PairList must be a non-empty array"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "PairList an object", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":{"From_Account":"a","To_Account":"b"}}`,
			status: 400, reply: fail("PairList must be a non-empty array"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "PairList null", query: okQuery, body: `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":null}`,
			status: 400, reply: fail("PairList must be a non-empty array"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "pair not an object", query: okQuery, body: withPair(`{"From_Account":"a","To_Account":"b"},"a:b"`),
			status: 400, reply: fail("PairList[1] must be an object"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "From_Account empty", query: okQuery, body: withPair(`{"From_Account":"","To_Account":"b"}`),
			status: 400, reply: fail("PairList[0].From_Account must be a non-empty string"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "From_Account missing", query: okQuery, body: withPair(`{"To_Account":"b"}`),
			status: 400, reply: fail("PairList[0].From_Account must be a non-empty string"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "To_Account a number", query: okQuery, body: withPair(`{"From_Account":"a","To_Account":7}`),
			status: 400, reply: fail("PairList[0].To_Account must be a non-empty string"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "To_Account missing in the second pair", query: okQuery, body: withPair(`{"From_Account":"a","To_Account":"b"},{"From_Account":"a"}`),
			status: 400, reply: fail("PairList[1].To_Account must be a non-empty string"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "To_Account twice", query: okQuery, body: withPair(`{"From_Account":"a","To_Account":"b","To_Account":"c"}`),
			status: 400, reply: fail(`PairList[0] has the member \"To_Account\" more than once (in any letter case)`), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "unknown members are allowed and kept", query: okQuery, body: `{"EventTime":1669872112123,"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"b","Note":{"x":[1,2,{"y":"]"}]}}],"Extra":null}`,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 1},
		{name: "Sns.CallbackBlackListAdd", query: signedQuery(CmdBlackListAdd), body: blackListAddBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 2},
		{name: "Sns.CallbackFriendDelete", query: signedQuery(CmdFriendDelete), body: friendDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 1},
		{name: "Sns.CallbackFriendDelete without pairs", query: signedQuery(CmdFriendDelete), body: `{"CallbackCommand":"Sns.CallbackFriendDelete","PairList":[]}`,
			status: 400, reply: fail("PairList must be a non-empty array"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "Sns.CallbackFriendAdd", query: signedQuery(CmdFriendAdd), body: friendAddBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 1},
		{name: "Sns.CallbackFriendAdd without Initiator_Account", query: signedQuery(CmdFriendAdd),
			body:   friendAdd(func(s string) string { return strings.Replace(s, `, "Initiator_Account": "id"`, "", 1) }),
			status: 400, reply: fail("PairList[0].Initiator_Account must be a non-empty string"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "Sns.CallbackFriendAdd without ClientCmd", query: signedQuery(CmdFriendAdd),
			body:   friendAdd(func(s string) string { return strings.Replace(s, `"ClientCmd": "friend_add", `, "", 1) }),
			status: 400, reply: fail("ClientCmd must be a non-empty string"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "Sns.CallbackFriendAdd with a numeric Admin_Account", query: signedQuery(CmdFriendAdd),
			body:   friendAdd(func(s string) string { return strings.Replace(s, `"Admin_Account": ""`, `"Admin_Account": 0`, 1) }),
			status: 400, reply: fail("Admin_Account must be a string"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "Sns.CallbackFriendAdd with an admin", query: signedQuery(CmdFriendAdd),
			body:   friendAdd(func(s string) string { return strings.Replace(s, `"Admin_Account": ""`, `"Admin_Account": "admin"`, 1) }),
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 1},
		{name: "Sns.CallbackFriendAdd with a string ForceFlag", query: signedQuery(CmdFriendAdd),
			body:   friendAdd(func(s string) string { return strings.Replace(s, `"ForceFlag": 1`, `"ForceFlag": "1"`, 1) }),
			status: 400, reply: fail("ForceFlag must be an integer"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "Sns.CallbackFriendAdd with a fractional ForceFlag", query: signedQuery(CmdFriendAdd),
			body:   friendAdd(func(s string) string { return strings.Replace(s, `"ForceFlag": 1`, `"ForceFlag": 1.5`, 1) }),
			status: 400, reply: fail("ForceFlag must be an integer"), outcome: OutcomeRejected, reason: "invalid_payload"},
		{name: "Sns.CallbackFriendAdd without ForceFlag", query: signedQuery(CmdFriendAdd),
			body:   friendAdd(func(s string) string { return strings.Replace(s, `, "ForceFlag": 1`, ``, 1) }),
			status: 400, reply: fail("ForceFlag must be an integer"), outcome: OutcomeRejected, reason: "invalid_payload"},
		// OptPlatform is recorded as sent, whatever its value.
		{name: "unknown OptPlatform", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "OptPlatform", "HarmonyOS", "RequestTime", exampleRequestTime, "Sign", exampleSign), body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
		{name: "OptPlatform IPad", query: q("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "OptPlatform", "IPad", "RequestTime", exampleRequestTime, "Sign", exampleSign), body: blackListDeleteBody,
			status: 200, reply: replyOK, outcome: OutcomeAccepted, pairs: 3},
	}

	newTableReceiver := func(token string) *Receiver {
		cfg := testConfig("http://127.0.0.1:1")
		cfg.ReplayWindowSize = 0 // the default
		cfg.Token = token
		cfg.Commands = allSns
		cfg.MaxBodyBytes = 4096
		return newReceiver(t, cfg)
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			// A receiver per row: rows repeat the signed example, which would be a duplicate.
			r := newTableReceiver(exampleToken)
			if tc.noToken {
				r = newTableReceiver("")
			}
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = testPath
			}
			target := path
			if tc.query != "" {
				target += "?" + tc.query
			}
			newRequest := func() *http.Request {
				var body io.Reader = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // hides the length
				}
				return httptest.NewRequest(method, target, body)
			}
			if tc.again {
				w := httptest.NewRecorder()
				r.Handler().ServeHTTP(w, newRequest())
				if w.Code != 200 || countsOf(r).accepted != 1 {
					t.Fatalf("the first request: %d %s", w.Code, w.Body)
				}
			}
			req := newRequest()
			before := countsOf(r)
			var reasonBefore float64
			if tc.reason != "" {
				reasonBefore = reasonCount(t, r, tc.reason)
			}

			w := httptest.NewRecorder()
			r.Handler().ServeHTTP(w, req)

			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if got := w.Body.String(); got != tc.reply {
				t.Errorf("body = %s\n want %s", got, tc.reply)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tc.status == 405 {
				if allow := w.Header().Get("Allow"); allow != "POST" {
					t.Errorf("Allow = %q, want POST", allow)
				}
			}
			after := countsOf(r)
			want := before
			switch tc.outcome {
			case OutcomeAccepted:
				want.accepted++
				want.pairs += tc.pairs
			case OutcomeRejected:
				want.rejected++
			case OutcomeIgnored:
				want.ignored++
			case OutcomeUnavailable:
				want.unavailable++
			case OutcomeDuplicate:
				want.duplicate++
			}
			if after != want {
				t.Errorf("counters = %+v, want %+v", after, want)
			}
			if tc.reason != "" {
				if got := reasonCount(t, r, tc.reason) - reasonBefore; got != 1 {
					t.Errorf("imcallback_rejected_total{reason=%q} grew by %v, want 1", tc.reason, got)
				}
			}
			// Empty the queue so rows stay independent.
			dropQueued(r)
		})
	}
}

func reasonCount(t *testing.T, r *Receiver, reason string) float64 {
	t.Helper()
	for i, name := range reasonNames {
		if name == reason {
			return testutil.ToFloat64(r.metrics.reasons[i])
		}
	}
	t.Fatalf("unknown reason %q", reason)
	return 0
}

// TestHandlerUnavailable: a full queue and a draining receiver answer 503 FAIL, counted
// "unavailable"; ignored commands are still answered OK while draining.
func TestHandlerUnavailable(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.QueueSize = 1
	r := newReceiver(t, cfg)
	serve := func(command, body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(command), strings.NewReader(body)))
		return w
	}

	if w := serve(CmdBlackListDelete, blackListDeleteBody); w.Code != 200 || w.Body.String() != replyOK {
		t.Fatalf("first callback: %d %s", w.Code, w.Body)
	}
	w := serve(CmdBlackListDelete, blackListDeleteBody)
	if w.Code != 503 || w.Body.String() != fail("receiver queue is full, try again later") || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("queue full: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if c := countsOf(r); c.accepted != 1 || c.unavailable != 1 || c.rejected != 0 {
		t.Errorf("counters %+v, want accepted 1 unavailable 1", c)
	}

	takeQueued(t, r)
	r.drainMu.Lock()
	r.draining = true
	r.drainMu.Unlock()
	w = serve(CmdBlackListDelete, blackListDeleteBody)
	if w.Code != 503 || w.Body.String() != fail("receiver is shutting down, try again later") {
		t.Errorf("draining: %d %s", w.Code, w.Body)
	}
	w = serve(CmdFriendAdd, friendAddBody)
	if w.Code != 200 || w.Body.String() != replyOK {
		t.Errorf("ignored while draining: %d %s", w.Code, w.Body)
	}
	if c := countsOf(r); c.accepted != 1 || c.unavailable != 2 || c.ignored != 1 {
		t.Errorf("counters %+v, want accepted 1 unavailable 2 ignored 1", c)
	}
}

// TestDefaultCommands: with the default --commands only the seed's command is forwarded.
func TestDefaultCommands(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Commands = nil
	r := newReceiver(t, cfg)
	for _, cmd := range allSns {
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(cmd), strings.NewReader(snsBody[cmd])))
		if w.Code != 200 || w.Body.String() != replyOK {
			t.Errorf("%s: %d %s", cmd, w.Code, w.Body)
		}
	}
	if c := countsOf(r); c.accepted != 1 || c.ignored != 3 {
		t.Errorf("counters %+v, want 1 accepted (%s) and 3 ignored", c, DefaultCommand)
	}
}

// TestRejectionLog: one JSON line per rejected request, with its reason and without the
// token or the Sign.
func TestRejectionLog(t *testing.T) {
	var logs logBuffer
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Logger = jsonLogger(&logs)
	r := newReceiver(t, cfg)
	wrongSign := Sign("wrong", exampleRequestTime)
	req := httptest.NewRequest(http.MethodPost, testPath+"?"+query("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", exampleRequestTime, "Sign", wrongSign), strings.NewReader(blackListDeleteBody))
	r.Handler().ServeHTTP(httptest.NewRecorder(), req)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one log line, got %d:\n%s", len(lines), logs.String())
	}
	for _, want := range []string{`"level":"WARN"`, `"msg":"callback rejected"`, `"reason":"signature_mismatch"`, `"status":401`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line lacks %s: %s", want, lines[0])
		}
	}
	for _, secret := range []string{exampleToken, wrongSign, exampleSign} {
		if strings.Contains(lines[0], secret) {
			t.Errorf("log line contains a secret %q: %s", secret, lines[0])
		}
	}
}

// TestParseParamsMatchesNetURL: the map-free query parser reads what url.Values.Get would.
func TestParseParamsMatchesNetURL(t *testing.T) {
	for _, raw := range []string{
		signedQuery(CmdBlackListDelete),
		"SdkAppid=1&SdkAppid=2&CallbackCommand=a+b&ClientIP=%31.2.3.4",
		"SdkAppid=1;x=y&SdkAppid=3&CallbackCommand=%zz&CallbackCommand=c",
		"Sdk%41ppid=9&&=&CallbackCommand",
		"OptPlatform=&ClientIP",
	} {
		assertParamsMatch(t, raw)
	}
}

func assertParamsMatch(t testing.TB, raw string) {
	t.Helper()
	var p callbackParams
	parseParams(raw, &p)
	v := parseQueryStd(raw)
	_, hasIP := v["ClientIP"]
	_, hasPlat := v["OptPlatform"]
	want := callbackParams{sdkAppID: v.Get("SdkAppid"), command: v.Get("CallbackCommand"), clientIP: v.Get("ClientIP"),
		optPlatform: v.Get("OptPlatform"), requestTime: v.Get("RequestTime"), sign: v.Get("Sign"),
		hasClientIP: hasIP, hasOptPlatform: hasPlat}
	if p != want {
		t.Errorf("parseParams(%q) = %+v, want %+v", raw, p, want)
	}
}

func TestSignExample(t *testing.T) {
	if got := Sign(exampleToken, exampleRequestTime); got != exampleSign {
		t.Fatalf("Sign(%q, %q) = %s, want Tencent's %s", exampleToken, exampleRequestTime, got, exampleSign)
	}
	long := strings.Repeat("t", 1000) // longer than the stack buffer
	if got, want := Sign(long, "1"), Sign(long, "1"); got != want || len(got) != 64 {
		t.Fatalf("Sign with a long token: %s", got)
	}
}

func TestHandlerLatencyObserved(t *testing.T) {
	r := newReceiver(t, testConfig("http://127.0.0.1:1"))
	r.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(CmdBlackListDelete), bytes.NewReader([]byte(blackListDeleteBody))))
	if n := testutil.CollectAndCount(r.metrics.registry, "imcallback_request_duration_seconds"); n != 6 {
		t.Errorf("request histogram has %d series, want one per outcome (6)", n)
	}
}

// TestRejectionLogThrottled: a flood of refusals writes at most refusalLogBurst lines per
// reason a second; the next line says how many were left out; the counters have them all.
func TestRejectionLogThrottled(t *testing.T) {
	var logs logBuffer
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Logger = jsonLogger(&logs)
	r := newReceiver(t, cfg)
	badSign := strings.Replace(signedQuery(CmdBlackListDelete), "Sign=1", "Sign=2", 1)
	send := func(path, q string) {
		r.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, path+"?"+q, strings.NewReader(blackListDeleteBody)))
	}
	const flood = 200
	begin := time.Now()
	for range flood {
		send(testPath, badSign)
		send("/x", "")
	}
	windows := int(time.Since(begin)/refusalLogWindow) + 1 // windows the flood touched
	lines := func(reason string) []string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if strings.Contains(l, `"reason":"`+reason+`"`) {
				out = append(out, l)
			}
		}
		return out
	}
	for _, reason := range []string{"signature_mismatch", "not_found"} {
		n := len(lines(reason))
		if n < refusalLogBurst || n > refusalLogBurst*(windows+1) {
			t.Errorf("%s: %d lines for %d refusals in %d window(s), want %d to %d", reason, n, flood, windows, refusalLogBurst, refusalLogBurst*(windows+1))
		}
		if got := reasonCount(t, r, reason); got != flood {
			t.Errorf("%s counted %v, want %d", reason, got, flood)
		}
	}

	// After the window the next refusal is logged with the number left out.
	logged := len(lines("signature_mismatch"))
	time.Sleep(refusalLogWindow + 50*time.Millisecond)
	send(testPath, badSign)
	all := lines("signature_mismatch")
	last := all[len(all)-1]
	if want := `"notLoggedSinceLastLine":` + strconv.Itoa(flood-logged); len(all) != logged+1 || !strings.Contains(last, want) {
		t.Errorf("after the flood: %d lines (want %d), last %s; want it to contain %s", len(all), logged+1, last, want)
	}
}

// TestServerErrorLogThrottled: net/http's own error lines (TLS handshake failures, which any
// stranger can cause) are throttled too.
func TestServerErrorLogThrottled(t *testing.T) {
	var logs logBuffer
	l := serverErrorLog(jsonLogger(&logs))
	begin := time.Now()
	for range 100 {
		l.Printf("http: TLS handshake error from 192.0.2.1:1234: EOF")
	}
	windows := int(time.Since(begin)/refusalLogWindow) + 1
	n := strings.Count(logs.String(), "TLS handshake error")
	if n < refusalLogBurst || n > refusalLogBurst*(windows+1) {
		t.Errorf("%d lines for 100 errors, want %d to %d", n, refusalLogBurst, refusalLogBurst*(windows+1))
	}
	if !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("not logged at WARN: %s", logs.String())
	}
}
