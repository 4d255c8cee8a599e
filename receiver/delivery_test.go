package receiver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDeliveryRetriesThenSucceeds: the sink fails twice, then takes the event: delivered once,
// two retries counted, the same event each time.
func TestDeliveryRetriesThenSucceeds(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	rr := start(t, testConfig(s.URL))
	if code, body := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody); code != 200 || body != replyOK {
		t.Fatalf("callback: %d %s", code, body)
	}
	eventually(t, "the event is delivered", func() bool { return countsOf(rr.Receiver).delivered == 1 })
	if err := rr.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c := countsOf(rr.Receiver)
	if c.delivered != 1 || c.retries != 2 || c.failed != 0 || c.deadLettered != 0 {
		t.Errorf("counters %+v, want delivered 1, retries 2", c)
	}
	got := s.got()
	if len(got) != 3 {
		t.Fatalf("sink saw %d requests, want 3", len(got))
	}
	for _, r := range got[1:] {
		if r.header.Get("Ce-Id") != got[0].header.Get("Ce-Id") || string(r.body) != blackListDeleteBody {
			t.Errorf("a retry differs from the first attempt: %v %s", r.header, r.body)
		}
	}
}

// TestDeliveryRetryPolicy: which sink answers are retried (network errors,
// timeouts, 5xx, 404, 408, 409, 429) and which are not (other 4xx); exhausted or not
// retryable, the event goes to the dead-letter sink with the reason and attempt count.
func TestDeliveryRetryPolicy(t *testing.T) {
	for _, tc := range []struct {
		status   int
		attempts int // with retry = 2
	}{
		{301, 1}, {307, 1}, {400, 1}, {401, 1}, {403, 1}, {410, 1}, {413, 1}, {422, 1},
		{404, 3}, {408, 3}, {409, 3}, {429, 3}, {500, 3}, {502, 3}, {503, 3}, {504, 3},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.status) })
			dls := newSink(t, nil)
			cfg := testConfig(s.URL)
			cfg.Retry = 2
			cfg.DeadLetterSink = dls.URL
			rr := start(t, cfg)
			post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
			eventually(t, "the event is dead-lettered", func() bool { return countsOf(rr.Receiver).deadLettered == 1 })
			if err := rr.stop(t); err != nil {
				t.Fatalf("Serve: %v (dead-lettered events are not undelivered)", err)
			}
			if n := s.count(); n != tc.attempts {
				t.Errorf("sink saw %d attempts, want %d", n, tc.attempts)
			}
			c := countsOf(rr.Receiver)
			if c.retries != float64(tc.attempts-1) || c.delivered != 0 || c.failed != 0 {
				t.Errorf("counters %+v", c)
			}
			d := dls.got()
			if len(d) != 1 {
				t.Fatalf("dead-letter sink saw %d requests, want 1", len(d))
			}
			h := d[0].header
			wantReason := "sink responded " + strconv.Itoa(tc.status) + " " + http.StatusText(tc.status)
			if h.Get("Ce-Deadletterreason") != wantReason {
				t.Errorf("ce-deadletterreason = %q, want %q", h.Get("Ce-Deadletterreason"), wantReason)
			}
			if h.Get("Ce-Deadletterattempts") != strconv.Itoa(tc.attempts) {
				t.Errorf("ce-deadletterattempts = %q, want %d", h.Get("Ce-Deadletterattempts"), tc.attempts)
			}
			if h.Get("Ce-Id") != s.got()[0].header.Get("Ce-Id") || string(d[0].body) != blackListDeleteBody {
				t.Errorf("dead-lettered event differs from the original")
			}
		})
	}
}

// TestDeliverySinkDownDeadLetters: connection refused is retried, then dead-lettered.
func TestDeliverySinkDownDeadLetters(t *testing.T) {
	dls := newSink(t, nil)
	cfg := testConfig(deadURL(t))
	cfg.DeadLetterSink = dls.URL
	rr := start(t, cfg)
	post(t, rr.url, signedQuery(CmdFriendAdd), friendAddBody) // ignored: not selected
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "the event is dead-lettered", func() bool { return dls.count() == 1 })
	if err := rr.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	h := dls.got()[0].header
	if !strings.HasPrefix(h.Get("Ce-Deadletterreason"), "network error: ") || h.Get("Ce-Deadletterattempts") != "4" {
		t.Errorf("dead-letter extensions: reason %q attempts %q, want a network error after 4 attempts",
			h.Get("Ce-Deadletterreason"), h.Get("Ce-Deadletterattempts"))
	}
	if c := countsOf(rr.Receiver); c.deadLettered != 1 || c.retries != 3 || c.ignored != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestDeliveryFailedIsLoggedWholeAndFailsServe: no dead-letter sink, sink down: the event is
