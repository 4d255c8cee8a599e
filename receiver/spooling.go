package receiver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcallback/callback-operator/receiver/contract"
	"github.com/imcallback/callback-operator/receiver/spool"
)

// Unavailable is why a callback got 503: the value of imcallback_unavailable_total's reason
// label.
type Unavailable uint8

// The reasons for a 503.
const (
	UnavailableQueueFull  Unavailable = iota // the in-memory queue (--queue-size) is full
	UnavailableSpoolFull                     // the spool (--spool-max-bytes) is full
	UnavailableDraining                      // shutting down: the shutdown delay is over
	UnavailableSpoolError                    // the spool could not write or sync; /healthz fails so the container restarts
	UnavailableBodyBudget                    // the bodies being read at once hold --max-body-bytes-in-flight
	numUnavailable
	available Unavailable = numUnavailable // enqueue's "accepted"
)

var unavailableNames = [numUnavailable]string{
	UnavailableQueueFull:  "queue_full",
	UnavailableSpoolFull:  "spool_full",
	UnavailableDraining:   "draining",
	UnavailableSpoolError: "spool_error",
	UnavailableBodyBudget: "body_budget",
}

var unavailableBodies = [numUnavailable][]byte{
	UnavailableQueueFull:  bodyQueueFull,
	UnavailableSpoolFull:  replyBody(false, "receiver spool is full, try again later"),
	UnavailableDraining:   bodyShuttingDown,
	UnavailableSpoolError: replyBody(false, "receiver cannot store callbacks durably, try again later"),
	UnavailableBodyBudget: bodyBusy,
}

func (u Unavailable) String() string { return unavailableNames[u] }

// UnavailableReasons lists every imcallback_unavailable_total reason label value.
func UnavailableReasons() []string { return append([]string(nil), unavailableNames[:]...) }

// spoolItem writes it to the spool and returns once it is durable.
func (r *Receiver) spoolItem(it *item) Unavailable {
	bufp := recordPool.Get().(*[]byte)
	rec := appendItem((*bufp)[:0], it)
	err := r.spool.Append(rec)
	*bufp = rec[:0]
	putRecord(bufp)
	switch {
	case err == nil:
		return available
	case errors.Is(err, spool.ErrFull):
		return UnavailableSpoolFull
	case errors.Is(err, spool.ErrClosed):
		return UnavailableDraining
	}
	r.logSpoolError(err)
	return UnavailableSpoolError
}

// recordPool recycles the buffers records are encoded into; a buffer grown beyond
// maxPooledRecord is dropped, so that a few large bodies do not pin memory.
var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledRecord = 64 << 10

func putRecord(b *[]byte) {
	if cap(*b) <= maxPooledRecord {
		recordPool.Put(b)
	}
}

// logSpoolError logs the spool's failure once; the spool refuses everything after it.
func (r *Receiver) logSpoolError(err error) {
	r.spoolErrOnce.Do(func() {
		r.log.Error("the spool failed: callbacks get 503 and /healthz fails until a restart recovers the spool from disk",
			slog.Any("error", err), slog.String("spoolDir", r.cfg.SpoolDir))
	})
}

// A spooled callback, version 1: version byte, receipt time (Unix nanoseconds), flags
// (ClientIP present, OptPlatform present), SdkAppid, command, ClientIP and OptPlatform each
// with a uvarint length, then the body to the end.
const (
	itemVersion    = 1
	flagClientIP   = 1
	flagOptPlatfrm = 2
)

func appendItem(dst []byte, it *item) []byte {
	dst = append(dst, itemVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(it.received.UnixNano()))
	var flags byte
	if it.hasClientIP {
		flags |= flagClientIP
	}
	if it.hasOptPlatform {
		flags |= flagOptPlatfrm
	}
	dst = append(dst, flags)
	for _, s := range [...]string{it.sdkAppID, it.command, it.clientIP, it.optPlatform} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return append(dst, it.body...)
}

var errBadRecord = errors.New("spooled record cannot be decoded")

// decodeItem reads a record written by appendItem; the body aliases b.
func decodeItem(b []byte) (*item, error) {
	if len(b) < 10 || b[0] != itemVersion {
		return nil, errBadRecord
	}
	it := &item{received: time.Unix(0, int64(binary.LittleEndian.Uint64(b[1:9])))}
	flags := b[9]
	it.hasClientIP, it.hasOptPlatform = flags&flagClientIP != 0, flags&flagOptPlatfrm != 0
	b = b[10:]
	for _, dst := range [...]*string{&it.sdkAppID, &it.command, &it.clientIP, &it.optPlatform} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errBadRecord
		}
		*dst = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	it.body = b
	return it, nil
}

// spoolWorker delivers spooled callbacks in order until the spool is drained or ctx (the
// shutdown timeout) ends. An event leaves the spool once delivered, dead-lettered or
// counted failed; one whose delivery the shutdown timeout cut short stays for the next
// start and is logged whole.
func (r *Receiver) spoolWorker(ctx context.Context) {
	for {
		rec, err := r.spool.Next(ctx)
		if err != nil {
			if !errors.Is(err, spool.ErrDrained) && !errors.Is(err, spool.ErrClosed) && ctx.Err() == nil {
				r.logSpoolError(err)
			}
			return
		}
		it, err := decodeItem(rec.Data)
		if err != nil {
			r.failedCount.Add(1)
			r.metrics.failed.Inc()
			r.log.Error("event not delivered", slog.String("reason", err.Error()), slog.Any("record", rec.Data))
			r.spool.Done(rec.Ref)
			continue
		}
		r.inFlight.Add(1)
		finished := r.deliver(ctx, it)
		r.inFlight.Add(-1)
		if finished {
			r.spool.Done(rec.Ref)
		}
	}
}

