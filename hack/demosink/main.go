// Command demosink is the demo CloudEvents sink of `make dev` and the end-to-end tests (the
// local stand-in for Knative's event_display): it prints every CloudEvent it receives as one
// JSON line on stdout and answers 200. GET /events returns what it received (each event and
// its data byte for byte, base64), DELETE /events forgets them, GET /healthz answers 200.
//
//	demosink --listen=:8080
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// received is one event as GET /events reports it.
type received struct {
	Event      json.RawMessage `json:"event"`
	Data       []byte          `json:"data"` // exact bytes, base64 in JSON
	Path       string          `json:"path"`
	ReceivedAt time.Time       `json:"receivedAt"`
}

type sink struct {
	max    int
	status int

	mu     sync.Mutex
	events []received
	total  int
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz":
		w.WriteHeader(http.StatusOK)
		return
	case r.URL.Path == "/events" && r.Method == http.MethodGet:
		s.mu.Lock()
		body, err := json.Marshal(struct {
			Total  int        `json:"total"`
			Events []received `json:"events"`
		}{s.total, append([]received{}, s.events...)})
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		return
	case r.URL.Path == "/events" && r.Method == http.MethodDelete:
		s.mu.Lock()
		s.events, s.total = nil, 0
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST a CloudEvent", http.StatusMethodNotAllowed)
		return
	}
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		log.Printf("not a CloudEvent (%s %s): %v", r.Method, r.URL.Path, err)
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := ev.Validate(); err != nil {
		log.Printf("invalid CloudEvent: %v", err)
		http.Error(w, "invalid CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	js, err := json.Marshal(ev)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var line bytes.Buffer
	if err := json.Compact(&line, js); err != nil {
		line.Reset()
		line.Write(js)
	}
	fmt.Println(line.String())
	s.mu.Lock()
	s.total++
	s.events = append(s.events, received{Event: js, Data: ev.Data(), Path: r.URL.Path, ReceivedAt: time.Now().UTC()})
	if len(s.events) > s.max {
		s.events = s.events[len(s.events)-s.max:]
	}
	s.mu.Unlock()
	w.WriteHeader(s.status)
}

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	maxEvents := flag.Int("max-events", 10000, "how many events GET /events keeps")
	status := flag.Int("status", http.StatusOK, "HTTP status to answer events with (to try out retries)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("demosink: ")

	srv := &http.Server{Addr: *listen, Handler: &sink{max: *maxEvents, status: *status}, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Printf("printing CloudEvents received on %s", *listen)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
