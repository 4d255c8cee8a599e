// Package receiver is the data plane of callback-operator: it answers Tencent Cloud IM
// third-party callbacks (protocol checks, optional signature verification), queues the
// accepted ones and forwards each to a sink as a CloudEvent, with retries and a dead-letter
// sink, and exposes its counters on an admin port for the manager to scrape.
//
// A Receiver holds no global state (its own Prometheus registry, its own HTTP client), so
// several can run in one process.
package receiver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imcallback/callback-operator/internal/version"
	"github.com/imcallback/callback-operator/receiver/spool"
)

// Receiver receives IM callbacks and delivers them as CloudEvents. Create it with New, then
// call Serve or Run once.
type Receiver struct {
	cfg         Config
	log         *slog.Logger
	now         func() time.Time
	sdkAppID    string // cfg.SdkAppID in decimal, as IM sends it
	incarnation string

	eventMaker    // the CloudEvents of accepted callbacks (event.go)
	routing       // where each command goes (route.go)
	decisionState // decision services (decision.go)
	dlsURL        *url.URL
	transport     *http.Transport

	// The three parts: the intake (handler.go) appends to queue; delivery takes from it.
	queue     Queue
	mem       *memQueue   // queue without --spool-dir
	spool     *spoolQueue // queue with --spool-dir
	deliverer *deliverer
	drainMu   sync.RWMutex // held for reading while enqueueing, for writing to start the drain
	draining  bool         // guarded by drainMu; once true nothing more is queued
	intake    intakeState  // whether callbacks are being refused for want of room (/readyz)

	metrics *metrics

	damage       spool.Recovery // what opening the spool found (events, damage)
	spoolErrOnce sync.Once
	noRoomLog    logThrottle
	spoolSync    prometheus.Histogram // nil without a spool

	refusalLogs          [numReasons]logThrottle
	serverLog            *log.Logger  // the callback server's ErrorLog (throttled)
	lastUnavailableLog   atomic.Int64 // unix nanoseconds
	unavailableNotLogged atomic.Int64

	replay             *replayWindow // nil without a token or with ReplayWindowSize < 0
	skewSecs           int64         // MaxClockSkew in whole seconds, as the check counts it
	bodies             *bodyReader
	drainSlots         chan struct{} // bounds the oversize bodies read and discarded at once
	tooLargeDrainBytes int64

	bodyTooLarge, bodySkew []byte

	handler, admin http.Handler
	certs          *certReloader // nil without TLS

	conns       atomic.Pointer[countingListener] // the callback port's, once serving
	served      atomic.Bool
	ready       atomic.Bool
	scraped     atomic.Bool // /metrics was scraped at least once
	drained     atomic.Bool // the queue has drained; the next scrape reads final counters
	finalScrape chan struct{}
	finalOnce   sync.Once
}

