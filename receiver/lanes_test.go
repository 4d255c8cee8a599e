package receiver

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imcallback/callback-operator/receiver/spool"
)

// TestLanesAreSpooledApart: each sink has its own segment log under DIR/lanes; a lane full
// refuses only its own commands (503 spool_full), while the other route's are accepted.
func TestLanesAreSpooledApart(t *testing.T) {
	down := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	up := newSink(t, nil)
	cfg := spoolConfig(t, down.URL)
	cfg.Routes = []Route{{Commands: []string{CmdFriendAdd}, Sink: up.URL}}
	cfg.MaxBodyBytes = 4 << 10
	cfg.SpoolMaxBytes = 128 << 10 // 64 KiB per lane
	cfg.ShutdownTimeout = time.Second
	rr := start(t, cfg)
	refused := 0
	for i := 0; i < 2000 && refused == 0; i++ {
		if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i)); code == 503 {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("the dead sink's lane never filled")
	}
	for i := range 50 {
		if code, body := post(t, rr.url, signedQuery(CmdFriendAdd), friendAddBody); code != 200 {
			t.Fatalf("callback %d of the healthy route beside a full lane: %d %s", i, code, body)
		}
	}
	if got := unavailableCount(rr.Receiver, UnavailableSpoolFull); got != 1 {
		t.Errorf("spool_full = %v, want 1", got)
	}
	// One lane full is not "cannot accept".
	if code, body := get(t, rr.adminURL+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s with one lane full and the other accepting", code, body)
	}
	eventually(t, "the healthy route's events are delivered", func() bool { return up.count() >= 1 })
	ents, err := os.ReadDir(filepath.Join(cfg.SpoolDir, lanesDir))
	if err != nil || len(ents) != 2 {
		t.Fatalf("lane directories: %v %v", ents, err)
	}
}

// TestDeliverDrainsWithoutIntake: Deliver runs the queue and delivery alone on a spool an
// earlier process left (a retained volume, a lane of a removed route): it delivers what is
// there where the current flags route it, and returns nil once it is empty.
func TestDeliverDrainsWithoutIntake(t *testing.T) {
	down := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	cfg := spoolConfig(t, down.URL)
	cfg.ShutdownTimeout = time.Second
	first := start(t, cfg)
	const n = 30
	for i := range n {
		if code, _ := post(t, first.url, signedQuery(CmdBlackListDelete), pairBody(i)); code != 200 {
			t.Fatalf("callback %d: %d", i, code)
		}
	}
	_ = first.stop(t) // the events stay in the spool (exit 1)

	up := newSink(t, nil)
	cfg2 := testConfig(up.URL) // another sink: the old lane is delivered where the command routes now
	cfg2.SpoolDir = cfg.SpoolDir
	r := newReceiver(t, cfg2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Deliver(ctx); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if up.count() != n {
		t.Errorf("delivered %d of %d", up.count(), n)
	}
	// Opened again, the spool holds nothing, and the drained lane of the old sink is gone.
	again := newReceiver(t, cfg2)
	defer func() { _ = again.queue.Close() }()
	if again.damage.Events != 0 || again.queue.Lanes() != 1 {
		t.Errorf("after Deliver: %d events in %d lanes", again.damage.Events, again.queue.Lanes())
	}
	if ents, _ := os.ReadDir(filepath.Join(cfg.SpoolDir, lanesDir)); len(ents) != 1 {
		t.Errorf("lane directories after Deliver: %v", ents)
	}
}

// TestSpoolWrittenBeforeLanesIsDelivered: a spool directory of the earlier layout (one
// segment log in the directory itself, as a receiver before lanes left it) is delivered,
// with its events' original ids, and its files removed once done.
func TestSpoolWrittenBeforeLanesIsDelivered(t *testing.T) {
	dir := t.TempDir()
	old, _, err := spool.Open(dir, spool.Options{MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const n = 25
	for i := range n {
		it := &item{received: exampleNow, sdkAppID: "1400000001", command: CmdBlackListDelete, body: []byte(pairBody(i))}
		if err := old.Append(appendItem(nil, it)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	up := newSink(t, nil)
	cfg := testConfig(up.URL)
	cfg.SpoolDir = dir
	rr := start(t, cfg)
	eventually(t, "the old layout's events are delivered", func() bool { return up.count() == n })
	for _, req := range up.got() {
		if id := req.header.Get("Ce-Id"); id != EventID("1400000001", CmdBlackListDelete, req.body) {
			t.Errorf("id %s", id)
		}
	}
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(segs) != 0 {
		t.Errorf("the old layout's segments are left: %v", segs)
	}
}

// TestReadyzFollowsAcceptance: while the only lane refuses callbacks for want of room,
// /readyz fails (the Service should send IM elsewhere); once a callback is accepted again it
// is ready. Before, /readyz said ok while every callback got 503.
func TestReadyzFollowsAcceptance(t *testing.T) {
	release := make(chan struct{})
	s := newSink(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	cfg := testConfig(s.URL)
	cfg.QueueSize, cfg.Workers = 1, 1
	cfg.DeliveryTimeout = 10 * time.Second
	rr := start(t, cfg)
	if code, _ := get(t, rr.adminURL+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d at start", code)
	}
	codes := map[int]int{}
	for i := range 4 {
		code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(i))
		codes[code]++
		if i == 0 {
			eventually(t, "the worker holds the first", func() bool { return s.count() == 1 })
		}
	}
	if codes[503] == 0 {
		t.Fatalf("replies %v: the queue never filled", codes)
	}
	if code, body := get(t, rr.adminURL+"/readyz"); code != 503 || !strings.Contains(body, "queue is full") {
		t.Errorf("/readyz = %d %s while every callback gets 503", code, body)
	}
	close(release)
	eventually(t, "the queue drains", func() bool { return rr.queueDepth() == 0 })
	if code, _ := post(t, rr.url, signedQuery(CmdBlackListDelete), pairBody(99)); code != 200 {
		t.Fatalf("after the drain: %d", code)
	}
	if code, body := get(t, rr.adminURL+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s once callbacks are accepted again", code, body)
	}
}
