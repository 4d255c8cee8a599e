// Command receiver is callback-operator's data plane: it answers Tencent Cloud IM callbacks
// and forwards the selected ones to a sink as CloudEvents. It runs in the pods the manager
// creates, and on its own:
//
//	bin/receiver --sdkappid 1400000001 --path /im/callback --sink http://127.0.0.1:8081
//
// The callback token comes from the environment variable IM_CALLBACK_TOKEN, never a flag.
// Exit status: 0 when every accepted event was delivered or dead-lettered, 1 otherwise (or
// when it could not start), 2 for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/imcallback/callback-operator/internal/version"
	"github.com/imcallback/callback-operator/receiver"
)

// TokenEnv names the environment variable holding the IM console's callback token.
const TokenEnv = "IM_CALLBACK_TOKEN"

// defaultGCPercent is the GC target unless GOGC is set.
const defaultGCPercent = 400

// minSpoolProcs is the least GOMAXPROCS with a spool, unless GOMAXPROCS is set.
const minSpoolProcs = 2

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "receiver:", err)
		return 2
	}
	if opts.version {
		fmt.Fprintln(stdout, "receiver", version.Version)
		return 0
	}
	if cfg.SpoolDir != "" && getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minSpoolProcs {
		// A goroutine in fdatasync keeps its P until sysmon takes it back, which takes up to
		// 10 ms when the runtime has been idle: with one P (a CPU limit of 1, or one CPU in
		// the affinity mask) every handler waits for the disk. A second P runs them meanwhile;
		// the thread in fdatasync sleeps, so the process still uses no more CPU than the load
		// needs. GOMAXPROCS in the environment still wins.
		runtime.GOMAXPROCS(minSpoolProcs)
	}
	if getenv("GOGC") == "" {
		// The live heap is small (mostly the queue) while every callback allocates a few KiB
		// in net/http and the CloudEvents SDK; more headroom trades a few MiB for far fewer
		// collections. GOGC in the environment still wins.
		debug.SetGCPercent(defaultGCPercent)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	slog.SetDefault(logger)
	cfg.Logger = logger
	// Secrets mounted from files often end in a newline; a token never has surrounding space.
	cfg.Token = strings.TrimSpace(getenv(TokenEnv))

	r, err := receiver.New(cfg)
	if err != nil {
		logger.Error("invalid configuration", slog.Any("error", err))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal now ends the process at once, without waiting for the drain
	}()
	if err := r.Run(ctx); err != nil {
		logger.Error("receiver exited with an error", slog.Any("error", err))
		return 1
	}
	return 0
}

type options struct {
	version  bool
	logLevel slog.Level
}

func parseFlags(args []string, stderr io.Writer) (receiver.Config, options, error) {
	cfg := receiver.DefaultConfig()
	var opts options
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: receiver --sdkappid N --path /p --sink URL [flags]\n\n"+
			"Answers Tencent Cloud IM callbacks and forwards them to a sink as CloudEvents.\n"+
			"The callback token is read from $%s (never a flag); without it callbacks are not authenticated.\n\n", TokenEnv)
		fs.PrintDefaults()
	}
	commands := strings.Join(cfg.Commands, ",")
	maxBody := byteSize(cfg.MaxBodyBytes)
	spoolMax := byteSize(cfg.SpoolMaxBytes)

	fs.Uint64Var(&cfg.SdkAppID, "sdkappid", 0, "the IM application's SDKAppID (required)")
	fs.StringVar(&cfg.Path, "path", "", "URL path callbacks are POSTed to, e.g. /im/callback (required)")
	fs.StringVar(&commands, "commands", commands, "comma-separated CallbackCommands to forward; others are answered OK and counted ignored")
	fs.StringVar(&cfg.Sink, "sink", "", "absolute http(s) URL the CloudEvents are sent to (required)")
	fs.StringVar(&cfg.DeadLetterSink, "dead-letter-sink", "", "absolute http(s) URL for events the sink did not take after the last attempt")
	fs.IntVar(&cfg.Retry, "retry", cfg.Retry, "retries after the first delivery attempt")
	fs.StringVar(&cfg.BackoffPolicy, "backoff-policy", cfg.BackoffPolicy, "exponential (delay x 2^n before retry n) or linear (delay x n)")
	fs.DurationVar(&cfg.BackoffDelay, "backoff-delay", cfg.BackoffDelay, "base delay of the backoff policy")
	fs.DurationVar(&cfg.DeliveryTimeout, "delivery-timeout", cfg.DeliveryTimeout, "timeout of each delivery attempt")
	fs.IntVar(&cfg.QueueSize, "queue-size", cfg.QueueSize, "accepted callbacks waiting for delivery in memory (without --spool-dir); when full, callbacks get 503")
	fs.StringVar(&cfg.SpoolDir, "spool-dir", "", "directory where each accepted callback is made durable before its 200 OK and kept until delivered, dead-lettered or failed; a restart delivers what it finds there (empty: an in-memory queue)")
	fs.Var(&spoolMax, "spool-max-bytes", "bound of the spool's files in bytes (suffixes Ki, Mi, Gi allowed); when full, callbacks get 503")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "concurrent deliveries")
	fs.Var(&maxBody, "max-body-bytes", "largest callback body accepted, in bytes (suffixes Ki, Mi allowed)")
	fs.DurationVar(&cfg.MaxClockSkew, "max-clock-skew", cfg.MaxClockSkew, "largest accepted difference between RequestTime and this clock (with a token)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address for callbacks")
	fs.StringVar(&cfg.AdminListen, "admin-listen", cfg.AdminListen, "address for /metrics, /healthz and /readyz")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "PEM certificate for the callback port; re-read when it changes")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "PEM private key for the callback port; re-read when it changes")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", cfg.ShutdownDelay, "after SIGTERM, how long callbacks are still accepted while /readyz fails")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "bound of the whole shutdown, counted from SIGTERM")
	fs.TextVar(&opts.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.BoolVar(&opts.version, "version", false, "print the version and exit")

	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected arguments %q (flags only)", fs.Args())
	}
	cfg.Commands = nil
	for _, c := range strings.Split(commands, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cfg.Commands = append(cfg.Commands, c)
		}
	}
	if len(cfg.Commands) == 0 {
		return cfg, opts, errors.New("--commands must name at least one command")
	}
	cfg.MaxBodyBytes = int64(maxBody)
	cfg.SpoolMaxBytes = int64(spoolMax)
	if cfg.SpoolMaxBytes <= 0 {
		return cfg, opts, errors.New("--spool-max-bytes must be > 0")
	}
	if cfg.MaxBodyBytes <= 0 {
		return cfg, opts, errors.New("--max-body-bytes must be > 0")
	}
	return cfg, opts, nil
}

// byteSize is a flag value in bytes, with optional binary suffixes as Kubernetes writes them.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

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
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a byte count (like 1048576 or 1Mi)", s)
	}
	*b = byteSize(n * mult)
	return nil
}