// New validates cfg and builds a Receiver. It starts nothing; Serve does.
func New(cfg Config) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid receiver configuration: %w", err)
	}
	cfg = cfg.withDefaults()
	cfg.Commands = append([]string(nil), cfg.Commands...)

	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("choosing an incarnation id: %w", err)
	}
	r := &Receiver{
		cfg:          cfg,
		log:          cfg.Logger,
		now:          cfg.Now,
		sdkAppID:     strconv.FormatUint(cfg.SdkAppID, 10),
		incarnation:  hex.EncodeToString(id[:]),
		bodies:       newBodyReader(cfg.MaxBodyBytes, cfg.MaxBodyBytesInFlight),
		drainSlots:   make(chan struct{}, maxConcurrentDrains),
		bodyTooLarge: tooLargeBody(cfg.MaxBodyBytes),
		bodySkew:     skewBody(cfg.MaxClockSkew),
		finalScrape:  make(chan struct{}),
	}
	r.tooLargeDrainBytes = 4 * cfg.MaxBodyBytes
	r.skewSecs = int64(cfg.MaxClockSkew / time.Second)
	if cfg.Token != "" && cfg.ReplayWindowSize > 0 {
		r.replay = newReplayWindow(cfg.ReplayWindowSize)
	}
	r.sourceRef = types.URIRef{URL: url.URL{Path: "/tencentcloud/im/" + r.sdkAppID}}
	r.bindingCtx = binding.WithForceBinary(context.Background())
	var err error
	if cfg.DeadLetterSink != "" {
		if r.dlsURL, err = url.Parse(cfg.DeadLetterSink); err != nil {
			return nil, err
		}
	}
	r.transport = newTransport(cfg.Workers)
	if cfg.TLSCertFile != "" {
		r.certs = newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, r.log)
	}
	r.metrics = newMetrics(r.incarnation, func() float64 { return r.queueDepth() },
		func() float64 {
			if r.mem == nil {
				return 0
			}
			return float64(r.mem.capacity())
		},
		func() float64 { return float64(r.deliverer.inFlight.Load()) },
	)
	if err := r.setUpRouting(); err != nil {
		return nil, err
	}
	if err := r.openQueue(); err != nil {
		return nil, err
	}
	r.intake = newIntakeState(len(r.routes))
	r.newDelivery()
	r.metrics.registry.MustRegister(replayCollectors(r.replay)...)
	r.metrics.registry.MustRegister(r.connCollectors()...)
	r.registerQueueMetrics()
	r.handler = http.HandlerFunc(r.serveCallback)
	r.admin = r.newAdminHandler()
	return r, nil
}

// Incarnation is the random id of this Receiver, the incarnation label of
// imcallback_receiver_info.
func (r *Receiver) Incarnation() string { return r.incarnation }

// Handler is the callback endpoint. It answers every path (404 off the configured one) so
// that every request is counted. Accepted callbacks are delivered once Serve runs.
func (r *Receiver) Handler() http.Handler { return r.handler }

// AdminHandler serves /metrics, /healthz and /readyz.
func (r *Receiver) AdminHandler() http.Handler { return r.admin }

func (r *Receiver) newAdminHandler() http.Handler {
	metrics := promhttp.HandlerFor(r.metrics.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelError),
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, req *http.Request) {
		final := r.drained.Load() // read before gathering: then the counters are final
		r.scraped.Store(true)
		metrics.ServeHTTP(w, req)
		if final {
			r.finalOnce.Do(func() { close(r.finalScrape) })
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := r.queue.Err(); err != nil {
			// A restart recovers the spool from disk; a failed sync cannot be retried in place.
			// A full filesystem is not this: the spool refuses appends and recovers by itself.
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.ready.Load() {
			http.Error(w, "not ready: not serving or shutting down", http.StatusServiceUnavailable)
			return
		}
		if r.certs != nil && !r.certs.refresh() {
			http.Error(w, "not ready: no usable TLS key pair in --tls-cert-file/--tls-key-file", http.StatusServiceUnavailable)
			return
		}
		if why := r.refusing(time.Now()); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Run listens on cfg.Listen and cfg.AdminListen and calls Serve.
func (r *Receiver) Run(ctx context.Context) error {
	callbacks, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening for callbacks: %w", err)
	}
	admin, err := net.Listen("tcp", r.cfg.AdminListen)
	if err != nil {
		_ = callbacks.Close()
		return fmt.Errorf("listening for the admin port: %w", err)
	}
	return r.Serve(ctx, callbacks, admin)
}

// Serve answers callbacks on the callbacks listener (TLS when a certificate is configured)
// and /metrics, /healthz, /readyz on admin (nil for none), and delivers accepted callbacks,
// until ctx is cancelled. Then it shuts down, within ShutdownTimeout:
//  1. /readyz fails at once and keep-alives stop, while callbacks are still accepted for
//     ShutdownDelay (the time Kubernetes takes to stop routing to this pod);
//  2. then forwarded commands get 503 and the queue drains; decided commands are still
//     answered (they need no queue), until the callback port closes after the drain;
//  3. if /metrics was ever scraped, Serve waits for one more scrape after the drain and the
//     close, so the final counters are read;
//  4. it returns nil when every accepted event was delivered or dead-lettered, else an error
//     (each undelivered event has been logged whole).
//
// Serve closes both listeners. It may be called once.
func (r *Receiver) Serve(ctx context.Context, callbacks, admin net.Listener) error {
	if callbacks == nil {
		return errors.New("receiver: Serve needs a callbacks listener")
	}
	if !r.served.CompareAndSwap(false, true) {
		return errAlreadyServed
	}
	errorLog := serverErrorLog(r.log)
	r.serverLog = errorLog
	cb := &http.Server{
		Handler:           r.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Headers and body: IM gives a callback 2 s, so a body still arriving after 10 s only
		// holds its share of --max-body-bytes-in-flight (a slow sender with a captured Sign).
		ReadTimeout:    10 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       errorLog,
		ConnContext:    connContext,
	}
	if r.certs != nil {
		// TLS is done by the listener, below the wrapper that counts net/http's own replies.
		callbacks = tls.NewListener(callbacks, &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: r.certs.getCertificate, NextProtos: []string{"http/1.1"}})
	}
	conns := newCountingListener(callbacks, r, r.cfg.MaxConnections)
	r.conns.Store(conns)
	callbacks = conns
	var adm *http.Server
	if admin != nil {
		// Only the manager and the kubelet need it, but anything in the cluster may reach it.
		adm = &http.Server{Handler: r.admin, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10, ErrorLog: errorLog}
	}

	r.logStart(callbacks, admin)

	deliverCtx, stopDelivery := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDelivery()
	r.deliverer.start(deliverCtx)

	serveErr := make(chan error, 2)
	go func() {
		if err := cb.Serve(callbacks); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("serving callbacks: %w", err)
		}
	}()
	if adm != nil {
		go func() {
			if err := adm.Serve(admin); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("serving the admin port: %w", err)
			}
		}()
	}
	r.ready.Store(true)

	var fatal error
	select {
	case <-ctx.Done():
	case fatal = <-serveErr:
		r.log.Error("server failed, shutting down", slog.Any("error", fatal))
	}
	return r.shutdown(cb, adm, stopDelivery, fatal)
}

