// Package spool is the receiver's durable queue: an append-only log of opaque records in
// segment files. Append returns once its record is on disk (fdatasync), with group commit:
// one sync covers every record appended while the previous sync ran. Next hands the records
// out in order, those found at Open first; Done marks one finished, and a segment file is
// removed once every record in it is done. A record cut short or damaged by a crash is
// skipped on Open and reported in Recovery; it never costs an intact record.
//
// Done is recorded with a write (no sync): it survives the process being killed, but after
// a power loss a record done shortly before may be handed out again.
package spool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
)

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
	// DamagedAcks: done-marks that failed their check; their records are handed out again.
	DamagedAcks int
}

// Damaged tells whether anything was skipped.
func (r Recovery) Damaged() bool {
	return r.TornTails+r.CorruptRegions+r.DamagedAcks > 0
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
	if err := s.startSegment(); err != nil {
		return fail(err)
	}
	rec.Bytes = s.bytes
	go s.commitLoop()
	return s, rec, nil
}

// segmentIDs lists the segment files in dir, oldest first, and removes ack files that lost
// their segment.
func segmentIDs(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	segs := map[uint64]bool{}
	for _, e := range entries {
		if id, ok := parseName(e.Name(), ".seg"); ok {
			ids = append(ids, id)
			segs[id] = true
		}
	}
	for _, e := range entries {
		if id, ok := parseName(e.Name(), ".ack"); ok && !segs[id] {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func parseName(name, ext string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ext)
	if !ok || len(base) != 20 {
		return 0, false
	}
	id, err := strconv.ParseUint(base, 10, 64)
	return id, err == nil
}

func (s *Spool) segPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", id))
}

// recoverSegment scans one segment left by an earlier process: it counts the intact records
// and those done, truncates a torn tail, and removes the files when nothing is waiting.
func (s *Spool) recoverSegment(id uint64, rec *Recovery) (*segment, error) {
	g := &segment{id: id, path: s.segPath(id)}
	f, err := os.OpenFile(g.path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	g.f = f
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	size := st.Size()
	if size > math.MaxUint32 {
		size = math.MaxUint32 // offsets are 32 bits; larger files are not written by Append
	}
	ackBytes, err := os.ReadFile(g.ackPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = f.Close()
		return nil, err
	}
	offs, damagedAcks := decodeAcks(ackBytes)
	rec.DamagedAcks += damagedAcks
	slices.Sort(offs)
	offs = slices.Compact(offs)

	if size > 0 {
		head := make([]byte, headerLen)
		if n, _ := f.ReadAt(head, 0); int64(n) < headerLen || string(head) != fileMagic {
			if size <= headerLen {
				rec.TornTails++
				rec.TornBytes += size
			} else {
				rec.CorruptRegions++
				rec.CorruptBytes += min(size, headerLen)
			}
		}
	}
	rd := newSegReader(f, size)
	lastEnd := min(size, headerLen)
	var done []uint32
	oi := 0
	for {
		off, p, ok, err := rd.next(true)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		if !ok {
			break
		}
		g.records++
		for oi < len(offs) && int64(offs[oi]) < off {
			oi++
		}
		if oi < len(offs) && int64(offs[oi]) == off {
			g.done++
			done = append(done, offs[oi])
		}
		lastEnd = off + recordSize(len(p))
	}
	for _, d := range rd.damage {
		if d.start >= lastEnd {
			// Torn: what was written after the last intact record (not the preallocated zeros).
			end, err := lastNonZero(f, lastEnd, size)
			if err != nil {
				_ = f.Close()
				return nil, err
			}
			rec.TornTails++
			rec.TornBytes += end - lastEnd
			break
		}
		rec.CorruptRegions++
		rec.CorruptBytes += min(d.end, lastEnd) - d.start
	}

	if g.records == g.done {
		_ = f.Close()
		if err := os.Remove(g.path); err != nil {
			return nil, err
		}
		_ = os.Remove(g.ackPath())
		return nil, nil
	}
	if lastEnd < size {
		if err := f.Truncate(lastEnd); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	g.size.Store(lastEnd)
	g.sealed.Store(true)
	g.bytes = lastEnd + int64(len(ackBytes))
	g.doneOffs = done
	return g, nil
}

// startSegment makes the segment prepared in the background (or, when there is none yet, a
// new one) the active one, and starts preparing the next.
func (s *Spool) startSegment() error {
	s.mu.Lock()
	prep := s.prep
	s.prep = nil
	s.mu.Unlock()
	var g *segment
	var err error
	if prep != nil {
		<-prep.ready
		g, err = prep.g, prep.err
	} else {
		g, err = s.createSegment(s.takeID())
	}
	if err != nil {
		return err
	}
	if old := s.active; old != nil {
		// Sealed, it keeps only its records: the preallocated zeros after them go.
		if err := old.f.Truncate(old.size.Load()); err != nil {
			return err
		}
	}
	s.mu.Lock()
	old := s.active
	g.bytes = headerLen
	s.bytes += headerLen
	s.segs = append(s.segs, g)
	s.active = g
	if old != nil {
		old.sealed.Store(true)
		s.maybeRemove(old)
	}
	if !s.closed {
		next := &prepared{ready: make(chan struct{})}
		s.prep = next
		id := s.takeIDLocked()
		go func() {
			next.g, next.err = s.createSegment(id)
			close(next.ready)
		}()
	}
	s.mu.Unlock()
	s.signalCommitted()
	return nil
}

// prepared is a segment file being made ready ahead of its use.
type prepared struct {
	ready chan struct{}
	g     *segment
	err   error
}

func (s *Spool) takeID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeIDLocked()
}

func (s *Spool) takeIDLocked() uint64 {
	id := s.nextID
	s.nextID++
	return id
}

// createSegment writes a segment file of SegmentBytes: its header, then zeros, synced with its
// directory entry. Records later overwrite the zeros in place, so a sync has only data to
// write (the file's size and blocks do not change): on ext4 that costs about half the CPU of
// a sync of a growing file.
func (s *Spool) createSegment(id uint64) (*segment, error) {
	g := &segment{id: id, path: s.segPath(id)}
	f, err := os.OpenFile(g.path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*segment, error) {
		_ = f.Close()
		_ = os.Remove(g.path)
		return nil, err
	}
	// Written and synced a megabyte at a time, so that a sync of records never waits behind
	// a whole segment of zeros on its way to the disk.
	zeros := make([]byte, min(s.segBytes, 1<<20))
	copy(zeros, fileMagic)
	for off := int64(0); off < s.segBytes; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), s.segBytes-off)], off); err != nil {
			return fail(err)
		}
		if off == 0 {
			clear(zeros[:headerLen])
		}
		if err := fdatasync(f); err != nil {
			return fail(err)
		}
	}
	// The directory entry must be durable before any record in the file is acknowledged.
	if err := s.dirFile.Sync(); err != nil {
		return fail(err)
	}
	g.f = f
	g.size.Store(headerLen)
	return g, nil
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
	b := s.batch
	s.mu.Unlock()
	s.poke()
	<-b.done
	return b.err
}