// counted failed, logged whole at error level, and Serve reports it (exit 1).
func TestDeliveryFailedIsLoggedWholeAndFailsServe(t *testing.T) {
	var logs logBuffer
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnprocessableEntity) })
	cfg := testConfig(s.URL)
	cfg.Retry = 1
	cfg.Logger = jsonLogger(&logs)
	rr := start(t, cfg)
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "the event fails", func() bool { return countsOf(rr.Receiver).failed == 1 })
	err := rr.stop(t)
	if err == nil || !strings.Contains(err.Error(), "1 accepted event(s) were neither delivered nor dead-lettered") {
		t.Fatalf("Serve = %v, want an error about the undelivered event", err)
	}
	var line struct {
		Level, Msg, ID, Reason string
		Event                  struct {
			ID, Type, Source, Sdkappid, Clientip, Optplatform string
			Data                                              json.RawMessage
		}
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"event not delivered"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line.Level != "ERROR" {
		t.Fatalf("no error line for the failed event:\n%s", logs.String())
	}
	wantID := EventID("1400000001", CmdBlackListDelete, []byte(blackListDeleteBody))
	if line.ID != wantID || line.Event.ID != wantID || line.Event.Type != "com.tencentcloud.im.Sns.CallbackBlackListDelete" ||
		line.Event.Source != "/tencentcloud/im/1400000001" || line.Event.Clientip != "127.0.0.1" || line.Event.Optplatform != "RESTAPI" {
		t.Errorf("logged event incomplete: %+v", line)
	}
	if !jsonEqual(t, line.Event.Data, []byte(blackListDeleteBody)) {
		t.Errorf("logged data %s, want the body", line.Event.Data)
	}
	if line.Reason != "sink responded 422 Unprocessable Entity after 1 attempt(s)" {
		t.Errorf("logged reason %q", line.Reason)
	}
}

// TestDeliveryNeverGivesUpOnATransientFailure: without a dead-letter sink, a sink that is
// down does not fail an event after its retries: it is held and retried (no failed count)
// until the sink takes it; only the shutdown timeout ends it, failed and logged whole (the
// memory queue cannot keep it).
func TestDeliveryNeverGivesUpOnATransientFailure(t *testing.T) {
	var logs logBuffer
	var down atomic.Bool
	down.Store(true)
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	cfg := testConfig(s.URL)
	cfg.Retry = 1
	cfg.ShutdownTimeout = time.Second
	cfg.Logger = jsonLogger(&logs)
	rr := start(t, cfg)
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "the event is held", func() bool { return rr.deliverer.held.Load() == 1 })
	eventually(t, "more attempts than --retry allows", func() bool { return s.count() >= 4 })
	if c := countsOf(rr.Receiver); c.failed != 0 || c.delivered != 0 {
		t.Fatalf("counts while the sink is down: %+v", c)
	}
	down.Store(false)
	eventually(t, "the event is delivered once the sink is back", func() bool { return countsOf(rr.Receiver).delivered == 1 })
	if err := rr.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}

	// Down until the shutdown timeout: failed then, logged whole.
	down.Store(true)
	rr = start(t, cfg)
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "the event is held", func() bool { return rr.deliverer.held.Load() == 1 })
	if err := rr.stop(t); err == nil || countsOf(rr.Receiver).failed != 1 {
		t.Fatalf("Serve = %v, counts %+v: want the held event failed at the shutdown timeout", err, countsOf(rr.Receiver))
	}
	if !strings.Contains(logs.String(), "shutdown timeout reached: sink responded 503 Service Unavailable") {
		t.Errorf("no line for the event failed at the shutdown timeout:\n%s", logs.String())
	}
}

