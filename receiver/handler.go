package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// answer is a reply other than "accepted": status, counted reason and protocol body.
type answer struct {
	status int
	reason Reason
	body   []byte
}

var contentTypeJSON = []string{"application/json"}

// serveCallback runs the checks of design.md in order; the first that fails decides the reply.
func (r *Receiver) serveCallback(w http.ResponseWriter, req *http.Request) {
	start := time.Now()

	// 1-3: path, method, size.
	if req.URL.Path != r.cfg.Path {
		r.refuse(w, req, start, nil, answer{http.StatusNotFound, ReasonNotFound, bodyNotFound})
		return
	}
	if req.Method != http.MethodPost {
		w.Header()["Allow"] = allowPOST
		r.refuse(w, req, start, nil, answer{http.StatusMethodNotAllowed, ReasonMethodNotAllowed, bodyMethod})
		return
	}
	if req.ContentLength > r.cfg.MaxBodyBytes {
		r.refuse(w, req, start, nil, answer{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, r.bodyTooLarge})
		return
	}
	bufp := bodyPool.Get().(*[]byte)
	defer putBody(bufp)
	body, err := readBody(req.Body, (*bufp)[:0], r.cfg.MaxBodyBytes)
	*bufp = body[:0]
	switch {
	case errors.Is(err, errBodyTooLarge):
		r.refuse(w, req, start, nil, answer{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, r.bodyTooLarge})
		return
	case err != nil:
		r.refuse(w, req, start, nil, answer{http.StatusBadRequest, ReasonUnreadableBody, bodyUnreadable})
		return
	}

	// 4-6: query parameters, application, signature.
	var p callbackParams
	parseParams(req.URL.RawQuery, &p)
	if p.sdkAppID == "" {
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, ReasonMissingParameter, bodyNoSdkAppID})
		return
	}
	if p.command == "" {
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, ReasonMissingParameter, bodyNoCommand})
		return
	}
	if b := invalidParams(&p); b != nil {
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, ReasonInvalidParameter, b})
		return
	}
	if p.sdkAppID != r.sdkAppID {
		r.refuse(w, req, start, &p, answer{http.StatusForbidden, ReasonWrongSdkAppID, bodyWrongApp})
		return
	}
	received := r.now()
	if r.cfg.Token != "" {
		if reason, b, ok := checkSignature(r.cfg.Token, &p, received, r.cfg.MaxClockSkew); !ok {
			if b == nil {
				b = r.bodySkew
			}
			r.refuse(w, req, start, &p, answer{http.StatusUnauthorized, reason, b})
			return
		}
	}

	// 7-9: body, selection, typed checks.
	var top topLevel
	if be := checkCommand(body, p.command, &top); be != nil {
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, be.reason, be.body})
		return
	}
	if !r.selected(p.command) {
		r.metrics.ignored.Inc()
		writeReply(w, http.StatusOK, bodyOK)
		r.metrics.requestIgnored.Observe(time.Since(start).Seconds())
		return
	}
	pairs, be := checkSns(body, p.command, &top)
	if be != nil {
		r.refuse(w, req, start, &p, answer{http.StatusBadRequest, be.reason, be.body})
		return
	}

	// 10: queue.
	it := &item{
		received:       received,
		sdkAppID:       p.sdkAppID,
		command:        p.command,
		clientIP:       p.clientIP,
		optPlatform:    p.optPlatform,
		hasClientIP:    p.hasClientIP,
		hasOptPlatform: p.hasOptPlatform,
		body:           body, // enqueue copies it
	}
	if u := r.enqueue(it); u != available {
		r.metrics.unavailable.Inc()
		r.metrics.unavailableReasons[u].Inc()
		writeReply(w, http.StatusServiceUnavailable, unavailableBodies[u])
		r.metrics.requestUnavail.Observe(time.Since(start).Seconds())
		r.logUnavailable(req, unavailableBodies[u])
		return
	}
	r.metrics.accepted.Inc()
	r.metrics.pairs.Add(float64(pairs))
	writeReply(w, http.StatusOK, bodyOK)
	r.metrics.requestAccepted.Observe(time.Since(start).Seconds())
}

// enqueue puts it in the spool (durably, before the reply) or the in-memory queue, unless
// the receiver is draining or there is no room; it then returns why, for the 503.
func (r *Receiver) enqueue(it *item) Unavailable {
	r.drainMu.RLock()
	defer r.drainMu.RUnlock()
	if r.draining {
		return UnavailableDraining
	}
	if r.spool != nil {
		return r.spoolItem(it)
	}
	it.body = append(make([]byte, 0, len(it.body)), it.body...)
	select {
	case r.queue <- it:
		return available
	default:
		return UnavailableQueueFull
	}
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
		slog.Int("queueSize", cap(r.queue)), slog.Int64("notLoggedSinceLastLine", r.unavailableNotLogged.Swap(0)))
}

func (r *Receiver) selected(command string) bool {
	for _, c := range r.cfg.Commands {
		if c == command {
			return true
		}
	}
	return false
}

// refuse answers a rejected request, counts it by reason and logs one line for it. The Sign
// and the rest of the query are never logged.
func (r *Receiver) refuse(w http.ResponseWriter, req *http.Request, start time.Time, p *callbackParams, a answer) {
	r.metrics.rejected.Inc()
	r.metrics.reasons[a.reason].Inc()
	writeReply(w, a.status, a.body)
	r.metrics.requestRejected.Observe(time.Since(start).Seconds())

	attrs := make([]slog.Attr, 0, 8)
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
	r.log.LogAttrs(context.WithoutCancel(req.Context()), slog.LevelWarn, "callback rejected", attrs...)
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

var errBodyTooLarge = errors.New("body too large")

// readBody appends the body to buf, failing with errBodyTooLarge once it exceeds max bytes.
func readBody(body io.Reader, buf []byte, max int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return buf, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bodyPool recycles request body buffers; buffers grown beyond maxPooledBody are dropped so a
// few large bodies do not pin memory.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledBody = 64 << 10

func putBody(b *[]byte) {
	if cap(*b) <= maxPooledBody {
		*b = (*b)[:0]
		bodyPool.Put(b)
	}
}

func tooLargeBody(max int64) []byte {
	return replyBody(false, "body larger than "+strconv.FormatInt(max, 10)+" bytes (--max-body-bytes)")
}

func skewBody(skew time.Duration) []byte {
	return replyBody(false, "RequestTime is more than "+skew.String()+" away from the receiver's clock")
}
