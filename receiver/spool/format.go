package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// On disk, a spool directory holds numbered segment files (NNN.seg) and, beside each, the
// offsets of its records that are done (NNN.ack):
//
//	segment: fileMagic, then records: recordMagic u32 | length u32 | crc u32 | payload
//	ack:     entries of offset u32 | crc u32
//
// Integers are little endian; a record's crc is CRC-32C of its length field and payload, an
// ack's crc is CRC-32C of its offset field. The record magic lets a reader find the next
// intact record after a damaged one.
const (
	fileMagic    = "IMCBSPL1"
	headerLen    = int64(len(fileMagic))
	recordMagic  = 0x0DB05CF1
	recordHeader = 12
	ackLen       = 8
)

var (
	castagnoli           = crc32.MakeTable(crc32.Castagnoli)
	recordMagicLE        = binary.LittleEndian.AppendUint32(nil, recordMagic)
	ackSeed       uint32 = 0xA5C3E1F7 // keeps an ack entry of zeros from passing its check
)

// recordSize is the number of bytes a payload of n bytes takes in a segment.
func recordSize(n int) int64 { return recordHeader + int64(n) }

// appendRecord encodes payload as a record at the end of dst.
func appendRecord(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, recordMagic)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, dst[len(dst)-4:])
	crc = crc32.Update(crc, castagnoli, payload)
	dst = binary.LittleEndian.AppendUint32(dst, crc)
	return append(dst, payload...)
}

func appendAck(dst []byte, off uint32) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, off)
	return binary.LittleEndian.AppendUint32(dst, crc32.Update(ackSeed, castagnoli, dst[len(dst)-4:]))
}

// decodeAcks returns the offsets of the intact entries in an ack file and how many entries
// were damaged (a torn last entry counts as one).
func decodeAcks(b []byte) (offs []uint32, damaged int) {
	for ; len(b) >= ackLen; b = b[ackLen:] {
		if crc32.Update(ackSeed, castagnoli, b[:4]) != binary.LittleEndian.Uint32(b[4:8]) {
			damaged++
			continue
		}
		offs = append(offs, binary.LittleEndian.Uint32(b[:4]))
	}
	if len(b) > 0 {
		damaged++
	}
	return offs, damaged
}

// segReader reads the records of one segment file in order, up to a limit that grows as
// records are committed. A damaged record is skipped: the reader looks for the next record
// magic whose length and checksum hold, so a damaged region costs no intact record after it.
type segReader struct {
	f      *os.File
	limit  int64  // bytes of the file that may be read (committed)
	buf    []byte // file bytes [bufOff, bufOff+len(buf))
	bufOff int64
	pos    int // next unread byte in buf

	damage []region // stretches skipped because they held no intact record
}

type region struct{ start, end int64 }

const readChunk = 256 << 10

func newSegReader(f *os.File, limit int64) *segReader {
	return &segReader{f: f, limit: limit, bufOff: headerLen}
}

// offset is the file offset of the next unread byte.
func (r *segReader) offset() int64 { return r.bufOff + int64(r.pos) }

// ensure makes n bytes from pos available in buf, reading up to the limit; false when the
// limit comes first.
func (r *segReader) ensure(n int) (bool, error) {
	if len(r.buf)-r.pos >= n {
		return true, nil
	}
	if r.offset()+int64(n) > r.limit {
		return false, nil
	}
	// Drop what was consumed, then read at least what is missing (a chunk, usually).
	rest := copy(r.buf, r.buf[r.pos:])
	r.bufOff += int64(r.pos)
	r.pos = 0
	r.buf = r.buf[:rest]
	want := max(n-rest, readChunk)
	if avail := r.limit - (r.bufOff + int64(rest)); int64(want) > avail {
		want = int(avail)
	}
	if cap(r.buf)-rest < want {
		nb := make([]byte, rest, rest+want)
		copy(nb, r.buf)
		r.buf = nb
	}
	got, err := r.f.ReadAt(r.buf[rest:rest+want], r.bufOff+int64(rest))
	r.buf = r.buf[:rest+got]
	if err != nil && (err != io.EOF || got != want) {
		if err == io.EOF {
			return false, fmt.Errorf("segment %s shorter than its committed size", r.f.Name())
		}
		return false, err
	}
	return len(r.buf)-r.pos >= n, nil
}

