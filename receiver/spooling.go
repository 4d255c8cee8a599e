package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/imcallback/callback-operator/receiver/spool"
)

// recordPool recycles the buffers records are encoded into; a buffer grown beyond
// maxPooledRecord is dropped, so that a few large bodies do not pin memory.
var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledRecord = 64 << 10

func putRecord(b *[]byte) {
	if cap(*b) <= maxPooledRecord {
		recordPool.Put(b)
	}
}

// A spooled callback, version 1: version byte, receipt time (Unix nanoseconds), flags
// (ClientIP present, OptPlatform present), SdkAppid, command, ClientIP and OptPlatform each
// with a uvarint length, then the body to the end.
const (
	itemVersion    = 1
	flagClientIP   = 1
	flagOptPlatfrm = 2
)

func appendItem(dst []byte, it *item) []byte {
	dst = append(dst, itemVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(it.received.UnixNano()))
	var flags byte
	if it.hasClientIP {
		flags |= flagClientIP
	}
	if it.hasOptPlatform {
		flags |= flagOptPlatfrm
	}
	dst = append(dst, flags)
	for _, s := range [...]string{it.sdkAppID, it.command, it.clientIP, it.optPlatform} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return append(dst, it.body...)
}

// decodeItem reads a record written by appendItem; the body aliases b.
func decodeItem(b []byte) (*item, error) {
	if len(b) < 10 || b[0] != itemVersion {
		return nil, errBadRecord
	}
	it := &item{received: time.Unix(0, int64(binary.LittleEndian.Uint64(b[1:9])))}
	flags := b[9]
	it.hasClientIP, it.hasOptPlatform = flags&flagClientIP != 0, flags&flagOptPlatfrm != 0
	b = b[10:]
	for _, dst := range [...]*string{&it.sdkAppID, &it.command, &it.clientIP, &it.optPlatform} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errBadRecord
		}
		*dst = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	it.body = b
	return it, nil
}

// spoolQueue is the durable Queue: a segment log (package spool) per lane, in
// <spool-dir>/lanes/<lane name>, each bounded by its share of --spool-max-bytes, so that a
// dead sink's backlog fills only its own lane's quota and only its commands get 503. A lane's
// name is derived from its sink's URL, so a restart under the same flags finds each lane's
// backlog again; the lanes of sinks no longer configured (and the single log of a spool
// written before lanes, in the directory itself) are opened read-only as extra lanes, whose
// events go where the current flags route their commands.
type spoolQueue struct {
	dir      string
	lock     *os.File // the directory's lock; nil when the pre-lanes log holds it
	lanes    []*spool.Spool
	names    []string // lane directory names (for logs)
	quota    int64    // bytes per configured lane
	recovery spool.Recovery
}

// laneName names the directory of the lane delivering to sink.
func laneName(sink string) string {
	sum := sha256.Sum256([]byte(sink))
	return hex.EncodeToString(sum[:8])
}

const lanesDir = "lanes"

// openSpoolQueue opens (creating what is missing) the lanes of sinks under dir, with
// maxBytes shared evenly between them, and the lanes an earlier process left for other sinks.
func openSpoolQueue(dir string, sinks []string, maxBytes int64, opt spool.Options) (*spoolQueue, error) {
	q := &spoolQueue{dir: dir, quota: maxBytes / int64(max(len(sinks), 1))}
	if err := os.MkdirAll(filepath.Join(dir, lanesDir), 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	fail := func(err error) (*spoolQueue, error) {
		_ = q.Close()
		return nil, err
	}
	// The pre-lanes log, if any, is the directory itself; opening it takes the directory's lock.
	legacy, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return nil, err
	}
	var extra []*spool.Spool
	var extraNames []string
	if len(legacy) > 0 {
		ro := opt
		ro.ReadOnly, ro.MaxBytes = true, maxBytes
		sp, rec, err := spool.Open(dir, ro)
		if err != nil {
			return fail(err)
		}
		q.add(rec)
		extra, extraNames = append(extra, sp), append(extraNames, ".")
	} else {
		if q.lock, err = lockDir(dir); err != nil {
			return fail(err)
		}
	}
	configured := map[string]bool{}
	for _, sink := range sinks {
		name := laneName(sink)
		configured[name] = true
		o := opt
		o.MaxBytes = q.quota
		sp, rec, err := spool.Open(filepath.Join(dir, lanesDir, name), o)
		if err != nil {
			return fail(err)
		}
		q.add(rec)
		q.lanes, q.names = append(q.lanes, sp), append(q.names, name)
	}
	ents, err := os.ReadDir(filepath.Join(dir, lanesDir))
	if err != nil {
		return fail(err)
	}
	for _, e := range ents {
		if !e.IsDir() || configured[e.Name()] {
			continue
		}
		path := filepath.Join(dir, lanesDir, e.Name())
		ro := opt
		ro.ReadOnly, ro.MaxBytes = true, maxBytes
		sp, rec, err := spool.Open(path, ro)
		if err != nil {
			return fail(err)
		}
		if rec.Events == 0 { // a lane of a sink gone from the flags, delivered: remove it
			_ = sp.Close()
			_ = os.RemoveAll(path)
			continue
		}
		q.add(rec)
		extra, extraNames = append(extra, sp), append(extraNames, e.Name())
	}
	q.lanes, q.names = append(q.lanes, extra...), append(q.names, extraNames...)
	return q, nil
}

