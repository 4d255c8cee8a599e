package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// deliverer is the receiver's third part: it takes the Queue's entries lane by lane, each lane
// with its own workers, and sends each event to its target, with retries, holding through an
// outage, and the dead-letter sink. It knows nothing of the intake; the Queue is all they share.
//
// Retries (README, "Delivery"): network errors, timeouts, 5xx, 404, 408, 409 and 429 are
// transient and retried (honouring Retry-After); other statuses (3xx, the other 4xx) are this
// event's refusal, which retrying cannot change. With a dead-letter sink, an event goes there
// after --retry retries, or at once when refused (Knative's delivery contract). Without one, a
// transient failure never ends a live event: after --retry retries it is held, retried at
// most maxOutageBackoff apart (jittered, or the sink's Retry-After), until the target takes it
// or the shutdown timeout ends the process; only a refusal fails it. Each target's attempts go
// through its pacer, so a target coming back from an outage gets its backlog at the pace it
// accepts (pacer.go).
type deliverer struct {
	*eventMaker
	cfg       *Config
	log       *slog.Logger
	q         Queue
	durable   bool     // entries outlive the process: a delivery cut short stays in the store
	routes    []*route // lane i < len(routes) is routes[i]'s; later lanes hold an earlier process's entries
	targetOf  func(command string) *route
	dls       *route // nil without a dead-letter sink
	transport *http.Transport
	metrics   *metrics

	inFlight    atomic.Int64
	held        atomic.Int64 // events held through their target's outage
	failedCount atomic.Int64
	leftCount   atomic.Int64 // events left in the store at the shutdown timeout
	workers     sync.WaitGroup
}

// start starts Workers workers on every lane of the queue; they run until the queue is
// stopped and drained, or ctx (the shutdown timeout) ends.
func (d *deliverer) start(ctx context.Context) {
	for lane := range d.q.Lanes() {
		for range d.cfg.Workers {
			d.workers.Go(func() { d.worker(ctx, lane) })
		}
	}
}

// wait returns a channel closed once every worker has returned.
func (d *deliverer) wait() <-chan struct{} {
	done := make(chan struct{})
	go func() { d.workers.Wait(); close(done) }()
	return done
}

// worker delivers one lane's entries in order. An entry leaves the queue once delivered,
// dead-lettered or counted failed; one whose delivery the shutdown timeout cut short stays in
// a durable store for the next start (logged whole).
func (d *deliverer) worker(ctx context.Context, lane int) {
	for {
		e, err := d.q.Take(ctx, lane)
		if err != nil {
			if !errors.Is(err, ErrStopped) && ctx.Err() == nil {
				d.log.Error("the queue failed; this lane's worker stops", slog.Int("lane", lane), slog.Any("error", err))
			}
			return
		}
		d.inFlight.Add(1)
		finished := d.deliver(ctx, e)
		d.inFlight.Add(-1)
		if finished {
			d.q.Done(e)
		}
	}
}

// finishRest handles, after the workers returned at the shutdown timeout, what the stopped
// queue still holds: a durable store keeps it (each logged whole, counted left); the memory
// queue loses it (each logged whole, counted failed).
func (d *deliverer) finishRest() {
	for lane := range d.q.Lanes() {
		for {
			e, err := d.q.Take(context.Background(), lane)
			if err != nil {
				break
			}
			switch {
			case e.Item == nil:
				d.leftCount.Add(1)
				d.log.Error("event left in the queue", slog.String("reason", "record cannot be decoded"), slog.Any("record", e.Raw))
			case d.durable:
				d.leave(e.Item, "shutdown timeout reached before delivery")
			default:
				ev := d.newEvent(e.Item)
				d.fail(&ev, e.Item, "shutdown timeout reached before delivery")
				d.q.Done(e)
			}
		}
	}
}

