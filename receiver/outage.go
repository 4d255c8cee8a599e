package receiver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// maxOutageBackoff caps the delay between the attempts of an event held through a sink
// outage, so delivery resumes within it once the sink is back (sooner: attempts are
// jittered, and the first success wakes every held event). Against a sink that is down, the
// held events then cost at most one attempt per worker every 5-10 s.
const maxOutageBackoff = 10 * time.Second

// targetHealth tells an outage of a delivery target from a target that refuses one event:
// with a spool, an event whose retries are exhausted is held (and retried) rather than
// dead-lettered while its target has accepted nothing since the event's last attempt began.
type targetHealth struct {
	lastOK  atomic.Int64 // Unix nanoseconds of the last accepted event
	waiters atomic.Int32 // events held, waiting for the target

	mu   sync.Mutex
	back chan struct{} // closed at the next accepted event, while events are held
}

// accepted records a delivery and wakes the events held for the target.
func (h *targetHealth) accepted(now time.Time) {
	h.lastOK.Store(now.UnixNano())
	if h.waiters.Load() == 0 {
		return
	}
	h.mu.Lock()
	if h.back != nil {
		close(h.back)
		h.back = nil
	}
	h.mu.Unlock()
}

// acceptedSince tells whether the target accepted an event after t.
func (h *targetHealth) acceptedSince(t time.Time) bool { return h.lastOK.Load() > t.UnixNano() }

// hold waits d, or until the target accepts an event, or ctx ends (false).
func (h *targetHealth) hold(ctx context.Context, d time.Duration) bool {
	h.waiters.Add(1)
	defer h.waiters.Add(-1)
	h.mu.Lock()
	if h.back == nil {
		h.back = make(chan struct{})
	}
	back := h.back
	h.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-back:
	case <-ctx.Done():
		return false
	}
	return true
}
