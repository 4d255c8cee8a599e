package receiver

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcallback/callback-operator/receiver/contract"
	"github.com/imcallback/callback-operator/receiver/spool"
)

// spoolSyncInterval paces the spool's syncs under load: a sync costs this machine's kernel
// 50-100 us of CPU whatever it covers, so covering a millisecond of callbacks with one sync
// keeps the spool's CPU per callback small, for at most a millisecond more latency on the OK
// (IM allows 2 s). Measured with hack/bench-receiver.sh.
const spoolSyncInterval = time.Millisecond

// openQueue opens the Queue of cfg: the lanes of a spool with --spool-dir, else in memory,
// one lane per delivery target in r.routes' order.
func (r *Receiver) openQueue() error {
	sinks := make([]string, len(r.routes))
	for i, rt := range r.routes {
		sinks[i] = rt.url.String()
	}
	if r.cfg.SpoolDir == "" {
		r.mem = newMemQueue(len(sinks), (r.cfg.QueueSize+len(sinks)-1)/max(len(sinks), 1))
		r.queue = r.mem
		return nil
	}
	r.spoolSync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "imcallback_spool_sync_duration_seconds",
		Help:    "Duration of the spool's disk syncs; each makes every callback waiting for it durable (its count against accepted callbacks gives the group-commit batch).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	sq, err := openSpoolQueue(r.cfg.SpoolDir, sinks, r.cfg.SpoolMaxBytes, spool.Options{SyncInterval: spoolSyncInterval,
		OnSync: func(_ int64, took time.Duration) { r.spoolSync.Observe(took.Seconds()) }, ReadOnly: r.cfg.DrainOnly})
	if err != nil {
		return err
	}
	r.spool, r.queue = sq, sq
	rec := sq.recovery
	r.damage = rec
	attrs := []any{slog.String("spoolDir", r.cfg.SpoolDir), slog.Int64("events", rec.Events),
		slog.Int64("bytes", rec.Bytes), slog.Int64("maxBytes", r.cfg.SpoolMaxBytes), slog.Int64("bytesPerLane", sq.quota),
		slog.Any("lanes", sq.names)}
	switch {
	case rec.Damaged():
		r.log.Warn("spool opened; damaged records skipped (a write cut short by a crash leaves a torn tail; intact records are all kept)",
			append(attrs, slog.Int("tornTails", rec.TornTails), slog.Int64("tornBytes", rec.TornBytes),
				slog.Int("corruptRegions", rec.CorruptRegions), slog.Int64("corruptBytes", rec.CorruptBytes),
				slog.Int("corruptRecords", rec.CorruptRecords), slog.Int("truncatedSegments", rec.TruncatedSegments),
				slog.Int64("truncatedBytesAtLeast", rec.TruncatedBytes),
				slog.Int("damagedDoneMarks", rec.DamagedAcks))...)
	default:
		r.log.Info("spool opened; events found there are delivered first", attrs...)
	}
	if rec.NoSpace {
		r.log.Warn("the spool's filesystem is full: callbacks get 503 (spool_full) until delivering what the spool holds frees space")
	}
	return nil
}

// queueDepth is the number of accepted events waiting for a worker.
func (r *Receiver) queueDepth() float64 {
	var n int64
	for lane := range r.queue.Lanes() {
		n += r.queue.Waiting(lane)
	}
	return float64(max(n-r.deliverer.inFlight.Load(), 0))
}

