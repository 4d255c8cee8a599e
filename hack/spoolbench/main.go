// Command spoolbench measures the receiver's spool workload on three stores, to choose one:
// receiver/spool (a segment log), go.etcd.io/bbolt (batched transactions) and
// github.com/cockroachdb/pebble/v2 (synced writes, which Pebble group-commits). It is its
// own module so that the receiver does not depend on the stores it did not choose.
//
// The workload is the receiver's: concurrent writers each append a ~300-byte record and wait
// until it is durable (the 200 OK waits for that), while one reader takes records in order
// and marks each done (deletes it) once "delivered". Each store runs in its own process (peak
// RSS is per process), pinned like hack/bench-receiver.sh pins the receiver:
//
//	go run . -dir /var/tmp/spoolbench            # all stores, all phases; prints a table
//
// Phases: closed loop (-writers writers for -duration): records/s, append latency p50/p99,
// CPU per record; open loop at -rate records/s: latency p99, CPU per record; recovery:
// -recover records appended and not done, then a new process opens the store and reads them
// all: time and peak RSS.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// store is the spool workload's view of a store.
type store interface {
	// Append makes payload durable before it returns.
	Append(payload []byte) error
	// Next returns the next record not yet taken, in order; while loading it waits a little
	// for one, when recovering it says false at the end.
	Next() (handle any, payload []byte, ok bool)
	// Done deletes a record taken by Next.
	Done(handle any)
	// Recovering: no more appends; Next says false once everything was taken.
	Recovering()
	Close() error
}

var stores = map[string]func(dir string) (store, error){
	"segmentlog":         func(dir string) (store, error) { return openSegmentLog(dir, time.Millisecond) },
	"segmentlog-unpaced": func(dir string) (store, error) { return openSegmentLog(dir, 0) },
	"bbolt":              openBolt,
	"pebble":             openPebble,
}

func main() {
	dir := flag.String("dir", "/var/tmp/spoolbench", "parent directory of the stores (on the disk the receiver would use, not tmpfs)")
	only := flag.String("store", "", "run one store in this process (used by the parent run)")
	storeList := flag.String("stores", "segmentlog,bbolt,pebble", "stores to compare: segmentlog (syncs paced at 1 ms, as the receiver runs it), segmentlog-unpaced, bbolt, pebble")
	phase := flag.String("phase", "", "closed, open, fill or recover (with -store)")
	writers := flag.Int("writers", 32, "concurrent writers in the closed loop")
	duration := flag.Duration("duration", 5*time.Second, "length of the closed and open loops")
	rate := flag.Int("rate", 3000, "records per second in the open loop")
	recoverN := flag.Int("recover", 200000, "records left waiting for the recovery phase")
	flag.Parse()

	if *only != "" {
		sub := *phase
		if sub == "recover" {
			sub = "fill" // recovery opens what fill left
		}
		res, err := runPhase(*only, filepath.Join(*dir, *only+"-"+sub), *phase, *writers, *duration, *rate, *recoverN)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(res)
		return
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(*dir)
	names := strings.Split(*storeList, ",")
	results := map[string]map[string]string{}
	for _, phase := range []string{"closed", "open", "fill", "recover"} {
		for _, name := range names {
			out, err := exec.Command("taskset", "-c", "0", "env", "GOMAXPROCS=2", os.Args[0], "-dir", *dir, "-store", name, "-phase", phase,
				"-writers", fmt.Sprint(*writers), "-duration", duration.String(), "-rate", fmt.Sprint(*rate), "-recover", fmt.Sprint(*recoverN)).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s %s: %v\n%s", name, phase, err, out)
				os.Exit(1)
			}
			if results[name] == nil {
				results[name] = map[string]string{}
			}
			for _, kv := range strings.Fields(string(out)) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					results[name][phase+"."+k] = v
				}
			}
		}
	}
	rows := []struct{ key, label string }{
		{"closed.rate", fmt.Sprintf("records/s, %d writers", *writers)},
		{"closed.p50", "append p50, closed loop"},
		{"closed.p99", "append p99, closed loop"},
		{"closed.cpu", "CPU per record, closed loop"},
		{"closed.syncs", "records per sync, closed"},
		{"closed.rss", "peak RSS, closed loop"},
		{"open.p50", fmt.Sprintf("append p50 at %d/s", *rate)},
		{"open.p99", fmt.Sprintf("append p99 at %d/s", *rate)},
		{"open.cpu", fmt.Sprintf("CPU per record at %d/s", *rate)},
		{"fill.disk", fmt.Sprintf("disk bytes, %d waiting", *recoverN)},
		{"recover.took", fmt.Sprintf("open + read %d waiting", *recoverN)},
		{"recover.rss", "peak RSS, recovery"},
	}
	fmt.Printf("%-30s", "")
	for _, n := range names {
		fmt.Printf(" %18s", n)
	}
	fmt.Println()
	for _, r := range rows {
		fmt.Printf("%-30s", r.label)
		for _, n := range names {
			fmt.Printf(" %18s", results[n][r.key])
		}
		fmt.Println()
	}
}

