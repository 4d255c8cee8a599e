// Command loadgen is hack/bench-receiver.sh's open-loop load generator for latency at a fixed
// rate (wrk2 is not packaged in Debian; wrk is closed-loop, so its latencies at a given rate
// hide queueing). Requests are scheduled at exact intervals, and each latency is measured from
// its scheduled time, not from when a connection was free, so stalls are not hidden
// (coordinated omission is accounted for, as wrk2 does).
//
//	loadgen -url 'http://127.0.0.1:8080/im/callback?...' -body '{...}' -rate 20000 -duration 10s -conns 32
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("url", "", "URL to POST to")
	body := flag.String("body", "", "request body")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	conns := flag.Int("conns", 32, "connections (and concurrent requests)")
	flag.Parse()
	if *target == "" || *rate <= 0 {
		flag.Usage()
		os.Exit(2)
	}

	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true},
	}
	payload := []byte(*body)
	total := int(*rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / *rate)
	scheduled := make(chan time.Time, total)
	var non200, errs atomic.Int64
	lat := make([][]time.Duration, *conns)
	var wg sync.WaitGroup
	for w := range *conns {
		wg.Go(func() {
			for at := range scheduled {
				resp, err := client.Post(*target, "application/json", bytes.NewReader(payload))
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					non200.Add(1)
				}
				lat[w] = append(lat[w], time.Since(at))
			}
		})
	}

	start := time.Now()
	for i := 0; i < total; {
		now := time.Now()
		due := int(now.Sub(start) / interval)
		for ; i <= due && i < total; i++ {
			scheduled <- start.Add(time.Duration(i) * interval)
		}
		time.Sleep(interval)
	}
	close(scheduled)
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	fmt.Printf("requests %d in %.2fs (%.0f/s, target %.0f/s), non-200 %d, errors %d\n",
		len(all), elapsed.Seconds(), float64(len(all))/elapsed.Seconds(), *rate, non200.Load(), errs.Load())
	fmt.Printf("latency p50 %v p90 %v p99 %v p99.9 %v max %v\n", pct(.50), pct(.90), pct(.99), pct(.999), pct(1))
}
