package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/imcallback/callback-operator/receiver/contract"
)

// Decision answers the callbacks of Commands (before-callbacks, such as
// C2C.CallbackBeforeSendMsg) synchronously with the decision service at URL (the --decision
// flag): the callback goes there as a CloudEvent, and the service's JSON answer is IM's reply.
type Decision struct {
	Commands []string
	// URL is an absolute http(s) URL.
	URL string
}

// Decision failure policies: the contract's, re-exported for users of this package.
const (
	DecisionFailureAllow  = contract.DecisionFailureAllow
	DecisionFailureReject = contract.DecisionFailureReject

	DefaultDecisionTimeout = contract.DefaultDecisionTimeout
	DefaultDecisionFailure = contract.DefaultDecisionFailure

	// MaxDecisionAnswer bounds a decision service's answer; a longer one is a failure.
	MaxDecisionAnswer = 64 << 10
)

// decisionService is one decision service URL.
type decisionService struct {
	url *url.URL
}

// decisionResult indexes imcallback_decisions_total{result}.
type decisionResult uint8

const (
	decisionAllowed decisionResult = iota
	decisionRejected
	decisionFailedAllowed
	decisionFailedRejected
	numDecisionResults
)

var decisionResultNames = [numDecisionResults]string{
	decisionAllowed:        contract.DecisionAllowed,
	decisionRejected:       contract.DecisionRejected,
	decisionFailedAllowed:  contract.DecisionFailedAllowed,
	decisionFailedRejected: contract.DecisionFailedRejected,
}

// decisionFailure is why an exchange failed: imcallback_decision_failures_total{reason}.
type decisionFailure uint8

const (
	failureNone          decisionFailure = iota
	failureTimeout                       // no complete answer within --decision-timeout
	failureNetwork                       // connection refused, reset, DNS...
	failureCanceled                      // IM closed the connection while we waited
	failureStatus                        // a non-2xx status
	failureInvalidAnswer                 // a 2xx body that is not a JSON object with an integer ErrorCode
	failureTooLarge                      // a 2xx body over MaxDecisionAnswer
	failureBusy                          // maxDecisionsInFlight exchanges were in progress already
	numDecisionFailures
)

var decisionFailureNames = [numDecisionFailures]string{
	failureNone:          "",
	failureTimeout:       "timeout",
	failureNetwork:       "network_error",
	failureCanceled:      "canceled",
	failureStatus:        "bad_status",
	failureInvalidAnswer: "invalid_answer",
	failureTooLarge:      "answer_too_large",
	failureBusy:          "busy",
}

// decisionFailureInfo is the ErrorInfo of the reject policy's answer, per failure.
var decisionFailureInfo = [numDecisionFailures]string{
	failureTimeout:       "decision service did not answer in time",
	failureNetwork:       "decision service unreachable",
	failureCanceled:      "request canceled while waiting for the decision service",
	failureStatus:        "decision service answered with an error status",
	failureInvalidAnswer: "decision service answer is not a JSON object with an integer ErrorCode",
	failureTooLarge:      "decision service answer is larger than 64 KiB",
	failureBusy:          "too many decisions in progress",
}

// decisionRejectBodies are the reject policy's answers, built once.
var decisionRejectBodies = func() (b [numDecisionFailures][]byte) {
	for i := failureTimeout; i < numDecisionFailures; i++ {
		b[i] = replyBody(false, decisionFailureInfo[i])
	}
	return b
}()

// decisionState is the Receiver's part for decisions.
type decisionState struct {
	decisions         []*decisionService
	decisionTransport *http.Transport // its own keep-alive pool, apart from delivery's
	decisionSlots     chan struct{}   // bounds the exchanges in progress

	lastDecisionFailureLog   atomic.Int64 // unix nanoseconds
	decisionFailureNotLogged atomic.Int64
}

