package receiver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// net/http answers some requests itself, before any handler runs: 431 for headers (and so a
// query) over MaxHeaderBytes, 400 for a malformed request, 501 for an unknown
// Transfer-Encoding, 505 for an unknown HTTP version, 417 for an unknown Expect. Those are
// refusals too, and every request must be counted, so the callback listener's connections
// are wrapped: a reply that starts on a connection whose request never reached the handler
// is one of net/http's own, counted under its reason. With TLS the wrapper sits above the TLS
// connection (see tlsCountingConn), so it sees the replies before they are encrypted.

// countingListener wraps accepted connections in countingConns.
type countingListener struct {
	net.Listener
	r *Receiver
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*tls.Conn); ok {
		return &tlsCountingConn{countingConn: countingConn{Conn: c, r: l.r}, tls: tc}, nil
	}
	return &countingConn{Conn: c, r: l.r}, nil
}

// countingConn tells net/http's own replies from the handler's.
type countingConn struct {
	net.Conn
	r *Receiver
	// handled is set when the handler takes a request of this connection, and cleared by
	// the reply that follows.
	handled         atomic.Bool
	handshakeFailed atomic.Bool
}

// tlsCountingConn is a countingConn over TLS. net/http takes a connection that is not a
// *tls.Conn for plain HTTP/1.1 (so HTTP/2 is not offered on the callback port: IM speaks
// HTTP/1.1), and asks it for its TLS state, which sets Request.TLS: the handshake is done then,
// within tlsHandshakeTimeout, as net/http itself would do it.
type tlsCountingConn struct {
	countingConn
	tls *tls.Conn
}

// tlsHandshakeTimeout is what net/http allows a handshake: its shortest read or write timeout.
const tlsHandshakeTimeout = 10 * time.Second

func (c *tlsCountingConn) ConnectionState() tls.ConnectionState {
	_ = c.tls.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	err := c.tls.HandshakeContext(context.Background())
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
