package receiver

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func spoolConfig(t *testing.T, sink string) Config {
	cfg := testConfig(sink)
	cfg.SpoolDir = filepath.Join(t.TempDir(), "spool")
	cfg.SpoolMaxBytes = 64 << 20 // 1 MiB segments: less zero-filling at each start
	return cfg
}

// copyDir copies the spool's files as they are on disk now: what a process killed at this
// moment leaves behind.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "spool")
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func unavailableCount(r *Receiver, u Unavailable) float64 {
	return testutil.ToFloat64(r.metrics.unavailableReasons[u])
}

func TestSpoolDeliversAndEmpties(t *testing.T) {
	s := newSink(t, nil)
	rr := start(t, spoolConfig(t, s.URL))
	const n = 30
	for i := range n {
		if code, body := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 || body != replyOK {
			t.Fatalf("callback %d: %d %s", i, code, body)
		}
	}
	eventually(t, "all delivered", func() bool { return s.count() == n })
	eventually(t, "the spool is empty", func() bool { return rr.spool.events() == 0 })
	_, text := get(t, rr.adminURL+"/metrics")
	for _, want := range []string{"imcallback_spool_events 0", "imcallback_replayed_total 0",
		`imcallback_unavailable_total{reason="spool_full"} 0`, "imcallback_spool_max_bytes 6.7108864e+07"} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	if c := countsOf(rr.Receiver); c.accepted != n || c.delivered != n {
		t.Errorf("counts %+v", c)
	}
}