// registerQueueMetrics adds the spool's gauges and counters (zero without a spool, so every
// series is there from the start), the counts of events held through an outage, and each
// route's backlog and pace.
func (r *Receiver) registerQueueMetrics() {
	stat := func(f func(*spoolQueue) int64) func() float64 {
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
	replayed.Add(float64(r.damage.Events))
	damaged := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcallback_spool_damaged_total",
		Help: "Damage found in the spool at start and skipped: torn_tail (a write cut short by a crash), corrupt_region (followed by intact records), corrupt_record (the records not yet done that the corrupt regions held: lost), truncated_segment (a segment cut short from outside: its records past the cut not yet done are lost), damaged_done_mark (its event is delivered again).",
	}, []string{"kind"})
	damaged.WithLabelValues("torn_tail").Add(float64(r.damage.TornTails))
	damaged.WithLabelValues("corrupt_region").Add(float64(r.damage.CorruptRegions))
	damaged.WithLabelValues("corrupt_record").Add(float64(r.damage.CorruptRecords))
	damaged.WithLabelValues("truncated_segment").Add(float64(r.damage.TruncatedSegments))
	damaged.WithLabelValues("damaged_done_mark").Add(float64(r.damage.DamagedAcks))
	if r.spoolSync != nil {
		r.metrics.registry.MustRegister(r.spoolSync)
	}
	r.metrics.registry.MustRegister(replayed, damaged,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: contract.MetricSpoolBytes,
			Help: "Bytes of the spool's files.",
		}, stat((*spoolQueue).bytes)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: contract.MetricSpoolEvents,
			Help: "Accepted events in the spool: waiting for delivery or being delivered.",
		}, stat((*spoolQueue).events)),
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
			Help: "Events whose retries are used up and that have nowhere else to go (no dead-letter sink), held and retried until their target takes them.",
		}, func() float64 { return float64(r.deliverer.held.Load()) }),
	)
	queued := prometheus.NewDesc("imcallback_route_queue_depth",
		"Accepted events of a route's sink not yet delivered, dead-lettered or failed (its lane of the queue).", []string{"sink"}, nil)
	held := prometheus.NewDesc("imcallback_route_deliveries_held",
		"Events of a route's sink held through its outage.", []string{"sink"}, nil)
	pace := prometheus.NewDesc("imcallback_route_delivery_concurrency",
		"Attempts a route's sink is allowed in flight: halved by each overload answer (network error, timeout, 5xx, 429), raised by one per success, up to --workers.", []string{"sink"}, nil)
	laneBytes := prometheus.NewDesc("imcallback_route_spool_bytes",
		"Bytes a route's lane holds in the spool; each lane is bounded by --spool-max-bytes divided by the number of sinks.", []string{"sink"}, nil)
	r.metrics.registry.MustRegister(collectorFunc{
		descs: []*prometheus.Desc{queued, held, pace, laneBytes},
		collect: func(ch chan<- prometheus.Metric) {
			for _, rt := range r.routes {
				ch <- prometheus.MustNewConstMetric(queued, prometheus.GaugeValue, float64(r.queue.Waiting(rt.lane)), rt.label)
				ch <- prometheus.MustNewConstMetric(held, prometheus.GaugeValue, float64(rt.held.Load()), rt.label)
				ch <- prometheus.MustNewConstMetric(pace, prometheus.GaugeValue, float64(rt.pace.current()), rt.label)
				var b int64
				if r.spool != nil {
					b = r.spool.laneBytes(rt.lane)
				}
				ch <- prometheus.MustNewConstMetric(laneBytes, prometheus.GaugeValue, float64(b), rt.label)
			}
		},
	})
}

// collectorFunc is a prometheus.Collector of a fixed set of descriptions.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// newDelivery builds the delivery part over the receiver's queue and routes.
func (r *Receiver) newDelivery() {
	r.deliverer = &deliverer{
		eventMaker: &r.eventMaker,
		cfg:        &r.cfg,
		log:        r.log,
		q:          r.queue,
		durable:    r.spool != nil,
		routes:     r.routes,
		targetOf:   r.targetOf,
		transport:  r.transport,
		metrics:    r.metrics,
	}
	if r.dlsURL != nil {
		r.deliverer.dls = &route{url: r.dlsURL, label: sinkLabel(r.dlsURL), pace: newPacer(r.cfg.Workers * max(r.queue.Lanes(), 1))}
	}
}

// Deliver runs only the queue and delivery, without the intake: it delivers what the spool
// (or nothing, without one) holds under the current delivery flags, and returns once it is
// empty (nil when every event was delivered or dead-lettered) or ctx ends (the events left
// stay in the spool, each logged whole). For draining a spool no receiver serves any more
// (--drain-only: with Config.DrainOnly the spool is opened without creating anything).
func (r *Receiver) Deliver(ctx context.Context) error {
	if !r.served.CompareAndSwap(false, true) {
		return errAlreadyServed
	}
	r.queue.Stop()
	r.deliverer.start(ctx)
	<-r.deliverer.wait()
	r.deliverer.finishRest()
	r.transport.CloseIdleConnections()
	if err := r.queue.Close(); err != nil {
		r.log.Error("closing the spool", slog.Any("error", err))
	}
	return r.undeliveredErr()
}
