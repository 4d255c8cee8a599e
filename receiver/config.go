package receiver

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback-operator/receiver/authtoken"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Defaults of the flags and Config fields: the manager-receiver contract's, re-exported
// for users of this package.
const (
	DefaultCommand         = contract.DefaultCommand
	DefaultRetry           = contract.DefaultRetry
	DefaultBackoffPolicy   = contract.DefaultBackoffPolicy
	DefaultBackoffDelay    = contract.DefaultBackoffDelay
	DefaultDeliveryTimeout = contract.DefaultDeliveryTimeout
	DefaultQueueSize       = contract.DefaultQueueSize
	DefaultWorkers         = contract.DefaultWorkers
	DefaultMaxBodyBytes    = contract.DefaultMaxBodyBytes
	DefaultMaxClockSkew    = contract.DefaultMaxClockSkew
	DefaultShutdownDelay   = contract.DefaultShutdownDelay
	DefaultShutdownTimeout = contract.DefaultShutdownTimeout
	// DefaultReplayWindowSize bounds the accepted callbacks remembered to answer exact
	// repeats: ~120 bytes each with the map's and the ring's slack, so ~12 MiB live when full
	// (measured); 1,600 callbacks a second for a 60s skew window.
	DefaultReplayWindowSize = 100000
	// DefaultMaxBodyBytesInFlight bounds the bytes of all bodies being read at once.
	DefaultMaxBodyBytesInFlight = 16 << 20
	// DefaultMaxRetryAfter bounds how long a sink's Retry-After can hold a worker.
	DefaultMaxRetryAfter = 5 * time.Minute
	// DefaultSpoolMaxBytes bounds the spool directory's files.
	DefaultSpoolMaxBytes = contract.DefaultSpoolMaxBytes
)

// DefaultListen and DefaultAdminListen are the addresses of the contract's default ports.
var (
	DefaultListen      = ":" + strconv.Itoa(contract.DefaultCallbackPort)
	DefaultAdminListen = ":" + strconv.Itoa(contract.DefaultAdminPort)
)

// maxMaxBodyBytes bounds --max-body-bytes far above any callback (IM's are a few KiB).
const maxMaxBodyBytes = 1 << 30

// Backoff policies, named as in Knative's DeliverySpec.
const (
	BackoffExponential = contract.BackoffExponential // delay x 2^n before retry n (n = 1, 2, ...)
	BackoffLinear      = contract.BackoffLinear      // delay x n before retry n
)

