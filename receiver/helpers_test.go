package receiver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Tencent's published signature example.
const (
	exampleToken       = "xxxxyyyy"
	exampleRequestTime = "1669872112"
	exampleSign        = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
	testAppID          = 1400000001
	testPath           = "/im/callback"
)

// exampleNow is the clock of the tests: the moment of Tencent's example.
var exampleNow = time.Unix(1669872112, 0).UTC()

const (
	blackListDeleteBody = `{"CallbackCommand": "Sns.CallbackBlackListDelete", "PairList": [{"From_Account": "id", "To_Account": "id1"}, {"From_Account": "id", "To_Account": "id2"}, {"From_Account": "id", "To_Account": "id3"}]}`
	blackListAddBody    = `{"CallbackCommand": "Sns.CallbackBlackListAdd", "PairList": [{"From_Account": "id", "To_Account": "id1"}, {"From_Account": "id", "To_Account": "id2"}]}`
	friendDeleteBody    = `{"CallbackCommand": "Sns.CallbackFriendDelete", "PairList": [{"From_Account": "id", "To_Account": "id1"}]}`
	friendAddBody       = `{"CallbackCommand": "Sns.CallbackFriendAdd", "PairList": [{"From_Account": "id", "To_Account": "id1", "Initiator_Account": "id"}], "ClientCmd": "friend_add", "Admin_Account": "", "ForceFlag": 1}`
)

var allSns = []string{CmdBlackListDelete, CmdBlackListAdd, CmdFriendDelete, CmdFriendAdd}

// snsBody is a valid example body per command.
var snsBody = map[string]string{
	CmdBlackListDelete: blackListDeleteBody,
	CmdBlackListAdd:    blackListAddBody,
	CmdFriendDelete:    friendDeleteBody,
	CmdFriendAdd:       friendAddBody,
}

// query builds a callback query; pairs are key, value, ... and are added in order.
func query(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(pairs[i]) + "=" + url.QueryEscape(pairs[i+1]))
	}
	return b.String()
}

// signedQuery is the query IM sends for command with the example signature.
func signedQuery(command string) string {
	return query("SdkAppid", "1400000001", "CallbackCommand", command, "contenttype", "json",
		"ClientIP", "127.0.0.1", "OptPlatform", "RESTAPI", "RequestTime", exampleRequestTime, "Sign", exampleSign)
}

// testConfig is a Config for tests: example clock and token, fast backoff, no shutdown delay.
func testConfig(sink string) Config {
	cfg := DefaultConfig()
	cfg.SdkAppID = testAppID
	cfg.Path = testPath
	cfg.Sink = sink
	cfg.Token = exampleToken
	cfg.Now = func() time.Time { return exampleNow }
	cfg.BackoffDelay = time.Millisecond
	cfg.ShutdownDelay = 0
	cfg.ShutdownTimeout = 20 * time.Second
	cfg.Workers = 4
	cfg.Logger = slog.New(slog.DiscardHandler)
	// Most tests send the same signed example again and again; the replay tests turn it on.
	cfg.ReplayWindowSize = -1
	return cfg
}

