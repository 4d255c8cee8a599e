package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imcallback/callback-operator/receiver/contract"
)

// decisionCounts reads the decision counters.
type decisionCounts struct {
	decided  float64
	results  [numDecisionResults]float64
	failures [numDecisionFailures]float64
}

func decisionCountsOf(r *Receiver) decisionCounts {
	m := r.metrics
	c := decisionCounts{decided: testutil.ToFloat64(m.decided)}
	for i := range c.results {
		c.results[i] = testutil.ToFloat64(m.decisions[i])
	}
	for i := failureTimeout; i < numDecisionFailures; i++ {
		c.failures[i] = testutil.ToFloat64(m.decisionFailures[i])
	}
	return c
}

func resultIndex(t *testing.T, name string) decisionResult {
	for i, n := range decisionResultNames {
		if n == name {
			return decisionResult(i)
		}
	}
	t.Fatalf("unknown result %q", name)
	return 0
}

func failureIndex(t *testing.T, name string) decisionFailure {
	for i, n := range decisionFailureNames {
		if n == name && i != 0 {
			return decisionFailure(i)
		}
	}
	t.Fatalf("unknown failure %q", name)
	return 0
}

// decidingConfig decides the send-message before-callbacks with the service at url.
func decidingConfig(url string) Config {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Decisions = []Decision{{Commands: []string{CmdC2CBeforeSendMsg, CmdGroupBeforeSendMsg, CmdPrevFriendAdd}, URL: url}}
	return cfg
}

// serveDecided sends one signed callback through the handler and returns the recorder.
func serveDecided(r *Receiver, command, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(command), strings.NewReader(body)))
	return w
}