func (r *Receiver) newDecisionService(raw string) (*decisionService, error) {
	for _, ds := range r.decisions {
		if ds.url.String() == raw {
			return ds, nil
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if r.decisionTransport == nil {
		r.decisionTransport = newDecisionTransport()
		r.decisionSlots = make(chan struct{}, maxDecisionsInFlight)
	}
	ds := &decisionService{url: u}
	r.decisions = append(r.decisions, ds)
	return ds, nil
}

// maxDecisionsInFlight bounds the exchanges with decision services in progress at once;
// beyond it the failure policy answers at once (reason busy). Each holds ~100 KB (the body,
// the answer buffer, the request, a connection), so the bound keeps them within ~50 MB of
// the pod's memory whatever a flood of before-callbacks (or a stranger with a captured URL)
// does; a decision service keeping up answers in milliseconds, so at IM's rates they are few.
const maxDecisionsInFlight = 512

// decisionIdleConns is how many idle keep-alive connections to a decision service are kept:
// one per concurrent decision up to it, so a steady load never opens new connections.
const decisionIdleConns = 512

// newDecisionTransport is the decision services' transport: keep-alive connections, sized
// for many concurrent decisions (each holds a connection for one round trip).
func newDecisionTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: decisionIdleConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
		DisableCompression:  true,
	}
}

// decide is the last step of a decided callback, which passed every check: the exchange
// with the decision service, and IM's reply (always 200). Nothing is queued or retried: IM
// waits for this answer for 2 seconds.
func (r *Receiver) decide(w http.ResponseWriter, req *http.Request, start time.Time, ds *decisionService, p *callbackParams, received time.Time, body []byte) {
	it := itemOf(p, received, body) // the body only until the exchange ends: no copy
	bufp := answerPool.Get().(*[]byte)
	defer putAnswer(bufp)

	var answer []byte
	var allowed bool
	var failure decisionFailure
	var err error
	select {
	case r.decisionSlots <- struct{}{}:
		answer, allowed, failure, err = r.exchange(req.Context(), ds, &it, bufp)
		<-r.decisionSlots
	default:
		failure, err = failureBusy, errDecisionsBusy
	}
	took := time.Since(start)
	var result decisionResult
	switch {
	case failure == failureNone && answer == nil: // an empty 2xx
		result = decisionAllowed
		writeReply(w, http.StatusOK, bodyOK)
	case failure == failureNone:
		result = decisionRejected
		if allowed {
			result = decisionAllowed
		}
		writeReply(w, http.StatusOK, answer)
	case r.cfg.DecisionFailure == DecisionFailureReject:
		result = decisionFailedRejected
		writeReply(w, http.StatusOK, decisionRejectBodies[failure])
	default:
		result = decisionFailedAllowed
		writeReply(w, http.StatusOK, bodyOK)
	}
	m := r.metrics
	m.decided.Inc()
	m.decisions[result].Inc()
	m.decisionDuration[result].Observe(took.Seconds())
	if failure != failureNone {
		m.decisionFailures[failure].Inc()
		r.logDecisionFailure(req, ds, p.command, failure, result, err)
	}
	m.requestDecided.Observe(time.Since(start).Seconds())
}

