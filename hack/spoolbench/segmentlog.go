package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback-operator/receiver/spool"
)

type segmentLog struct {
	s     *spool.Spool
	syncs atomic.Int64
}

func openSegmentLog(dir string, interval time.Duration) (store, error) {
	l := &segmentLog{}
	s, _, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 30, SyncInterval: interval,
		OnSync: func(int64, time.Duration) { l.syncs.Add(1) }})
	l.s = s
	return l, err
}

func (l *segmentLog) Append(p []byte) error { return l.s.Append(p) }

func (l *segmentLog) Next() (any, []byte, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r, err := l.s.Next(ctx)
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, spool.ErrDrained) {
			panic(err)
		}
		return nil, nil, false
	}
	return r.Ref, r.Data, true
}

func (l *segmentLog) Done(h any)   { l.s.Done(h.(spool.Ref)) }
func (l *segmentLog) Recovering()  { l.s.Drain() }
func (l *segmentLog) Close() error { return l.s.Close() }
func (l *segmentLog) Syncs() int64 { return l.syncs.Load() }