// next returns the offset and payload of the next intact record (payload aliases the
// reader's buffer until the next call), or ok false when no complete record lies before the
// limit. With final, the limit is the end of the file and bytes before it that hold no
// intact record count as damage; otherwise they may still be in the middle of being
// committed and are left for a later call.
func (r *segReader) next(final bool) (off int64, payload []byte, ok bool, err error) {
	for {
		have, err := r.ensure(recordHeader)
		if err != nil || !have {
			if err == nil && final {
				r.skipToLimit()
			}
			return 0, nil, false, err
		}
		h := r.buf[r.pos : r.pos+recordHeader]
		if final && firstNonZero(h) == len(h) {
			// Segments are preallocated with zeros: zeros to the end are space never written;
			// zeros before more data are a write that did not reach the disk.
			start := r.offset()
			end, err := r.skipZeros()
			if err != nil || end {
				return 0, nil, false, err
			}
			r.noteDamage(start)
			continue
		}
		n := int64(binary.LittleEndian.Uint32(h[4:8]))
		if binary.LittleEndian.Uint32(h[:4]) == recordMagic && r.offset()+recordHeader+n <= r.limit {
			if have, err = r.ensure(recordHeader + int(n)); err != nil {
				return 0, nil, false, err
			}
			if have {
				h = r.buf[r.pos : r.pos+recordHeader]
				p := r.buf[r.pos+recordHeader : r.pos+recordHeader+int(n)]
				crc := crc32.Update(crc32.Update(0, castagnoli, h[4:8]), castagnoli, p)
				if crc == binary.LittleEndian.Uint32(h[8:12]) {
					off = r.offset()
					r.pos += recordHeader + int(n)
					return off, p, true, nil
				}
			}
		}
		if err := r.resync(); err != nil {
			return 0, nil, false, err
		}
	}
}

// resync skips a damaged record: it moves to the next occurrence of the record magic (which
// next then checks) or, failing that, to the limit.
func (r *segReader) resync() error {
	start := r.offset()
	r.pos++
	for {
		if i := bytes.Index(r.buf[r.pos:], recordMagicLE); i >= 0 {
			r.pos += i
			r.noteDamage(start)
			return nil
		}
		// Keep the last 3 bytes: the magic may straddle the read boundary.
		r.pos = max(r.pos, len(r.buf)-3)
		if r.offset()+4 > r.limit {
			r.skipToLimit()
			r.noteDamage(start)
			return nil
		}
		if _, err := r.ensure(min(readChunk, int(r.limit-r.offset()))); err != nil {
			return err
		}
	}
}

func (r *segReader) noteDamage(start int64) {
	r.damage = append(r.damage, region{start, r.offset()})
}

// skipToLimit moves to the limit; bytes skipped that are not all zero are damage.
func (r *segReader) skipToLimit() {
	start := r.offset()
	if start >= r.limit {
		return
	}
	zero := false
	if rest := r.limit - start; rest <= readChunk {
		if ok, _ := r.ensure(int(rest)); ok {
			zero = firstNonZero(r.buf[r.pos:r.pos+int(rest)]) == int(rest)
		}
	}
	r.buf, r.pos, r.bufOff = r.buf[:0], 0, r.limit
	if !zero {
		r.noteDamage(start)
	}
}

// skipZeros moves the reader past zero bytes; true when they reach the limit.
func (r *segReader) skipZeros() (bool, error) {
	for {
		if i := firstNonZero(r.buf[r.pos:]); r.pos+i < len(r.buf) {
			r.pos += i
			return false, nil
		}
		r.pos = len(r.buf)
		if r.offset() >= r.limit {
			return true, nil
		}
		if _, err := r.ensure(min(readChunk, int(r.limit-r.offset()))); err != nil {
			return false, err
		}
	}
}

// firstNonZero is the index of the first non-zero byte of b, or len(b).
func firstNonZero(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] != 0 {
			return i
		}
	}
	return i
}

// lastNonZero returns the offset after the last non-zero byte of f in [from, to), or from.
func lastNonZero(f *os.File, from, to int64) (int64, error) {
	buf := make([]byte, readChunk)
	for end := to; end > from; {
		start := max(from, end-readChunk)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != 0 {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return from, nil
}
