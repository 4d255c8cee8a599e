package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzHandler drives the request path with arbitrary method, path, query and body. The
// handler must never panic, must always answer the protocol body with a status that agrees
// with it, must count every request exactly once, and what it accepts must hold up against
// encoding/json and net/url as oracles.
func FuzzHandler(f *testing.F) {
	for _, cmd := range allSns {
		f.Add(http.MethodPost, testPath, signedQuery(cmd), []byte(snsBody[cmd]))
		f.Add(http.MethodPost, testPath, query("SdkAppid", "1400000001", "CallbackCommand", cmd), []byte(snsBody[cmd]))
	}
	f.Add(http.MethodPost, testPath, signedQuery("Sns.CallbackPrevFriendAdd"), []byte(`{"CallbackCommand":"Sns.CallbackPrevFriendAdd"}`))
	f.Add(http.MethodPost, testPath, signedQuery(CmdBlackListDelete), []byte(`{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"","To_Account":"x"}]}`))
	f.Add(http.MethodPost, testPath, signedQuery(CmdBlackListDelete), []byte(`{"Callback\u0043ommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"\u0000"}]}`))
	f.Add(http.MethodPost, testPath, signedQuery(CmdBlackListDelete), []byte(`[]`))
	f.Add(http.MethodPost, testPath, "SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete&RequestTime=1669872112&Sign="+strings.ToUpper(exampleSign), []byte(blackListDeleteBody))
	f.Add(http.MethodPost, testPath, "SdkAppid=1400000001;&CallbackCommand=%ZZ", []byte(`{}`))
	f.Add(http.MethodGet, testPath, "", []byte(nil))
	f.Add(http.MethodPost, "/", "", []byte(nil))
	f.Add(http.MethodPost, testPath, signedQuery(CmdBlackListDelete), bytes.Repeat([]byte("x"), 5000))

	cfg := testConfig("http://127.0.0.1:1")
	cfg.Commands = allSns
	cfg.MaxBodyBytes = 4096
	cfg.QueueSize = 1
	cfg.ReplayWindowSize = 16
	r := newReceiver(f, cfg)
	h := r.Handler()

	f.Fuzz(func(t *testing.T, method, path, rawQuery string, body []byte) {
		if path == "" || path[0] != '/' {
			path = "/" + path
		}
		req := (&http.Request{
			Method:        method,
			URL:           &url.URL{Path: path, RawQuery: rawQuery},
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			RemoteAddr:    "192.0.2.1:1234",
		}).WithContext(context.Background())
		before := countsOf(r)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		after := countsOf(r)

		var rep struct {
			ActionStatus *string
			ErrorCode    *int
			ErrorInfo    *string
		}
		dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil || rep.ActionStatus == nil || rep.ErrorCode == nil || rep.ErrorInfo == nil {
			t.Fatalf("reply is not the protocol body: %q (%v)", w.Body, err)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		ok := w.Code == http.StatusOK
		if ok != (*rep.ActionStatus == "OK") || ok != (*rep.ErrorCode == 0) || ok != (*rep.ErrorInfo == "") {
			t.Fatalf("status %d with body %s", w.Code, w.Body)
		}
		if !ok && *rep.ActionStatus != "FAIL" || !ok && *rep.ErrorCode != 1 {
			t.Fatalf("status %d with body %s", w.Code, w.Body)
		}
		switch w.Code {
		case 200, 400, 401, 403, 404, 413, 503:
		case 405:
			if w.Header().Get("Allow") != "POST" {
				t.Fatal("405 without Allow: POST")
			}
		default:
			t.Fatalf("unexpected status %d", w.Code)
		}
		grew := (after.accepted - before.accepted) + (after.rejected - before.rejected) +
			(after.ignored - before.ignored) + (after.unavailable - before.unavailable) +
			(after.duplicate - before.duplicate)
		if grew != 1 {
			t.Fatalf("the request was counted %v times", grew)
		}

		// Oracles for what was let through.
		assertParamsMatch(t, rawQuery)
		accepted := after.accepted > before.accepted
		if ok || w.Code == http.StatusServiceUnavailable {
			v := parseQueryStd(rawQuery)
			if path != testPath || method != http.MethodPost || v.Get("SdkAppid") != "1400000001" {
				t.Fatalf("let through: %s %s ?%s", method, path, rawQuery)
			}
			if v.Get("Sign") != Sign(exampleToken, v.Get("RequestTime")) {
				t.Fatal("let through without a valid signature")
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(body, &top); err != nil {
				t.Fatalf("let through a body that is not a JSON object: %v", err)
			}
			var cmd string
			if json.Unmarshal(top["CallbackCommand"], &cmd) != nil || cmd != v.Get("CallbackCommand") {
				t.Fatalf("let through a body whose CallbackCommand is %s, query says %q", top["CallbackCommand"], v.Get("CallbackCommand"))
			}
			if accepted {
				checkPairsWithStdlib(t, top)
				checkAsAGoConsumer(t, body, v.Get("CallbackCommand"))
			}
		}
		dropQueued(r)
	})
}

// checkPairsWithStdlib re-checks an accepted Sns body with encoding/json.
func checkPairsWithStdlib(t *testing.T, top map[string]json.RawMessage) {
	var pairs []map[string]json.RawMessage
	if err := json.Unmarshal(top["PairList"], &pairs); err != nil || len(pairs) == 0 {
		t.Fatalf("accepted a PairList that is not a non-empty array of objects: %s", top["PairList"])
	}
	for _, p := range pairs {
		for _, k := range []string{"From_Account", "To_Account"} {
			var s string
			if json.Unmarshal(p[k], &s) != nil || s == "" {
				t.Fatalf("accepted a pair without a non-empty %s: %v", k, p)
			}
		}
	}
}

// checkAsAGoConsumer decodes an accepted body the way a Go consumer of the event would, into
// a struct (encoding/json matches its keys case-insensitively, the last match winning), and
// checks that it reads what the receiver checked.
func checkAsAGoConsumer(t *testing.T, body []byte, command string) {
	var ev struct {
		CallbackCommand string
		PairList        []struct{ From_Account, To_Account string } //nolint:revive // IM's names
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatalf("accepted a body a Go consumer cannot decode: %v", err)
	}
	if ev.CallbackCommand != command {
		t.Fatalf("accepted %s: a Go consumer reads CallbackCommand %q, the query says %q", body, ev.CallbackCommand, command)
	}
	switch command {
	case CmdBlackListDelete, CmdBlackListAdd, CmdFriendDelete, CmdFriendAdd:
		if len(ev.PairList) == 0 {
			t.Fatalf("accepted %s: a Go consumer reads no pairs", body)
		}
		for _, p := range ev.PairList {
			if p.From_Account == "" || p.To_Account == "" {
				t.Fatalf("accepted %s: a Go consumer reads an empty account in %+v", body, p)
			}
		}
	}
}

// FuzzBodyChecks compares the body walker with encoding/json on arbitrary bodies.
func FuzzBodyChecks(f *testing.F) {
	for _, cmd := range allSns {
		f.Add([]byte(snsBody[cmd]), cmd)
	}
	f.Add([]byte(`{"CallbackCommand":"a","CallbackCommand":"a"}`), "a")
	f.Add([]byte(`{"Callback\u0043ommand":"\u00e9","PairList":[{"From_Account":"\"","To_Account":"]"}]}`), "é")
	f.Add([]byte(` {"PairList":[{"From_Account":"a","To_Account":"b","From_Account":"c"}],"CallbackCommand":"Sns.CallbackBlackListAdd"} `), CmdBlackListAdd)
	f.Add([]byte(`{"CallbackCommand":"Sns.CallbackBlackListAdd","PairList":[{"From_Account":"a","To_Account":"b"}],"pairlist":[]}`), CmdBlackListAdd)
	f.Add([]byte(`{"Callbac\u212aCommand":"x","CallbackCommand":"Sns.CallbackBlackListAdd","PairList":[{"From_Account":"a","to_account":"","To_Account":"b"}]}`), CmdBlackListAdd)
	f.Fuzz(func(t *testing.T, body []byte, command string) {
		var top topLevel
		berr := checkCommand(body, command, &top)
		var std map[string]json.RawMessage
		stdErr := json.Unmarshal(body, &std)
		dups := topLevelDuplicates(body)
		var stdCmd string
		stdCmdOK := stdErr == nil && json.Unmarshal(std["CallbackCommand"], &stdCmd) == nil && std["CallbackCommand"] != nil && string(std["CallbackCommand"]) != "null"
		switch {
		case berr == nil:
			if stdErr != nil || !stdCmdOK || stdCmd != command || dups {
				t.Fatalf("walker accepted %q for %q; encoding/json: %v, command %q, duplicates %v", body, command, stdErr, stdCmd, dups)
			}
		case berr.reason == ReasonInvalidJSON:
			if stdErr == nil && !dups {
				t.Fatalf("walker refused %q as invalid JSON (%s), encoding/json reads it", body, berr.body)
			}
		case berr.reason == ReasonCommandMismatch:
			if stdErr != nil || (stdCmdOK && stdCmd == command) {
				t.Fatalf("walker says command mismatch for %q / %q", body, command)
			}
		}
		if berr != nil {
			return
		}
		var consumer struct{ CallbackCommand string }
		if json.Unmarshal(body, &consumer) != nil || consumer.CallbackCommand != command {
			t.Fatalf("walker accepted %q for %q; a Go consumer reads CallbackCommand %q", body, command, consumer.CallbackCommand)
		}
		pairs, perr := checkSns(body, command, &top)
		switch command {
		case CmdBlackListDelete, CmdBlackListAdd, CmdFriendDelete:
			var list []map[string]json.RawMessage
			stdOK := json.Unmarshal(std["PairList"], &list) == nil && len(list) > 0
			for _, p := range list {
				for _, k := range []string{"From_Account", "To_Account"} {
					var s string
					if p[k] == nil || json.Unmarshal(p[k], &s) != nil || s == "" || string(p[k]) == "null" {
						stdOK = false
					}
				}
			}
			if perr == nil && (!stdOK || pairs != len(list)) {
				t.Fatalf("walker accepted pairs of %q; encoding/json disagrees", body)
			}
			if perr == nil {
				checkAsAGoConsumer(t, body, command)
			}
			if perr != nil && stdOK && !bytes.Contains(perr.body, []byte("more than once")) {
				t.Fatalf("walker refused the pairs of %q (%s); encoding/json accepts them", body, perr.body)
			}
		}
	})
}

// topLevelDuplicates reports whether a top-level member the walker checks appears twice, in
// any letter case as encoding/json folds them.
func topLevelDuplicates(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := tok.(string)
		for _, checked := range []string{"CallbackCommand", "PairList", "ClientCmd", "Admin_Account", "ForceFlag"} {
			if strings.EqualFold(k, checked) {
				if seen[checked] {
					return true
				}
				seen[checked] = true
			}
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}
