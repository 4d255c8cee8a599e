package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func payload(i int) []byte {
	n := 20 + (i*7919)%300
	p := fmt.Appendf(nil, "event-%06d|", i)
	for len(p) < n {
		p = append(p, byte('a'+i%26))
	}
	return p
}

func open(t *testing.T, dir string, opt Options) (*Spool, Recovery) {
	t.Helper()
	if opt.MaxBytes == 0 {
		opt.MaxBytes = 16 << 20
	}
	s, rec, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, rec
}

// next reads a record that must be there already.
func next(t *testing.T, s *Spool) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return r
}

// drainAll reads every record left after Drain.
func drainAll(t *testing.T, s *Spool) []Record {
	t.Helper()
	s.Drain()
	var out []Record
	for {
		r, err := s.Next(context.Background())
		if errors.Is(err, ErrDrained) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, r)
	}
}

// crashCopy copies the spool's files as they are on disk now, as a process killed at this
// moment would leave them, into a new directory.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func appendN(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(payload(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func wantPayloads(t *testing.T, got []Record, want []int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for k, i := range want {
		if !bytes.Equal(got[k].Data, payload(i)) {
			t.Fatalf("record %d = %.20q, want payload %d", k, got[k].Data, i)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestAppendNextDoneInOrder(t *testing.T) {
	dir := t.TempDir()
	s, rec := open(t, dir, Options{SegmentBytes: 4 << 10})
	if rec.Events != 0 || rec.Damaged() {
		t.Fatalf("fresh spool: %+v", rec)
	}
	appendN(t, s, 0, 100)
	if s.Events() != 100 {
		t.Fatalf("Events = %d", s.Events())
	}
	for i := range 100 {
		r := next(t, s)
		if !bytes.Equal(r.Data, payload(i)) {
			t.Fatalf("record %d out of order: %.20q", i, r.Data)
		}
		s.Done(r.Ref)
	}
	if s.Events() != 0 {
		t.Fatalf("Events after Done = %d", s.Events())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, rec := open(t, dir, Options{SegmentBytes: 4 << 10})
	if rec.Events != 0 || rec.Segments != 0 {
		t.Fatalf("reopened after all done: %+v", rec)
	}
	if got := drainAll(t, s2); len(got) != 0 {
		t.Fatalf("%d records came back", len(got))
	}
	// Finished segments were removed: only the active one and the lock remain.
	entries, _ := os.ReadDir(dir)
	if len(entries) > 3 {
		t.Errorf("files left: %v", entries)
	}
}

// TestRestartWithThousandsWaiting: records not done come back after a restart, in order,
// and only they (every third was done before).
func TestRestartWithThousandsWaiting(t *testing.T) {
	dir := t.TempDir()
	opt := Options{SegmentBytes: 64 << 10}
	s, _ := open(t, dir, opt)
	const n = 5000
	appendN(t, s, 0, n)
	var want []int
	for i := range n {
		r := next(t, s)
		if i%3 == 0 {
			s.Done(r.Ref)
		} else {
			want = append(want, i)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, rec := open(t, dir, opt)
	if rec.Events != int64(len(want)) || rec.Damaged() || s2.Events() != int64(len(want)) {
		t.Fatalf("recovery %+v, Events %d, want %d waiting", rec, s2.Events(), len(want))
	}
	// New records come after the old ones.
	appendN(t, s2, n, n+10)
	want = append(want, seq(n, n+10)...)
	got := drainAll(t, s2)
	wantPayloads(t, got, want)
	for _, r := range got {
		s2.Done(r.Ref)
	}
	if s2.Events() != 0 {
		t.Errorf("Events = %d after all done", s2.Events())
	}
}

// TestCrashKeepsEverythingAppended: a process killed without Close (the files as they are)
// loses no appended record; records done before are not handed out again.
func TestCrashKeepsEverythingAppended(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{SegmentBytes: 8 << 10})
	appendN(t, s, 0, 300)
	for range 100 {
		s.Done(next(t, s).Ref)
	}
	appendN(t, s, 300, 301) // its commit writes the done-marks before it returns
	s2, rec := open(t, crashCopy(t, dir), Options{SegmentBytes: 8 << 10})
	if rec.Events != 201 || rec.Damaged() {
		t.Fatalf("recovery %+v", rec)
	}
	wantPayloads(t, drainAll(t, s2), seq(100, 301))
}

func TestGroupCommitUnderConcurrency(t *testing.T) {
	s, _ := open(t, t.TempDir(), Options{})
	const writers, each = 64, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := s.Append(payload(w*each + i)); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	// Readers take records while they are appended.
	got := make(chan []byte, writers*each)
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				r, err := s.Next(ctx)
				if err != nil {
					return
				}
				got <- r.Data
				s.Done(r.Ref)
			}
		})
	}
	wg.Wait()
	deadline := time.After(10 * time.Second)
	seen := map[string]int{}
	for len(seen) < writers*each {
		select {
		case p := <-got:
			seen[string(p)]++
		case <-deadline:
			t.Fatalf("only %d of %d records read", len(seen), writers*each)
		}
	}
	cancel()
	readers.Wait()
	for i := range writers * each {
		if seen[string(payload(i))] != 1 {
			t.Fatalf("payload %d read %d times", i, seen[string(payload(i))])
		}
	}
	syncs := s.syncs.Load()
	if syncs >= writers*each/2 {
		t.Errorf("%d syncs for %d appends by %d writers: no group commit", syncs, writers*each, writers)
	}
	t.Logf("%d appends, %d syncs", writers*each, syncs)
	if s.Events() != 0 {
		t.Errorf("Events = %d", s.Events())
	}
}

