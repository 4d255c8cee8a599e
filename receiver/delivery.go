package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/imcallback/callback-operator/internal/version"
)

// EventTypePrefix prefixes the CallbackCommand in the CloudEvent type.
const EventTypePrefix = "com.tencentcloud.im."

// Names of the CloudEvent extensions the receiver sets.
const (
	ExtSdkAppID           = "sdkappid"
	ExtClientIP           = "clientip"
	ExtOptPlatform        = "optplatform"
	ExtDeadLetterReason   = "deadletterreason"
	ExtDeadLetterAttempts = "deadletterattempts"
)

// item is an accepted callback waiting for delivery.
type item struct {
	received                                 time.Time
	sdkAppID, command, clientIP, optPlatform string
	hasClientIP, hasOptPlatform              bool
	body                                     []byte
}

// itemOf is the callback of a request that passed every check, received at received.
func itemOf(p *callbackParams, received time.Time, body []byte) item {
	return item{
		received:       received,
		sdkAppID:       p.sdkAppID,
		command:        p.command,
		clientIP:       p.clientIP,
		optPlatform:    p.optPlatform,
		hasClientIP:    p.hasClientIP,
		hasOptPlatform: p.hasOptPlatform,
		body:           body,
	}
}

// EventID is the id of the CloudEvent made from a callback: the first 32 hex digits of
// SHA-256(SdkAppid "\n" CallbackCommand "\n" body). IM redelivering a callback gives the same
// id; so do two identical actions (block, unblock, block again), which is why consumers should
// deduplicate on it only within a short window.
func EventID(sdkAppID, command string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(sdkAppID))
	h.Write([]byte{'\n'})
	h.Write([]byte(command))
	h.Write([]byte{'\n'})
	h.Write(body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// newEvent builds the CloudEvent of an accepted callback (README, "The events"). The context is
// filled in directly rather than through the setters, which would re-parse the constant
// source and re-validate the constant names for every event.
func (r *Receiver) newEvent(it *item) event.Event {
	ext := make(map[string]any, 5)
	ext[ExtSdkAppID] = it.sdkAppID
	if it.hasClientIP {
		ext[ExtClientIP] = it.clientIP
	}
	if it.hasOptPlatform {
		ext[ExtOptPlatform] = it.optPlatform
	}
	typ, ok := r.eventTypes[it.command]
	if !ok {
		typ = EventTypePrefix + it.command
	}
	return event.Event{
		Context: &event.EventContextV1{
			ID:              EventID(it.sdkAppID, it.command, it.body),
			Source:          r.sourceRef,
			Type:            typ,
			DataContentType: &applicationJSON,
			Time:            &types.Timestamp{Time: it.received},
			Extensions:      ext,
		},
		DataEncoded: it.body,
	}
}

var applicationJSON = event.ApplicationJSON

// worker delivers queued callbacks until the queue is closed and empty.
func (r *Receiver) worker(ctx context.Context) {
	for it := range r.queue {
		r.inFlight.Add(1)
		r.deliver(ctx, it)
		r.inFlight.Add(-1)
	}
}

// deliver sends one event to the sink, then to the dead-letter sink, and records the result.
// ctx is cancelled only when the shutdown timeout runs out. It returns false when, with a
// spool, that cut the delivery short: the event stays in the spool, logged whole, uncounted.
func (r *Receiver) deliver(ctx context.Context, it *item) bool {
	ev := r.newEvent(it)
	rt := r.targetOf(it.command)
	if rt == nil { // only an event replayed under flags that no longer route its command
		r.fail(&ev, it, "no route for "+it.command+" under the current flags")
		return true
	}
	// With a dead-letter sink, the sink's outage sends events there after their retries, as
	// Knative's delivery contract says; without one, an outage must not fail them: they wait
	// (held) in the spool until the sink is back.
	attempts, why := r.send(ctx, rt.url, &ev, r.metrics.attemptSink, &rt.health, r.dlsURL == nil)
	if why == "" {
		r.metrics.delivered.Inc()
		rt.delivered.Inc()
		r.metrics.deliveryDelivered.Observe(time.Since(it.received).Seconds())
		return true
	}
	if r.spool != nil && ctx.Err() != nil {
		r.leave(it, why)
		return false
	}
	if r.dlsURL != nil && ctx.Err() == nil {
		ev.SetExtension(ExtDeadLetterReason, why)
		ev.SetExtension(ExtDeadLetterAttempts, int32(attempts))
		dlAttempts, dlWhy := r.send(ctx, r.dlsURL, &ev, r.metrics.attemptDLS, &r.dlsHealth, true)
		if dlWhy == "" {
			r.metrics.deadLettered.Inc()
			rt.deadLettered.Inc()
			r.metrics.deliveryDeadLettered.Observe(time.Since(it.received).Seconds())
			r.log.Warn("event dead-lettered", slog.String("id", ev.ID()), slog.String("type", ev.Type()),
				slog.String("reason", why), slog.Int("attempts", attempts))
			return true
		}
		if r.spool != nil && ctx.Err() != nil {
			r.leave(it, "dead-letter sink: "+dlWhy)
			return false
		}
		rt.failed.Inc()
		r.fail(&ev, it, fmt.Sprintf("sink: %s after %d attempt(s); dead-letter sink: %s after %d attempt(s)", why, attempts, dlWhy, dlAttempts))
		return true
	}
	rt.failed.Inc()
	r.fail(&ev, it, fmt.Sprintf("%s after %d attempt(s)", why, attempts))
	return true
}

// fail counts an undelivered event and logs it whole (structured CloudEvent JSON), so it can
// be replayed by hand.
func (r *Receiver) fail(ev *event.Event, it *item, why string) {
	r.failedCount.Add(1)
	r.metrics.failed.Inc()
	r.metrics.deliveryFailed.Observe(time.Since(it.received).Seconds())
	whole, err := json.Marshal(ev)
	if err != nil { // cannot happen for the events built here; keep the data anyway
		whole, _ = json.Marshal(map[string]string{"id": ev.ID(), "type": ev.Type(), "data": string(it.body)})
	}
	r.log.Error("event not delivered", slog.String("id", ev.ID()), slog.String("reason", why),
		slog.Any("event", json.RawMessage(whole)))
}

// send makes up to 1+Retry attempts to deliver ev to target. It returns the number of attempts
// and "" on success, or why the last attempt failed. With a spool and holdThroughOutage (the
// event has nowhere else to go: no dead-letter sink after this target), a retryable failure
// after the last retry does not end it while the target accepted nothing since the attempt
// before began (an outage, not this event's fault): the event is held and retried, at most
// maxOutageBackoff apart (jittered), until the target is back or the shutdown timeout ends it.
func (r *Receiver) send(ctx context.Context, target *url.URL, ev *event.Event, obs interface{ Observe(float64) }, health *targetHealth, holdThroughOutage bool) (int, string) {
	var start time.Time
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return attempt - 1, "shutdown timeout reached before delivery"
		}
		prevStart := start
		start = time.Now()
		if attempt == 1 {
			prevStart = start
		}
		status, retryAfter, err := r.attempt(ctx, target, ev)
		end := time.Now()
		obs.Observe(end.Sub(start).Seconds())
		if err == nil && status >= 200 && status < 300 {
			health.accepted(end)
			return attempt, ""
		}
		why, retry := outcome(status, err)
		if ctx.Err() != nil {
			return attempt, "shutdown timeout reached: " + why
		}
		if !retry {
			return attempt, why
		}
		// The sink's Retry-After, when longer than the backoff, wins (up to MaxRetryAfter).
		wait := max(r.backoff(attempt), min(retryAfter, r.cfg.MaxRetryAfter))
		if attempt > r.cfg.Retry {
			if r.spool == nil || !holdThroughOutage || health.acceptedSince(prevStart) {
				return attempt, why
			}
			// Jittered, so that the held events' attempts spread out and the first one after
			// the target is back (which wakes all of them) comes soon.
			d := min(wait, max(maxOutageBackoff, retryAfter))
			d = d/2 + rand.N(d/2+1)
			r.held.Add(1)
			ok := health.hold(ctx, d)
			r.held.Add(-1)
			if !ok {
				return attempt, "shutdown timeout reached: " + why
			}
		} else if !sleep(ctx, wait) {
			return attempt, "shutdown timeout reached: " + why
		}
		r.metrics.retries.Inc()
	}
}