// deliver sends one event to its target, then to the dead-letter sink, and records the
// result. ctx is cancelled only when the shutdown timeout runs out. It returns false when,
// with a durable store, that cut the delivery short: the entry stays, logged whole, uncounted.
func (d *deliverer) deliver(ctx context.Context, e Entry) bool {
	it := e.Item
	if it == nil {
		d.failedCount.Add(1)
		d.metrics.failed.Inc()
		d.log.Error("event not delivered", slog.String("reason", errBadRecord.Error()), slog.Any("record", e.Raw))
		return true
	}
	ev := d.newEvent(it)
	rt := d.targetOf(it.command)
	if rt == nil { // only an event replayed under flags that no longer route its command
		d.fail(&ev, it, "no route for "+it.command+" under the current flags")
		return true
	}
	hold := func() { d.q.Hold(e) }
	// With a dead-letter sink, the sink's outage sends events there after their retries, as
	// Knative's delivery contract says; without one, an outage must not fail them: they are
	// held until the sink is back.
	attempts, why := d.send(ctx, rt, &ev, d.metrics.attemptSink, d.dls == nil, hold)
	if why == "" {
		d.metrics.delivered.Inc()
		rt.delivered.Inc()
		d.metrics.deliveryDelivered.Observe(time.Since(it.received).Seconds())
		return true
	}
	if d.durable && ctx.Err() != nil {
		d.leave(it, why)
		return false
	}
	if d.dls != nil && ctx.Err() == nil {
		ev.SetExtension(ExtDeadLetterReason, why)
		ev.SetExtension(ExtDeadLetterAttempts, int32(attempts))
		dlAttempts, dlWhy := d.send(ctx, d.dls, &ev, d.metrics.attemptDLS, true, hold)
		if dlWhy == "" {
			d.metrics.deadLettered.Inc()
			rt.deadLettered.Inc()
			d.metrics.deliveryDeadLettered.Observe(time.Since(it.received).Seconds())
			d.log.Warn("event dead-lettered", slog.String("id", ev.ID()), slog.String("type", ev.Type()),
				slog.String("reason", why), slog.Int("attempts", attempts))
			return true
		}
		if d.durable && ctx.Err() != nil {
			d.leave(it, "dead-letter sink: "+dlWhy)
			return false
		}
		rt.failed.Inc()
		d.fail(&ev, it, fmt.Sprintf("sink: %s after %d attempt(s); dead-letter sink: %s after %d attempt(s)", why, attempts, dlWhy, dlAttempts))
		return true
	}
	rt.failed.Inc()
	d.fail(&ev, it, fmt.Sprintf("%s after %d attempt(s)", why, attempts))
	return true
}

// fail counts an undelivered event and logs it whole (structured CloudEvent JSON), so it can
// be replayed by hand.
func (d *deliverer) fail(ev *event.Event, it *item, why string) {
	d.failedCount.Add(1)
	d.metrics.failed.Inc()
	d.metrics.deliveryFailed.Observe(time.Since(it.received).Seconds())
	d.log.Error("event not delivered", slog.String("id", ev.ID()), slog.String("reason", why),
		slog.Any("event", wholeEvent(ev, it)))
}

// leave logs an event whose delivery the shutdown timeout cut short; it stays in the store.
func (d *deliverer) leave(it *item, why string) {
	d.leftCount.Add(1)
	ev := d.newEvent(it)
	d.log.Error("event left in the spool: not delivered before the shutdown timeout; the next start on this spool delivers it",
		slog.String("id", ev.ID()), slog.String("reason", why), slog.Any("event", wholeEvent(&ev, it)))
}

func wholeEvent(ev *event.Event, it *item) json.RawMessage {
	whole, err := json.Marshal(ev)
	if err != nil { // cannot happen for the events built here; keep the data anyway
		whole, _ = json.Marshal(map[string]string{"id": ev.ID(), "type": ev.Type(), "data": string(it.body)})
	}
	return whole
}

