// Command forwarder is hack/bench-receiver.sh's ideal forwarder: the floor of any receiver
// that delivers each callback as a request. It answers the protocol's fixed OK, queues the
// body in memory, and workers POST each body to the sink with plain net/http. It checks
// nothing, stores nothing durably and builds no CloudEvent. GET /stats returns
// "accepted delivered failed".
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync/atomic"
)

var ok = []byte(`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "address to listen on")
	sink := flag.String("sink", "http://127.0.0.1:8081/", "sink URL")
	workers := flag.Int("workers", 64, "concurrent deliveries")
	queueSize := flag.Int("queue-size", 10000, "bodies waiting for delivery")
	flag.Parse()

	queue := make(chan []byte, *queueSize)
	var accepted, delivered, failed atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers + 1}}
	for range *workers {
		go func() {
			for body := range queue {
				resp, err := client.Post(*sink, "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					delivered.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/stats" {
			fmt.Fprintln(w, accepted.Load(), delivered.Load(), failed.Load())
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case queue <- body:
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		accepted.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ok)
	})))
}
