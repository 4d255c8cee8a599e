package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Three commands, each to its own sink: the default route and two --route flags.
var laneCommands = []string{"Sns.CallbackBlackListDelete", "State.StateChange", "Group.CallbackAfterNewMemberJoin"}

func laneBody(command string, i int) string {
	if command == "Sns.CallbackBlackListDelete" {
		return spoolBody(i)
	}
	return `{"CallbackCommand":"` + command + `","Seq":` + strconv.Itoa(i) + `}`
}

// laneSink records what it took and each event's latency from its receipt (ce-time).
type laneSink struct {
	*httptest.Server
	mu        sync.Mutex
	taken     map[string]int // body -> deliveries
	latencies []time.Duration
	respond   func(w http.ResponseWriter, r *http.Request) bool // false: refused, not taken
}

func newLaneSink(t *testing.T, respond func(w http.ResponseWriter, r *http.Request) bool) *laneSink {
	s := &laneSink{taken: map[string]int{}, respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if s.respond != nil && !s.respond(w, r) {
			return
		}
		at, err := time.Parse(time.RFC3339Nano, r.Header.Get("Ce-Time"))
		s.mu.Lock()
		s.taken[string(b)]++
		if err == nil {
			s.latencies = append(s.latencies, time.Since(at))
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *laneSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.taken)
}

func (s *laneSink) p99() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := slices.Clone(s.latencies)
	slices.Sort(l)
	if len(l) == 0 {
		return 0
	}
	return l[len(l)*99/100]
}

