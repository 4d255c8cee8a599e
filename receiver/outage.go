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

// targetHealth wakes the events held through a delivery target's outage (their retries used
// up, nowhere else to go) as soon as the target takes another event.
type targetHealth struct {
	waiters atomic.Int32 // events held, waiting for the target

	mu   sync.Mutex
	back chan struct{} // closed at the next accepted event, while events are held
}

// accepted records a delivery and wakes the events held for the target.
func (h *targetHealth) accepted() {
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
