// Package spool is the receiver's durable queue: an append-only log of opaque records in
// segment files. Append returns once its record is on disk (fdatasync), with group commit:
// one sync covers every record appended while the previous one ran (or, with SyncInterval,
// within that interval of its start). Segment files are preallocated with zeros, so a sync
// writes data and no metadata. Next hands the records
// out in order, those found at Open first; Done marks one finished, and a segment file is
// removed once every record in it is done. A record cut short or damaged by a crash is
// skipped on Open and reported in Recovery; it never costs an intact record.
//
// Done is recorded with a write within a few milliseconds, without a sync: it survives the
// process being killed (a record done in those last milliseconds is handed out again), but
// after a power loss the records done shortly before may be handed out again.
package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors of Append and Next.
var (
	// ErrFull: the record would take the spool beyond Options.MaxBytes.
	ErrFull = errors.New("spool is full")
	// ErrClosed: Drain or Close was called (Append), or Close (Next).
	ErrClosed = errors.New("spool is closed")
	// ErrDrained: after Drain, every record has been handed out by Next.
	ErrDrained = errors.New("spool drained")
	// ErrNoSpace: the filesystem has no room for the next segment file. Unlike a failed
	// write or sync it is not sticky: the spool keeps handing out and removing what it holds,
	// and a later Append succeeds once segments done meanwhile (or anything else) freed space.
	ErrNoSpace = errors.New("spool: no space left on the filesystem for a new segment")
)

// isNoSpace tells a full filesystem (or quota) from other failures.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Options bound a spool.
type Options struct {
	// MaxBytes bounds the bytes of the spool's files, the preallocated space of the active
	// and the next segment included; an Append beyond it fails with ErrFull.
	MaxBytes int64
	// SegmentBytes is the size of a segment file (preallocated, so that a sync writes only
	// data); 0 means MaxBytes/64 within [4 KiB, 16 MiB]. A segment is removed only once all its records are done, so
	// smaller segments return space sooner and cost more files.
	SegmentBytes int64
	// SyncInterval is the least time between the starts of two syncs while appends keep
	// coming: an append that arrives sooner waits for the rest of it, so that one sync covers
	// more of them (less CPU per record under load, up to SyncInterval more latency). An
	// append after a quiet spell is synced at once. 0 syncs as soon as the last sync ends.
	SyncInterval time.Duration
	// OnSync, if set, is called after each sync with the records it made durable and how
	// long it took (for metrics).
	OnSync func(records int64, took time.Duration)
	// ReadOnly opens the spool to hand out and finish what it holds, without creating a
	// segment: Append fails with ErrClosed. For a directory nothing is appended to any more
	// (a lane whose sink left the flags, a drain of a retained volume).
	ReadOnly bool
}

// Ref identifies a record handed out by Next, for Done.
type Ref struct {
	seg uint64
	off uint32
}

// Record is a record handed out by Next; Data is the caller's.
type Record struct {
	Ref  Ref
	Data []byte
}

// Recovery is what Open found in the directory.
type Recovery struct {
	// Events and Bytes: records waiting (not done) and the bytes of the spool's files.
	Events, Bytes int64
	// Segments holding waiting records.
	Segments int
	// TornTails: segments whose end held no intact record (a write cut short by a crash);
	// TornBytes were truncated.
	TornTails int
	TornBytes int64
	// CorruptRegions: damaged stretches followed by intact records, skipped; CorruptBytes.
	CorruptRegions int
	CorruptBytes   int64
	// CorruptRecords: the records the corrupt regions held that were not done (lost): the
	// record starts found in them, less those done.
	CorruptRecords int
	// TruncatedSegments: segments cut short from outside (done-marks name offsets past their
	// end); TruncatedBytes at least were lost from them, with the records not done there.
	TruncatedSegments int
	TruncatedBytes    int64
	// DamagedAcks: done-marks that failed their check; their records are handed out again.
	DamagedAcks int
	// NoSpace: the filesystem had no room for a new segment; Append answers ErrNoSpace until
	// it has.
	NoSpace bool
}

// Damaged tells whether anything was skipped.
func (r Recovery) Damaged() bool {
	return r.TornTails+r.CorruptRegions+r.DamagedAcks+r.TruncatedSegments > 0
}

