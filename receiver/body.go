package receiver

import (
	"context"
	"errors"
	"io"
	"math/bits"
	"sync"
	"time"
)

// This file reads callback bodies, which only authenticated requests get to (check 7): into
// pooled buffers sized to the declared Content-Length, within a budget of bytes for all the
// bodies being read at once. The budget is what bounds the memory a client holding a valid
// Sign (a captured URL) can make the receiver use; the check order keeps everybody else from
// making it read a body at all.

var (
	errBodyTooLarge = errors.New("body too large")
	errBodyBudget   = errors.New("bodies being read use the whole budget")
)

const (
	// minBodyBuffer is the smallest pooled buffer and the first read of a body of unknown length.
	minBodyBuffer = 4 << 10
	// smallBody is the buffer size from which a body is large (a body over 32 KiB gets a
	// 64 KiB buffer): small ones may use the whole budget, large ones only largeShare of it,
	// so large bodies (which callbacks seldom are) cannot keep the usual small callbacks
	// waiting; slow bodies declaring 64 KiB included.
	smallBody            = 64 << 10
	largeShareNum        = 3
	largeShareDen        = 4
	bodyBudgetMaxWait    = time.Second
	numBodyBufferClasses = 32
)

// bodyReader reads bodies within a byte budget. Buffers come from one pool per power-of-two
// size class; a pooled buffer is charged to the budget while it is held.
type bodyReader struct {
	max    int64
	budget bodyBudget
	pools  [numBodyBufferClasses]sync.Pool
}

// newBodyReader reads bodies of up to maxBody bytes within a budget of bytes for all of them
// (at least one largest body's class).
func newBodyReader(maxBody, budget int64) *bodyReader {
	b := &bodyReader{max: maxBody}
	top := int64(minBodyBuffer) << class(maxBody)
	b.budget.limit = max(budget, top)
	b.budget.largeLimit = max(b.budget.limit*largeShareNum/largeShareDen, top)
	b.budget.maxWait = bodyBudgetMaxWait
	return b
}

// class returns the size class holding n bytes: 4 KiB << class >= n.
func class(n int64) int {
	if n <= minBodyBuffer {
		return 0
	}
	return bits.Len64(uint64(n-1)) - bits.Len64(minBodyBuffer-1)
}

// get returns an empty pooled buffer of class c. The pools hold *[]byte, and the pointer
// travels with the buffer, so that putting it back allocates nothing.
func (b *bodyReader) get(c int) *[]byte {
	if p, ok := b.pools[c].Get().(*[]byte); ok {
		*p = (*p)[:0]
		return p
	}
	buf := make([]byte, 0, minBodyBuffer<<c)
	return &buf
}

// release returns buf (nil is fine) to its pool and its bytes to the budget.
func (b *bodyReader) release(buf *[]byte) {
	if buf == nil {
		return
	}
	n := cap(*buf)
	b.budget.release(int64(n))
	b.pools[class(int64(n))].Put(buf)
}

// read reads a body whose Content-Length is declared (-1 when unknown: chunked). It returns
// errBodyTooLarge past max, errBodyBudget when no budget freed up in time, or the read error.
// The returned buffer (nil for an empty body, else also on error) must be given to release.
func (b *bodyReader) read(ctx context.Context, body io.Reader, declared int64) (*[]byte, error) {
	if declared == 0 {
		return nil, nil
	}
	want := declared
	if want < 0 || want > b.max {
		want = min(minBodyBuffer, b.max)
	}
	c := class(want)
	if err := b.budget.acquire(ctx, minBodyBuffer<<c); err != nil {
		return nil, err
	}
	p := b.get(c)
	for {
		buf := *p
		// Never past max: the buffer of the largest class may be larger.
		end := int(min(int64(cap(buf)), b.max))
		n, err := body.Read(buf[len(buf):end])
		*p = buf[:len(buf)+n]
		if err == io.EOF {
			return p, nil
		}
		if err != nil {
			return p, err
		}
		full := int64(len(*p))
		if full < int64(end) {
			continue
		}
		if full == b.max || (declared > 0 && full >= declared) {
			// All that may come has come: one more byte is too much.
			return p, expectEOF(body, full == b.max)
		}
		// A body of unknown length grows to the next class, charged before it is taken.
		next := class(full) + 1
		if err := b.budget.acquire(ctx, minBodyBuffer<<next); err != nil {
			return p, err
		}
		bigger := b.get(next)
		*bigger = append(*bigger, *p...)
		b.release(p)
		p = bigger
	}
}

var errBodyLongerThanDeclared = errors.New("body longer than its Content-Length")

// expectEOF reads until the body ends, failing if it holds another byte.
func expectEOF(body io.Reader, atMax bool) error {
	var one [1]byte
	for {
		n, err := body.Read(one[:])
		switch {
		case n > 0 && atMax:
			return errBodyTooLarge
		case n > 0:
			return errBodyLongerThanDeclared // net/http never lets this happen
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// bodyBudget counts the bytes of body buffers held. Waiters are served in order, except that
// one that fits goes ahead of one that does not (a small body ahead of a large one); a release
// wakes only the waiters it makes room for.
type bodyBudget struct {
	mu                sync.Mutex
	used              int64
	limit, largeLimit int64
	waiters           []*budgetWaiter
	maxWait           time.Duration
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes were granted
}

func (b *bodyBudget) fits(n int64) bool {
	limit := b.limit
	if n >= smallBody {
		limit = b.largeLimit
	}
	return b.used+n <= limit
}

// acquire takes n bytes of the budget, waiting up to maxWait for them.
func (b *bodyBudget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.fits(n) {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.grant() // it may fit where the ones before it do not
	b.mu.Unlock()

	timer := time.NewTimer(b.maxWait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-timer.C:
		err = errBodyBudget
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile
		return nil
	default:
	}
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			break
		}
	}
	return err
}

// grant gives waiting requests, in order, the bytes that fit. b.mu is held.
func (b *bodyBudget) grant() {
	kept := b.waiters[:0]
	for _, w := range b.waiters {
		if b.fits(w.n) {
			b.used += w.n
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	clear(b.waiters[len(kept):])
	b.waiters = kept
}

func (b *bodyBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	if len(b.waiters) > 0 {
		b.grant()
	}
	b.mu.Unlock()
}

// inUse returns the bytes held, for tests and metrics.
func (b *bodyBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