func (s *Spool) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// commitLoop writes and syncs the pending records in batches, writes done-marks, and
// removes finished segments, until Close.
func (s *Spool) commitLoop() {
	defer close(s.stopped)
	for {
		<-s.wake
		if wait := s.interval - time.Since(s.lastSync); wait > 0 {
			time.Sleep(wait) // appends arriving meanwhile join this batch
		}
		s.mu.Lock()
		data, n, b := s.pending, s.pendingN, s.batch
		if n > 0 {
			s.pending, s.pendingN = s.spare[:0], 0
			s.batch = &batch{done: make(chan struct{})}
			s.inflight = b
		}
		acks, remove := s.ackDirty, s.toRemove
		s.ackDirty, s.toRemove, s.ackFlush = nil, nil, false
		ackData := make([][]byte, len(acks))
		for i, g := range acks {
			ackData[i], g.acks = g.acks, nil
		}
		closing := s.closed
		s.mu.Unlock()

		s.writeAcks(acks, ackData)
		for _, g := range remove {
			s.removeFiles(g)
		}
		if n > 0 {
			err := s.commit(data, n)
			s.mu.Lock()
			s.spare, s.inflight = data[:0], nil
			if err != nil && s.err == nil {
				s.err = fmt.Errorf("spool: %w", err)
			}
			s.mu.Unlock()
			b.err = err
			close(b.done)
			s.signalCommitted()
		}
		if closing {
			return
		}
	}
}

