package receiver

import (
	"hash/maphash"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// replayWindow remembers the callbacks accepted within the clock-skew window, by a key hashed
// from their Sign, RequestTime and body, so that an exact repeat (IM retrying a callback
// whose reply it did not get in time, or a captured request sent again) is answered OK but not
// forwarded again. A request's key can only be sent while its RequestTime is within the skew
// window, so an entry is dropped once it has left it; the window also holds at most max
// entries, and at that size the oldest entry is forgotten to make room (counted), so that a
// burst bounds the memory and never refuses callbacks: at worst a repeat is forwarded again,
// which at-least-once delivery allows anyway.
//
// The key is 128 bits of maphash with seeds random per process, so nobody can construct a
// body whose key collides with another's.
type replayWindow struct {
	seeds [2]maphash.Seed
	max   int

	mu    sync.Mutex
	cond  sync.Cond            // signalled when a claim settles
	slots map[replayKey]uint64 // seq<<1 | 1 when accepted, 0 while the claim is pending
	ring  replayRing           // the entries in the order they were claimed
	seq   uint64

	evicted uint64 // entries forgotten before they expired, guarded by mu
}

type replayKey [2]uint64

type replayEntry struct {
	key     replayKey
	seq     uint64
	expires int64 // Unix seconds after which the key cannot pass the signature check
}

func newReplayWindow(max int) *replayWindow {
	w := &replayWindow{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, max: max,
		slots: make(map[replayKey]uint64)}
	w.cond.L = &w.mu
	return w
}

// key hashes what makes a callback the same callback.
func (w *replayWindow) key(sign, requestTime string, body []byte) replayKey {
	var k replayKey
	var h maphash.Hash
	for i := range k {
		h.SetSeed(w.seeds[i])
		_, _ = h.WriteString(sign)
		_ = h.WriteByte(0)
		_, _ = h.WriteString(requestTime)
		_ = h.WriteByte(0)
		_, _ = h.Write(body)
		k[i] = h.Sum64()
	}
	return k
}

// claim records k as being accepted and returns its claim number, or reports that an equal
// callback was already accepted (duplicate). While an equal one is still being accepted
// (claimed, not settled) it waits for that one's outcome: answering the second OK while the
// first is refused would lose the callback. now and expires are Unix seconds.
func (w *replayWindow) claim(k replayKey, now, expires int64) (seq uint64, duplicate bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.ring.n > 0 && w.ring.front().expires < now {
		w.drop(w.ring.pop())
	}
	for {
		v, ok := w.slots[k]
		if !ok {
			break
		}
		if v&1 == 1 {
			return 0, true
		}
		w.cond.Wait()
	}
	if w.ring.n >= w.max {
		w.drop(w.ring.pop())
		w.evicted++
	}
	w.seq++
	w.slots[k] = w.seq << 1
	w.ring.push(replayEntry{key: k, seq: w.seq, expires: expires}, w.max)
	return w.seq, false
}

// settle ends claim seq of k: accepted, it is remembered until it expires; else it is
// forgotten, so that the callback can be sent again.
func (w *replayWindow) settle(k replayKey, seq uint64, accepted bool) {
	w.mu.Lock()
	if v, ok := w.slots[k]; ok && v>>1 == seq {
		if accepted {
			w.slots[k] = v | 1
		} else {
			delete(w.slots, k)
		}
	}
	w.mu.Unlock()
	w.cond.Broadcast()
}

// drop forgets e's key unless a later claim of the same key owns the slot now.
func (w *replayWindow) drop(e replayEntry) {
	if v, ok := w.slots[e.key]; ok && v>>1 == e.seq {
		delete(w.slots, e.key)
	}
}

// stats returns the entries held and those forgotten before they expired.
func (w *replayWindow) stats() (entries int, evicted uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.slots), w.evicted
}

// replayRing is a FIFO of entries in a circular buffer that grows up to a limit.
type replayRing struct {
	buf     []replayEntry
	head, n int
}

func (r *replayRing) front() *replayEntry { return &r.buf[r.head] }

func (r *replayRing) pop() replayEntry {
	e := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return e
}

// push appends e; the caller keeps n below limit.
func (r *replayRing) push(e replayEntry, limit int) {
	if r.n == len(r.buf) {
		bigger := make([]replayEntry, min(max(2*len(r.buf), 1024), limit))
		for i := range r.n {
			bigger[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = bigger, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
}

// replayCollectors are the window's metrics; w may be nil (no token, or the check is off).
func replayCollectors(w *replayWindow) []prometheus.Collector {
	entries := func() float64 {
		if w == nil {
			return 0
		}
		n, _ := w.stats()
		return float64(n)
	}
	evicted := func() float64 {
		if w == nil {
			return 0
		}
		_, n := w.stats()
		return float64(n)
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imcallback_replay_window_entries",
			Help: "Accepted callbacks remembered to answer their exact repeats as duplicates (--replay-window-size bounds them).",
		}, entries),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "imcallback_replay_window_evicted_total",
			Help: "Accepted callbacks forgotten before their RequestTime left --max-clock-skew because the replay window was full; a repeat of one of them is forwarded again.",
		}, evicted),
	}
}