type segment struct {
	id   uint64
	path string
	f    *os.File
	ack  *os.File // opened on the first Done

	size   atomic.Int64 // committed bytes: what the reader may read
	sealed atomic.Bool  // no more appends; set after its last commit

	// Guarded by Spool.mu.
	records, done int64
	bytes         int64  // header, records and done-marks
	acks          []byte // ack entries waiting for the committer
	readAll       bool   // the reader has passed every record
	removed       bool

	doneOffs []uint32 // sorted offsets done before Open; only the reader uses it
}

func (g *segment) ackPath() string { return strings.TrimSuffix(g.path, ".seg") + ".ack" }

// batch is a group of appends made durable by one sync.
type batch struct {
	done chan struct{}
	err  error
}

// Spool is a durable FIFO of records in a directory. Its methods may be called from many
// goroutines.
type Spool struct {
	dir      string
	maxBytes int64
	segBytes int64
	onSync   func(int64, time.Duration)
	interval time.Duration
	lastSync time.Time // start of the last sync; only the committer uses it
	lock     *os.File

	mu        sync.Mutex
	pending   []byte // records waiting for the next commit
	pendingN  int64
	pendingB  int64 // bytes the pending records add to bytes
	spare     []byte
	batch     *batch // the batch pending belongs to
	inflight  *batch // the batch being written and synced
	segs      []*segment
	active    *segment
	prep      *prepared // the next segment, being made ready
	bytes     int64     // held: headers, records (pending too) and done-marks
	events    int64     // records appended or found at Open, not done
	committed chan struct{}
	ackDirty  []*segment
	ackFlush  bool // a flush of the done-marks is scheduled
	toRemove  []*segment
	drained   bool
	closed    bool
	err       error // a failed write or sync: the spool takes no more records

	wake     chan struct{}
	stopped  chan struct{}
	syncs    atomic.Int64 // batches synced, for tests of group commit
	readMu   sync.Mutex
	rseg     *segment
	rd       *segReader
	rdDone   int    // index into rseg.doneOffs
	rdSeg    uint64 // id of the segment the reader is in or last left
	nextID   uint64
	dirFile  *os.File
	closeErr error
}

const (
	minSegment = 4 << 10
	maxSegment = 16 << 20
)

