package spool

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppendWhileWaking appends from 16 goroutines (each Append waits for its sync) while
// another goroutine sleeps 200 us at a time, like a handler waiting for the network, and
// reports how late it wakes. Run it with -cpu 1,2: with one P, a goroutine in fdatasync holds
// that P until sysmon takes it back (two sysmon ticks, up to 10 ms each once the runtime has
// been idle), so everything else waits for the disk; with two, the other P keeps running.
// TMPDIR must be on a disk, not tmpfs.
//
//	go test -run '^$' -bench AppendWhileWaking -cpu 1,2 ./receiver/spool
func BenchmarkAppendWhileWaking(b *testing.B) {
	s, _, err := Open(b.TempDir(), Options{MaxBytes: 64 << 20, SyncInterval: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := payload(1)

	stop := make(chan struct{})
	var late []time.Duration
	var sleeper sync.WaitGroup
	sleeper.Go(func() {
		const nap = 200 * time.Microsecond
		for {
			select {
			case <-stop:
				return
			default:
			}
			t := time.Now()
			time.Sleep(nap)
			late = append(late, time.Since(t)-nap)
		}
	})

	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan struct{}, b.N)
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	for range 16 {
		wg.Go(func() {
			for range next {
				if err := s.Append(p); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(stop)
	sleeper.Wait()

	slices.Sort(late)
	if len(late) > 0 {
		b.ReportMetric(float64(late[len(late)/2].Microseconds()), "wake-late-p50-us")
		b.ReportMetric(float64(late[len(late)*99/100].Microseconds()), "wake-late-p99-us")
		b.ReportMetric(float64(late[len(late)-1].Microseconds()), "wake-late-max-us")
	}
	b.ReportMetric(float64(b.N)/float64(s.syncs.Load()), "appends/sync")
}
