package receiver

import (
	"context"
	"sync"
)

// pacer bounds a target's attempts in flight with a limit that adapts to what the target
// answers (additive increase, multiplicative decrease, as TCP paces a connection): each
// overload answer (a network error, a timeout, a 5xx, a 429) halves the limit, down to one
// attempt at a time; each success raises it by one, up to the lane's workers. So a sink that
// comes back from an outage is probed by one attempt, then gets its backlog at a pace that
// doubles about every round trip while it keeps up, instead of every held event at once;
// and a sink that sheds load with 429 or 503 gets fewer attempts until it stops.
type pacer struct {
	mu      sync.Mutex
	limit   int // attempts allowed in flight
	max     int
	inUse   int
	waiters []chan struct{} // FIFO; a closed channel is a granted slot
}

// newPacer paces a target served by workers workers at most.
func newPacer(workers int) *pacer {
	n := max(workers, 1)
	return &pacer{limit: n, max: n}
}

// acquire waits for a slot; false when ctx ended first.
func (p *pacer) acquire(ctx context.Context) bool {
	p.mu.Lock()
	if p.inUse < p.limit && len(p.waiters) == 0 {
		p.inUse++
		p.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		p.mu.Lock()
		for i, w := range p.waiters {
			if w == ch {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
				p.mu.Unlock()
				return false
			}
		}
		p.mu.Unlock()
		p.release(false, false) // granted meanwhile: give it back
		return false
	}
}

// release ends an attempt: ok (the target took it) raises the limit, overload lowers it.
func (p *pacer) release(ok, overload bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case ok:
		p.limit = min(p.max, p.limit+1)
	case overload:
		p.limit = max(1, p.limit/2)
	}
	p.inUse--
	for p.inUse < p.limit && len(p.waiters) > 0 {
		close(p.waiters[0])
		p.waiters = p.waiters[1:]
		p.inUse++
	}
}

// current is the limit, for the imcallback_route_delivery_concurrency gauge.
func (p *pacer) current() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit
}
