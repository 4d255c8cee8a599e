package main

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleStore appends with pebble.Sync (Pebble's commit pipeline makes one WAL sync cover
// the concurrent ones); deletes go in batches of 256 without sync.
type pebbleStore struct {
	db *pebble.DB
	ordered
	buf     [][]byte
	pending *pebble.Batch
	n       int
}

func openPebble(dir string) (store, error) {
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		return nil, err
	}
	p := &pebbleStore{db: db, pending: db.NewBatch()}
	it, err := db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	if it.Last() {
		p.last.Store(binary.BigEndian.Uint64(it.Key()))
	}
	if it.First() {
		p.next = binary.BigEndian.Uint64(it.Key())
	} else {
		p.next = p.last.Load() + 1
	}
	return p, it.Close()
}

func (p *pebbleStore) Append(b []byte) error {
	return p.db.Set(seqKey(p.last.Add(1)), b, pebble.Sync)
}

func (p *pebbleStore) Next() (any, []byte, bool) {
	if len(p.buf) == 0 {
		it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: seqKey(p.next)})
		if err != nil {
			panic(err)
		}
		want := p.next
		for ok := it.First(); ok && binary.BigEndian.Uint64(it.Key()) == want && len(p.buf) < 256; ok = it.Next() {
			p.buf = append(p.buf, append([]byte(nil), it.Value()...))
			want++
		}
		_ = it.Close()
		if len(p.buf) == 0 {
			p.flush()
			return nil, nil, p.idle()
		}
	}
	b := p.buf[0]
	p.buf = p.buf[1:]
	k := p.next
	p.next++
	return k, b, true
}

func (p *pebbleStore) Done(h any) {
	_ = p.pending.Delete(seqKey(h.(uint64)), nil)
	if p.n++; p.n >= 256 {
		p.flush()
	}
}

func (p *pebbleStore) flush() {
	if p.n == 0 {
		return
	}
	if err := p.pending.Commit(pebble.NoSync); err != nil {
		panic(err)
	}
	p.pending, p.n = p.db.NewBatch(), 0
}

func (p *pebbleStore) Recovering()  { p.recovery = true }
func (p *pebbleStore) Close() error { p.flush(); return p.db.Close() }