func newReceiver(t testing.TB, cfg Config) *Receiver {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// running is a receiver served on loopback listeners.
type running struct {
	*Receiver
	url, adminURL string
	cancel        context.CancelFunc
	done          chan error
}

func start(t testing.TB, cfg Config) *running {
	t.Helper()
	r := newReceiver(t, cfg)
	cb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{Receiver: r, cancel: cancel, done: make(chan error, 1),
		url: "http://" + cb.Addr().String(), adminURL: "http://" + adm.Addr().String()}
	if cfg.TLSCertFile != "" {
		rr.url = "https://" + cb.Addr().String()
	}
	go func() { rr.done <- r.Serve(ctx, cb, adm) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-rr.done:
			if err != nil {
				t.Logf("Serve at cleanup: %v", err) // tests that care call stop and check it
			}
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return rr
}

// stop cancels Serve and returns its result. Like the manager, it scrapes /metrics once
// after the drain when the receiver was scraped before (the receiver waits for that).
func (rr *running) stop(t testing.TB) error {
	t.Helper()
	rr.cancel()
	timeout := time.After(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	scraped := false
	for {
		select {
		case err := <-rr.done:
			rr.done <- err // for Cleanup
			return err
		case <-tick.C:
			if !scraped && rr.drained.Load() && rr.scraped.Load() {
				get(t, rr.adminURL+"/metrics")
				scraped = true
			}
		case <-timeout:
			t.Fatal("Serve did not return within 30s")
			return nil
		}
	}
}

// returned waits up to within for Serve's result without scraping, and fails the test with
// msg if Serve is still running then.
func (rr *running) returned(t testing.TB, within time.Duration, msg string) error {
	t.Helper()
	select {
	case err := <-rr.done:
		rr.done <- err // for Cleanup
		return err
	case <-time.After(within):
		t.Fatal(msg)
		return nil
	}
}

var testClient = &http.Client{Timeout: 10 * time.Second}

// post sends a callback and returns status and body.
func post(t testing.TB, base, rawQuery, body string) (int, string) {
	t.Helper()
	resp, err := testClient.Post(base+testPath+"?"+rawQuery, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := testClient.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or 15s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counts reads the receiver's counters.
type counts struct {
	accepted, rejected, ignored, unavailable float64
	duplicate                                float64
	delivered, deadLettered, failed, retries float64
	pairs                                    float64
}

func countsOf(r *Receiver) counts {
	m := r.metrics
	return counts{
		accepted: testutil.ToFloat64(m.accepted), rejected: testutil.ToFloat64(m.rejected),
		ignored: testutil.ToFloat64(m.ignored), unavailable: testutil.ToFloat64(m.unavailable),
		duplicate: testutil.ToFloat64(m.duplicate),
		delivered: testutil.ToFloat64(m.delivered), deadLettered: testutil.ToFloat64(m.deadLettered),
		failed: testutil.ToFloat64(m.failed), retries: testutil.ToFloat64(m.retries),
		pairs: testutil.ToFloat64(m.pairs),
	}
}

// sink is a recording httptest CloudEvents sink.
type sink struct {
	*httptest.Server
	mu       sync.Mutex
	requests []sinkRequest
	// respond decides the reply to the n-th request (0-based); nil means 202.
	respond func(n int, w http.ResponseWriter, r *http.Request)
}

type sinkRequest struct {
	at     time.Time
	path   string
	remote string
	header http.Header
	body   []byte
}

func newSink(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *sink {
	s := &sink{respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.requests)
		s.requests = append(s.requests, sinkRequest{time.Now(), r.URL.Path, r.RemoteAddr, r.Header.Clone(), body})
		s.mu.Unlock()
		if s.respond != nil {
			s.respond(n, w, r)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) got() []sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkRequest(nil), s.requests...)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// deadURL is a URL nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// logBuffer is a concurrency-safe log destination.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func jsonLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func parseQueryStd(raw string) url.Values {
	v, _ := url.ParseQuery(raw)
	return v
}

// takeQueued takes one accepted event from the in-memory queue (a Receiver not serving),
// from whichever lane has one, waiting up to 5 s.
func takeQueued(t testing.TB, r *Receiver) *item {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for lane, c := range r.mem.lanes {
			select {
			case it := <-c:
				r.mem.Done(Entry{Lane: lane, Item: it})
				return it
			default:
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("nothing queued")
	return nil
}

// dropQueued empties the in-memory queue of a Receiver not serving.
func dropQueued(r *Receiver) {
	for lane, c := range r.mem.lanes {
		for len(c) > 0 {
			r.mem.Done(Entry{Lane: lane, Item: <-c})
		}
	}
}
