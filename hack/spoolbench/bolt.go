package main

import (
	"encoding/binary"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltStore appends through db.Batch, which coalesces concurrent appends into one
// transaction (one commit: two fdatasyncs); deletes are committed 256 at a time.
type boltStore struct {
	db *bolt.DB
	ordered
	buf     [][]byte // records read ahead
	pending [][]byte // keys done, not yet deleted
}

var bucket = []byte("q")

func openBolt(dir string) (store, error) {
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, "spool.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	db.MaxBatchDelay = time.Millisecond // like the segment log's sync interval
	b := &boltStore{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		if k, _ := bk.Cursor().Last(); k != nil {
			b.last.Store(binary.BigEndian.Uint64(k))
		}
		if k, _ := bk.Cursor().First(); k != nil {
			b.next = binary.BigEndian.Uint64(k)
		} else {
			b.next = b.last.Load() + 1
		}
		return nil
	})
	return b, err
}

func (b *boltStore) Append(p []byte) error {
	k := seqKey(b.last.Add(1))
	return b.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, p) })
}

func (b *boltStore) Next() (any, []byte, bool) {
	if len(b.buf) == 0 {
		_ = b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			want := b.next
			for k, v := c.Seek(seqKey(want)); k != nil && binary.BigEndian.Uint64(k) == want && len(b.buf) < 256; k, v = c.Next() {
				b.buf = append(b.buf, append([]byte(nil), v...))
				want++
			}
			return nil
		})
		if len(b.buf) == 0 {
			b.flush()
			return nil, nil, b.idle()
		}
	}
	p := b.buf[0]
	b.buf = b.buf[1:]
	k := b.next
	b.next++
	return k, p, true
}

func (b *boltStore) Done(h any) {
	b.pending = append(b.pending, seqKey(h.(uint64)))
	if len(b.pending) >= 256 {
		b.flush()
	}
}

func (b *boltStore) flush() {
	if len(b.pending) == 0 {
		return
	}
	keys := b.pending
	b.pending = nil
	if err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		for _, k := range keys {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		panic(err)
	}
}

func (b *boltStore) Recovering()  { b.recovery = true }
func (b *boltStore) Close() error { b.flush(); return b.db.Close() }
