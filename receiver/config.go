package receiver

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults of the flags and Config fields, as design.md fixes them.
const (
	DefaultCommand         = "Sns.CallbackBlackListDelete"
	DefaultRetry           = 3
	DefaultBackoffPolicy   = BackoffExponential
	DefaultBackoffDelay    = 200 * time.Millisecond
	DefaultDeliveryTimeout = time.Second
	DefaultQueueSize       = 10000
	DefaultWorkers         = 64
	DefaultMaxBodyBytes    = 1 << 20
	DefaultMaxClockSkew    = 60 * time.Second
	DefaultListen          = ":8080"
	DefaultAdminListen     = ":9090"
	DefaultShutdownDelay   = 5 * time.Second
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultMaxRetryAfter bounds how long a sink's Retry-After can hold a worker.
	DefaultMaxRetryAfter = 5 * time.Minute
	// DefaultSpoolMaxBytes bounds the spool directory's files.
	DefaultSpoolMaxBytes = 1 << 30
)

// Backoff policies, named as in Knative's DeliverySpec.
const (
	BackoffExponential = "exponential" // delay x 2^n before retry n (n = 1, 2, ...)
	BackoffLinear      = "linear"      // delay x n before retry n
)

// Config configures a Receiver. Start from DefaultConfig; New fills the zero value of a field
// whose zero value means nothing (timeouts, sizes, policy, commands, logger) with its default.
// Retry, BackoffDelay and ShutdownDelay are taken literally: zero means zero.
type Config struct {
	// SdkAppID is the IM application's SDKAppID; callbacks for any other app are refused (403).
	SdkAppID uint64
	// Path is the absolute URL path callbacks are POSTed to; any other path gets 404.
	Path string
	// Commands are the CallbackCommands forwarded to the sink; others are answered OK and
	// counted "ignored". Empty means [DefaultCommand].
	Commands []string

	// Sink is the absolute http(s) URL events are sent to; DeadLetterSink (optional) gets the
	// events the sink did not take after the last attempt.
	Sink, DeadLetterSink string
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
	// Workers is the number of concurrent deliveries.
	Workers int

	// MaxBodyBytes bounds a callback's body; larger ones get 413.
	MaxBodyBytes int64
	// MaxClockSkew bounds |RequestTime - now| when a Token is set.
	MaxClockSkew time.Duration
	// Token is the IM console's callback token; empty turns authentication off.
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

// DefaultConfig returns a Config holding design.md's defaults; SdkAppID, Path and Sink are
// still to be set.
func DefaultConfig() Config {
	return Config{
		Commands:        []string{DefaultCommand},
		Retry:           DefaultRetry,
		BackoffPolicy:   DefaultBackoffPolicy,
		BackoffDelay:    DefaultBackoffDelay,
		DeliveryTimeout: DefaultDeliveryTimeout,
		MaxRetryAfter:   DefaultMaxRetryAfter,
		QueueSize:       DefaultQueueSize,
		SpoolMaxBytes:   DefaultSpoolMaxBytes,
		Workers:         DefaultWorkers,
		MaxBodyBytes:    DefaultMaxBodyBytes,
		MaxClockSkew:    DefaultMaxClockSkew,
		Listen:          DefaultListen,
		AdminListen:     DefaultAdminListen,
		ShutdownDelay:   DefaultShutdownDelay,
		ShutdownTimeout: DefaultShutdownTimeout,
	}
}

// withDefaults returns a copy of c whose meaningless zero values are replaced by defaults.
func (c Config) withDefaults() Config {
	if len(c.Commands) == 0 {
		c.Commands = []string{DefaultCommand}
	}
	if c.BackoffPolicy == "" {
		c.BackoffPolicy = DefaultBackoffPolicy
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.SpoolMaxBytes == 0 {
		c.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.AdminListen == "" {
		c.AdminListen = DefaultAdminListen
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
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
	seen := map[string]bool{}
	for _, cmd := range c.Commands {
		switch {
		case cmd == "" || strings.TrimSpace(cmd) != cmd:
			add("commands: %q is not a command name (no empty names or surrounding spaces)", cmd)
		case !validHeaderValue(cmd):
			add("commands: %q contains control characters", cmd)
		case seen[cmd]:
			add("commands: %q is listed twice", cmd)
		}
		seen[cmd] = true
	}
	if err := checkSinkURL("sink", c.Sink, true); err != nil {
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
	if c.Workers < 0 {
		add("workers must be > 0, got %d", c.Workers)
	}
	if c.MaxBodyBytes < 0 {
		add("max-body-bytes must be > 0, got %d", c.MaxBodyBytes)
	}
	if c.SpoolMaxBytes < 0 {
		add("spool-max-bytes must be > 0, got %d", c.SpoolMaxBytes)
	}
	if maxBody := cmp.Or(c.MaxBodyBytes, DefaultMaxBodyBytes); c.SpoolDir != "" && c.SpoolMaxBytes > 0 && c.SpoolMaxBytes < 2*maxBody {
		add("spool-max-bytes (%d) must be at least twice max-body-bytes (%d)", c.SpoolMaxBytes, maxBody)
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