const (
	answerAllow  = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`
	answerRefuse = `{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"refused"}`
)

// waitOrGone blocks a decision service's handler for d or until the receiver hangs up.
func waitOrGone(r *http.Request, d time.Duration) {
	select {
	case <-r.Context().Done():
	case <-time.After(d):
	}
}

// TestDecisionReplies has a row per kind of decision service answer: those relayed to IM as
// they are (byte for byte), and every kind of failure under both failure policies, each
// with the exact reply (always HTTP 200, application/json) and the counters it moves.
func TestDecisionReplies(t *testing.T) {
	const timeout = 200 * time.Millisecond
	writeAnswer := func(status int, body string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}
	}
	big := func(n int) string { // a valid answer of exactly n bytes
		head := `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Pad":"`
		return head + strings.Repeat("x", n-len(head)-2) + `"}`
	}
	changed := "{ \"ErrorCode\" : 0 ,\n \"ActionStatus\":\"OK\",\"ErrorInfo\":\"\", \"MsgBody\":[{\"MsgType\":\"TIMTextElem\",\"MsgContent\":{\"Text\":\"r** packet \u00e9\u4e2d\"}}], \"CloudCustomData\":\"moderated\"}\n"

	relayed := []struct {
		name    string
		command string
		respond func(http.ResponseWriter, *http.Request)
		reply   string // exact reply to IM
		result  string
	}{
		{"allow", CmdC2CBeforeSendMsg, writeAnswer(200, answerAllow), answerAllow, contract.DecisionAllowed},
		{"refuse", CmdC2CBeforeSendMsg, writeAnswer(200, answerRefuse), answerRefuse, contract.DecisionRejected},
		{"drop silently (ErrorCode 2)", CmdGroupBeforeSendMsg, writeAnswer(200, `{"ActionStatus":"OK","ErrorCode":2,"ErrorInfo":""}`), `{"ActionStatus":"OK","ErrorCode":2,"ErrorInfo":""}`, contract.DecisionRejected},
		{"refuse with a code the client sees", CmdC2CBeforeSendMsg, writeAnswer(200, `{"ActionStatus":"OK","ErrorCode":120001,"ErrorInfo":"banned word"}`), `{"ActionStatus":"OK","ErrorCode":120001,"ErrorInfo":"banned word"}`, contract.DecisionRejected},
		{"negative ErrorCode", CmdC2CBeforeSendMsg, writeAnswer(200, `{"ErrorCode":-1}`), `{"ErrorCode":-1}`, contract.DecisionRejected},
		{"change MsgBody and CloudCustomData, odd spacing and unicode", CmdGroupBeforeSendMsg, writeAnswer(200, changed), changed, contract.DecisionAllowed},
		{"per-target ResultItem", CmdPrevFriendAdd, writeAnswer(200, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[{"To_Account":"id1","ResultCode":0,"ResultInfo":""},{"To_Account":"id2","ResultCode":38001,"ResultInfo":"no"}]}`),
			`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[{"To_Account":"id1","ResultCode":0,"ResultInfo":""},{"To_Account":"id2","ResultCode":38001,"ResultInfo":"no"}]}`, contract.DecisionAllowed},
		{"escaped ErrorCode key", CmdC2CBeforeSendMsg, writeAnswer(200, `{"Error\u0043ode":1}`), `{"Error\u0043ode":1}`, contract.DecisionRejected},
		{"201 with an answer", CmdC2CBeforeSendMsg, writeAnswer(201, answerRefuse), answerRefuse, contract.DecisionRejected},
		{"answer sent as text/plain", CmdC2CBeforeSendMsg, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(answerRefuse))
		}, answerRefuse, contract.DecisionRejected},
		{"answer as a binary-mode CloudEvent", CmdC2CBeforeSendMsg, func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			h.Set("Ce-Specversion", "1.0")
			h.Set("Ce-Type", "dev.imcallback.decision")
			h.Set("Ce-Source", "/moderator")
			h.Set("Ce-Id", "1")
			h.Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(answerRefuse))
		}, answerRefuse, contract.DecisionRejected},
		{"answer of exactly 64 KiB", CmdC2CBeforeSendMsg, writeAnswer(200, big(64<<10)), big(64 << 10), contract.DecisionAllowed},
		{"empty 200", CmdC2CBeforeSendMsg, writeAnswer(200, ""), replyOK, contract.DecisionAllowed},
		{"empty 204", CmdC2CBeforeSendMsg, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, replyOK, contract.DecisionAllowed},
	}
	for _, tc := range relayed {
		t.Run(tc.name, func(t *testing.T) {
			svc := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) { tc.respond(w, r) })
			cfg := decidingConfig(svc.URL)
			cfg.DecisionTimeout = timeout
			r := newReceiver(t, cfg)
			before, beforeD := countsOf(r), decisionCountsOf(r)
			w := serveDecided(r, tc.command, typedBody[tc.command])
			if w.Code != 200 || w.Body.String() != tc.reply || w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("reply %d %q %q\n want 200 application/json %q", w.Code, w.Header().Get("Content-Type"), w.Body, tc.reply)
			}
			if n := svc.count(); n != 1 {
				t.Errorf("decision service got %d requests, want 1", n)
			}
			want := beforeD
			want.decided++
			want.results[resultIndex(t, tc.result)]++
			if got := decisionCountsOf(r); got != want {
				t.Errorf("decision counters %+v, want %+v", got, want)
			}
			if after := countsOf(r); after != before {
				t.Errorf("other counters moved: %+v -> %+v", before, after)
			}
		})
	}

	failures := []struct {
		name    string
		respond func(http.ResponseWriter, *http.Request) // nil: nothing listens
		failure string
	}{
		{"timeout", func(w http.ResponseWriter, r *http.Request) { waitOrGone(r, 5*time.Second) }, "timeout"},
		{"answer stalls after its first bytes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte(`{"ErrorCode":`))
			w.(http.Flusher).Flush()
			waitOrGone(r, 5*time.Second)
		}, "timeout"},
		{"refused connection", nil, "network_error"},
		{"connection closed without an answer", func(w http.ResponseWriter, _ *http.Request) {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		}, "network_error"},
		{"500", writeAnswer(500, answerAllow), "bad_status"},
		{"503 with a valid answer", writeAnswer(503, answerRefuse), "bad_status"},
		{"404", writeAnswer(404, ""), "bad_status"},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, "bad_status"},
		{"not JSON", writeAnswer(200, "allow"), "invalid_answer"},
		{"truncated JSON", writeAnswer(200, answerAllow[:20]), "invalid_answer"},
		{"two JSON values", writeAnswer(200, answerAllow+answerAllow), "invalid_answer"},
		{"JSON array", writeAnswer(200, "["+answerAllow+"]"), "invalid_answer"},
		{"JSON string", writeAnswer(200, `"OK"`), "invalid_answer"},
		{"JSON null", writeAnswer(200, `null`), "invalid_answer"},
		{"whitespace only", writeAnswer(200, " \n"), "invalid_answer"},
		{"object without ErrorCode", writeAnswer(200, `{"ActionStatus":"OK","ErrorInfo":""}`), "invalid_answer"},
		{"errorcode in lower case", writeAnswer(200, `{"ActionStatus":"OK","errorcode":0,"ErrorInfo":""}`), "invalid_answer"},
		{"ErrorCode a string", writeAnswer(200, `{"ActionStatus":"OK","ErrorCode":"0","ErrorInfo":""}`), "invalid_answer"},
		{"ErrorCode fractional", writeAnswer(200, `{"ActionStatus":"OK","ErrorCode":0.0,"ErrorInfo":""}`), "invalid_answer"},
		{"ErrorCode with an exponent", writeAnswer(200, `{"ErrorCode":1e0}`), "invalid_answer"},
		{"ErrorCode null", writeAnswer(200, `{"ErrorCode":null}`), "invalid_answer"},
		{"ErrorCode an object", writeAnswer(200, `{"ErrorCode":{"code":0}}`), "invalid_answer"},
		{"ErrorCode twice", writeAnswer(200, `{"ErrorCode":0,"ErrorCode":1}`), "invalid_answer"},
		{"answer one byte over 64 KiB", writeAnswer(200, big(64<<10+1)), "answer_too_large"},
		{"answer of 1 MiB", writeAnswer(200, big(1<<20)), "answer_too_large"},
	}
	for _, tc := range failures {
		for _, policy := range []string{DecisionFailureAllow, DecisionFailureReject} {
			t.Run(tc.name+"/"+policy, func(t *testing.T) {
				url := deadURL(t)
				var svc *sink
				if tc.respond != nil {
					svc = newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) { tc.respond(w, r) })
					url = svc.URL
				}
				cfg := decidingConfig(url)
				cfg.DecisionTimeout = timeout
				cfg.DecisionFailure = policy
				r := newReceiver(t, cfg)
				before, beforeD := countsOf(r), decisionCountsOf(r)
				begin := time.Now()
				w := serveDecided(r, CmdC2CBeforeSendMsg, c2cBeforeBody)
				took := time.Since(begin)

				reason := failureIndex(t, tc.failure)
				want, result := replyOK, contract.DecisionFailedAllowed
				if policy == DecisionFailureReject {
					want, result = fail(decisionFailureInfo[reason]), contract.DecisionFailedRejected
				}
				if w.Code != 200 || w.Body.String() != want || w.Header().Get("Content-Type") != "application/json" {
					t.Errorf("reply %d %q %s\n want 200 application/json %s", w.Code, w.Header().Get("Content-Type"), w.Body, want)
				}
				if svc != nil && svc.count() != 1 {
					t.Errorf("decision service got %d requests, want 1 (never retried)", svc.count())
				}
				if took > timeout+time.Second {
					t.Errorf("answered after %v, the decision timeout is %v", took, timeout)
				}
				if tc.failure == "timeout" && took < timeout {
					t.Errorf("timeout answered after %v, before the decision timeout %v", took, timeout)
				}
				wantD := beforeD
				wantD.decided++
				wantD.results[resultIndex(t, result)]++
				wantD.failures[reason]++
				if got := decisionCountsOf(r); got != wantD {
					t.Errorf("decision counters %+v, want %+v", got, wantD)
				}
				if after := countsOf(r); after != before {
					t.Errorf("other counters moved: %+v -> %+v", before, after)
				}
			})
		}
	}
}

// TestDecisionRequestIsCloudEvent checks, on the decision service's side with the
// CloudEvents SDK, the request of a decision: a valid binary-mode event with exactly the
// attributes of the forwarded event of the same callback, and the body byte for byte.
func TestDecisionRequestIsCloudEvent(t *testing.T) {
	received := time.Date(2022, 12, 1, 5, 21, 52, 123456789, time.UTC)
	// Odd spacing, unicode and an unknown member: all must reach the service unchanged.
	body := c2cBeforeBody[:len(c2cBeforeBody)-1] + ",\n  \"Unknown\": {\"emoji\": \"\u00e9\u4e2d\", \"n\": 1.50}}"
	q := query("SdkAppid", "1400000001", "CallbackCommand", CmdC2CBeforeSendMsg, "contenttype", "json",
		"ClientIP", "203.0.113.7", "OptPlatform", "IOS")

	svc := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		ev, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			t.Errorf("not a CloudEvent: %v", err)
		} else if err := ev.Validate(); err != nil {
			t.Errorf("invalid CloudEvent: %v", err)
		}
		_, _ = w.Write([]byte(answerRefuse))
	})
	cfg := decidingConfig(svc.URL)
	cfg.Token = ""
	cfg.Now = func() time.Time { return received }
	r := newReceiver(t, cfg)
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+q, strings.NewReader(body)))
	if w.Code != 200 || w.Body.String() != answerRefuse {
		t.Fatalf("reply %d %s", w.Code, w.Body)
	}
	got := svc.got()
	if len(got) != 1 {
		t.Fatalf("service got %d requests", len(got))
	}
	sum := sha256.Sum256([]byte("1400000001\n" + CmdC2CBeforeSendMsg + "\n" + body))
	want := map[string]string{
		"Ce-Specversion": "1.0",
		"Ce-Type":        "com.tencentcloud.im.C2C.CallbackBeforeSendMsg",
		"Ce-Source":      "/tencentcloud/im/1400000001",
		"Ce-Id":          hex.EncodeToString(sum[:])[:32],
		"Ce-Time":        "2022-12-01T05:21:52.123456789Z",
		"Ce-Sdkappid":    "1400000001",
		"Ce-Clientip":    "203.0.113.7",
		"Ce-Optplatform": "IOS",
		"Content-Type":   "application/json",
	}
	for k, v := range want {
		if got[0].header.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got[0].header.Get(k), v)
		}
	}
	for k := range got[0].header {
		if strings.HasPrefix(k, "Ce-") {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected header %s: %s", k, got[0].header.Get(k))
			}
		}
	}
	if string(got[0].body) != body {
		t.Errorf("body changed:\n got %s\nwant %s", got[0].body, body)
	}

	// The same callback forwarded through a route carries the same attributes.
	s := newSink(t, nil)
	fcfg := testConfig("http://127.0.0.1:1")
	fcfg.Token = ""
	fcfg.Now = cfg.Now
	fcfg.Routes = []Route{{Commands: []string{CmdC2CBeforeSendMsg}, Sink: s.URL}}
	rr := start(t, fcfg)
	if code, reply := post(t, rr.url, q, body); code != 200 || reply != replyOK {
		t.Fatalf("forwarded: %d %s", code, reply)
	}
	eventually(t, "the forwarded event arrives", func() bool { return s.count() == 1 })
	fwd := s.got()[0]
	for k := range fwd.header {
		if (strings.HasPrefix(k, "Ce-") || k == "Content-Type") && fwd.header.Get(k) != got[0].header.Get(k) {
			t.Errorf("%s: forwarded %q, decision %q", k, fwd.header.Get(k), got[0].header.Get(k))
		}
	}
}

// TestDecisionChecksComeFirst: a request refused by any check never reaches the decision
// service, and is counted rejected, not decided.
func TestDecisionChecksComeFirst(t *testing.T) {
	svc := newSink(t, nil)
	cfg := decidingConfig(svc.URL)
	cfg.MaxBodyBytes = 4096
	r := newReceiver(t, cfg)
	q := func(pairs ...string) string { return query(pairs...) }
	for _, tc := range []struct {
		name, query, body string
		status            int
	}{
		{"wrong Sign", q("SdkAppid", "1400000001", "CallbackCommand", CmdC2CBeforeSendMsg, "RequestTime", exampleRequestTime, "Sign", Sign("other", exampleRequestTime)), c2cBeforeBody, 401},
		{"no Sign", q("SdkAppid", "1400000001", "CallbackCommand", CmdC2CBeforeSendMsg), c2cBeforeBody, 401},
		{"other application", q("SdkAppid", "1400000002", "CallbackCommand", CmdC2CBeforeSendMsg, "RequestTime", exampleRequestTime, "Sign", exampleSign), c2cBeforeBody, 403},
		{"body too large", signedQuery(CmdC2CBeforeSendMsg), c2cBeforeBody[:len(c2cBeforeBody)-1] + `,"Pad":"` + strings.Repeat("x", 4096) + `"}`, 413},
		{"not JSON", signedQuery(CmdC2CBeforeSendMsg), "hello", 400},
		{"command differs from the query's", signedQuery(CmdC2CBeforeSendMsg), groupBeforeBody, 400},
		{"typed check", signedQuery(CmdC2CBeforeSendMsg), strings.Replace(c2cBeforeBody, `"From_Account":"jared"`, `"From_Account":""`, 1), 400},
	} {
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+tc.query, strings.NewReader(tc.body)))
		if w.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.status)
		}
	}
	if n := svc.count(); n != 0 {
		t.Errorf("the decision service got %d refused requests", n)
	}
	if c, d := countsOf(r), decisionCountsOf(r); c.rejected != 7 || d.decided != 0 {
		t.Errorf("rejected %v decided %v, want 7 and 0", c.rejected, d.decided)
	}
}

// TestDecisionKeepAlive: decisions reuse kept-alive connections: one for sequential
// decisions, at most one per concurrent decision.
func TestDecisionKeepAlive(t *testing.T) {
	svc := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(answerAllow)) })
	r := newReceiver(t, decidingConfig(svc.URL))
	for range 50 {
		if w := serveDecided(r, CmdC2CBeforeSendMsg, c2cBeforeBody); w.Body.String() != answerAllow {
			t.Fatalf("reply %s", w.Body)
		}
	}
	remotes := func() map[string]bool {
		m := map[string]bool{}
		for _, req := range svc.got() {
			m[req.remote] = true
		}
		return m
	}
	if n := len(remotes()); n != 1 {
		t.Errorf("50 sequential decisions used %d connections, want 1", n)
	}
	const workers = 8
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range 25 {
				if w := serveDecided(r, CmdGroupBeforeSendMsg, groupBeforeBody); w.Body.String() != answerAllow {
					t.Errorf("reply %s", w.Body)
				}
			}
		})
	}
	wg.Wait()
	// net/http dials when every kept connection is busy, and keeps the dial's result when
	// another connection frees up first: a few more than one per decider, far fewer than 200.
	if n := len(remotes()); n > 2*workers+1 {
		t.Errorf("%d concurrent deciders (200 decisions) used %d connections", workers, n)
	}
	if d := decisionCountsOf(r); d.decided != 250 || d.results[decisionAllowed] != 250 {
		t.Errorf("decision counters %+v", d)
	}
}

// TestDecisionsDuringShutdown: decisions need no queue, so they are answered by the decision
// service through the shutdown delay and the drain (IM's user is waiting), while forwarded
// callbacks get 503 once the delay is over; a decision still in flight when the queue has
// drained is answered and counted before Serve returns.
func TestDecisionsDuringShutdown(t *testing.T) {
	release := make(chan struct{})
	sinkSrv := newSink(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			<-release // keeps the drain going
		}
		w.WriteHeader(http.StatusAccepted)
	})
	inFlight := make(chan struct{})
	svc := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Ce-Clientip") == "10.9.9.9" {
			close(inFlight)
			time.Sleep(300 * time.Millisecond) // still deciding when the drain ends
		}
		_, _ = w.Write([]byte(answerRefuse))
	})
	cfg := decidingConfig(svc.URL)
	cfg.Sink = sinkSrv.URL
	cfg.ShutdownDelay = 500 * time.Millisecond
	cfg.DeliveryTimeout = 30 * time.Second
	rr := start(t, cfg)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)

	if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody); code != 200 {
		t.Fatalf("forwarded callback before shutdown: %d", code)
	}
	rr.cancel()
	eventually(t, "/readyz fails", func() bool { code, _ := get(t, rr.adminURL+"/readyz"); return code == 503 })
	if code, reply := post(t, rr.url, signedQuery(CmdC2CBeforeSendMsg), c2cBeforeBody); code != 200 || reply != answerRefuse {
		t.Errorf("decision during the shutdown delay: %d %s", code, reply)
	}
	eventually(t, "forwarded callbacks get 503 after the delay", func() bool {
		code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
		return code == 503
	})
	if code, reply := post(t, rr.url, signedQuery(CmdGroupBeforeSendMsg), groupBeforeBody); code != 200 || reply != answerRefuse {
		t.Errorf("decision while draining: %d %s", code, reply)
	}
	// A decision in flight as the drain ends.
	slow := make(chan string, 1)
	go func() {
		q := query("SdkAppid", "1400000001", "CallbackCommand", CmdC2CBeforeSendMsg, "ClientIP", "10.9.9.9",
			"RequestTime", exampleRequestTime, "Sign", exampleSign)
		_, reply := post(t, rr.url, q, c2cBeforeBody)
		slow <- reply
	}()
	<-inFlight
	unblock()
	if err := rr.returned(t, 20*time.Second, "Serve did not return"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if reply := <-slow; reply != answerRefuse {
		t.Errorf("decision in flight at the end of the drain: %s", reply)
	}
	if d := decisionCountsOf(rr.Receiver); d.decided != 3 || d.results[decisionRejected] != 3 {
		t.Errorf("decision counters %+v, want 3 decided (rejected by the service)", d)
	}
	if c := countsOf(rr.Receiver); c.accepted < 1 || c.delivered != c.accepted || c.unavailable < 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestDecisionMetricsExposed: the decision series a scrape shows from the start, and the
// outcome "decided" next to the others.
func TestDecisionMetricsExposed(t *testing.T) {
	svc := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(answerRefuse)) })
	r := newReceiver(t, decidingConfig(svc.URL))
	serveDecided(r, CmdC2CBeforeSendMsg, c2cBeforeBody)
	w := httptest.NewRecorder()
	r.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := w.Body.String()
	for _, want := range []string{
		`imcallback_callbacks_total{outcome="decided"} 1`,
		`imcallback_decisions_total{result="rejected"} 1`,
		`imcallback_decisions_total{result="allowed"} 0`,
		`imcallback_decisions_total{result="failed_allowed"} 0`,
		`imcallback_decisions_total{result="failed_rejected"} 0`,
		`imcallback_decision_failures_total{reason="timeout"} 0`,
		`imcallback_decision_failures_total{reason="answer_too_large"} 0`,
		`imcallback_decision_duration_seconds_count{result="rejected"} 1`,
		`imcallback_request_duration_seconds_count{outcome="decided"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestDecisionFailureLogThrottled: a decision service that is down fails every message;
// the log gets at most a line a second, the counters every failure.
func TestDecisionFailureLogThrottled(t *testing.T) {
	var logs logBuffer
	cfg := decidingConfig(deadURL(t))
	cfg.Logger = jsonLogger(&logs)
	r := newReceiver(t, cfg)
	for range 20 {
		if w := serveDecided(r, CmdC2CBeforeSendMsg, c2cBeforeBody); w.Body.String() != replyOK {
			t.Fatalf("reply %s", w.Body)
		}
	}
	if n := strings.Count(logs.String(), `"msg":"decision failed; answered by the failure policy"`); n != 1 {
		t.Errorf("%d log lines for 20 failures within a second, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"reason":"network_error","result":"failed_allowed","command":"C2C.CallbackBeforeSendMsg"`) {
		t.Errorf("log line lacks the reason:\n%s", logs.String())
	}
	if d := decisionCountsOf(r); d.results[decisionFailedAllowed] != 20 || d.failures[failureNetwork] != 20 {
		t.Errorf("counters %+v", d)
	}
}

// TestDecisionClientGone: IM hanging up while the service decides ends the exchange at once.
func TestDecisionClientGone(t *testing.T) {
	svc := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) { waitOrGone(r, 5*time.Second) })
	cfg := decidingConfig(svc.URL)
	cfg.DecisionTimeout = MaxDecisionTimeout
	r := newReceiver(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(CmdC2CBeforeSendMsg), strings.NewReader(c2cBeforeBody)).WithContext(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	begin := time.Now()
	r.Handler().ServeHTTP(httptest.NewRecorder(), req)
	if took := time.Since(begin); took > time.Second {
		t.Errorf("the exchange went on for %v after IM hung up", took)
	}
	if d := decisionCountsOf(r); d.failures[failureCanceled] != 1 || d.decided != 1 {
		t.Errorf("counters %+v", d)
	}
}

// FuzzAnswerErrorCode: the hand-written check of a decision service's answer agrees with
// encoding/json: a JSON object with exactly one member named ErrorCode (exactly) and no
// other whose name folds to it (ErrorCode/errorcode: a failure, like the intake's rule),
// whose value is an integer literal, and that integer's zeroness.
func FuzzAnswerErrorCode(f *testing.F) {
	for _, s := range []string{answerAllow, answerRefuse, `{"ErrorCode":-0}`, `{"ErrorCode":0.0}`, `{"ErrorCode":1e3}`,
		`{"ErrorCode":0,"ErrorCode":0}`, `{"errorcode":0}`, `{"ErrorCode":0,"errorcode":1}`, `{"ERRORCODE":1,"ErrorCode":0}`, `{"Error\u0043ode":7}`, `[{"ErrorCode":0}]`, `{"a":{"ErrorCode":0}}`,
		` {"ErrorCode" : 120001 } `, `{"ErrorCode":"0"}`, `{}`, ``, `{"ErrorCode":00}`} {
		f.Add([]byte(s))
	}
	integer := regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
	f.Fuzz(func(t *testing.T, b []byte) {
		zero, ok := answerErrorCode(b)
		wantOK, wantZero := false, false
		if json.Valid(b) {
			dec := json.NewDecoder(bytes.NewReader(b))
			if tok, _ := dec.Token(); tok == json.Delim('{') {
				count, folded, raw := 0, 0, ""
				for dec.More() {
					key, _ := dec.Token()
					var v json.RawMessage
					if err := dec.Decode(&v); err != nil {
						t.Fatalf("decoding a valid object %q: %v", b, err)
					}
					if key == "ErrorCode" {
						count++
						raw = strings.TrimSpace(string(v))
					}
					if k, _ := key.(string); strings.EqualFold(k, "ErrorCode") {
						folded++
					}
				}
				wantOK = count == 1 && folded == 1 && integer.MatchString(raw)
				wantZero = wantOK && strings.TrimPrefix(raw, "-") == "0"
			}
		}
		if ok != wantOK || zero != wantZero {
			t.Fatalf("answerErrorCode(%q) = zero %v, ok %v; encoding/json says zero %v, ok %v", b, zero, ok, wantZero, wantOK)
		}
	})
}

// TestDecisionsInFlightBounded: with maxDecisionsInFlight exchanges waiting on a slow
// decision service, the next decided callback is answered at once by the failure policy
// (reason busy) instead of holding ~100 KB more; once they end, decisions go through again.
func TestDecisionsInFlightBounded(t *testing.T) {
	release := make(chan struct{})
	svc := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg := decidingConfig(svc.URL)
	cfg.DecisionFailure = DecisionFailureReject
	cfg.DecisionTimeout = MaxDecisionTimeout
	r := newReceiver(t, cfg)
	var wg sync.WaitGroup
	for range maxDecisionsInFlight {
		wg.Go(func() { serveDecided(r, CmdC2CBeforeSendMsg, c2cBeforeBody) })
	}
	// Every slot is taken at once (the exchanges then wait on the service, up to the timeout).
	eventually(t, "every slot is taken", func() bool { return len(r.decisionSlots) == maxDecisionsInFlight })
	begin := time.Now()
	w := serveDecided(r, CmdC2CBeforeSendMsg, c2cBeforeBody)
	if took := time.Since(begin); took > 100*time.Millisecond {
		t.Errorf("the callback beyond the bound took %v", took)
	}
	if w.Body.String() != string(decisionRejectBodies[failureBusy]) {
		t.Errorf("beyond the bound: %s", w.Body)
	}
	if d := decisionCountsOf(r); d.failures[failureBusy] != 1 {
		t.Errorf("busy failures %v, want 1", d.failures[failureBusy])
	}
	close(release)
	wg.Wait()
	if w := serveDecided(r, CmdC2CBeforeSendMsg, c2cBeforeBody); w.Body.String() != replyOK {
		t.Errorf("after the slow ones ended: %s", w.Body)
	}
}
