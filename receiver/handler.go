package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// answer is a reply other than "accepted": status, counted reason and protocol body.
type answer struct {
	status int
	reason Reason
	body   []byte
}

var contentTypeJSON = []string{"application/json"}

// serveCallback runs the checks in this order, the first that fails deciding the reply: path,
// method, declared size, query parameters, SdkAppid, signature, body, command selection,
// typed payload checks; then a decided command is answered by its decision service, and a
// forwarded one is checked for an exact replay and needs room in the queue. Nothing of a
// request's body is read before its sender proved who it is (checks 4-6).
func (r *Receiver) serveCallback(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	markHandled(req)

	// 1-3: path (as sent: /im/%63allback is not /im/callback), method, declared size.
	if req.URL.Path != r.cfg.Path || req.URL.RawPath != "" {
		r.refuseUnread(w, req, start, nil, answer{http.StatusNotFound, ReasonNotFound, bodyNotFound})
		return
	}
	if req.Method != http.MethodPost {
		w.Header()["Allow"] = allowPOST
		r.refuseUnread(w, req, start, nil, answer{http.StatusMethodNotAllowed, ReasonMethodNotAllowed, bodyMethod})
		return
	}
	if req.ContentLength > r.cfg.MaxBodyBytes {
		var p callbackParams
		parseParams(req.URL.RawQuery, &p)
		r.refuseTooLarge(w, req, start, &p, r.authentic(&p, r.now()))
		return
	}

	// 4-6: query parameters, application, signature.
	var p callbackParams
	parseParams(req.URL.RawQuery, &p)
	if p.sdkAppID == "" {
		r.refuseUnread(w, req, start, &p, answer{http.StatusBadRequest, ReasonMissingParameter, bodyNoSdkAppID})
		return
	}
	if p.command == "" {
		r.refuseUnread(w, req, start, &p, answer{http.StatusBadRequest, ReasonMissingParameter, bodyNoCommand})
		return
	}
	if b := invalidParams(&p); b != nil {
		r.refuseUnread(w, req, start, &p, answer{http.StatusBadRequest, ReasonInvalidParameter, b})
		return
	}
	if p.sdkAppID != r.sdkAppID {
		r.refuseUnread(w, req, start, &p, answer{http.StatusForbidden, ReasonWrongSdkAppID, bodyWrongApp})
		return
	}
	received := r.now()
	if r.cfg.Token != "" {
		if reason, b, ok := checkSignature(r.cfg.Token, &p, received, r.cfg.MaxClockSkew); !ok {
			if b == nil {
				b = r.bodySkew
			}
			r.refuseUnread(w, req, start, &p, answer{http.StatusUnauthorized, reason, b})
			return
		}
	}

	// 7: only now the body, within --max-body-bytes and the budget of bodies being read.
	bodyBuf, err := r.bodies.read(req.Context(), req.Body, req.ContentLength)
	defer r.bodies.release(bodyBuf)
	var body []byte
	if bodyBuf != nil {
		body = *bodyBuf
	}
	switch {
	case err == nil:
	case errors.Is(err, errBodyTooLarge):
		r.refuseTooLarge(w, req, start, &p, true)
		return
	case errors.Is(err, errBodyBudget):
		r.unavailable(w, req, start, UnavailableBodyBudget)
		return
	default:
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, ReasonUnreadableBody, bodyUnreadable})
		return
	}

	// 8-10: JSON, selection, typed checks.
	var top topLevel
	if be := checkCommand(body, p.command, &top); be != nil {
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, be.reason, be.body})
		return
	}
	handled := r.routeOf(p.command)
	if handled == nil {
		r.metrics.ignored.Inc()
		writeReply(w, http.StatusOK, bodyOK)
		r.metrics.requestIgnored.Observe(time.Since(start).Seconds())
		return
	}
	pairs, be := checkSns(body, p.command, &top)
	if be == nil {
		be = checkTyped(body, p.command)
	}
	if be != nil {
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, be.reason, be.body})
		return
	}

	// Decided commands are answered by their decision service (decision.go): no queue, and
	// no replay suppression: a repeat of a before-callback (IM's retry on timeout) is decided
	// again, as IM waits for that answer.
	if handled.decision != nil {
		r.decide(w, req, start, handled.decision, &p, received, body)
		return
	}

	// An exact repeat of an accepted callback is answered OK and not forwarded again. Without
	// a token there is no Sign to tell a repeat from a new callback with the same body.
	var replayKey replayKey
	var claim uint64
	if r.replay != nil {
		var dup bool
		replayKey = r.replay.key(p.sign, p.requestTime, body)
		if claim, dup = r.replay.claim(replayKey, received.Unix(), requestTimeSecs(p.requestTime)+r.skewSecs); dup {
			r.metrics.duplicate.Inc()
			writeReply(w, http.StatusOK, bodyOK)
			r.metrics.requestDuplicate.Observe(time.Since(start).Seconds())
			return
		}
	}

	// 11: queue.
	it := itemOf(&p, received, body) // enqueue copies the body
	u := r.enqueue(&it, start)
	if r.replay != nil {
		r.replay.settle(replayKey, claim, u == available)
	}
	if u != available {
		r.unavailable(w, req, start, u)
		return
	}
	r.metrics.accepted.Inc()
	r.metrics.pairs.Add(float64(pairs))
	writeReply(w, http.StatusOK, bodyOK)
	r.metrics.requestAccepted.Observe(time.Since(start).Seconds())
}

