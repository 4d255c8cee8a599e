package receiver

import (
	"bytes"
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// net/http answers some requests itself, before any handler runs: 431 for headers (and so a
// query) over MaxHeaderBytes, 400 for a malformed request, 501 for an unknown
// Transfer-Encoding, 505 for an unknown HTTP version, 417 for an unknown Expect. Those are
// refusals too, and every request must be counted, so the callback listener's connections
// are wrapped: a reply that starts on a connection whose request never reached the handler
// is one of net/http's own, counted under its reason. With TLS the wrapper sits above the TLS
// connection (see tlsCountingConn), so it sees the replies before they are encrypted.

// countingListener wraps accepted connections in countingConns, and bounds how many are
// open (slots) and how many TLS handshakes are in progress (handshakes).
type countingListener struct {
	net.Listener
	r          *Receiver
	slots      chan struct{}
	handshakes *handshakes
	closed     chan struct{}
	closeOnce  sync.Once
}

func newCountingListener(l net.Listener, r *Receiver, maxConns int) *countingListener {
	return &countingListener{Listener: l, r: r, slots: make(chan struct{}, maxConns),
		handshakes: &handshakes{max: max(maxConns/2, 1)}, closed: make(chan struct{})}
}

// handshakes bounds the TLS handshakes in progress: beyond max, the oldest is ended. A
// client's handshake is a round trip or two; strangers' half-open ones are the old ones, so
// ending the oldest keeps the memory bounded (~13 KB each) without refusing IM's, unless
// max new handshakes arrive within one of IM's round trips.
type handshakes struct {
	mu      sync.Mutex
	max     int
	list    list.List // of *tlsCountingConn, oldest first
	evicted atomic.Int64
}

func (h *handshakes) start(c *tlsCountingConn) *list.Element {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.list.Len() >= h.max {
		old := h.list.Remove(h.list.Front()).(*tlsCountingConn)
		_ = old.tls.NetConn().Close() // its handshake fails at once
		h.evicted.Add(1)
	}
	return h.list.PushBack(c)
}

func (h *handshakes) end(e *list.Element) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Value != nil {
		h.list.Remove(e)
		e.Value = nil
	}
}

func (h *handshakes) inProgress() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.list.Len()
}

func (l *countingListener) Accept() (net.Conn, error) {
	// Wait for a slot before accepting: the connections beyond the bound wait in the
	// kernel's backlog, costing this process nothing.
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	release := func() { <-l.slots }
	if tc, ok := c.(*tls.Conn); ok {
		return &tlsCountingConn{countingConn: countingConn{Conn: c, r: l.r, release: release}, tls: tc, handshakes: l.handshakes}, nil
	}
	return &countingConn{Conn: c, r: l.r, release: release}, nil
}

func (l *countingListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// countingConn tells net/http's own replies from the handler's.
type countingConn struct {
	net.Conn
	r *Receiver
	// handled is set when the handler takes a request of this connection, and cleared by
	// the reply that follows.
	handled         atomic.Bool
	handshakeFailed atomic.Bool
	release         func() // gives the listener's slot back, once
	closeOnce       sync.Once
}

func (c *countingConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.release)
	return err
}

// tlsCountingConn is a countingConn over TLS. net/http takes a connection that is not a
// *tls.Conn for plain HTTP/1.1 (so HTTP/2 is not offered on the callback port: IM speaks
// HTTP/1.1), and asks it for its TLS state, which sets Request.TLS: the handshake is done then,
// within tlsHandshakeTimeout, as net/http itself would do it.
type tlsCountingConn struct {
	countingConn
	tls        *tls.Conn
	handshakes *handshakes // the listener's bound on handshakes in progress
}

// tlsHandshakeTimeout bounds a handshake: a client's takes a round trip or two (IM's are
// within a second from anywhere), and strangers' half-open ones hold memory (~13 KB each)
// for as long as it allows.
const tlsHandshakeTimeout = 3 * time.Second

