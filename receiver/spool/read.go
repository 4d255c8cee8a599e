package spool

import (
	"context"
	"fmt"
)

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
		if s.rseg == nil {
			s.mu.Lock()
			wait, drained, closed := s.committed, s.drained, s.closed
			s.mu.Unlock()
			if !s.advance() {
				// No segment to read: closed, or opened on a full filesystem (or read-only)
				// with everything handed out; wait for a segment to be created.
				switch {
				case closed:
					return Record{}, ErrClosed
				case drained: // nothing is appended after Drain, so no segment is coming
					return Record{}, ErrDrained
				}
				select {
				case <-wait:
				case <-ctx.Done():
					return Record{}, ctx.Err()
				}
				continue
			}
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
	return false // no segment after the one read: none created yet (full filesystem, read-only)
}

// doneBefore tells whether the record at off was done before Open (the reader skips it).
func (s *Spool) doneBefore(off uint32) bool {
	offs := s.rseg.doneOffs
	for s.rdDone < len(offs) && offs[s.rdDone] < off {
		s.rdDone++
	}
	return s.rdDone < len(offs) && offs[s.rdDone] == off
}