// unavailable answers 503 and counts it by reason.
func (r *Receiver) unavailable(w http.ResponseWriter, req *http.Request, start time.Time, u Unavailable) {
	r.metrics.unavailable.Inc()
	r.metrics.unavailableReasons[u].Inc()
	writeReply(w, http.StatusServiceUnavailable, unavailableBodies[u])
	r.metrics.requestUnavail.Observe(time.Since(start).Seconds())
	r.logUnavailable(req, unavailableBodies[u])
}

// enqueue puts it in the spool (durably, before the reply) or the in-memory queue, unless
// the receiver is draining or there is no room; it then returns why, for the 503.
func (r *Receiver) enqueue(it *item, now time.Time) Unavailable {
	r.drainMu.RLock()
	defer r.drainMu.RUnlock()
	if r.draining {
		return UnavailableDraining
	}
	rt := r.targetOf(it.command)
	err := r.queue.Append(rt.lane, it)
	u := r.unavailableOf(err)
	r.intake.note(rt.lane, u, err, now) // the real clock: cfg.Now is the protocol's
	return u
}

// logUnavailable logs 503s at most once a second (with how many it left out), so that an
// overloaded receiver does not spend its CPU on log lines; the counter has them all.
func (r *Receiver) logUnavailable(req *http.Request, body []byte) {
	now := time.Now().UnixNano()
	last := r.lastUnavailableLog.Load()
	if now-last < int64(time.Second) || !r.lastUnavailableLog.CompareAndSwap(last, now) {
		r.unavailableNotLogged.Add(1)
		return
	}
	r.log.LogAttrs(context.WithoutCancel(req.Context()), slog.LevelWarn, "callback refused: receiver unavailable",
		slog.String("info", errorInfo(body)), slog.String("remote", req.RemoteAddr),
		slog.Int("queueSize", r.cfg.QueueSize), slog.Int64("notLoggedSinceLastLine", r.unavailableNotLogged.Swap(0)))
}

// refuseTooLarge answers 413. For an authentic request (IM's, or anybody's without a token)
// it then reads and discards, within bounds, what the client still sends before the
// connection closes: a client that writes its whole body before it reads the reply (Python's
// urllib does) would otherwise get a connection reset instead of the 413. A stranger gets the
// reply and a closed connection: reading their bytes would be work done for them.
func (r *Receiver) refuseTooLarge(w http.ResponseWriter, req *http.Request, start time.Time, p *callbackParams, authentic bool) {
	a := answer{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, r.bodyTooLarge}
	select {
	case r.drainSlots <- struct{}{}:
		defer func() { <-r.drainSlots }()
	default:
		authentic = false // enough bodies being drained already
	}
	if !authentic {
		r.countRefusal(req, start, p, a)
		closeWithReply(w, a)
		return
	}
	rc := http.NewResponseController(w)
	// Without this net/http stops reading the body at the first byte of the reply.
	_ = rc.EnableFullDuplex()
	w.Header()["Connection"] = connectionClose
	r.refuse(w, req, start, p, a)
	if rc.Flush() != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(tooLargeDrainTime))
	_, _ = io.CopyN(io.Discard, req.Body, r.tooLargeDrainBytes)
}

// authentic reports whether a request passes checks 4-6 (it is IM's, or there is no token),
// without counting anything.
func (r *Receiver) authentic(p *callbackParams, now time.Time) bool {
	if p.sdkAppID != r.sdkAppID || p.command == "" {
		return false
	}
	if r.cfg.Token == "" {
		return true
	}
	_, _, ok := checkSignature(r.cfg.Token, p, now, r.cfg.MaxClockSkew)
	return ok
}

// tooLargeDrainTime bounds how long a refused body is read and discarded; the bytes are
// bounded by 4 x --max-body-bytes, and at most maxConcurrentDrains are read at once. A
// client sending more, or slower, gets the reply and a closed connection.
const (
	tooLargeDrainTime   = 5 * time.Second
	maxConcurrentDrains = 4
)

// maxDiscardedBody is the largest unread body of a refused request that net/http may read and
// discard to keep the connection (it would read up to 256 KiB). IM's callbacks are a few KiB;
// with 200 KB bodies and a bad Sign, 256 KiB took the abuse run to 53 MiB and a 133 ms p99,
// 64 KiB to 29 MiB and 3 ms.
const maxDiscardedBody = 64 << 10