func lockDir(dir string) (*os.File, error) {
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("spool: %s is in use by another process: %w", dir, err)
	}
	return lock, nil
}

func (q *spoolQueue) add(got spool.Recovery) {
	t := &q.recovery
	t.Events += got.Events
	t.Bytes += got.Bytes
	t.Segments += got.Segments
	t.TornTails += got.TornTails
	t.TornBytes += got.TornBytes
	t.CorruptRegions += got.CorruptRegions
	t.CorruptBytes += got.CorruptBytes
	t.CorruptRecords += got.CorruptRecords
	t.TruncatedSegments += got.TruncatedSegments
	t.TruncatedBytes += got.TruncatedBytes
	t.DamagedAcks += got.DamagedAcks
	t.NoSpace = t.NoSpace || got.NoSpace
}

func (q *spoolQueue) Lanes() int { return len(q.lanes) }

func (q *spoolQueue) Append(lane int, it *item) error {
	bufp := recordPool.Get().(*[]byte)
	rec := appendItem((*bufp)[:0], it)
	err := q.lanes[lane].Append(rec)
	*bufp = rec[:0]
	putRecord(bufp)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, spool.ErrFull):
		return ErrLaneFull
	case errors.Is(err, spool.ErrNoSpace):
		return fmt.Errorf("%w: %w", ErrNoRoom, err)
	case errors.Is(err, spool.ErrClosed):
		return ErrStopped
	}
	return err
}

func (q *spoolQueue) Take(ctx context.Context, lane int) (Entry, error) {
	rec, err := q.lanes[lane].Next(ctx)
	if err != nil {
		if errors.Is(err, spool.ErrDrained) || errors.Is(err, spool.ErrClosed) {
			return Entry{}, ErrStopped
		}
		return Entry{}, err
	}
	e := Entry{Lane: lane, ref: rec.Ref}
	if e.Item, err = decodeItem(rec.Data); err != nil {
		e.Raw = rec.Data
	}
	return e, nil
}

func (q *spoolQueue) Done(e Entry)             { q.lanes[e.Lane].Done(e.ref) }
func (q *spoolQueue) Hold(Entry)               {}
func (q *spoolQueue) Waiting(lane int) int64   { return q.lanes[lane].Events() }
func (q *spoolQueue) laneBytes(lane int) int64 { return q.lanes[lane].Bytes() }

func (q *spoolQueue) Err() error {
	for i, sp := range q.lanes {
		if err := sp.Err(); err != nil {
			return fmt.Errorf("lane %s: %w", q.names[i], err)
		}
	}
	return nil
}

// Stop drains the lanes at once: each waits for its appends in progress to be on disk.
func (q *spoolQueue) Stop() {
	var wg sync.WaitGroup
	for _, sp := range q.lanes {
		wg.Go(sp.Drain)
	}
	wg.Wait()
}

func (q *spoolQueue) Close() error {
	var errs []error
	for _, sp := range q.lanes {
		errs = append(errs, sp.Close())
	}
	if q.lock != nil {
		errs = append(errs, q.lock.Close())
	}
	return errors.Join(errs...)
}

// bytes and events are the totals of every lane.
func (q *spoolQueue) bytes() (n int64) {
	for _, sp := range q.lanes {
		n += sp.Bytes()
	}
	return n
}

func (q *spoolQueue) events() (n int64) {
	for _, sp := range q.lanes {
		n += sp.Events()
	}
	return n
}
