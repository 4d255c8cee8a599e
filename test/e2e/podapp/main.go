// Command podapp is the program the end-to-end smoke tests run in pods: it reports what it
// sees (its args, environment, user, address), fetches URLs from inside the pod, and
// misbehaves on request (exits, turns unhealthy, ignores SIGTERM) so the tests can watch the
// kubelet react.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Report is what GET / answers.
type Report struct {
	Args     []string          `json:"args"`
	Env      map[string]string `json:"env"`
	UID      int               `json:"uid"`
	GID      int               `json:"gid"`
	PID      int               `json:"pid"`
	Started  time.Time         `json:"started"`
	Hostname string            `json:"hostname"`
}

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	exitAfter := flag.Duration("exit-after", 0, "exit with code 3 after this long (0: never)")
	unhealthyAfter := flag.Duration("unhealthy-after", 0, "fail /healthz after this long (0: never)")
	ignoreTerm := flag.Bool("ignore-sigterm", false, "log SIGTERM but keep running")
	shutdownDelay := flag.Duration("shutdown-delay", 0, "after SIGTERM, fail /readyz and keep serving this long before exiting")
	once := flag.Bool("once", false, "print the report (what GET / answers) and exit: for kubectl exec")
	var notes notesFlag
	flag.Var(&notes, "note", "any text, reported back in args (repeatable)")
	flag.Parse()

	started := time.Now()
	var terminating atomic.Bool
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	host, _ := os.Hostname()
	report := Report{Args: os.Args[1:], Env: env, UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid(), Started: started, Hostname: host}
	if *once {
		_ = json.NewEncoder(os.Stdout).Encode(report)
		return
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(report)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if *unhealthyAfter > 0 && time.Since(started) > *unhealthyAfter {
			http.Error(w, "unhealthy on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if terminating.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL.Query().Get("url"), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Println("podapp:", err)
			os.Exit(1)
		}
	}()
	fmt.Printf("podapp: pid %d uid %d serving on %s\n", os.Getpid(), os.Getuid(), *listen)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	var exit <-chan time.Time
	if *exitAfter > 0 {
		exit = time.After(*exitAfter)
	}
	for {
		select {
		case <-exit:
			fmt.Println("podapp: exiting on purpose")
			os.Exit(3)
		case <-sigs:
			fmt.Printf("podapp: SIGTERM received at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
			if *ignoreTerm {
				continue
			}
			terminating.Store(true)
			time.Sleep(*shutdownDelay)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			fmt.Println("podapp: exiting after SIGTERM")
			os.Exit(0)
		}
	}
}

type notesFlag []string

func (n *notesFlag) String() string     { return strings.Join(*n, ",") }
func (n *notesFlag) Set(s string) error { *n = append(*n, s); return nil }