// lastSegment is the newest segment file holding records, and the end of its records (the
// rest of the file is preallocated zeros).
func lastSegment(t *testing.T, dir string) (string, int64) {
	t.Helper()
	ids, err := segmentIDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(ids) - 1; i >= 0; i-- {
		p := filepath.Join(dir, fmt.Sprintf("%020d.seg", ids[i]))
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		end, err := lastNonZero(f, headerLen, st.Size())
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if end > headerLen {
			return p, end
		}
	}
	t.Fatal("no segment with records")
	return "", 0
}

// zeroRange overwrites [from, to) of a file with zeros: a write that did not reach the disk.
func zeroRange(t *testing.T, path string, from, to int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, to-from), from); err != nil {
		t.Fatal(err)
	}
}

func TestTornFinalRecord(t *testing.T) {
	for _, cut := range []int{1, recordHeader - 1, recordHeader + 3} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			s, _ := open(t, dir, Options{})
			appendN(t, s, 0, 50)
			crashed := crashCopy(t, dir)
			seg, end := lastSegment(t, crashed)
			// The last record (payload 49) is cut short, as by a crash in the middle of its write.
			zeroRange(t, seg, end-recordSize(len(payload(49)))+int64(cut), end)
			s2, rec := open(t, crashed, Options{})
			if rec.TornTails != 1 || rec.TornBytes <= 0 || rec.TornBytes > int64(cut) || rec.CorruptRegions != 0 || rec.Events != 49 {
				t.Fatalf("recovery %+v", rec)
			}
			wantPayloads(t, drainAll(t, s2), seq(0, 49))
		})
	}
}

func TestGarbageTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	appendN(t, s, 0, 10)
	crashed := crashCopy(t, dir)
	seg, end := lastSegment(t, crashed)
	f, _ := os.OpenFile(seg, os.O_WRONLY, 0)
	// Garbage with a record magic in it, as a half-written batch might leave.
	_, _ = f.WriteAt(append(append([]byte("zzzz"), recordMagicLE...), 0xff, 0xff, 0, 0, 1, 2, 3), end)
	_ = f.Close()
	s2, rec := open(t, crashed, Options{})
	if rec.TornTails != 1 || rec.TornBytes != 15 || rec.Events != 10 {
		t.Fatalf("recovery %+v", rec)
	}
	wantPayloads(t, drainAll(t, s2), seq(0, 10))
}

func TestCorruptRecordInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	appendN(t, s, 0, 100)
	crashed := crashCopy(t, dir)
	seg, _ := lastSegment(t, crashed)
	b, _ := os.ReadFile(seg)
	// Flip a byte in the payload of record 40, and another in the length of record 70.
	off40 := headerLen
	for i := range 40 {
		off40 += recordSize(len(payload(i)))
	}
	off70 := off40
	for i := 40; i < 70; i++ {
		off70 += recordSize(len(payload(i)))
	}
	b[off40+recordHeader+5] ^= 0x40
	b[off70+5] ^= 0x01
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, rec := open(t, crashed, Options{})
	if rec.CorruptRegions != 2 || rec.CorruptRecords != 2 || rec.TornTails != 0 || rec.Events != 98 {
		t.Fatalf("recovery %+v", rec)
	}
	want := slices.DeleteFunc(seq(0, 100), func(i int) bool { return i == 40 || i == 70 })
	wantPayloads(t, drainAll(t, s2), want)
}

// TestRandomDamageCostsNoIntactRecord: whatever stretch of a segment is overwritten, every
// record outside it is read back, in order, and nothing else is.
func TestRandomDamageCostsNoIntactRecord(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	const n = 200
	appendN(t, s, 0, n)
	starts := []int64{headerLen}
	for i := range n {
		starts = append(starts, starts[i]+recordSize(len(payload(i))))
	}
	last, _ := lastSegment(t, dir)
	orig, _ := os.ReadFile(last)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 60 {
		crashed := crashCopy(t, dir)
		b := slices.Clone(orig)
		from := headerLen + rng.Int64N(int64(len(b))-headerLen)
		to := min(int64(len(b)), from+1+rng.Int64N(600))
		for i := from; i < to; i++ {
			switch round % 3 {
			case 0:
				b[i] = 0
			case 1:
				b[i] = byte(rng.Uint32())
			default:
				b[i] = recordMagicLE[i%4] // magic-looking garbage
			}
		}
		if round%5 == 0 {
			b = b[:to] // and cut the file there
		}
		seg, _ := lastSegment(t, crashed)
		if err := os.WriteFile(seg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s2, rec, err := Open(crashed, Options{MaxBytes: 16 << 20})
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		var want []int
		for i := range n {
			end := starts[i+1]
			if end <= from || (starts[i] >= to && end <= int64(len(b))) {
				want = append(want, i)
			}
		}
		got := drainAll(t, s2)
		// A damaged record whose bytes were set to what they already were is still intact.
		var ok []int
		for _, r := range got {
			i := slices.IndexFunc(seq(0, n), func(i int) bool { return bytes.Equal(r.Data, payload(i)) })
			if i < 0 {
				t.Fatalf("round %d: a record that was never appended: %.30q", round, r.Data)
			}
			ok = append(ok, i)
		}
		if !slices.IsSorted(ok) {
			t.Fatalf("round %d: out of order", round)
		}
		for _, i := range want {
			if _, found := slices.BinarySearch(ok, i); !found {
				t.Fatalf("round %d: intact record %d lost (damage %d-%d, recovery %+v)", round, i, from, to, rec)
			}
		}
		if rec.Events != int64(len(got)) {
			t.Fatalf("round %d: recovery counts %d events, read %d", round, rec.Events, len(got))
		}
		_ = s2.Close()
	}
}

func TestDamagedAckHandsRecordOutAgain(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	appendN(t, s, 0, 5)
	for range 5 {
		s.Done(next(t, s).Ref)
	}
	appendN(t, s, 5, 6)
	crashed := crashCopy(t, dir)
	seg, _ := lastSegment(t, crashed)
	ack := filepath.Join(crashed, filepath.Base(seg))
	ack = ack[:len(ack)-4] + ".ack"
	b, err := os.ReadFile(ack)
	if err != nil || len(b) != 5*ackLen {
		t.Fatalf("ack file: %d bytes, %v", len(b), err)
	}
	b[2*ackLen] ^= 1                                    // the third done-mark is damaged
	b = append(b, 1, 2, 3)                              // and a torn one follows
	if err := os.WriteFile(ack, b, 0o600); err != nil { //nolint:gosec // test file
		t.Fatal(err)
	}
	s2, rec := open(t, crashed, Options{})
	if rec.DamagedAcks != 2 || rec.Events != 2 {
		t.Fatalf("recovery %+v", rec)
	}
	wantPayloads(t, drainAll(t, s2), []int{2, 5})
}

func TestFullSpool(t *testing.T) {
	dir := t.TempDir()
	opt := Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10}
	s, _ := open(t, dir, opt)
	n := 0
	for ; ; n++ {
		err := s.Append(payload(n))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 10000 {
			t.Fatal("never full")
		}
	}
	if b := s.Bytes(); b > opt.MaxBytes {
		t.Fatalf("Bytes %d beyond MaxBytes %d", b, opt.MaxBytes)
	}
	// Space comes back once whole segments are done.
	for range n / 2 {
		s.Done(next(t, s).Ref)
	}
	if err := s.Append(payload(n)); err != nil {
		t.Fatalf("Append after half was done: %v", err)
	}
	// And the full spool's records survive a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, rec := open(t, dir, opt)
	if rec.Events != int64(n-n/2+1) {
		t.Fatalf("recovery %+v, want %d events", rec, n-n/2+1)
	}
	wantPayloads(t, drainAll(t, s2), seq(n/2, n+1))
}