// send makes attempts to deliver ev to rt until one succeeds, the target refuses it (a status
// retrying cannot change), ctx ends, or, unless holdAfterRetries, 1+Retry attempts failed.
// It returns the number of attempts and "" on success, or why the last attempt failed. With
// holdAfterRetries (the event has nowhere else to go) a transient failure after the last
// retry holds the event: hold is called, and the next attempt comes after a jittered
// backoff capped at maxOutageBackoff (longer only for the sink's Retry-After), or as soon as
// the target takes another event.
func (d *deliverer) send(ctx context.Context, rt *route, ev *event.Event, obs interface{ Observe(float64) }, holdAfterRetries bool, hold func()) (int, string) {
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil || !rt.pace.acquire(ctx) {
			return attempt - 1, "shutdown timeout reached before delivery"
		}
		start := time.Now()
		status, retryAfter, err := d.attempt(ctx, rt.url, ev)
		end := time.Now()
		obs.Observe(end.Sub(start).Seconds())
		if err == nil && status >= 200 && status < 300 {
			rt.pace.release(true, false)
			rt.health.accepted()
			return attempt, ""
		}
		why, retry, overload := classify(status, err)
		rt.pace.release(false, overload && ctx.Err() == nil)
		if ctx.Err() != nil {
			return attempt, "shutdown timeout reached: " + why
		}
		if !retry || (attempt > d.cfg.Retry && !holdAfterRetries) {
			return attempt, why
		}
		// The sink's Retry-After, when longer than the backoff, wins (up to MaxRetryAfter).
		asked := min(retryAfter, d.cfg.MaxRetryAfter)
		if attempt <= d.cfg.Retry {
			if !sleep(ctx, max(d.backoff(attempt), asked)) {
				return attempt, "shutdown timeout reached: " + why
			}
		} else {
			// Jittered, so that the held events' attempts spread out and the first one after
			// the target is back (which wakes all of them, through the pacer) comes soon.
			w := min(d.backoff(attempt), maxOutageBackoff)
			w = max(w/2+rand.N(w/2+1), asked)
			hold()
			rt.held.Add(1)
			d.held.Add(1)
			woke := rt.health.hold(ctx, w)
			d.held.Add(-1)
			rt.held.Add(-1)
			if !woke {
				return attempt, "shutdown timeout reached: " + why
			}
		}
		d.metrics.retries.Inc()
	}
}

// classify describes a failed attempt, whether it is worth retrying (network errors, timeouts,
// 5xx, 404, 408, 409 and 429 are; other statuses are the sink refusing this event), and
// whether it says the target is overloaded or down (network errors, timeouts, 5xx, 429): the
// pacer then lets fewer attempts through at once.
func classify(status int, err error) (why string, retry, overload bool) {
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return "timeout: " + err.Error(), true, true
		}
		return "network error: " + err.Error(), true, true
	}
	why = "sink responded " + strconv.Itoa(status) + " " + http.StatusText(status)
	switch {
	case status >= 500, status == http.StatusTooManyRequests:
		return why, true, true
	case status == http.StatusNotFound, status == http.StatusRequestTimeout, status == http.StatusConflict:
		return why, true, false
	}
	return why, false, false
}

// backoff is the delay before retry n (n >= 1).
func (d *deliverer) backoff(n int) time.Duration {
	b := d.cfg.BackoffDelay
	if d.cfg.BackoffPolicy == BackoffLinear {
		return b * time.Duration(n)
	}
	for i := 0; i < n; i++ {
		if b > maxBackoff/2 {
			return maxBackoff
		}
		b *= 2
	}
	return b
}

// maxBackoff only keeps the exponential from overflowing.
const maxBackoff = 24 * time.Hour

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt POSTs ev once, encoded by the CloudEvents SDK in binary mode.
func (d *deliverer) attempt(ctx context.Context, target *url.URL, ev *event.Event) (int, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, d.cfg.DeliveryTimeout)
	defer cancel()
	req := (&http.Request{
		Method:     http.MethodPost,
		URL:        target,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, 12),
		Host:       target.Host,
	}).WithContext(actx)
	if err := cehttp.WriteRequest(d.bindingCtx, binding.ToMessage(ev), req); err != nil {
		return 0, 0, fmt.Errorf("encoding the event: %w", err)
	}
	req.Header["User-Agent"] = userAgent
	// The transport directly, not an http.Client: a sink is an endpoint, not a site, so
	// redirects are not followed (a 3xx is a failed attempt), and the client's per-request
	// header copy for redirects is saved.
	resp, err := d.transport.RoundTrip(req)
	if err != nil {
		return 0, 0, err
	}
	// Read what the sink said (bounded) so the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), time.Now()), nil
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxBackoff/time.Second) {
			return maxBackoff
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func newTransport(workers int) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: workers + 1, // one kept-alive connection per worker and target
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
		DisableCompression:  true,
	}
}