// Open opens (creating it if needed) the spool in dir and scans what an earlier process
// left there. The directory is locked for the life of the Spool.
func Open(dir string, opt Options) (*Spool, Recovery, error) {
	var rec Recovery
	if opt.MaxBytes <= 0 {
		return nil, rec, errors.New("spool: MaxBytes must be > 0")
	}
	segBytes := opt.SegmentBytes
	if segBytes <= 0 {
		segBytes = min(max(opt.MaxBytes/64, minSegment), maxSegment)
	}
	segBytes = max(segBytes, minSegment)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rec, fmt.Errorf("spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, rec, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, rec, fmt.Errorf("spool: %s is in use by another process: %w", dir, err)
	}
	s := &Spool{
		dir: dir, maxBytes: opt.MaxBytes, segBytes: segBytes, onSync: opt.OnSync, interval: opt.SyncInterval, lock: lock,
		batch: &batch{done: make(chan struct{})}, committed: make(chan struct{}),
		wake: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
	fail := func(err error) (*Spool, Recovery, error) {
		for _, g := range s.segs {
			_ = g.f.Close()
		}
		if s.dirFile != nil {
			_ = s.dirFile.Close()
		}
		_ = lock.Close()
		return nil, rec, fmt.Errorf("spool: %w", err)
	}
	if s.dirFile, err = os.Open(dir); err != nil {
		return fail(err)
	}
	ids, err := segmentIDs(dir)
	if err != nil {
		return fail(err)
	}
	for _, id := range ids {
		g, err := s.recoverSegment(id, &rec)
		if err != nil {
			return fail(err)
		}
		if g != nil {
			s.segs = append(s.segs, g)
			rec.Segments++
			rec.Events += g.records - g.done
		}
		s.nextID = id + 1
	}
	s.nextID = max(s.nextID, 1)
	for _, g := range s.segs {
		s.bytes += g.bytes
		s.events += g.records - g.done
	}
	// Recovery needs no new space: on a full filesystem the spool opens without an active
	// segment, hands out what it holds (freeing space as segments are done), and the first
	// Append after that creates one (ErrNoSpace until it fits).
	if opt.ReadOnly {
		s.drained = true
	} else if err := s.startSegment(); err != nil && !isNoSpace(err) {
		return fail(err)
	} else if err != nil {
		rec.NoSpace = true
	}
	rec.Bytes = s.bytes
	go s.commitLoop()
	return s, rec, nil
}

// Append writes payload as one record and returns once it is on disk. It fails with ErrFull
// when the record would take the spool beyond MaxBytes, with ErrClosed after Drain or
// Close, and with the error of a failed write or sync, after which the spool takes nothing
// more (a process restart recovers what is on disk).
func (s *Spool) Append(payload []byte) error {
	size := recordSize(len(payload))
	s.mu.Lock()
	switch {
	case s.err != nil:
		err := s.err
		s.mu.Unlock()
		return err
	case s.drained || s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.bytes+size+2*s.segBytes > s.maxBytes: // room for the active and the next segment's preallocated space
		s.mu.Unlock()
		return ErrFull
	}
	s.bytes += size
	s.pending = appendRecord(s.pending, payload)
	s.pendingN++
	s.pendingB += size
	b := s.batch
	s.mu.Unlock()
	s.poke()
	<-b.done
	return b.err
}

// Done marks a record handed out by Next as finished: it leaves the spool.
func (s *Spool) Done(ref Ref) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearchFunc(s.segs, ref.seg, func(g *segment, id uint64) int {
		return cmpUint(g.id, id)
	})
	if !found {
		return
	}
	g := s.segs[i]
	g.done++
	s.events--
	if len(g.acks) == 0 {
		s.ackDirty = append(s.ackDirty, g)
	}
	g.acks = appendAck(g.acks, ref.off)
	g.bytes += ackLen
	s.bytes += ackLen
	if g.done == g.records {
		s.maybeRemove(g)
	}
	// Done-marks ride along with the next commit, or go out within ackDelay: waking the
	// committer for each would cost more than the deliveries it records.
	if !s.ackFlush {
		s.ackFlush = true
		time.AfterFunc(ackDelay, s.poke)
	}
}

// ackDelay bounds how long a done-mark waits in memory (a process killed meanwhile hands
// those records out again after its restart).
const ackDelay = 5 * time.Millisecond

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Drain stops appends (they fail with ErrClosed) and waits until what was appended is on
// disk; from then on Next returns ErrDrained once it has handed out every record.
func (s *Spool) Drain() {
	s.mu.Lock()
	s.drained = true
	waits := []*batch{s.inflight}
	if s.pendingN > 0 {
		waits = append(waits, s.batch)
	}
	s.mu.Unlock()
	s.poke()
	for _, b := range waits {
		if b != nil {
			<-b.done
		}
	}
	s.signalCommitted()
}

// Bytes is what the spool holds: its records (those about to be written too), segment
// headers and done-marks. Its files take up to two segments of preallocated space more,
// within MaxBytes.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Events is the number of records appended or found at Open and not yet done.
func (s *Spool) Events() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

// Err is the error of a failed write, sync or read, after which Append fails; nil while
// healthy.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close writes the outstanding done-marks, syncs them and closes the files; records not
// done stay for the next Open. Append and Next must have returned.
func (s *Spool) Close() error {
	s.Drain()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	prep := s.prep
	s.prep = nil
	s.mu.Unlock()
	s.poke()
	<-s.stopped
	var errs []error
	if prep != nil {
		<-prep.ready
		if prep.g != nil {
			errs = append(errs, prep.g.f.Close())
		}
	}
	for _, g := range s.segs {
		if g.ack != nil {
			errs = append(errs, fdatasync(g.ack), g.ack.Close())
		}
		errs = append(errs, g.f.Close())
	}
	errs = append(errs, s.dirFile.Close(), s.lock.Close())
	s.signalCommitted()
	s.closeErr = errors.Join(errs...)
	return s.closeErr
}