// TestDeliveryDeadLetterSinkDownFails: both sinks fail: failed, with both reasons logged.
func TestDeliveryDeadLetterSinkDownFails(t *testing.T) {
	var logs logBuffer
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) })
	cfg := testConfig(s.URL)
	cfg.DeadLetterSink = deadURL(t)
	cfg.Retry = 1
	cfg.ShutdownTimeout = time.Second
	cfg.Logger = jsonLogger(&logs)
	rr := start(t, cfg)
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	// The dead-letter sink is the last place: its outage holds the event, like the sink's
	// without one, until the shutdown timeout fails it (in memory).
	eventually(t, "the event is held for the dead-letter sink", func() bool { return rr.deliverer.held.Load() == 1 })
	if err := rr.stop(t); err == nil || countsOf(rr.Receiver).failed != 1 {
		t.Fatalf("Serve = %v, want an error and the event failed", err)
	}
	if !strings.Contains(logs.String(), `sink: sink responded 400 Bad Request after 1 attempt(s); dead-letter sink: shutdown timeout reached: network error`) {
		t.Errorf("log lacks both reasons:\n%s", logs.String())
	}
}

// TestDeliveryTimeoutIsRetried: an attempt longer than --delivery-timeout is abandoned and retried.
func TestDeliveryTimeoutIsRetried(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	defer close(release)
	cfg := testConfig(s.URL)
	cfg.DeliveryTimeout = 200 * time.Millisecond
	rr := start(t, cfg)
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "the event is delivered", func() bool { return countsOf(rr.Receiver).delivered == 1 })
	if c := countsOf(rr.Receiver); c.retries != 1 || s.count() != 2 {
		t.Errorf("counters %+v, sink saw %d; want one retry after the timeout", c, s.count())
	}
}

// TestDeliveryHonoursRetryAfter: a 429 with Retry-After: 1 delays the retry by a second even
// though the backoff is 1ms.
func TestDeliveryHonoursRetryAfter(t *testing.T) {
	s := newSink(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	rr := start(t, testConfig(s.URL))
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "the event is delivered", func() bool { return countsOf(rr.Receiver).delivered == 1 })
	got := s.got()
	if gap := got[1].at.Sub(got[0].at); gap < time.Second {
		t.Errorf("retry came %v after the 429, want >= 1s (Retry-After)", gap)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-3", 0}, {"2", 2 * time.Second}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999999", maxBackoff},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   []time.Duration // before retry 1, 2, 3
	}{
		{BackoffExponential, []time.Duration{400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}},
		{BackoffLinear, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond}},
	} {
		d := &deliverer{cfg: &Config{BackoffPolicy: tc.policy, BackoffDelay: 200 * time.Millisecond}}
		for i, want := range tc.want {
			if got := d.backoff(i + 1); got != want {
				t.Errorf("%s backoff before retry %d = %v, want %v", tc.policy, i+1, got, want)
			}
		}
	}
	d := &deliverer{cfg: &Config{BackoffPolicy: BackoffExponential, BackoffDelay: time.Second}}
	if got := d.backoff(200); got != maxBackoff {
		t.Errorf("exponential backoff does not saturate: %v", got)
	}
}

// TestQueueFull: with one worker stuck on the sink and a queue of one, the third callback
// gets 503; everything accepted is delivered once the sink recovers.
func TestQueueFull(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			<-release
		}
		w.WriteHeader(http.StatusAccepted)
	})
	cfg := testConfig(s.URL)
	cfg.Workers, cfg.QueueSize = 1, 1
	cfg.DeliveryTimeout = 20 * time.Second
	rr := start(t, cfg)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the receiver's and the sink's cleanups

	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "the worker holds the first event", func() bool { return s.count() == 1 })
	if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody); code != 200 {
		t.Fatalf("second callback (queued) got %d", code)
	}
	code, body := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	if code != 503 || body != fail("receiver queue is full, try again later") {
		t.Fatalf("third callback: %d %s, want 503 queue full", code, body)
	}
	if depth := gaugeValue(t, rr.adminURL, "imcallback_queue_depth"); depth != "1" {
		t.Errorf("imcallback_queue_depth = %s, want 1", depth)
	}
	if n := gaugeValue(t, rr.adminURL, `imcallback_unavailable_total{reason="queue_full"}`); n != "1" {
		t.Errorf(`imcallback_unavailable_total{reason="queue_full"} = %s, want 1`, n)
	}
	unblock()
	eventually(t, "both accepted events are delivered", func() bool { return countsOf(rr.Receiver).delivered == 2 })
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	if c := countsOf(rr.Receiver); c.accepted != 2 || c.unavailable != 1 {
		t.Errorf("counters %+v", c)
	}
}

// gaugeValue scrapes one unlabelled sample from /metrics.
func gaugeValue(t *testing.T, adminURL, name string) string {
	t.Helper()
	_, text := get(t, adminURL+"/metrics")
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	t.Fatalf("%s not in /metrics", name)
	return ""
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
