// Package gcheadroom sets the Go collector's target so that the heap may grow by at least a
// fixed number of bytes between collections, and by no more than the live heap beyond that.
//
// GOGC sets the headroom relative to the live heap: a high value saves collections while the
// live heap is small, and multiplies memory once it is not (the receiver's replay window alone
// keeps about 11 MiB live; at GOGC=400 that held 77 MiB resident instead of 39). Keeping the
// headroom at max(minimum, live heap) is what both cases want: after every collection the
// percentage is set from the live heap the collector measured.
package gcheadroom

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

const liveMetric = "/gc/heap/live:bytes"

// Percent is the GC percentage that leaves at least minHeadroom bytes of growth over a live
// heap of live bytes, between 100 (Go's default: growth equal to the live heap) and maxPercent.
func Percent(live, minHeadroom uint64, maxPercent int) int {
	if live == 0 {
		return maxPercent
	}
	p := minHeadroom * 100 / live
	if p >= uint64(maxPercent) {
		return maxPercent
	}
	return max(int(p), 100)
}

// Start sets the GC percentage after every collection from then on, and now; stop ends it.
// It changes the percentage only when it moves by a tenth or more: SetGCPercent is cheap,
// but a value that changes every cycle helps nothing.
func Start(minHeadroom uint64, maxPercent int) (stop func()) {
	t := &tuner{minHeadroom: minHeadroom, maxPercent: maxPercent, current: -1}
	t.sample[0].Name = liveMetric
	t.adjust()
	t.arm()
	return func() { t.stopped.Store(true) }
}

type tuner struct {
	minHeadroom uint64
	maxPercent  int
	current     int // only touched by adjust, which runs on one goroutine at a time
	stopped     atomic.Bool
	sample      [1]metrics.Sample
}

// sentinel is garbage as soon as it is made; its finalizer runs after the next collection.
type sentinel struct{ _ [16]byte }

func (t *tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

func (t *tuner) adjust() {
	metrics.Read(t.sample[:])
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := Percent(t.sample[0].Value.Uint64(), t.minHeadroom, t.maxPercent)
	if t.current > 0 && p*10 > t.current*9 && p*10 < t.current*11 {
		return
	}
	t.current = p
	debug.SetGCPercent(p)
}
