package receiver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func pairBody(i int) string {
	return fmt.Sprintf(`{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"u%d"}]}`, i)
}

// TestShutdownDrainsSlowSink: SIGTERM (ctx cancel) with a slow sink: every accepted event
// is delivered exactly once before Serve returns nil.
func TestShutdownDrainsSlowSink(t *testing.T) {
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	})
	cfg := testConfig(s.URL)
	cfg.Workers = 2
	rr := start(t, cfg)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if code, body := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 {
				t.Errorf("callback %d: %d %s", i, code, body)
			}
		})
	}
	wg.Wait()
	if err := rr.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	seen := map[string]int{}
	for _, r := range s.got() {
		seen[string(r.body)]++
	}
	for i := range n {
		if seen[pairBody(i)] != 1 {
			t.Errorf("event %d delivered %d times, want once", i, seen[pairBody(i)])
		}
	}
	if c := countsOf(rr.Receiver); c.accepted != n || c.delivered != n {
		t.Errorf("counters %+v, want %d accepted and delivered", c, n)
	}
}

// TestShutdownDelayStillAccepts: during --shutdown-delay /readyz fails but callbacks are
// accepted (with Connection: close); afterwards selected commands get 503 while ignored ones
// still get OK; the queue drains and Serve returns nil.
func TestShutdownDelayStillAccepts(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			<-release // keeps the drain, and so the server, going
		}
		w.WriteHeader(http.StatusAccepted)
	})
	cfg := testConfig(s.URL)
	cfg.ShutdownDelay = 2 * time.Second
	cfg.DeliveryTimeout = 30 * time.Second
	rr := start(t, cfg)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)

	if code, _ := get(t, rr.adminURL+"/readyz"); code != 200 {
		t.Fatalf("/readyz before shutdown = %d", code)
	}
	rr.cancel()
	eventually(t, "/readyz fails", func() bool { code, _ := get(t, rr.adminURL+"/readyz"); return code == 503 })

	resp, err := testClient.Post(rr.url+testPath+"?"+signedQuery(CmdBlackListDelete), "application/json", strings.NewReader(blackListDeleteBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Fatalf("callback during the shutdown delay: %d (Connection: close %v), want 200 and close", resp.StatusCode, resp.Close)
	}
	eventually(t, "callbacks get 503 after the delay", func() bool {
		code, body := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
		return code == 503 && body == fail("receiver is shutting down, try again later")
	})
	if code, body := post(t, rr.url, signedQuery(CmdFriendAdd), friendAddBody); code != 200 || body != replyOK {
		t.Errorf("ignored command while draining: %d %s", code, body)
	}
	if code, _ := get(t, rr.adminURL+"/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d, want 200", code)
	}
	unblock()
	if err := rr.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c := countsOf(rr.Receiver)
	if c.accepted < 1 || c.delivered != c.accepted || c.unavailable < 1 || c.ignored != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestShutdownWaitsForFinalScrape: scraped once, the receiver keeps its admin port until a