// refuseUnread answers a request refused before its body was read (checks 1-6). net/http
// discards a small unread body and keeps the connection; a longer one (or one of unknown
// length) would be read for a stranger, or hold the connection, its goroutine and its request
// for another half second after the reply so that the reply is not lost to a reset. Neither
// is worth it: the reply is written and the connection closed at once.
func (r *Receiver) refuseUnread(w http.ResponseWriter, req *http.Request, start time.Time, p *callbackParams, a answer) {
	if req.ContentLength >= 0 && req.ContentLength <= maxDiscardedBody {
		r.refuse(w, req, start, p, a)
		return
	}
	r.countRefusal(req, start, p, a)
	closeWithReply(w, a)
}

// closeWithReply writes the reply straight onto the connection and closes it. Where the
// connection cannot be taken over (HTTP/2, tests' recorders) it answers as usual, asking
// for the connection to be closed.
func closeWithReply(w http.ResponseWriter, a answer) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.Header()["Connection"] = connectionClose
		writeReply(w, a.status, a.body)
		return
	}
	defer conn.Close()
	reply := make([]byte, 0, 192+len(a.body))
	reply = append(reply, "HTTP/1.1 "...)
	reply = strconv.AppendInt(reply, int64(a.status), 10)
	reply = append(reply, ' ')
	reply = append(reply, http.StatusText(a.status)...)
	reply = append(reply, "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "...)
	reply = strconv.AppendInt(reply, int64(len(a.body)), 10)
	if allow := w.Header()["Allow"]; len(allow) == 1 {
		reply = append(reply, "\r\nAllow: "...)
		reply = append(reply, allow[0]...)
	}
	reply = append(reply, "\r\n\r\n"...)
	reply = append(reply, a.body...)
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = conn.Write(reply)
}

var connectionClose = []string{"close"}

// refuse answers a rejected request and counts it by reason; the log line for it is
// throttled per reason (see logThrottle).
func (r *Receiver) refuse(w http.ResponseWriter, req *http.Request, start time.Time, p *callbackParams, a answer) {
	writeReply(w, a.status, a.body)
	r.countRefusal(req, start, p, a)
}

func (r *Receiver) countRefusal(req *http.Request, start time.Time, p *callbackParams, a answer) {
	r.metrics.rejected.Inc()
	r.metrics.reasons[a.reason].Inc()
	r.metrics.requestRejected.Observe(time.Since(start).Seconds())
	r.logRefusal(req, start, p, a)
}

// logRefusal logs a refusal, unless refusalLogBurst lines of its reason were logged in the
// last second. The Sign and the rest of the query are never logged.
func (r *Receiver) logRefusal(req *http.Request, now time.Time, p *callbackParams, a answer) {
	ctx := context.WithoutCancel(req.Context())
	if !r.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	ok, left := r.refusalLogs[a.reason].allow(now, refusalLogBurst)
	if !ok {
		return
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs,
		slog.String("reason", a.reason.String()),
		slog.Int("status", a.status),
		slog.String("info", errorInfo(a.body)),
		slog.String("method", clip(req.Method)),
		slog.String("path", clip(req.URL.Path)),
		slog.String("remote", req.RemoteAddr),
	)
	if p != nil {
		attrs = append(attrs, slog.String("sdkAppid", clip(p.sdkAppID)), slog.String("command", clip(p.command)))
	}
	attrs = append(attrs, slog.Int64("notLoggedSinceLastLine", left))
	r.log.LogAttrs(ctx, slog.LevelWarn, "callback rejected", attrs...)
}

func writeReply(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = contentTypeJSON
	if status != http.StatusOK {
		w.WriteHeader(status)
	}
	_, _ = w.Write(body)
}

var allowPOST = []string{http.MethodPost}

// invalidParams refuses parameters that become ce-* headers but cannot be header values.
func invalidParams(p *callbackParams) []byte {
	switch {
	case !validHeaderValue(p.command):
		return bodyBadCommandParam
	case p.hasClientIP && !validHeaderValue(p.clientIP):
		return bodyBadClientIPParam
	case p.hasOptPlatform && !validHeaderValue(p.optPlatform):
		return bodyBadPlatformParam
	}
	return nil
}

var (
	bodyBadCommandParam  = replyBody(false, "query parameter CallbackCommand contains control characters")
	bodyBadClientIPParam = replyBody(false, "query parameter ClientIP contains control characters")
	bodyBadPlatformParam = replyBody(false, "query parameter OptPlatform contains control characters")
)

// errorInfo extracts ErrorInfo from a reply body built by replyBody, for the log line.
func errorInfo(body []byte) string {
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return ""
	}
	return r.ErrorInfo
}

// clip bounds attacker-controlled strings in log lines.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func tooLargeBody(max int64) []byte {
	return replyBody(false, "body larger than "+strconv.FormatInt(max, 10)+" bytes (--max-body-bytes)")
}

func skewBody(skew time.Duration) []byte {
	return replyBody(false, "RequestTime is more than "+skew.String()+" away from the receiver's clock")
}