func TestDrainAndClose(t *testing.T) {
	s, _ := open(t, t.TempDir(), Options{})
	appendN(t, s, 0, 3)
	waiting := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = s.Next(context.Background())
		}
		waiting <- err
	}()
	s.Drain()
	if err := <-waiting; !errors.Is(err, ErrDrained) {
		t.Fatalf("Next after Drain: %v", err)
	}
	if err := s.Append(payload(9)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Drain: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context: %v", err)
	}
}

func TestDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{})
	if _, _, err := Open(dir, Options{MaxBytes: 1 << 20}); err == nil {
		t.Fatal("a second Open of the same directory succeeded")
	}
}

// TestWriteErrorIsSticky: after a failed write the spool refuses every append (a sync that
// failed cannot be trusted when retried) until a new Open recovers what is on disk.
func TestWriteErrorIsSticky(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	appendN(t, s, 0, 3)
	s.mu.Lock()
	_ = s.active.f.Close() // the next write fails
	s.mu.Unlock()
	if err := s.Append(payload(3)); err == nil {
		t.Fatal("Append succeeded on a closed file")
	}
	if s.Err() == nil {
		t.Fatal("Err is nil after a failed write")
	}
	if err := s.Append(payload(4)); err == nil || errors.Is(err, ErrFull) {
		t.Fatalf("Append after a failed write: %v", err)
	}
	_ = s.Close()
	s2, rec := open(t, dir, Options{})
	if rec.Events != 3 {
		t.Fatalf("recovery after the failure: %+v", rec)
	}
	wantPayloads(t, drainAll(t, s2), seq(0, 3))
}

// fullFilesystem makes every new segment fail as on a full filesystem until the returned
// function is called.
func fullFilesystem(t *testing.T) (free func()) {
	filesystemFull.Store(true)
	t.Cleanup(func() { filesystemFull.Store(false) })
	return func() { filesystemFull.Store(false) }
}

