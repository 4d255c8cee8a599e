package gcheadroom

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{2 * mib, 400},      // 16 MiB over 2 MiB is 800%: capped
		{4 * mib, 400},      // exactly the cap
		{8 * mib, 200},      // 16 MiB of headroom
		{12 * mib, 133},     // rounded down: never less than the minimum headroom by more than a byte per live MiB
		{16 * mib, 100},     // the floor: growth equal to the live heap
		{64 * mib, 100},     // never below Go's default
		{1 << 40, 100},      // no overflow
		{1, 400},            // a tiny heap
		{16*mib + 1, 100},   // just over: the floor
		{16*mib/3 + 1, 299}, // between
	} {
		if got := Percent(c.live, 16*mib, 400); got != c.want {
			t.Errorf("Percent(%d, 16 MiB, 400) = %d, want %d", c.live, got, c.want)
		}
	}
}

func gogc(t *testing.T) int {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

var live [][]byte

// The percentage follows the live heap after collections: the cap while it is small, Go's
// default once it is larger than the minimum headroom, and back when it shrinks.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	stop := Start(16*mib, 400)
	defer stop()
	collect := func() {
		for range 3 { // the finalizer runs after a collection, on its own goroutine
			runtime.GC()
			runtime.Gosched()
		}
	}
	collect()
	if got := gogc(t); got != 400 {
		t.Fatalf("small live heap: GOGC %d, want 400", got)
	}
	for range 48 {
		b := make([]byte, mib)
		for i := range b {
			b[i] = 1
		}
		live = append(live, b)
	}
	collect()
	if got := gogc(t); got != 100 {
		t.Fatalf("48 MiB live: GOGC %d, want 100", got)
	}
	live = nil
	collect()
	if got := gogc(t); got != 400 {
		t.Fatalf("live heap released: GOGC %d, want 400", got)
	}
	stop()
	debug.SetGCPercent(250)
	collect()
	if got := gogc(t); got != 250 {
		t.Fatalf("after stop: GOGC %d, want 250 (left alone)", got)
	}
}