func (r *Receiver) shutdown(cb, adm *http.Server, stopDelivery context.CancelFunc, fatal error) error {
	begin := time.Now()
	deadline := begin.Add(r.cfg.ShutdownTimeout)
	r.ready.Store(false)
	// Answer with "Connection: close" from now on, so IM's persistent connections move to
	// pods that are still ready; requests still arriving here are accepted until the delay ends.
	cb.SetKeepAlivesEnabled(false)
	r.log.Info("shutting down: /readyz fails, callbacks still accepted during the shutdown delay",
		slog.String("shutdownDelay", r.cfg.ShutdownDelay.String()), slog.String("shutdownTimeout", r.cfg.ShutdownTimeout.String()))
	if fatal == nil {
		sleep(context.Background(), r.cfg.ShutdownDelay)
	}

	r.drainMu.Lock()
	r.draining = true
	r.drainMu.Unlock()
	r.queue.Stop() // workers stop once they have taken every queued event
	r.log.Info("draining the delivery queue; callbacks now get 503",
		slog.Int("queued", int(r.queueDepth())), slog.Int64("inFlight", r.deliverer.inFlight.Load()))

	// Keep some of the budget for the final scrape when somebody scrapes us.
	drainDeadline := deadline
	if r.scraped.Load() {
		drainDeadline = deadline.Add(-min(r.cfg.ShutdownTimeout/5, 5*time.Second))
	}
	done := r.deliverer.wait()
	timer := time.NewTimer(time.Until(drainDeadline))
	select {
	case <-done:
	case <-timer.C:
		if r.spool != nil {
			r.log.Error("shutdown timeout reached with events still undelivered; they stay in the spool for the next start and are logged whole",
				slog.Int("queued", int(r.queueDepth())), slog.Int64("inFlight", r.deliverer.inFlight.Load()))
		} else {
			r.log.Error("shutdown timeout reached with events still undelivered; failing them",
				slog.Int("queued", int(r.queueDepth())), slog.Int64("inFlight", r.deliverer.inFlight.Load()))
		}
		stopDelivery() // workers fail (or, with a spool, leave) what is left, logging each event whole
		<-done
		r.deliverer.finishRest()
	}
	timer.Stop()

	// Close the callback server before the counters are final: requests in progress (above
	// all decisions, which need no queue and are answered through the delay and the drain,
	// as IM's user waits for them) finish first and are counted before the final scrape.
	ctx, cancel := context.WithDeadline(context.Background(), laterOf(deadline, time.Now().Add(time.Second)))
	defer cancel()
	if err := cb.Shutdown(ctx); err != nil {
		_ = cb.Close()
	}
	r.drained.Store(true)

	if adm != nil && r.scraped.Load() {
		r.log.Info("queue drained; waiting for a final scrape of /metrics")
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-r.finalScrape:
		case <-t.C:
			r.log.Warn("no scrape of /metrics after the drain before the shutdown timeout; the last counters may be unread")
		}
		t.Stop()
	}

	if adm != nil {
		if err := adm.Shutdown(ctx); err != nil {
			_ = adm.Close()
		}
	}
	r.transport.CloseIdleConnections()
	if r.decisionTransport != nil {
		r.decisionTransport.CloseIdleConnections()
	}
	if err := r.queue.Close(); err != nil {
		r.log.Error("closing the spool", slog.Any("error", err))
	}

	r.log.Info("receiver stopped", slog.String("took", time.Since(begin).String()), slog.Int64("undelivered", r.deliverer.failedCount.Load()),
		slog.Int64("leftInSpool", r.deliverer.leftCount.Load()))
	if fatal != nil {
		return fatal
	}
	return r.undeliveredErr()
}