// exchange sends the callback to the decision service as a CloudEvent (binary mode, the
// attributes of a forwarded event) and reads its answer into *buf, all within
// DecisionTimeout. It returns the answer to relay (nil for an empty 2xx) and whether its
// ErrorCode is 0, or why it failed.
func (r *Receiver) exchange(ctx context.Context, ds *decisionService, it *item, buf *[]byte) ([]byte, bool, decisionFailure, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DecisionTimeout)
	defer cancel()
	ev := r.newEvent(it)
	req := (&http.Request{
		Method:     http.MethodPost,
		URL:        ds.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, 12),
		Host:       ds.url.Host,
	}).WithContext(ctx)
	if err := cehttp.WriteRequest(r.bindingCtx, binding.ToMessage(&ev), req); err != nil {
		return nil, false, failureInvalidAnswer, err // cannot happen for the events built here
	}
	req.Header["User-Agent"] = userAgent
	// The transport directly, as for delivery: a decision service is an endpoint, so a
	// redirect is a failure, not something to follow.
	resp, err := r.decisionTransport.RoundTrip(req)
	if err != nil {
		return nil, false, exchangeFailure(ctx, err), err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Read a bounded amount so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxDecisionAnswer))
		return nil, false, failureStatus, errors.New("status " + strconv.Itoa(resp.StatusCode))
	}
	answer, err := readBody(resp.Body, (*buf)[:0], MaxDecisionAnswer)
	*buf = answer[:0]
	switch {
	case errors.Is(err, errBodyTooLarge):
		return nil, false, failureTooLarge, err
	case err != nil:
		return nil, false, exchangeFailure(ctx, err), err
	case len(answer) == 0:
		return nil, true, failureNone, nil
	}
	zero, ok := answerErrorCode(answer)
	if !ok {
		return nil, false, failureInvalidAnswer, errors.New("answer is not a JSON object with one integer ErrorCode")
	}
	return answer, zero, failureNone, nil
}

// exchangeFailure classifies a transport error.
func exchangeFailure(ctx context.Context, err error) decisionFailure {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return failureTimeout
	case errors.Is(err, context.Canceled):
		return failureCanceled
	}
	return failureNetwork
}

// answerErrorCode checks a decision service's answer: a JSON object with exactly one
// member named ErrorCode (matched exactly, as IM reads it) whose value is an integer, and no
// other member whose name equals ErrorCode in another letter case (a parser matching keys
// case-insensitively, as Go's encoding/json does, may read that one instead: the intake's
// rule for checked keys). It reports whether that integer is 0.
func answerErrorCode(b []byte) (zero, ok bool) {
	if !json.Valid(b) {
		return false, false
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return false, false
	}
	var code span
	twice := false
	walkObject(b, i, func(key span, escaped bool, val span) bool {
		k := memberKey(b, key, escaped)
		if !bytes.EqualFold(k, errorCodeKey) {
			return true
		}
		if code.present() || string(k) != "ErrorCode" {
			twice = true
			return false
		}
		code = val
		return true
	})
	if twice || !isInteger(b, code) {
		return false, false
	}
	for _, c := range b[code.start:code.end] {
		if c != '-' && c != '0' {
			return false, true
		}
	}
	return true, true
}

var errorCodeKey = []byte("ErrorCode")

var errDecisionsBusy = errors.New("too many decisions in progress")

// answerPool recycles the buffers decision answers are read into.
var answerPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func putAnswer(b *[]byte) {
	if cap(*b) <= MaxDecisionAnswer+1 {
		*b = (*b)[:0]
		answerPool.Put(b)
	}
}

// logDecisionFailure logs failed decisions at most once a second (with how many it left
// out): a decision service that is down fails every message, and the counters have them all.
func (r *Receiver) logDecisionFailure(req *http.Request, ds *decisionService, command string, f decisionFailure, result decisionResult, err error) {
	now := time.Now().UnixNano()
	last := r.lastDecisionFailureLog.Load()
	if now-last < int64(time.Second) || !r.lastDecisionFailureLog.CompareAndSwap(last, now) {
		r.decisionFailureNotLogged.Add(1)
		return
	}
	msg := ""
	if err != nil {
		msg = clip(err.Error())
	}
	r.log.LogAttrs(context.WithoutCancel(req.Context()), slog.LevelWarn, "decision failed; answered by the failure policy",
		slog.String("reason", decisionFailureNames[f]), slog.String("result", decisionResultNames[result]),
		slog.String("command", clip(command)), slog.String("service", ds.url.Redacted()), slog.String("error", msg),
		slog.Int64("notLoggedSinceLastLine", r.decisionFailureNotLogged.Swap(0)))
}

// readBody appends what body holds to buf, failing with errBodyTooLarge once it exceeds max
// bytes (a decision service's answer is trusted no more than a callback).
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
