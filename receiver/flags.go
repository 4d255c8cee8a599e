package receiver

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/imcallback/callback-operator/receiver/contract"
)

// RegisterFlags defines the receiver's flags on fs, named as the contract package names them,
// writing into c and taking c's current values as their defaults (start from DefaultConfig).
// The token has no flag: it comes from the environment (contract.TokenEnv).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Uint64Var(&c.SdkAppID, contract.FlagSdkAppID, c.SdkAppID, "the IM application's SDKAppID (required)")
	fs.StringVar(&c.Path, contract.FlagPath, c.Path, "URL path callbacks are POSTed to, e.g. /im/callback (required)")
	fs.Var((*commandList)(&c.Commands), contract.FlagCommands, "comma-separated CallbackCommands forwarded to --sink; commands nothing names are answered OK and counted ignored (default "+contract.DefaultCommand+", unless a --route or --decision names it)")
	fs.StringVar(&c.Sink, contract.FlagSink, c.Sink, "absolute http(s) URL the CloudEvents of --commands are sent to (required, unless only --route and --decision are used)")
	fs.Var(routesFlag(&c.Routes), contract.FlagRoute, "CMD[,CMD...]=URL, repeatable: after-callbacks of these commands are delivered to URL instead of --sink, with the same delivery settings and dead-letter sink")
	fs.Var(decisionsFlag(&c.Decisions), contract.FlagDecision, "CMD[,CMD...]=URL, repeatable: callbacks of these commands (before-callbacks) are answered by the decision service at URL")
	fs.DurationVar(&c.DecisionTimeout, contract.FlagDecisionTimeout, c.DecisionTimeout, "bound of the whole exchange with a decision service (IM waits 2s)")
	fs.StringVar(&c.DecisionFailure, contract.FlagDecisionFailure, c.DecisionFailure, "answer when a decision service fails: allow (ErrorCode 0, as IM itself does) or reject (ErrorCode 1)")
	fs.StringVar(&c.DeadLetterSink, contract.FlagDeadLetterSink, c.DeadLetterSink, "absolute http(s) URL for events the sink did not take after the last attempt")
	fs.IntVar(&c.Retry, contract.FlagRetry, c.Retry, "retries after the first delivery attempt")
	fs.StringVar(&c.BackoffPolicy, contract.FlagBackoffPolicy, c.BackoffPolicy, "exponential (delay x 2^n before retry n) or linear (delay x n)")
	fs.DurationVar(&c.BackoffDelay, contract.FlagBackoffDelay, c.BackoffDelay, "base delay of the backoff policy")
	fs.DurationVar(&c.DeliveryTimeout, contract.FlagDeliveryTimeout, c.DeliveryTimeout, "timeout of each delivery attempt")
	fs.IntVar(&c.QueueSize, contract.FlagQueueSize, c.QueueSize, "accepted callbacks waiting for delivery in memory (without --spool-dir); when full, callbacks get 503")
	fs.StringVar(&c.SpoolDir, contract.FlagSpoolDir, c.SpoolDir, "directory where each accepted callback is made durable before its 200 OK and kept until delivered, dead-lettered or failed; a restart delivers what it finds there (empty: an in-memory queue)")
	fs.Var((*byteSize)(&c.SpoolMaxBytes), contract.FlagSpoolMaxBytes, "bound of the spool's files in bytes (suffixes Ki, Mi, Gi allowed); when full, callbacks get 503")
	fs.IntVar(&c.Workers, contract.FlagWorkers, c.Workers, "concurrent deliveries per sink (each sink's lane has its own)")
	fs.BoolVar(&c.DrainOnly, contract.FlagDrainOnly, c.DrainOnly, "deliver what --spool-dir holds under the delivery flags, serve nothing, and exit (0 once every event was delivered or dead-lettered; SIGTERM stops it, leaving the rest in the spool)")
	fs.IntVar(&c.MaxConnections, contract.FlagMaxConnections, c.MaxConnections, "open connections on the callback port; beyond it new ones wait in the kernel's backlog (TLS handshakes in progress are bounded to a quarter of it, and to 3 s each)")
	fs.Var((*byteSize)(&c.MaxBodyBytes), contract.FlagMaxBodyBytes, "largest callback body accepted, in bytes (suffixes Ki, Mi allowed)")
	fs.Var((*byteSize)(&c.MaxBodyBytesInFlight), contract.FlagMaxBodyBytesInFlight, "bytes all bodies being read at once may hold (only authenticated requests' bodies are read); a body finding no room within a second gets 503")
	fs.IntVar(&c.ReplayWindowSize, contract.FlagReplayWindowSize, c.ReplayWindowSize, "accepted callbacks remembered so that an exact repeat (same Sign, RequestTime and body) within --max-clock-skew is answered OK but not forwarded again; when full the oldest is forgotten; < 0 turns this off (with a token only)")
	fs.DurationVar(&c.MaxClockSkew, contract.FlagMaxClockSkew, c.MaxClockSkew, "largest accepted difference between RequestTime and this clock (with a token)")
	fs.StringVar(&c.Listen, contract.FlagListen, c.Listen, "address for callbacks")
	fs.StringVar(&c.AdminListen, contract.FlagAdminListen, c.AdminListen, "address for /metrics, /healthz and /readyz")
	fs.StringVar(&c.TLSCertFile, contract.FlagTLSCertFile, c.TLSCertFile, "PEM certificate for the callback port; re-read when it changes")
	fs.StringVar(&c.TLSKeyFile, contract.FlagTLSKeyFile, c.TLSKeyFile, "PEM private key for the callback port; re-read when it changes")
	fs.DurationVar(&c.ShutdownDelay, contract.FlagShutdownDelay, c.ShutdownDelay, "after SIGTERM, how long callbacks are still accepted while /readyz fails")
	fs.DurationVar(&c.ShutdownTimeout, contract.FlagShutdownTimeout, c.ShutdownTimeout, "bound of the whole shutdown, counted from SIGTERM")
}

// ParseFlags parses receiver flags (and nothing else) over DefaultConfig: what the manager's
// arguments mean to the receiver. It does not validate the result; New does.
func ParseFlags(args []string) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q (flags only)", fs.Args())
	}
	return cfg, nil
}

// commandList is a comma-separated list of commands; empty items are dropped.
type commandList []string

func (l *commandList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *commandList) Set(s string) error {
	var out []string
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return errors.New("must name at least one command")
	}
	*l = out
	return nil
}

// byteSize is a size in bytes, with optional binary suffixes as Kubernetes writes them.
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a positive byte count (like 1048576 or 1Mi)", s)
	}
	*b = byteSize(n * mult)
	return nil
}
