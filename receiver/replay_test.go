package receiver

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplaysDeliveredOnce: a signed request sent 1,000 times (a captured URL replayed, or IM
// retrying after a timeout) is delivered once; the repeats are answered OK and counted
// duplicate, and received = accepted + rejected + ignored + unavailable + duplicate.
func TestReplaysDeliveredOnce(t *testing.T) {
	s := newSink(t, nil)
	cfg := testConfig(s.URL)
	cfg.ReplayWindowSize = 0 // the default
	rr := start(t, cfg)
	const sends = 1000
	for i := range sends {
		if code, reply := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody); code != 200 || reply != replyOK {
			t.Fatalf("send %d: %d %s", i, code, reply)
		}
	}
	// The protocol signs no body: a new body under a captured Sign is a new callback (only
	// HTTPS keeps the Sign from being captured).
	other := strings.Replace(blackListDeleteBody, "id3", "id4", 1)
	if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), other); code != 200 {
		t.Fatalf("another body: %d", code)
	}
	_, metrics := get(t, rr.adminURL+"/metrics")
	if !strings.Contains(metrics, `imcallback_callbacks_total{outcome="duplicate"} 999`) || !strings.Contains(metrics, "imcallback_replay_window_entries 2") {
		t.Errorf("metrics lack the duplicates or the window's entries:\n%s", grepLines(metrics, "duplicate", "replay_window"))
	}
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := s.count(); n != 2 {
		t.Errorf("the sink got %d events, want 2", n)
	}
	c := countsOf(rr.Receiver)
	if c.accepted != 2 || c.duplicate != sends-1 || c.delivered != 2 {
		t.Errorf("counts %+v, want accepted 2, duplicate %d, delivered 2", c, sends-1)
	}
}

func grepLines(text string, words ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestReplayWindowFollowsTheSkew: a repeat is a duplicate while its RequestTime is within the
// skew window, and refused by the signature check after; the entry is then dropped.
func TestReplayWindowFollowsTheSkew(t *testing.T) {
	var now atomic.Int64
	now.Store(exampleNow.Unix())
	cfg := testConfig("http://127.0.0.1:1")
	cfg.ReplayWindowSize = 0
	cfg.Now = func() time.Time { return time.Unix(now.Load(), 0) }
	r := newReceiver(t, cfg)
	send := func() int {
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(CmdBlackListDelete), strings.NewReader(blackListDeleteBody)))
		return w.Code
	}
	if code := send(); code != 200 {
		t.Fatalf("first: %d", code)
	}
	now.Add(60) // the last second the signature passes
	if code := send(); code != 200 || countsOf(r).duplicate != 1 {
		t.Fatalf("repeat at the edge of the skew: %d, %+v", code, countsOf(r))
	}
	now.Add(1)
	if code := send(); code != 401 {
		t.Fatalf("repeat past the skew: %d, want 401", code)
	}
	// Another callback, later, sweeps the expired entry out.
	later := strconv.FormatInt(now.Load(), 10)
	q := query("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", later, "Sign", Sign(exampleToken, later))
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+q, strings.NewReader(blackListDeleteBody)))
	if w.Code != 200 {
		t.Fatalf("a later callback: %d", w.Code)
	}
	if n, _ := r.replay.stats(); n != 1 {
		t.Errorf("window holds %d entries, want 1 (the expired one dropped)", n)
	}
	if c := countsOf(r); c.accepted != 2 || c.duplicate != 1 || c.rejected != 1 {
		t.Errorf("counts %+v", c)
	}
}

// TestReplayAfterUnavailable: a callback refused with 503 was not accepted, so its retry is
// accepted, not taken for a duplicate.
func TestReplayAfterUnavailable(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.ReplayWindowSize = 0
	cfg.QueueSize = 1
	r := newReceiver(t, cfg)
	send := func(body string) int {
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(CmdBlackListDelete), strings.NewReader(body)))
		return w.Code
	}
	other := strings.Replace(blackListDeleteBody, "id3", "id4", 1)
	if a, b := send(blackListDeleteBody), send(other); a != 200 || b != 503 {
		t.Fatalf("first %d, second (queue full) %d", a, b)
	}
	takeQueued(t, r)
	if code := send(other); code != 200 {
		t.Fatalf("retry after the 503: %d", code)
	}
	if c := countsOf(r); c.accepted != 2 || c.unavailable != 1 || c.duplicate != 0 {
		t.Errorf("counts %+v, want accepted 2, unavailable 1, no duplicate", c)
	}
}

// TestReplayWindowFull: at its size the window forgets the oldest entry (counted) and never
// refuses a callback.
func TestReplayWindowFull(t *testing.T) {
	w := newReplayWindow(3)
	keys := make([]replayKey, 5)
	for i := range keys {
		keys[i] = w.key("sign", "1", []byte{byte(i)})
		seq, dup := w.claim(keys[i], 100, 160)
		if dup {
			t.Fatalf("key %d taken for a duplicate", i)
		}
		w.settle(keys[i], seq, true)
	}
	if n, evicted := w.stats(); n != 3 || evicted != 2 {
		t.Fatalf("entries %d evicted %d, want 3 and 2", n, evicted)
	}
	if _, dup := w.claim(keys[4], 100, 160); !dup {
		t.Error("the newest entry was forgotten")
	}
	if _, dup := w.claim(keys[0], 100, 160); dup {
		t.Error("the oldest entry is still there past the window's size")
	}
	if len(w.ring.buf) > 3 {
		t.Errorf("ring grew to %d entries past the size 3", len(w.ring.buf))
	}
}

// TestReplayConcurrentRepeat: a repeat arriving while the first is still being queued waits
// for its outcome: a duplicate if it was accepted, a new claim if it was refused.
func TestReplayConcurrentRepeat(t *testing.T) {
	w := newReplayWindow(10)
	k := w.key("sign", "1", []byte("body"))
	for _, accepted := range []bool{false, true} {
		seq, _ := w.claim(k, 100, 160)
		got := make(chan bool, 1)
		go func() {
			seq2, dup := w.claim(k, 100, 160)
			if !dup {
				w.settle(k, seq2, true)
			}
			got <- dup
		}()
		select {
		case <-got:
			t.Fatal("the repeat did not wait for the first's outcome")
		case <-time.After(50 * time.Millisecond):
		}
		w.settle(k, seq, accepted)
		if dup := <-got; dup != accepted {
			t.Errorf("first accepted %v: repeat taken for a duplicate %v", accepted, dup)
		}
		// Start the next round with the key forgotten.
		w.mu.Lock()
		delete(w.slots, k)
		w.mu.Unlock()
	}
}

// TestReplayKeys: the key covers Sign, RequestTime and body, and differs between windows
// (random seeds).
func TestReplayKeys(t *testing.T) {
	w := newReplayWindow(10)
	base := w.key("s", "1", []byte("b"))
	for _, k := range []replayKey{w.key("t", "1", []byte("b")), w.key("s", "2", []byte("b")), w.key("s", "1", []byte("c")), w.key("s1", "", []byte("b"))} {
		if k == base {
			t.Errorf("key %v equals the base key", k)
		}
	}
	if w.key("s", "1", []byte("b")) != base {
		t.Error("the key is not a function of its inputs")
	}
	if newReplayWindow(10).key("s", "1", []byte("b")) == base {
		t.Error("two windows share their seeds")
	}
}