// TestSpoolReplaysAfterCrash: a receiver whose sink is down accepts callbacks; the files it
// leaves (as a SIGKILL would) are delivered first by the next receiver, with the same
// CloudEvent id and the original receipt time, and counted replayed.
func TestSpoolReplaysAfterCrash(t *testing.T) {
	down := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	cfg := spoolConfig(t, down.URL)
	cfg.ShutdownTimeout = time.Second // the first receiver's cleanup leaves its events
	first := start(t, cfg)
	const n = 20
	for i := range n {
		if code, _ := post(t, first.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 {
			t.Fatalf("callback %d: %d", i, code)
		}
	}
	crashed := copyDir(t, cfg.SpoolDir)

	up := newSink(t, nil)
	cfg2 := testConfig(up.URL)
	cfg2.SpoolDir = crashed
	later := exampleNow.Add(time.Hour)
	cfg2.Now = func() time.Time { return later }
	second := start(t, cfg2)
	eventually(t, "the replayed events are delivered", func() bool { return up.count() >= n })
	if got := gaugeValue(t, second.adminURL, "imcallback_replayed_total"); got != fmt.Sprint(n) {
		t.Errorf("imcallback_replayed_total = %s, want %d", got, n)
	}
	seen := map[string]bool{}
	for _, req := range up.got() {
		body := string(req.body)
		seen[body] = true
		if id := req.header.Get("Ce-Id"); id != EventID("1400000001", CmdBlackListDelete, req.body) {
			t.Errorf("replayed id %s", id)
		}
		if tm := req.header.Get("Ce-Time"); tm != exampleNow.Format(time.RFC3339Nano) {
			t.Errorf("replayed time %s, want the original receipt time %s", tm, exampleNow.Format(time.RFC3339Nano))
		}
		if req.header.Get("Ce-Clientip") != "127.0.0.1" || req.header.Get("Ce-Optplatform") != "RESTAPI" {
			t.Errorf("replayed extensions lost: %v", req.header)
		}
	}
	for i := range n {
		if !seen[pairBody(i)] {
			t.Errorf("event %d not replayed", i)
		}
	}
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	if c := countsOf(second.Receiver); c.delivered != n || c.accepted != 0 {
		t.Errorf("second receiver counts %+v: delivered should be the replayed events", c)
	}
}

func TestSpoolFullAnswers503(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		<-release
		w.WriteHeader(http.StatusAccepted)
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	cfg := spoolConfig(t, s.URL)
	cfg.MaxBodyBytes = 4 << 10
	cfg.SpoolMaxBytes = 16 << 10
	cfg.DeliveryTimeout = 30 * time.Second
	rr := start(t, cfg)
	accepted := 0
	for i := 0; ; i++ {
		code, body := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i))
		if code == 503 {
			if body != fail("receiver spool is full, try again later") {
				t.Fatalf("503 body %s", body)
			}
			break
		}
		if code != 200 || i > 1000 {
			t.Fatalf("callback %d: %d %s", i, code, body)
		}
		accepted++
	}
	if got := unavailableCount(rr.Receiver, UnavailableSpoolFull); got != 1 {
		t.Errorf("unavailable spool_full = %v", got)
	}
	if c := countsOf(rr.Receiver); c.unavailable != 1 || int(c.accepted) != accepted {
		t.Errorf("counts %+v, accepted %d", c, accepted)
	}
	unblock()
	eventually(t, "every accepted callback is delivered", func() bool { return s.count() == accepted })
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolOutageWithADeadLetterSink: with a dead-letter sink, an outage of the sink follows
// Knative's delivery contract: after its retries an event goes to the dead-letter sink,
// whatever the cause; nothing is held and nothing failed.
func TestSpoolOutageWithADeadLetterSink(t *testing.T) {
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	dls := newSink(t, nil)
	cfg := spoolConfig(t, s.URL)
	cfg.DeadLetterSink = dls.URL
	cfg.Retry = 2
	cfg.BackoffDelay = time.Millisecond
	rr := start(t, cfg)
	for i := range 20 {
		if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 {
			t.Fatalf("callback %d: %d", i, code)
		}
	}
	eventually(t, "every event dead-lettered after its retries", func() bool { return dls.count() == 20 })
	if c := countsOf(rr.Receiver); c.deadLettered != 20 || c.failed != 0 || rr.deliverer.held.Load() != 0 {
		t.Errorf("counts %+v, %d held", c, rr.deliverer.held.Load())
	}
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolOutageLosesNothing: without a dead-letter sink, with the sink down far longer
// than retry and backoff allow, nothing is failed: workers hold what they took (no more than
// there are workers), the rest waits in the spool, and once the sink is back everything
// arrives once.
func TestSpoolOutageLosesNothing(t *testing.T) {
	var up atomic.Bool
	var mu sync.Mutex
	taken := map[string]int{}
	s := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		taken[r.Header.Get("Ce-Id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	cfg := spoolConfig(t, s.URL)
	cfg.Retry = 2
	cfg.BackoffDelay = time.Millisecond
	cfg.Workers = 4
	rr := start(t, cfg)
	const n = 300
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 {
				t.Errorf("callback %d: %d", i, code)
			}
		})
		if i%50 == 49 {
			wg.Wait()
		}
	}
	wg.Wait()
	// Well past the retries (3 attempts, a few ms): the held events keep being retried.
	eventually(t, "the workers hold their events", func() bool { return rr.deliverer.held.Load() == int64(cfg.Workers) })
	time.Sleep(300 * time.Millisecond)
	if c := countsOf(rr.Receiver); c.deadLettered != 0 || c.failed != 0 || c.delivered != 0 {
		t.Fatalf("during the outage: %+v", c)
	}
	if inFlight := rr.deliverer.inFlight.Load(); inFlight > int64(cfg.Workers) {
		t.Errorf("%d events in memory, more than the %d workers", inFlight, cfg.Workers)
	}
	if w := rr.queueDepth(); w != float64(n-cfg.Workers) {
		t.Errorf("waiting in the spool: %v, want %d", w, n-cfg.Workers)
	}
	up.Store(true)
	eventually(t, "the backlog is delivered once the sink is back", func() bool {
		return countsOf(rr.Receiver).delivered == n
	})
	// New events are not starved by the backlog.
	if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(n)); code != 200 {
		t.Fatal("callback after the outage refused")
	}
	eventually(t, "a new event is delivered", func() bool { return countsOf(rr.Receiver).delivered == n+1 })
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	if c := countsOf(rr.Receiver); c.deadLettered != 0 || c.failed != 0 || rr.spool.events() != 0 {
		t.Errorf("after the outage: %+v, %d left in the spool", c, rr.spool.events())
	}
	for i := range n + 1 {
		if k := taken[EventID("1400000001", CmdBlackListDelete, []byte(pairBody(i)))]; k != 1 {
			t.Errorf("event %d taken by the sink %d times", i, k)
		}
	}
}