func payload(i uint64) []byte {
	p := make([]byte, 300)
	binary.BigEndian.PutUint64(p, i)
	for j := 8; j < len(p); j++ {
		p[j] = byte('a' + (i+uint64(j))%26)
	}
	return p
}

func runPhase(name, dir, phase string, writers int, duration time.Duration, rate, recoverN int) (string, error) {
	if phase != "recover" {
		_ = os.RemoveAll(dir)
	}
	open := stores[name]
	if open == nil {
		return "", fmt.Errorf("no store %q", name)
	}
	begin := time.Now()
	s, err := open(dir)
	if err != nil {
		return "", err
	}
	cpu0 := cpuTime()
	switch phase {
	case "closed", "open":
		lat, n, err := load(s, phase == "closed", writers, duration, rate)
		if err != nil {
			return "", err
		}
		cpu := cpuTime() - cpu0
		if err := s.Close(); err != nil {
			return "", err
		}
		slices.Sort(lat)
		out := fmt.Sprintf("rate=%.0f p50=%v p99=%v cpu=%.1fus rss=%s", float64(n)/duration.Seconds(), pct(lat, .5), pct(lat, .99),
			float64(cpu.Microseconds())/float64(n), peakRSS())
		if sc, ok := s.(interface{ Syncs() int64 }); ok && sc.Syncs() > 0 {
			out += fmt.Sprintf(" syncs=%.1f", float64(n)/float64(sc.Syncs()))
		}
		return out, nil
	case "fill":
		var wg sync.WaitGroup
		var next atomic.Uint64
		for range 32 {
			wg.Go(func() {
				for i := next.Add(1); i <= uint64(recoverN); i = next.Add(1) {
					if err := s.Append(payload(i)); err != nil {
						panic(err)
					}
				}
			})
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			return "", err
		}
		return fmt.Sprintf("disk=%.1fMiB", float64(duBytes(dir))/(1<<20)), nil
	case "recover":
		s.Recovering()
		n := 0
		for {
			_, _, ok := s.Next()
			if !ok {
				break
			}
			n++
		}
		took := time.Since(begin)
		if err := s.Close(); err != nil {
			return "", err
		}
		if n != recoverN {
			return "", fmt.Errorf("recovered %d records, want %d", n, recoverN)
		}
		return fmt.Sprintf("took=%v rss=%s", took.Round(time.Millisecond), peakRSS()), nil
	}
	return "", fmt.Errorf("no phase %q", phase)
}

// load runs writers (closed loop) or a fixed rate of appends (open loop) while a reader takes
// and deletes records; it returns append latencies and the number appended.
func load(s store, closed bool, writers int, d time.Duration, rate int) ([]time.Duration, int, error) {
	stop := make(chan struct{})
	var readerDone sync.WaitGroup
	readerDone.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if k, _, ok := s.Next(); ok {
				s.Done(k)
			}
		}
	})
	var mu sync.Mutex
	var lat []time.Duration
	var seq atomic.Uint64
	var firstErr atomic.Value
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	appendOne := func(due time.Time) {
		if err := s.Append(payload(seq.Add(1))); err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
		l := time.Since(due)
		mu.Lock()
		lat = append(lat, l)
		mu.Unlock()
	}
	if closed {
		for range writers {
			wg.Go(func() {
				for time.Now().Before(end) {
					appendOne(time.Now())
				}
			})
		}
	} else {
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		for i := 0; ; i++ {
			due := start.Add(time.Duration(i) * interval)
			if due.After(end) {
				break
			}
			time.Sleep(time.Until(due))
			wg.Go(func() { appendOne(due) })
		}
	}
	wg.Wait()
	close(stop)
	readerDone.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return nil, 0, err
	}
	return lat, int(seq.Load()), nil
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(p*float64(len(l))))].Round(time.Microsecond)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int
			_, _ = fmt.Sscan(v, &kb)
			return fmt.Sprintf("%.1fMiB", float64(kb)/1024)
		}
	}
	return "?"
}

func duBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// seqKey is a big-endian key, so keys sort in append order.
func seqKey(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// ordered hands out keys for appends and lets a reader take them in key order: a key is
// taken only once every smaller key was (appends complete out of order).
type ordered struct {
	last     atomic.Uint64 // last key handed to an appender
	next     uint64        // next key for the reader
	recovery bool
}

// idle is what Next does when the next key is not there yet.
func (o *ordered) idle() bool {
	if o.recovery {
		return false
	}
	time.Sleep(200 * time.Microsecond)
	return false
}

var errStop = errors.New("stop")

func mkdir(dir string) error { return os.MkdirAll(dir, 0o700) }