// A spool reopened on a full filesystem recovers and hands out what it holds, refuses
// appends with ErrNoSpace (not a sticky failure), and takes appends again once there is room.
func TestOpenOnAFullFilesystem(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{SegmentBytes: 4 << 10})
	appendN(t, s, 0, 40) // a few segments
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	free := fullFilesystem(t)
	s2, rec := open(t, dir, Options{SegmentBytes: 4 << 10})
	if rec.Events != 40 || !rec.NoSpace {
		t.Fatalf("recovery on a full filesystem: %+v", rec)
	}
	if err := s2.Append(payload(99)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Append on a full filesystem: %v, want ErrNoSpace", err)
	}
	if err := s2.Err(); err != nil {
		t.Fatalf("a full filesystem marked the spool broken: %v", err)
	}
	for i := range 40 {
		r := next(t, s2)
		if !bytes.Equal(r.Data, payload(i)) {
			t.Fatalf("record %d: %q", i, r.Data)
		}
		s2.Done(r.Ref)
	}
	free()
	appendN(t, s2, 100, 103)
	if s2.Err() != nil || s2.Events() != 3 {
		t.Fatalf("after space came back: err %v, events %d", s2.Err(), s2.Events())
	}
	wantPayloads(t, drainAll(t, s2), seq(100, 103))
}

// The next segment failing for want of space refuses that batch only.
func TestNoSpaceForTheNextSegmentIsNotSticky(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{SegmentBytes: 4 << 10})
	free := fullFilesystem(t)
	// The segment prepared at Open was made before the filesystem filled; fill it and one
	// more append needs a new segment.
	var refused int
	for i := 0; i < 200 && refused == 0; i++ {
		if err := s.Append(payload(i)); errors.Is(err, ErrNoSpace) {
			refused = i
		} else if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if refused == 0 {
		t.Fatal("no append was refused for want of space")
	}
	if err := s.Err(); err != nil {
		t.Fatalf("sticky error after a failed preallocation: %v", err)
	}
	free()
	if err := s.Append(payload(1000)); err != nil {
		t.Fatalf("append after space came back: %v", err)
	}
	want := append(seq(0, refused), 1000)
	wantPayloads(t, drainAll(t, s), want)
}

// A read-only spool hands out what it holds and creates nothing.
func TestReadOnlyOpen(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	appendN(t, s, 0, 5)
	_ = s.Close()
	s2, rec := open(t, dir, Options{ReadOnly: true})
	if rec.Events != 5 {
		t.Fatalf("%+v", rec)
	}
	if err := s2.Append(payload(9)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append on a read-only spool: %v", err)
	}
	got := drainAll(t, s2)
	wantPayloads(t, got, seq(0, 5))
	for _, r := range got {
		s2.Done(r.Ref)
	}
	_ = s2.Close()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".seg" {
			t.Fatalf("segment left after every record was done: %s", e.Name())
		}
	}
}

// TestDamageCountedInRecords: a damaged stretch over two records counts two records lost
// (it is one region); a segment cut short from outside, whose done-marks name records past
// its end, is reported truncated, not as a torn tail of a few bytes only.
func TestDamageCountedInRecords(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Options{})
	appendN(t, s, 0, 100)
	crashed := crashCopy(t, dir)
	seg, _ := lastSegment(t, crashed)
	b, _ := os.ReadFile(seg)
	off := headerLen
	for i := range 40 {
		off += recordSize(len(payload(i)))
	}
	b[off+recordHeader+1] ^= 0x40                              // record 40's payload
	b[off+recordSize(len(payload(40)))+recordHeader+2] ^= 0x40 // record 41's payload
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, rec := open(t, crashed, Options{})
	if rec.CorruptRegions == 0 || rec.CorruptRecords != 2 || rec.Events != 98 {
		t.Fatalf("a stretch over two records: %+v", rec)
	}

	// 200 records, the first 10 done, then the file cut to 5 bytes from outside.
	dir2 := t.TempDir()
	s2, _ := open(t, dir2, Options{})
	appendN(t, s2, 0, 200)
	for range 10 {
		s2.Done(next(t, s2).Ref)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	seg2, _ := lastSegment(t, dir2)
	if err := os.Truncate(seg2, 5); err != nil {
		t.Fatal(err)
	}
	_, rec2 := open(t, dir2, Options{})
	if rec2.TruncatedSegments != 1 || rec2.TruncatedBytes <= 0 || !rec2.Damaged() {
		t.Fatalf("a segment truncated to 5 bytes: %+v", rec2)
	}
	_ = s
}
