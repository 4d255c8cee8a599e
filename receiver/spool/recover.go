package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

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
		end := min(d.end, lastEnd)
		rec.CorruptBytes += end - d.start
		n, err := damagedRecords(f, d.start, end, offs)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		rec.CorruptRecords += n
	}
	// Done-marks of offsets past the intact records: records were written there that the
	// file no longer holds (it was cut short from outside: a crash tears one write at most,
	// and a torn write is never done). Those done are not lost; the others after them are,
	// in a number nothing records.
	if i, _ := slices.BinarySearch(offs, uint32(lastEnd)); i < len(offs) {
		rec.TruncatedSegments++
		rec.TruncatedBytes += int64(offs[len(offs)-1]) - lastEnd
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

// damagedRecords counts the records that a damaged stretch [start, end) of f held and that
// were not done: from the stretch's start (where a record should begin) it follows the
// records' length fields while their magic is in place, and where it is not, takes the
// stretch up to the next magic for one record; the done-marks of offsets in the stretch are
// records delivered already, not lost. Damage that destroyed several record headers in a row
// is counted as one record: nothing on disk says how many there were.
func damagedRecords(f *os.File, start, end int64, done []uint32) (int, error) {
	b := make([]byte, end-start)
	if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	n := 0
	for pos := 0; pos < len(b); {
		n++
		if bytes.HasPrefix(b[pos:], recordMagicLE) && pos+recordHeader <= len(b) {
			if size := recordSize(int(binary.LittleEndian.Uint32(b[pos+4 : pos+8]))); size > recordHeader && int64(pos)+size <= int64(len(b)) {
				pos += int(size)
				continue
			}
		}
		next := bytes.Index(b[pos+1:], recordMagicLE)
		if next < 0 {
			break
		}
		pos += 1 + next
	}
	for _, o := range done {
		if int64(o) >= start && int64(o) < end {
			n--
		}
	}
	return max(n, 0), nil
}