// offer posts perCommand callbacks of each command, paced evenly over d, from up to 32 at
// once; it returns the bodies answered 200 OK by command and the other statuses seen.
func offer(t *testing.T, addr string, perCommand int, d time.Duration) (map[string][]string, map[int]int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	ok := map[string][]string{}
	other := map[int]int{}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	begin := time.Now()
	n := perCommand * len(laneCommands)
	for k := range n {
		time.Sleep(time.Until(begin.Add(d * time.Duration(k) / time.Duration(n))))
		cmd, i := laneCommands[k%len(laneCommands)], k/len(laneCommands)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			body := laneBody(cmd, i)
			resp, err := client.Post("http://"+addr+"/im/callback?SdkAppid=1400000001&CallbackCommand="+cmd, "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			if resp.StatusCode == http.StatusOK {
				ok[cmd] = append(ok[cmd], body)
			} else {
				other[resp.StatusCode]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return ok, other
}

// laneRun is what the two healthy sinks saw in one run.
type laneRun struct {
	atLoadEnd [2]int           // events taken by the end of the load and half a second more
	p99       [2]time.Duration // latency from receipt to the sink
}

// runLanes runs a receiver whose third command goes to bad (nil: a healthy sink too) under
// load, and returns what the healthy sinks saw; every callback must get 200 OK and every
// healthy one arrive.
func runLanes(t *testing.T, spool bool, bad func(t *testing.T) string) laneRun {
	t.Helper()
	healthy := [2]*laneSink{newLaneSink(t, nil), newLaneSink(t, nil)}
	third := ""
	if bad != nil {
		third = bad(t)
	} else {
		third = newLaneSink(t, nil).URL
	}
	args := []string{"--sink=" + healthy[0].URL, "--route=" + laneCommands[1] + "=" + healthy[1].URL,
		"--route=" + laneCommands[2] + "=" + third, "--workers=8", "--delivery-timeout=300ms", "--shutdown-timeout=2s"}
	if spool {
		args = append(args, "--spool-dir="+t.TempDir(), "--spool-max-bytes=64Mi")
	}
	p := startProcess(t, nil, args...)
	addr := p.addr(t)
	const perCommand, load = 120, 2 * time.Second
	ok, other := offer(t, addr, perCommand, load)
	if len(other) > 0 {
		t.Errorf("callbacks refused: %v (status: count)", other)
	}
	time.Sleep(500 * time.Millisecond)
	var run laneRun
	for i, s := range healthy {
		run.atLoadEnd[i] = s.count()
	}
	deadline := time.Now().Add(10 * time.Second)
	for i, s := range healthy {
		for s.count() < len(ok[laneCommands[i]]) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got, want := s.count(), len(ok[laneCommands[i]]); got != want || want != perCommand {
			t.Errorf("healthy sink %d took %d of %d accepted (%d offered)", i, got, want, perCommand)
		}
		run.p99[i] = s.p99()
	}
	if bad != nil {
		// Nothing of the bad route's is lost or failed: all of it waits in its lane.
		if got := p.metric(t, `imcallback_events_total{result="failed"}`); got != 0 {
			t.Errorf("failed = %v while the bad sink's events should be held", got)
		}
		if got := p.metric(t, `imcallback_route_queue_depth{sink="`+sinkLabelOf(third)+`"}`); got != float64(len(ok[laneCommands[2]])) {
			t.Errorf("the bad route's lane holds %v, want its %d accepted events", got, len(ok[laneCommands[2]]))
		}
	}
	code := p.terminate(t)
	if bad == nil && code != 0 || bad != nil && code != 1 {
		t.Errorf("exit code %d:\n%s", code, p.log())
	}
	return run
}

func sinkLabelOf(u string) string { return strings.TrimSuffix(u, "/") }

// TestProcessDeadRouteDoesNotStallTheOthers: one route's sink refuses connections, hangs or
// answers 503; the default sink and another route keep their delivery rate (within 20% of an
// all-healthy run) and latency, and no callback gets 503, with and without a spool. Before
// lanes, within a second every worker held the bad route's events and the others starved.
func TestProcessDeadRouteDoesNotStallTheOthers(t *testing.T) {
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + l.Addr().String()
		_ = l.Close()
		return u
	}
	hanging := func(t *testing.T) string {
		return newLaneSink(t, func(_ http.ResponseWriter, r *http.Request) bool {
			<-r.Context().Done()
			return false
		}).URL
	}
	unavailable := func(t *testing.T) string {
		return newLaneSink(t, func(w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}).URL
	}
	for _, spool := range []bool{true, false} {
		name := "memory"
		if spool {
			name = "spool"
		}
		t.Run(name, func(t *testing.T) {
			base := runLanes(t, spool, nil)
			t.Logf("all healthy: taken by the load's end %v, p99 %v", base.atLoadEnd, base.p99)
			bads := map[string]func(*testing.T) string{"refused": refused, "hanging": hanging, "503": unavailable}
			if !spool {
				bads = map[string]func(*testing.T) string{"hanging": hanging}
			}
			for kind, bad := range bads {
				t.Run(kind, func(t *testing.T) {
					got := runLanes(t, spool, bad)
					t.Logf("one route %s: taken by the load's end %v, p99 %v", kind, got.atLoadEnd, got.p99)
					for i := range 2 {
						if float64(got.atLoadEnd[i]) < 0.8*float64(base.atLoadEnd[i]) {
							t.Errorf("healthy sink %d took %d by the load's end, all healthy %d: more than 20%% slower", i, got.atLoadEnd[i], base.atLoadEnd[i])
						}
						// Loose for a shared machine and -race (a neighbour stalled one run by 0.7 s; the
						// bench measures the 20%):
						// before lanes the p99 was seconds.
						if limit := base.p99[i]*12/10 + time.Second; got.p99[i] > limit {
							t.Errorf("healthy sink %d: p99 %v, all healthy %v", i, got.p99[i], base.p99[i])
						}
					}
				})
			}
		})
	}
}

// TestProcessRecoveryWithTransientErrors: without a dead-letter sink, three sinks in trouble
// at first (every other request 503, hanging beyond the delivery timeout, rate-limited with
// 429 and Retry-After); every callback answered OK is delivered and none is failed, however
// many attempts it takes. Before, an event whose retries ran out while its sink took others
// was failed for good (48 lost of 5 s of every other 503).
func TestProcessRecoveryWithTransientErrors(t *testing.T) {
	start := time.Now()
	var flip atomic.Int64
	flaky := newLaneSink(t, func(w http.ResponseWriter, _ *http.Request) bool {
		if time.Since(start) < 3*time.Second && flip.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	})
	hang := newLaneSink(t, func(_ http.ResponseWriter, r *http.Request) bool {
		if time.Since(start) < 2*time.Second {
			<-r.Context().Done()
			return false
		}
		return true
	})
	// 30 a second, offered 60: the rest gets 429 with Retry-After.
	var bucketMu sync.Mutex
	tokens, last := 30.0, time.Now()
	limited := newLaneSink(t, func(w http.ResponseWriter, _ *http.Request) bool {
		bucketMu.Lock()
		defer bucketMu.Unlock()
		now := time.Now()
		tokens = min(30, tokens+30*now.Sub(last).Seconds())
		last = now
		if tokens < 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return false
		}
		tokens--
		return true
	})
	for _, spool := range []bool{true, false} {
		args := []string{"--sink=" + flaky.URL, "--route=" + laneCommands[1] + "=" + hang.URL,
			"--route=" + laneCommands[2] + "=" + limited.URL, "--workers=8", "--delivery-timeout=300ms", "--shutdown-timeout=5s"}
		if spool {
			args = append(args, "--spool-dir="+t.TempDir(), "--spool-max-bytes=64Mi")
		}
		start = time.Now()
		p := startProcess(t, nil, args...)
		ok, other := offer(t, p.addr(t), 120, 2*time.Second)
		if len(other) > 0 {
			t.Errorf("callbacks refused: %v", other)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for i, s := range []*laneSink{flaky, hang, limited} {
			for s.count() < len(ok[laneCommands[i]]) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			if got := s.count(); got != len(ok[laneCommands[i]]) {
				t.Errorf("spool %v: sink %d took %d of %d callbacks answered OK", spool, i, got, len(ok[laneCommands[i]]))
			}
		}
		cancel()
		if got := p.metric(t, `imcallback_events_total{result="failed"}`); got != 0 {
			t.Errorf("spool %v: %v events failed", spool, got)
		}
		if code := p.terminate(t); code != 0 {
			t.Errorf("spool %v: exit code %d:\n%s", spool, code, p.log())
		}
		for _, s := range []*laneSink{flaky, hang, limited} {
			s.mu.Lock()
			clear(s.taken)
			s.latencies = nil
			s.mu.Unlock()
		}
	}
}