var errAlreadyServed = errors.New("receiver: Serve called more than once")

// undeliveredErr says how many accepted events were neither delivered nor dead-lettered.
func (r *Receiver) undeliveredErr() error {
	failed, left := r.deliverer.failedCount.Load(), r.deliverer.leftCount.Load()
	var errs []error
	if failed > 0 {
		errs = append(errs, fmt.Errorf("%d accepted event(s) were neither delivered nor dead-lettered; each is logged whole", failed))
	}
	if left > 0 {
		errs = append(errs, fmt.Errorf("%d accepted event(s) were not delivered before the shutdown timeout; they stay in the spool and each is logged whole", left))
	}
	return errors.Join(errs...)
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (r *Receiver) logStart(callbacks, admin net.Listener) {
	attrs := []any{
		slog.String("version", version.Version),
		slog.String("incarnation", r.incarnation),
		slog.String("listen", callbacks.Addr().String()),
		slog.Bool("tls", r.certs != nil),
		slog.Uint64("sdkAppID", r.cfg.SdkAppID),
		slog.String("path", r.cfg.Path),
		slog.Any("commands", r.cfg.Commands),
		slog.Int("retry", r.cfg.Retry),
		slog.String("backoffPolicy", r.cfg.BackoffPolicy),
		slog.String("backoffDelay", r.cfg.BackoffDelay.String()),
		slog.String("deliveryTimeout", r.cfg.DeliveryTimeout.String()),
		slog.Int("queueSize", r.cfg.QueueSize),
		slog.String("spoolDir", r.cfg.SpoolDir),
		slog.Int("workers", r.cfg.Workers),
		slog.Bool("authenticated", r.cfg.Token != ""),
	}
	if admin != nil {
		attrs = append(attrs, slog.String("adminListen", admin.Addr().String()))
	}
	if r.defaultRoute != nil {
		attrs = append(attrs, slog.String("sink", r.defaultRoute.url.Redacted()))
	}
	if r.dlsURL != nil {
		attrs = append(attrs, slog.String("deadLetterSink", r.dlsURL.Redacted()))
	}
	r.log.Info("receiver starting", attrs...)
	r.logRouting()
	if r.cfg.Token == "" {
		r.log.Warn("callbacks are NOT authenticated: IM_CALLBACK_TOKEN is not set, so Sign and RequestTime are not checked; anybody who can reach the callback URL can submit events")
	}
}