// outcome describes a failed attempt and whether it is worth retrying: network errors,
// timeouts, 5xx, 404, 408, 409 and 429 are; other statuses are not.
func outcome(status int, err error) (string, bool) {
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return "timeout: " + err.Error(), true
		}
		return "network error: " + err.Error(), true
	}
	why := "sink responded " + strconv.Itoa(status) + " " + http.StatusText(status)
	switch {
	case status >= 500, status == http.StatusNotFound, status == http.StatusRequestTimeout,
		status == http.StatusConflict, status == http.StatusTooManyRequests:
		return why, true
	}
	return why, false
}

// backoff is the delay before retry n (n >= 1).
func (r *Receiver) backoff(n int) time.Duration {
	d := r.cfg.BackoffDelay
	if r.cfg.BackoffPolicy == BackoffLinear {
		return d * time.Duration(n)
	}
	for i := 0; i < n; i++ {
		if d > maxBackoff/2 {
			return maxBackoff
		}
		d *= 2
	}
	return d
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

var userAgent = []string{"imcallback-receiver/" + version.Version}

// attempt POSTs ev once, encoded by the CloudEvents SDK in binary mode.
func (r *Receiver) attempt(ctx context.Context, target *url.URL, ev *event.Event) (int, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, r.cfg.DeliveryTimeout)
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
	if err := cehttp.WriteRequest(r.bindingCtx, binding.ToMessage(ev), req); err != nil {
		return 0, 0, fmt.Errorf("encoding the event: %w", err)
	}
	req.Header["User-Agent"] = userAgent
	// The transport directly, not an http.Client: a sink is an endpoint, not a site, so
	// redirects are not followed (a 3xx is a failed attempt), and the client's per-request
	// header copy for redirects is saved.
	resp, err := r.transport.RoundTrip(req)
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
