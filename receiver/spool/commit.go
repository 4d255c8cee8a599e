package spool

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

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
		if _, err := preallocate(f, zeros[:min(int64(len(zeros)), s.segBytes-off)], off); err != nil {
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

// preallocate writes a new segment's zeros.
func preallocate(f *os.File, b []byte, off int64) (int, error) {
	if filesystemFull.Load() {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.WriteAt(b, off)
}

// filesystemFull makes preallocate fail as on a full filesystem (for tests).
var filesystemFull atomic.Bool

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
		data, n, b, nb := s.pending, s.pendingN, s.batch, s.pendingB
		if n > 0 {
			s.pending, s.pendingN, s.pendingB = s.spare[:0], 0, 0
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
			switch {
			case errors.Is(err, ErrNoSpace):
				s.bytes -= nb // not written: the batch's callers are refused, nothing is broken
			case err != nil && s.err == nil:
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
	var at int64
	if g != nil {
		at = g.size.Load()
	}
	if g == nil || at > headerLen && (at+int64(len(data)) > s.segBytes || at+int64(len(data)) > math.MaxUint32) {
		if err := s.startSegment(); err != nil {
			if isNoSpace(err) {
				return fmt.Errorf("%w: %w", ErrNoSpace, err)
			}
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
		if n, err := g.ack.Write(data[i]); err != nil {
			if !isNoSpace(err) {
				s.setErr(err)
				continue
			}
			// A full filesystem: keep the unwritten done-marks for a later flush (a restart
			// meanwhile hands their records out again, as after a kill).
			s.mu.Lock()
			if !g.removed {
				if len(g.acks) == 0 {
					s.ackDirty = append(s.ackDirty, g)
				}
				g.acks = append(append([]byte(nil), data[i][n:]...), g.acks...)
				if !s.ackFlush {
					s.ackFlush = true
					time.AfterFunc(ackRetryDelay, s.poke)
				}
			}
			s.mu.Unlock()
		}
	}
}

// ackRetryDelay paces the flushes of done-marks a full filesystem refused.
const ackRetryDelay = 500 * time.Millisecond

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