// TestSpoolPoisonEventDeadLettered: a sink that accepts other events but refuses one is up:
// that event is dead-lettered after its retries, as without a spool.
func TestSpoolPoisonEventDeadLettered(t *testing.T) {
	poison := pairBody(-1)
	s := newSink(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Ce-Id"), EventID("1400000001", CmdBlackListDelete, []byte(poison))) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	dls := newSink(t, nil)
	cfg := spoolConfig(t, s.URL)
	cfg.DeadLetterSink = dls.URL
	cfg.Retry = 2
	cfg.BackoffDelay = 5 * time.Millisecond
	rr := start(t, cfg)
	if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), poison); code != 200 {
		t.Fatal("poison callback refused")
	}
	for i := 0; dls.count() == 0; i++ {
		if i > 2000 {
			t.Fatal("the refused event was never dead-lettered while the sink took others")
		}
		post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i))
		time.Sleep(2 * time.Millisecond)
	}
	got := dls.got()[0]
	if string(got.body) != poison || got.header.Get("Ce-Deadletterreason") != "sink responded 500 Internal Server Error" {
		t.Errorf("dead-lettered %s %v", got.body, got.header)
	}
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolShutdownTimeoutLeavesEvents: events the shutdown timeout cuts short stay in the
// spool, logged whole and not counted failed; Serve fails (exit 1); the next start on the
// same directory delivers them.
func TestSpoolShutdownTimeoutLeavesEvents(t *testing.T) {
	down := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	var logs logBuffer
	cfg := spoolConfig(t, down.URL)
	cfg.Workers = 2
	cfg.ShutdownTimeout = 500 * time.Millisecond
	cfg.Logger = jsonLogger(&logs)
	rr := start(t, cfg)
	const n = 10
	for i := range n {
		if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 {
			t.Fatalf("callback %d refused", i)
		}
	}
	err := rr.stop(t)
	if err == nil || !strings.Contains(err.Error(), "10 accepted event(s) were not delivered before the shutdown timeout; they stay in the spool") {
		t.Fatalf("Serve: %v", err)
	}
	if c := countsOf(rr.Receiver); c.failed != 0 || c.delivered != 0 {
		t.Errorf("counts %+v: events left in the spool are not failed", c)
	}
	for i := range n {
		if !strings.Contains(logs.String(), fmt.Sprintf(`"To_Account":"u%d"`, i)) {
			t.Errorf("event %d not logged whole", i)
		}
	}
	if k := strings.Count(logs.String(), `"msg":"event left in the spool`); k != n {
		t.Errorf("%d events logged as left in the spool, want %d", k, n)
	}

	up := newSink(t, nil)
	cfg2 := spoolConfig(t, up.URL)
	cfg2.SpoolDir = cfg.SpoolDir
	again := start(t, cfg2)
	eventually(t, "the left events are delivered after a restart", func() bool { return up.count() == n })
	if err := again.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolDrainingAnswers503(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		<-release // keeps the drain, and so the server, going
		w.WriteHeader(http.StatusAccepted)
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	cfg := spoolConfig(t, s.URL)
	cfg.DeliveryTimeout = 30 * time.Second
	rr := start(t, cfg)
	post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
	testClient.CloseIdleConnections() // the server closes them once shutdown begins
	rr.cancel()
	eventually(t, "callbacks get 503 while draining", func() bool {
		code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), blackListDeleteBody)
		return code == 503
	})
	if got := unavailableCount(rr.Receiver, UnavailableDraining); got < 1 {
		t.Errorf("unavailable draining = %v", got)
	}
	unblock()
	if err := rr.returned(t, 10*time.Second, "Serve did not return"); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolDirInUse(t *testing.T) {
	cfg := spoolConfig(t, "http://127.0.0.1:1")
	newReceiver(t, cfg)
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second receiver on the same spool: %v", err)
	}
}

func TestItemRecordRoundTrip(t *testing.T) {
	it := &item{received: time.Unix(1669872112, 123456789), sdkAppID: "1400000001", command: CmdFriendAdd,
		clientIP: "10.0.0.1", hasClientIP: true, optPlatform: "", hasOptPlatform: true, body: []byte(friendAddBody)}
	got, err := decodeItem(appendItem(nil, it))
	if err != nil {
		t.Fatal(err)
	}
	if !got.received.Equal(it.received) || got.sdkAppID != it.sdkAppID || got.command != it.command ||
		got.clientIP != it.clientIP || !got.hasClientIP || got.optPlatform != "" || !got.hasOptPlatform ||
		string(got.body) != friendAddBody {
		t.Errorf("round trip: %+v", got)
	}
	rec := appendItem(nil, it)
	for cut := range 20 {
		if _, err := decodeItem(rec[:cut]); !errors.Is(err, errBadRecord) {
			t.Errorf("record cut at %d decoded: %v", cut, err)
		}
	}
}