// leave logs an event whose delivery the shutdown timeout cut short; it stays in the spool.
func (r *Receiver) leave(it *item, why string) {
	r.leftCount.Add(1)
	ev := r.newEvent(it)
	whole, err := json.Marshal(&ev)
	if err != nil { // cannot happen for the events built here; keep the data anyway
		whole, _ = json.Marshal(map[string]string{"id": ev.ID(), "type": ev.Type(), "data": string(it.body)})
	}
	r.log.Error("event left in the spool: not delivered before the shutdown timeout; the next start on this spool delivers it",
		slog.String("id", ev.ID()), slog.String("reason", why), slog.Any("event", json.RawMessage(whole)))
}

// logLeftInSpool logs every event still in the drained spool that no worker took.
func (r *Receiver) logLeftInSpool() {
	for {
		rec, err := r.spool.Next(context.Background())
		if err != nil {
			return
		}
		it, err := decodeItem(rec.Data)
		if err != nil {
			r.leftCount.Add(1)
			r.log.Error("event left in the spool", slog.String("reason", err.Error()), slog.Any("record", rec.Data))
			continue
		}
		r.leave(it, "shutdown timeout reached before delivery")
	}
}

// spoolSyncInterval paces the spool's syncs under load: a sync costs this machine's kernel
// 50-100 us of CPU whatever it covers, so covering a millisecond of callbacks with one sync
// keeps the spool's CPU per callback small, for at most a millisecond more latency on the OK
// (IM allows 2 s). Measured with hack/bench-receiver.sh.
const spoolSyncInterval = time.Millisecond

// openSpool opens cfg.SpoolDir and reports what an earlier process left there.
func (r *Receiver) openSpool() error {
	r.spoolSync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "imcallback_spool_sync_duration_seconds",
		Help:    "Duration of the spool's disk syncs; each makes every callback waiting for it durable (its count against accepted callbacks gives the group-commit batch).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	sp, rec, err := spool.Open(r.cfg.SpoolDir, spool.Options{MaxBytes: r.cfg.SpoolMaxBytes, SyncInterval: spoolSyncInterval,
		OnSync: func(_ int64, took time.Duration) { r.spoolSync.Observe(took.Seconds()) }})
	if err != nil {
		return err
	}
	r.spool = sp
	r.replayed = rec.Events
	attrs := []any{slog.String("spoolDir", r.cfg.SpoolDir), slog.Int64("events", rec.Events),
		slog.Int64("bytes", rec.Bytes), slog.Int64("maxBytes", r.cfg.SpoolMaxBytes)}
	if !rec.Damaged() {
		r.log.Info("spool opened; events found there are delivered first", attrs...)
		return nil
	}
	r.damage = rec
	r.log.Warn("spool opened; damaged records skipped (a write cut short by a crash leaves a torn tail; intact records are all kept)",
		append(attrs, slog.Int("tornTails", rec.TornTails), slog.Int64("tornBytes", rec.TornBytes),
			slog.Int("corruptRegions", rec.CorruptRegions), slog.Int64("corruptBytes", rec.CorruptBytes),
			slog.Int("damagedDoneMarks", rec.DamagedAcks))...)
	return nil
}

// queueDepth is the number of accepted events waiting for a worker.
func (r *Receiver) queueDepth() float64 {
	if r.spool != nil {
		return float64(max(r.spool.Events()-r.inFlight.Load(), 0))
	}
	return float64(len(r.queue))
}

// registerSpoolMetrics adds the spool's gauges and counters (zero without a spool, so every
// series is there from the start) and the count of events held through an outage.
func (r *Receiver) registerSpoolMetrics() {
	stat := func(f func(*spool.Spool) int64) func() float64 {
		return func() float64 {
			if r.spool == nil {
				return 0
			}
			return float64(f(r.spool))
		}
	}
	replayed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imcallback_replayed_total",
		Help: "Events found in the spool at start (left by an earlier process), delivered first.",
	})
	replayed.Add(float64(r.replayed))
	damaged := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcallback_spool_damaged_total",
		Help: "Damage found in the spool at start and skipped: torn_tail (a write cut short by a crash), corrupt_region (followed by intact records), damaged_done_mark (its event is delivered again).",
	}, []string{"kind"})
	damaged.WithLabelValues("torn_tail").Add(float64(r.damage.TornTails))
	damaged.WithLabelValues("corrupt_region").Add(float64(r.damage.CorruptRegions))
	damaged.WithLabelValues("damaged_done_mark").Add(float64(r.damage.DamagedAcks))
	if r.spoolSync != nil {
		r.metrics.registry.MustRegister(r.spoolSync)
	}
	r.metrics.registry.MustRegister(replayed, damaged,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: contract.MetricSpoolBytes,
			Help: "Bytes of the spool's files.",
		}, stat((*spool.Spool).Bytes)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: contract.MetricSpoolEvents,
			Help: "Accepted events in the spool: waiting for delivery or being delivered.",
		}, stat((*spool.Spool).Events)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: contract.MetricSpoolMaxBytes,
			Help: "Bound of the spool's files (--spool-max-bytes); 0 without a spool.",
		}, func() float64 {
			if r.spool == nil {
				return 0
			}
			return float64(r.cfg.SpoolMaxBytes)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imcallback_deliveries_held",
			Help: "Events whose retries are used up but whose target accepted nothing since (an outage): held in the spool and retried until it is back.",
		}, func() float64 { return float64(r.held.Load()) }),
	)
}
