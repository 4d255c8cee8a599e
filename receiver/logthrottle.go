package receiver

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"sync"
	"time"
)

// Refusals are logged at most refusalLogBurst lines per reason per second: one client can
// send thousands of bad requests a second, and unthrottled lines would rotate away the lines
// that matter (an event not delivered is logged whole, and without a dead-letter sink that
// line is its only copy). The first line logged after some were left out says how many; the
// metrics count every refusal.
const (
	refusalLogBurst  = 5
	refusalLogWindow = time.Second
)

// logThrottle lets burst lines through per window and counts the rest.
type logThrottle struct {
	mu          sync.Mutex
	windowStart time.Time
	inWindow    int
	left        int64 // lines left out since the last one logged
}

// allow reports whether a line may be logged now, and how many were left out before it.
func (t *logThrottle) allow(now time.Time, burst int) (bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.windowStart) >= refusalLogWindow {
		t.windowStart, t.inWindow = now, 0
	}
	if t.inWindow >= burst {
		t.left++
		return false, 0
	}
	t.inWindow++
	left := t.left
	t.left = 0
	return true, left
}

// serverErrorLog is the http.Server's ErrorLog (TLS handshake failures, accept errors):
// throttled like refusals, since a stranger decides how often those lines come.
func serverErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(&throttledWriter{log: logger}, "", 0)
}

type throttledWriter struct {
	log      *slog.Logger
	throttle logThrottle
}

func (w *throttledWriter) Write(p []byte) (int, error) {
	ok, left := w.throttle.allow(time.Now(), refusalLogBurst)
	if ok {
		w.log.LogAttrs(context.Background(), slog.LevelWarn, string(bytes.TrimSpace(p)),
			slog.String("source", "net/http"), slog.Int64("notLoggedSinceLastLine", left))
	}
	return len(p), nil
}