// scrape after the drain has read the final counters.
func TestShutdownWaitsForFinalScrape(t *testing.T) {
	s := newSink(t, nil)
	rr := start(t, testConfig(s.URL))
	get(t, rr.adminURL+"/metrics")
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	rr.cancel()
	eventually(t, "the queue has drained", rr.drained.Load)
	select {
	case err := <-rr.done:
		rr.done <- err
		t.Fatalf("Serve returned (%v) before the final scrape", err)
	case <-time.After(300 * time.Millisecond):
	}
	_, text := get(t, rr.adminURL+"/metrics")
	if !strings.Contains(text, `imcallback_events_total{result="delivered"} 1`) {
		t.Errorf("final scrape lacks the delivered event:\n%s", text)
	}
	if err := rr.returned(t, 10*time.Second, "Serve did not return after the final scrape"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestShutdownFinalScrapeBoundedByTimeout: nobody scrapes after the drain: Serve still
// returns (nil: the events were delivered) once --shutdown-timeout has passed.
func TestShutdownFinalScrapeBoundedByTimeout(t *testing.T) {
	var logs logBuffer
	cfg := testConfig(newSink(t, nil).URL)
	cfg.ShutdownTimeout = time.Second
	cfg.Logger = jsonLogger(&logs)
	rr := start(t, cfg)
	get(t, rr.adminURL+"/metrics")
	begin := time.Now()
	rr.cancel()
	if err := rr.returned(t, 10*time.Second, "Serve did not return after the shutdown timeout"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if took := time.Since(begin); took < 900*time.Millisecond {
		t.Errorf("Serve returned after %v, before the shutdown timeout, without a final scrape", took)
	}
	if !strings.Contains(logs.String(), "no scrape of /metrics after the drain") {
		t.Errorf("no warning about the missing final scrape:\n%s", logs.String())
	}
}

// TestShutdownStandaloneDoesNotWait: never scraped (run standalone), Serve returns as soon as
// the queue has drained.
func TestShutdownStandaloneDoesNotWait(t *testing.T) {
	s := newSink(t, nil)
	cfg := testConfig(s.URL)
	cfg.ShutdownTimeout = 30 * time.Second
	rr := start(t, cfg)
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	begin := time.Now()
	rr.cancel()
	if err := rr.returned(t, 10*time.Second, "Serve waited although nothing ever scraped it"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if s.count() != 1 {
		t.Errorf("sink got %d events, want 1", s.count())
	}
	t.Logf("shutdown took %v", time.Since(begin))
}

// TestShutdownTimeoutFailsUndelivered: the sink never answers; at --shutdown-timeout the
// events still queued or in flight are counted failed, logged whole, and Serve fails (exit 1).
func TestShutdownTimeoutFailsUndelivered(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	var logs logBuffer
	cfg := testConfig(s.URL)
	cfg.Workers = 1
	cfg.DeliveryTimeout = 30 * time.Second
	cfg.ShutdownTimeout = time.Second
	cfg.Logger = jsonLogger(&logs)
	rr := start(t, cfg)
	t.Cleanup(func() { close(release) })
	for i := range 3 {
		if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 {
			t.Fatalf("callback %d: %d", i, code)
		}
	}
	err := rr.stop(t)
	if err == nil || !strings.Contains(err.Error(), "3 accepted event(s) were neither delivered nor dead-lettered") {
		t.Fatalf("Serve = %v, want 3 undelivered", err)
	}
	if c := countsOf(rr.Receiver); c.failed != 3 || c.accepted != 3 {
		t.Errorf("counters %+v, want 3 failed", c)
	}
	text := logs.String()
	for i := range 3 {
		if !strings.Contains(text, fmt.Sprintf(`"To_Account":"u%d"`, i)) {
			t.Errorf("undelivered event %d not logged whole", i)
		}
	}
	if got := strings.Count(text, `"msg":"event not delivered"`); got != 3 {
		t.Errorf("%d 'event not delivered' lines, want 3", got)
	}
}

func TestAdminBeforeServe(t *testing.T) {
	r := newReceiver(t, testConfig("http://127.0.0.1:1"))
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 200, "/other": 404} {
		w := httptest.NewRecorder()
		r.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("GET %s = %d, want %d", path, w.Code, want)
		}
	}
}

func TestServeTwice(t *testing.T) {
	rr := start(t, testConfig(newSink(t, nil).URL))
	eventually(t, "the first Serve is ready", rr.ready.Load)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := rr.Serve(context.Background(), ln, nil); err == nil {
		t.Fatal("second Serve succeeded")
	}
}

// TestSeveralReceiversInOneProcess: no global state: two receivers count separately and
// have different incarnations.
func TestSeveralReceiversInOneProcess(t *testing.T) {
	s := newSink(t, nil)
	a, b := start(t, testConfig(s.URL)), start(t, testConfig(s.URL))
	post(t, a.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	post(t, a.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	post(t, b.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	eventually(t, "all delivered", func() bool { return s.count() == 3 })
	_, ta := get(t, a.adminURL+"/metrics")
	_, tb := get(t, b.adminURL+"/metrics")
	if !strings.Contains(ta, `imcallback_callbacks_total{outcome="accepted"} 2`) || !strings.Contains(tb, `imcallback_callbacks_total{outcome="accepted"} 1`) {
		t.Errorf("counts leak between receivers")
	}
	if a.Incarnation() == b.Incarnation() || !strings.Contains(ta, `imcallback_receiver_info{incarnation="`+a.Incarnation()+`",version="dev"} 1`) {
		t.Errorf("incarnations: %s %s", a.Incarnation(), b.Incarnation())
	}
	for _, rr := range []*running{a, b} {
		if err := rr.stop(t); err != nil {
			t.Fatal(err)
		}
	}
}