// commit writes one batch at the end of the active segment (starting a new segment first
// when the active one is full) and syncs it.
func (s *Spool) commit(data []byte, n int64) error {
	s.mu.Lock()
	if err := s.err; err != nil {
		s.mu.Unlock()
		return err
	}
	g := s.active
	s.mu.Unlock()
	at := g.size.Load()
	if at > headerLen && (at+int64(len(data)) > s.segBytes || at+int64(len(data)) > math.MaxUint32) {
		if err := s.startSegment(); err != nil {
			return err
		}
		s.mu.Lock()
		g = s.active
		s.mu.Unlock()
		at = g.size.Load()
	}
	if _, err := g.f.WriteAt(data, at); err != nil {
		return err
	}
	begin := time.Now()
	s.lastSync = begin
	if err := fdatasync(g.f); err != nil {
		return err
	}
	if s.onSync != nil {
		s.onSync(n, time.Since(begin))
	}
	s.syncs.Add(1)
	s.mu.Lock()
	g.records += n
	g.bytes += int64(len(data))
	s.events += n
	g.size.Store(at + int64(len(data)))
	s.mu.Unlock()
	return nil
}

func fdatasync(f *os.File) error {
	c, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// signalCommitted wakes readers waiting for records.
func (s *Spool) signalCommitted() {
	s.mu.Lock()
	close(s.committed)
	s.committed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Spool) writeAcks(segs []*segment, data [][]byte) {
	for i, g := range segs {
		if g.ack == nil {
			f, err := os.OpenFile(g.ackPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				s.setErr(err)
				continue
			}
			g.ack = f
		}
		if _, err := g.ack.Write(data[i]); err != nil {
			s.setErr(err)
		}
	}
}

func (s *Spool) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = fmt.Errorf("spool: %w", err)
	}
	s.mu.Unlock()
}

func (s *Spool) removeFiles(g *segment) {
	_ = g.f.Close()
	if g.ack != nil {
		_ = g.ack.Close()
	}
	if err := os.Remove(g.path); err != nil {
		s.setErr(err)
	}
	if err := os.Remove(g.ackPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.setErr(err)
	}
}

// maybeRemove schedules g's files for removal once it is sealed, read and done. Called with
// s.mu held.
func (s *Spool) maybeRemove(g *segment) {
	if !g.sealed.Load() || !g.readAll || g.done != g.records || g.removed || g == s.active {
		return
	}
	g.removed = true // for the reader and Done; the committer closes and removes the files
	s.segs = slices.DeleteFunc(s.segs, func(x *segment) bool { return x == g })
	s.bytes -= g.bytes
	s.toRemove = append(s.toRemove, g)
	s.poke()
}

// Next returns the next record in order, waiting for one to be appended. After Drain it
// returns ErrDrained once every record has been handed out; it returns ctx's error when ctx
// ends first.
func (s *Spool) Next(ctx context.Context) (Record, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		if s.rseg == nil && !s.advance() {
			return Record{}, ErrClosed
		}
		g := s.rseg
		sealed := g.sealed.Load() // before size: once sealed, size is final
		s.rd.limit = g.size.Load()
		off, p, ok, err := s.rd.next(sealed)
		if err != nil {
			err = fmt.Errorf("reading %s: %w", g.path, err)
			s.setErr(err) // like a failed write: the spool is unhealthy until a restart
			return Record{}, fmt.Errorf("spool: %w", err)
		}
		if ok {
			if s.doneBefore(uint32(off)) {
				continue
			}
			return Record{Ref: Ref{seg: g.id, off: uint32(off)}, Data: append([]byte(nil), p...)}, nil
		}
		if sealed {
			s.mu.Lock()
			g.readAll = true
			s.maybeRemove(g)
			s.mu.Unlock()
			s.rseg = nil
			continue
		}
		s.mu.Lock()
		wait, drained, closed := s.committed, s.drained, s.closed
		s.mu.Unlock()
		if g.sealed.Load() || g.size.Load() != s.rd.limit {
			continue // committed meanwhile
		}
		switch {
		case closed:
			return Record{}, ErrClosed
		case drained:
			return Record{}, ErrDrained
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

// advance moves the reader to the oldest segment after the one it read; false when closed.
func (s *Spool) advance() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	for _, g := range s.segs {
		if g.id > s.rdSeg {
			s.rseg, s.rdSeg = g, g.id
			s.rd = newSegReader(g.f, g.size.Load())
			s.rdDone = 0
			return true
		}
	}
	return false // cannot happen: the active segment is always there
}

// doneBefore tells whether the record at off was done before Open (the reader skips it).
func (s *Spool) doneBefore(off uint32) bool {
	offs := s.rseg.doneOffs
	for s.rdDone < len(offs) && offs[s.rdDone] < off {
		s.rdDone++
	}
	return s.rdDone < len(offs) && offs[s.rdDone] == off
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
