package receiver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/imcallback/callback-operator/receiver/spool"
)

// Queue is the store between the intake and delivery: the intake appends each accepted
// callback to the lane of its destination and answers OK only once Append returned nil;
// delivery takes each lane's entries with that lane's own workers and marks each Done once
// it was delivered, dead-lettered or counted failed. Two implementations are in this
// package: memQueue (in memory, --queue-size) and spoolQueue (a segment log per lane on disk,
// --spool-dir); the rest of the receiver never asks which it has. A further store (JetStream)
// is one more implementation of this contract:
//
//   - Lanes are numbered 0..Lanes()-1. Lane i < len(configured lanes) is the i-th delivery
//     target (routing.routes); a store may hand out more lanes, holding entries an earlier
//     process stored for targets no longer configured: delivery sends those where the
//     current flags route their command.
//   - Append(lane, it) stores it (the store may keep the *item, but it.body is the caller's
//     buffer, reused after Append returns: copy it if it is kept) and
//     returns nil once it is as durable as the store promises (synced, acknowledged by a
//     quorum). It fails with ErrLaneFull when that lane's quota is used up (only that lane's
//     callbacks are refused), ErrNoRoom when the store has no room for anything now but is
//     not broken (a full filesystem; it recovers by itself), ErrStopped after Stop, and any
//     other error when the store failed (then Err is non-nil).
//   - Take(ctx, lane) returns the lane's next entry, waiting for one, in order of Append
//     (entries found at start first). After Stop it returns ErrStopped once the lane has
//     nothing left to hand out; ctx's error when ctx ends first.
//   - Done(e) ends an entry: it leaves the store (for good: at least once, not twice, unless
//     the process dies within the store's done-mark delay). Entries not done when the
//     process ends are handed out again by the next store opened on the same place.
//   - Hold(e) says the entry is still being worked on (held through its target's outage,
//     in backoff): a store that hands unacknowledged entries to another consumer after a
//     while (JetStream's AckWait: Msg.InProgress) must extend that; the local stores need
//     nothing. Delivery calls it before each wait of a held entry, and the waits are at most
//     maxOutageBackoff, or the sink's Retry-After up to --max-retry-after, so an AckWait
//     longer than that plus --delivery-timeout is never reached by a live entry.
//   - A lane is a destination's own backlog: a JetStream store maps it to the route's durable
//     pull consumer (shared by the replicas), the local stores to a channel or a segment log.
//   - Waiting(lane) is the entries of the lane not done (waiting or being delivered).
//   - Err is non-nil once the store failed in a way only a restart cures (/healthz fails).
//   - Stop ends Appends (ErrStopped) and lets Take drain; Close releases the store after
//     every Take and Append has returned; entries not done stay stored.
//
// Every method may be called from many goroutines.
type Queue interface {
	Lanes() int
	Append(lane int, it *item) error
	Take(ctx context.Context, lane int) (Entry, error)
	Done(e Entry)
	Hold(e Entry)
	Waiting(lane int) int64
	Err() error
	Stop()
	Close() error
}

// Entry is an accepted callback handed out by Queue.Take.
type Entry struct {
	Lane int
	// Item is the callback; nil when the stored record could not be decoded (Raw holds it):
	// delivery counts it failed and logs it.
	Item *item
	Raw  []byte
	ref  spool.Ref // spoolQueue's
}

// Errors of Queue.Append and Queue.Take, and of a stored record that cannot be decoded.
var (
	errBadRecord = errors.New("spooled record cannot be decoded")
	ErrLaneFull  = errors.New("queue: this lane's quota is full")
	ErrNoRoom    = errors.New("queue: no room in the store now")
	ErrStopped   = errors.New("queue: stopped")
)

// memQueue is the in-memory Queue: a bounded channel per lane, lost with the process.
type memQueue struct {
	mu      sync.RWMutex // held for reading while appending, for writing to stop
	stopped bool
	lanes   []chan *item
	notDone []atomic.Int64
}

// newMemQueue makes lanes channels of perLane entries each.
func newMemQueue(lanes, perLane int) *memQueue {
	q := &memQueue{lanes: make([]chan *item, max(lanes, 1)), notDone: make([]atomic.Int64, max(lanes, 1))}
	for i := range q.lanes {
		q.lanes[i] = make(chan *item, max(perLane, 1))
	}
	return q
}

func (q *memQueue) Lanes() int { return len(q.lanes) }

func (q *memQueue) Append(lane int, it *item) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.stopped {
		return ErrStopped
	}
	it.body = append(make([]byte, 0, len(it.body)), it.body...)
	q.notDone[lane].Add(1) // before the send, so that a Done never makes it negative
	select {
	case q.lanes[lane] <- it:
		return nil
	default:
		q.notDone[lane].Add(-1)
		return ErrLaneFull
	}
}

func (q *memQueue) Take(ctx context.Context, lane int) (Entry, error) {
	select {
	case it, ok := <-q.lanes[lane]:
		if !ok {
			return Entry{}, ErrStopped
		}
		return Entry{Lane: lane, Item: it}, nil
	case <-ctx.Done():
		return Entry{}, ctx.Err()
	}
}

func (q *memQueue) Done(e Entry)           { q.notDone[e.Lane].Add(-1) }
func (q *memQueue) Hold(Entry)             {}
func (q *memQueue) Waiting(lane int) int64 { return q.notDone[lane].Load() }
func (q *memQueue) Err() error             { return nil }
func (q *memQueue) Close() error           { q.Stop(); return nil }

// capacity is the sum of the lanes' bounds.
func (q *memQueue) capacity() int {
	n := 0
	for _, c := range q.lanes {
		n += cap(c)
	}
	return n
}

func (q *memQueue) Stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopped {
		q.stopped = true
		for _, c := range q.lanes {
			close(c)
		}
	}
}