// Config configures a Receiver. Start from DefaultConfig; New fills the zero value of a field
// whose zero value means nothing (timeouts, sizes, policy, commands, logger) with its default.
// Retry, BackoffDelay and ShutdownDelay are taken literally: zero means zero.
type Config struct {
	// SdkAppID is the IM application's SDKAppID; callbacks for any other app are refused (403).
	SdkAppID uint64
	// Path is the absolute URL path callbacks are POSTed to; any other path gets 404.
	Path string
	// Commands are the CallbackCommands forwarded to Sink (the default route); commands
	// that no route or decision names either are answered OK and counted "ignored". Empty
	// means the default: [DefaultCommand] unless a Route or Decision names it, and nothing
	// without a Sink. A command given here may not also be in a Route or Decision.
	Commands []string

	// Sink is the absolute http(s) URL events of Commands are sent to. It is required unless
	// Routes or Decisions are given and Commands is empty. DeadLetterSink (optional) gets the
	// events a sink (Sink or a Route's) did not take after the last attempt.
	Sink, DeadLetterSink string
	// Routes deliver the after-callbacks of their commands to their own sink, with the same
	// delivery settings as Sink.
	Routes []Route
	// Decisions answer the callbacks of their commands synchronously with a decision service.
	Decisions []Decision
	// DecisionTimeout bounds the whole exchange with a decision service; zero means
	// DefaultDecisionTimeout. Keep it well inside IM's 2 seconds.
	DecisionTimeout time.Duration
	// DecisionFailure is IM's answer when the decision service fails: DecisionFailureAllow
	// (the default, also for "") or DecisionFailureReject.
	DecisionFailure string
	// Retry is the number of retries after the first attempt.
	Retry int
	// BackoffPolicy is BackoffExponential or BackoffLinear; empty means exponential.
	BackoffPolicy string
	// BackoffDelay is the base delay of the backoff policy; DeliveryTimeout bounds each attempt.
	BackoffDelay, DeliveryTimeout time.Duration
	// MaxRetryAfter caps how long a sink's Retry-After header may delay the next attempt.
	MaxRetryAfter time.Duration
	// QueueSize bounds the accepted callbacks waiting for delivery in memory, without a
	// spool; a full queue answers 503.
	QueueSize int
	// SpoolDir, when set, makes acceptance durable: every accepted callback is written there
	// and synced before its 200 OK, delivered from there, and found there again by the next
	// process if this one dies. SpoolMaxBytes bounds its files; a full spool answers 503.
	SpoolDir      string
	SpoolMaxBytes int64
	// Workers is the number of concurrent deliveries per sink: each sink's lane has its own.
	Workers int
	// MaxConnections bounds the open connections of the callback port (DefaultMaxConnections):
	// beyond it, new connections wait in the kernel's backlog until one closes, so that
	// connections alone (idle, or strangers' half-open TLS handshakes) cannot take the pod's
	// memory. TLS handshakes in progress are bounded to a quarter of it.
	MaxConnections int
	// DrainOnly opens the spool only to deliver what it holds (Receiver.Deliver): no segment
	// is created, nothing is accepted. It needs SpoolDir.
	DrainOnly bool

	// MaxBodyBytes bounds a callback's body; larger ones get 413.
	MaxBodyBytes int64
	// MaxBodyBytesInFlight bounds the buffers of all bodies being read at once (bodies of
	// authenticated requests: nobody else's is read). A body that finds no room within a
	// second gets 503. It is raised to hold at least one body of MaxBodyBytes.
	MaxBodyBytesInFlight int64
	// MaxClockSkew bounds |RequestTime - now| when a Token is set.
	MaxClockSkew time.Duration
	// ReplayWindowSize bounds the accepted callbacks remembered (with a Token) so that an exact
	// repeat (same Sign, RequestTime and body) within MaxClockSkew is answered OK and counted
	// "duplicate" instead of being forwarded again. When full, the oldest is forgotten. Zero
	// means DefaultReplayWindowSize; negative turns the check off.
	ReplayWindowSize int
	// Token is the IM console's callback token, as authtoken.Parse returns it; empty turns
	// authentication off.
	Token string

	// Listen and AdminListen are the addresses Run listens on (callbacks, and /metrics,
	// /healthz, /readyz). With TLSCertFile and TLSKeyFile the callback port speaks TLS; the
	// files are re-read when they change, so a renewed certificate needs no restart.
	Listen, AdminListen, TLSCertFile, TLSKeyFile string

	// ShutdownDelay is how long callbacks are still accepted after shutdown began while
	// /readyz already fails; ShutdownTimeout bounds the whole shutdown, counted from its start.
	ShutdownDelay, ShutdownTimeout time.Duration

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock (RequestTime checks, event time); nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config holding the defaults of every flag; SdkAppID, Path and Sink
// are still to be set. Commands is left empty: the default route's commands depend on the
// routes and decisions (see Config.Commands).
func DefaultConfig() Config {
	return Config{
		Retry:                DefaultRetry,
		BackoffPolicy:        DefaultBackoffPolicy,
		BackoffDelay:         DefaultBackoffDelay,
		DeliveryTimeout:      DefaultDeliveryTimeout,
		MaxRetryAfter:        DefaultMaxRetryAfter,
		QueueSize:            DefaultQueueSize,
		Workers:              DefaultWorkers,
		MaxConnections:       DefaultMaxConnections,
		MaxBodyBytes:         DefaultMaxBodyBytes,
		MaxClockSkew:         DefaultMaxClockSkew,
		Listen:               DefaultListen,
		AdminListen:          DefaultAdminListen,
		ShutdownDelay:        DefaultShutdownDelay,
		ShutdownTimeout:      DefaultShutdownTimeout,
		DecisionTimeout:      DefaultDecisionTimeout,
		DecisionFailure:      DefaultDecisionFailure,
		MaxBodyBytesInFlight: DefaultMaxBodyBytesInFlight,
		ReplayWindowSize:     DefaultReplayWindowSize,
		SpoolMaxBytes:        DefaultSpoolMaxBytes,
	}
}

// withDefaults returns a copy of c whose meaningless zero values are replaced by defaults.
func (c Config) withDefaults() Config {
	c.Commands = c.defaultRouteCommands()
	orDefault(&c.DecisionTimeout, DefaultDecisionTimeout)
	orDefault(&c.DecisionFailure, DefaultDecisionFailure)
	orDefault(&c.BackoffPolicy, DefaultBackoffPolicy)
	orDefault(&c.DeliveryTimeout, DefaultDeliveryTimeout)
	orDefault(&c.MaxRetryAfter, DefaultMaxRetryAfter)
	orDefault(&c.QueueSize, DefaultQueueSize)
	orDefault(&c.Workers, DefaultWorkers)
	orDefault(&c.MaxConnections, DefaultMaxConnections)
	orDefault(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	orDefault(&c.MaxClockSkew, DefaultMaxClockSkew)
	orDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	orDefault(&c.Listen, DefaultListen)
	orDefault(&c.AdminListen, DefaultAdminListen)
	orDefault(&c.ReplayWindowSize, DefaultReplayWindowSize)
	orDefault(&c.MaxBodyBytesInFlight, DefaultMaxBodyBytesInFlight)
	orDefault(&c.SpoolMaxBytes, DefaultSpoolMaxBytes)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// orDefault sets *v to def when it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports every problem of the configuration at once. Zero values that New replaces
// with a default are accepted.
func (c *Config) Validate() error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	if c.SdkAppID == 0 {
		add("sdkappid is required and must be > 0")
	}
	switch {
	case c.Path == "":
		add("path is required (e.g. /im/callback)")
	case !strings.HasPrefix(c.Path, "/"):
		add("path %q must be absolute (start with /)", c.Path)
	case strings.ContainsAny(c.Path, "?#"):
		add("path %q must not contain a query or fragment", c.Path)
	}
	c.validateRouting(add)
	if err := checkSinkURL("sink", c.Sink, false); err != nil {
		errs = append(errs, err.Error())
	}
	if err := checkSinkURL("dead-letter-sink", c.DeadLetterSink, false); err != nil {
		errs = append(errs, err.Error())
	}
	if c.Retry < 0 {
		add("retry must be >= 0, got %d", c.Retry)
	}
	switch c.BackoffPolicy {
	case "", BackoffExponential, BackoffLinear:
	default:
		add("backoff-policy must be %q or %q, got %q", BackoffExponential, BackoffLinear, c.BackoffPolicy)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"backoff-delay", c.BackoffDelay},
		{"delivery-timeout", c.DeliveryTimeout},
		{"max-retry-after", c.MaxRetryAfter},
		{"max-clock-skew", c.MaxClockSkew},
		{"shutdown-delay", c.ShutdownDelay},
		{"shutdown-timeout", c.ShutdownTimeout},
	} {
		if d.v < 0 {
			add("%s must not be negative, got %s", d.name, d.v)
		}
	}
	timeout := c.ShutdownTimeout
	if timeout == 0 {
		timeout = DefaultShutdownTimeout
	}
	if c.ShutdownDelay >= timeout {
		add("shutdown-delay (%s) must be shorter than shutdown-timeout (%s), or nothing is left to drain the queue", c.ShutdownDelay, timeout)
	}
	if c.QueueSize < 0 {
		add("queue-size must be > 0, got %d", c.QueueSize)
	}
	if c.DrainOnly && c.SpoolDir == "" {
		add("%s needs %s: there is nothing to drain without a spool", contract.FlagDrainOnly, contract.FlagSpoolDir)
	}
	if c.MaxConnections < 0 {
		add("max-connections must be > 0, got %d", c.MaxConnections)
	}
	if c.Workers < 0 {
		add("workers must be > 0, got %d", c.Workers)
	}
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > maxMaxBodyBytes {
		add("max-body-bytes must be > 0 and at most %d, got %d", maxMaxBodyBytes, c.MaxBodyBytes)
	}
	if c.MaxBodyBytesInFlight < 0 {
		add("max-body-bytes-in-flight must be > 0, got %d", c.MaxBodyBytesInFlight)
	}
	if c.Token != "" {
		// Never the value itself: errors end up in logs.
		if t, err := authtoken.Parse(c.Token); err != nil || t != c.Token {
			add("token must not be blank or have surrounding white space (read it with authtoken.Parse)")
		}
	}
	if c.SpoolMaxBytes < 0 {
		add("spool-max-bytes must be > 0, got %d", c.SpoolMaxBytes)
	}
	if maxBody := cmp.Or(c.MaxBodyBytes, DefaultMaxBodyBytes); c.SpoolDir != "" && c.SpoolMaxBytes > 0 && c.SpoolMaxBytes < 2*maxBody {
		add("spool-max-bytes (%d) must be at least twice max-body-bytes (%d)", c.SpoolMaxBytes, maxBody)
	} else if n := int64(c.sinkCount()); c.SpoolDir != "" && c.SpoolMaxBytes > 0 && c.SpoolMaxBytes/n < 2*maxBody {
		add("spool-max-bytes (%d) is shared by %d sinks, each lane's share must be at least twice max-body-bytes (%d): at least %d", c.SpoolMaxBytes, n, maxBody, 2*maxBody*n)
	}
	if c.DecisionTimeout > MaxDecisionTimeout {
		add("%s must be at most %s, inside IM's 2-second wait (the resource's schema says the same), got %s", contract.FlagDecisionTimeout, MaxDecisionTimeout, c.DecisionTimeout)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("tls-cert-file and tls-key-file must be given together")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func checkSinkURL(name, raw string, required bool) error {
	if raw == "" {
		if required {
			return fmt.Errorf("%s is required (an absolute http or https URL)", name)
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s is not a URL: %w", name, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s %q must be an absolute http or https URL", name, u.Redacted())
	}
	if u.Host == "" {
		return fmt.Errorf("%s %q has no host", name, u.Redacted())
	}
	return nil
}

// DefaultMaxConnections bounds the callback port's connections: ~13 KB each for a half-open
// TLS handshake, ~20 KB for an idle kept-alive one, so at most ~80 MB of the pod's memory; IM
// keeps a few dozen.
const DefaultMaxConnections = 4096

// MaxDecisionTimeout bounds --decision-timeout: the failure policy must answer well inside
// IM's 2 seconds.
const MaxDecisionTimeout = 1500 * time.Millisecond

// sinkCount is the number of distinct delivery sinks (the lanes of the queue), at least 1.
func (c *Config) sinkCount() int {
	seen := map[string]bool{}
	if c.Sink != "" {
		seen[c.Sink] = true
	}
	for _, rt := range c.Routes {
		seen[rt.Sink] = true
	}
	return max(len(seen), 1)
}