func (c *tlsCountingConn) ConnectionState() tls.ConnectionState {
	_ = c.tls.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	e := c.handshakes.start(c)
	err := c.tls.HandshakeContext(context.Background())
	c.handshakes.end(e)
	_ = c.tls.SetDeadline(time.Time{})
	if err != nil {
		c.handshakeFailed.Store(true)
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			// As net/http does: tell a plain-HTTP client why, on the bare connection.
			_, _ = io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		_ = c.r.serverLog.Output(2, "http: TLS handshake error from "+c.RemoteAddr().String()+": "+err.Error())
	}
	return c.tls.ConnectionState()
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

type countingConnKey struct{}

// connContext is the server's ConnContext: it lets the handler find its connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	switch cc := c.(type) {
	case *countingConn:
		return context.WithValue(ctx, countingConnKey{}, cc)
	case *tlsCountingConn:
		return context.WithValue(ctx, countingConnKey{}, &cc.countingConn)
	}
	return ctx
}

// markHandled records that the handler answers req itself.
func markHandled(req *http.Request) {
	if cc, ok := req.Context().Value(countingConnKey{}).(*countingConn); ok {
		cc.handled.Store(true)
	}
}

var statusLinePrefix = []byte("HTTP/1.1 ")

func (c *countingConn) Write(p []byte) (int, error) {
	// A reply starts a write with its status line; 1xx (100 Continue) is not the reply. After
	// a failed TLS handshake net/http still tries to answer 400: no request was received.
	if len(p) >= 12 && bytes.HasPrefix(p, statusLinePrefix) && p[9] != '1' && !c.handshakeFailed.Load() {
		if !c.handled.Swap(false) {
			c.r.refusedByServer(c.RemoteAddr(), p[9:12])
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http half-close the connection after a reply it sends before closing
// (its reset avoidance), as it does on a bare TCP connection.
func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// refusedByServer counts and logs (throttled) one of net/http's own replies.
func (r *Receiver) refusedByServer(remote net.Addr, code []byte) {
	reason := ReasonProtocolError
	switch string(code) {
	case "400":
		reason = ReasonMalformedRequest
	case "431":
		reason = ReasonHeadersTooLarge
	case "501":
		reason = ReasonUnsupportedTransferEncoding
	}
	r.metrics.rejected.Inc()
	r.metrics.reasons[reason].Inc()
	now := time.Now()
	if !r.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	if ok, left := r.refusalLogs[reason].allow(now, refusalLogBurst); ok {
		r.log.LogAttrs(context.Background(), slog.LevelWarn, "callback rejected",
			slog.String("reason", reason.String()), slog.Int("status", int(code[0]-'0')*100+int(code[1]-'0')*10+int(code[2]-'0')),
			slog.String("info", "refused by net/http before the handler"), slog.String("remote", remote.String()),
			slog.Int64("notLoggedSinceLastLine", left))
	}
}

// connCollectors are the gauges of the callback port's connections and TLS handshakes.
func (r *Receiver) connCollectors() []prometheus.Collector {
	of := func(f func(*countingListener) float64) func() float64 {
		return func() float64 {
			if l := r.conns.Load(); l != nil {
				return f(l)
			}
			return 0
		}
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imcallback_connections_open",
			Help: "Open connections of the callback port, bounded by --max-connections (beyond it new ones wait in the kernel's backlog).",
		}, of(func(l *countingListener) float64 { return float64(len(l.slots)) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imcallback_tls_handshakes_in_progress",
			Help: "TLS handshakes in progress on the callback port, bounded by half of --max-connections (beyond it the oldest is ended).",
		}, of(func(l *countingListener) float64 { return float64(l.handshakes.inProgress()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "imcallback_tls_handshakes_ended_total",
			Help: "TLS handshakes ended unfinished because newer ones reached the bound (half-open handshakes of strangers, as a rule).",
		}, of(func(l *countingListener) float64 { return float64(l.handshakes.evicted.Load()) })),
	}
}
