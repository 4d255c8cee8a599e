// Command receiver is callback-operator's data plane: it answers Tencent Cloud IM callbacks,
// forwards the selected after-callbacks to sinks as CloudEvents, and has before-callbacks
// answered by decision services. It runs in the pods the manager creates, and on its own:
//
//	bin/receiver --sdkappid 1400000001 --path /im/callback --sink http://127.0.0.1:8081 \
//	  --route C2C.CallbackAfterSendMsg,Group.CallbackAfterSendMsg=http://127.0.0.1:8082 \
//	  --decision C2C.CallbackBeforeSendMsg,Group.CallbackBeforeSendMsg=http://127.0.0.1:8083
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
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/imcallback/callback-operator/internal/gcheadroom"
	"github.com/imcallback/callback-operator/internal/version"
	"github.com/imcallback/callback-operator/receiver"
	"github.com/imcallback/callback-operator/receiver/authtoken"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Unless GOGC is set, the heap may grow by max(gcMinHeadroom, the live heap) between
// collections, at most gcMaxPercent of it.
const (
	gcMinHeadroom = 16 << 20
	gcMaxPercent  = 400
)

// minSpoolProcs is the least GOMAXPROCS with a spool, unless GOMAXPROCS is set.
const minSpoolProcs = 2

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is main with its environment passed in; lookupEnv tells an unset variable from a
// blank one, which is what decides whether callbacks are authenticated.
func run(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
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
	if _, set := lookupEnv("GOMAXPROCS"); cfg.SpoolDir != "" && !set && runtime.GOMAXPROCS(0) < minSpoolProcs {
		// A goroutine in fdatasync keeps its P until sysmon takes it back, which takes up to
		// 10 ms when the runtime has been idle: with one P (a CPU limit of 1, or one CPU in
		// the affinity mask) every handler waits for the disk. A second P runs them meanwhile;
		// the thread in fdatasync sleeps, so the process still uses no more CPU than the load
		// needs. GOMAXPROCS in the environment still wins.
		runtime.GOMAXPROCS(minSpoolProcs)
	}
	if gogc, _ := lookupEnv("GOGC"); gogc == "" {
		// Every callback allocates a few KiB in net/http and the CloudEvents SDK. While the
		// live heap is small (no token, so no replay window) a fixed headroom saves most
		// collections (GOGC 100 there cost 12% more CPU per event); once the replay window
		// keeps ~11 MiB live, a fixed GOGC of 400 would hold 5 times that (77 MiB resident
		// against 39). GOGC in the environment still wins.
		defer gcheadroom.Start(gcMinHeadroom, gcMaxPercent)()
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	slog.SetDefault(logger)
	cfg.Logger = logger
	// Only an unset variable means "no authentication"; set but blank is a mistake that must
	// not silently turn verification off.
	if value, set := lookupEnv(contract.TokenEnv); set {
		if cfg.Token, err = authtoken.Parse(value); err != nil {
			logger.Error("invalid configuration: "+contract.TokenEnv+" is set but blank; put the IM console's callback token in it, or unset it to run without authentication",
				slog.String("variable", contract.TokenEnv))
			return 2
		}
	}

	if opts.drainOnly {
		if cfg.SpoolDir == "" {
			logger.Error("invalid configuration: --" + contract.FlagDrainOnly + " needs --" + contract.FlagSpoolDir)
			return 2
		}
		// No delay: nobody routes callbacks here.
		cfg.ShutdownDelay = 0
	}
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
	if opts.drainOnly {
		return drain(ctx, r, logger)
	}
	if err := r.Run(ctx); err != nil {
		logger.Error("receiver exited with an error", slog.Any("error", err))
		return 1
	}
	return 0
}

// drain delivers what the spool holds under the delivery flags and returns 0 once it is
// empty: the receiver serves only a loopback listener nobody else can reach, and starts its
// shutdown at once, whose drain delivers the spool until --shutdown-timeout. A signal ends
// it early; what is left stays in the spool.
func drain(ctx context.Context, r *receiver.Receiver, logger *slog.Logger) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logger.Error("drain-only: listening on loopback", slog.Any("error", err))
		return 1
	}
	logger.Info("drain-only: delivering what the spool holds; no callbacks are accepted")
	now, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Serve(now, ln, nil); err != nil {
		logger.Error("drain-only: the spool is not empty", slog.Any("error", err))
		return 1
	}
	logger.Info("drain-only: the spool is empty")
	return 0
}

type options struct {
	drainOnly bool
	version   bool
	logLevel  slog.Level
}

func parseFlags(args []string, stderr io.Writer) (receiver.Config, options, error) {
	cfg := receiver.DefaultConfig()
	var opts options
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: receiver --sdkappid N --path /p --sink URL [--route CMD[,CMD...]=URL]... [--decision CMD[,CMD...]=URL]... [flags]\n\n"+
			"Answers Tencent Cloud IM callbacks: forwards after-callbacks to sinks as CloudEvents, and has\n"+
			"before-callbacks answered by decision services.\n"+
			"The callback token is read from $%s (never a flag); without it callbacks are not authenticated.\n\n", contract.TokenEnv)
		fs.PrintDefaults()
	}
	cfg.RegisterFlags(fs)
	fs.TextVar(&opts.logLevel, contract.FlagLogLevel, slog.LevelInfo, "debug, info, warn or error")
	fs.BoolVar(&opts.version, "version", false, "print the version and exit")
	fs.BoolVar(&opts.drainOnly, contract.FlagDrainOnly, false, "deliver what --spool-dir holds under the delivery flags, accept no callbacks, and exit (0 once the spool is empty, 1 if events are left at --shutdown-timeout)")

	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected arguments %q (flags only)", fs.Args())
	}
	return cfg, opts, nil
}
