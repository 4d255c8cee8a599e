package receiver

import (
	"bytes"
	"context"
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
// is one of net/http's own, counted under its reason. (Only on plain HTTP: behind TLS the
// replies are encrypted below this wrapper; see Serve.)

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
	return &countingConn{Conn: c, r: l.r}, nil
}

// countingConn tells net/http's own replies from the handler's.
type countingConn struct {
	net.Conn
	r *Receiver
	// handled is set when the handler takes a request of this connection, and cleared by
	// the reply that follows.
	handled atomic.Bool
}

type countingConnKey struct{}

// connContext is the server's ConnContext: it lets the handler find its connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*countingConn); ok {
		return context.WithValue(ctx, countingConnKey{}, cc)
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
	// A reply starts a write with its status line; 1xx (100 Continue) is not the reply.
	if len(p) >= 12 && bytes.HasPrefix(p, statusLinePrefix) && p[9] != '1' {
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
