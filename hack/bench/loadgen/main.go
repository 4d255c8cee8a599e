// Command loadgen is the open-loop load generator of the hack/bench-*.sh benchmarks, for
// latency at a fixed rate (wrk2 is not packaged in Debian; wrk is closed-loop, so its
// latencies hide queueing).
// Requests are scheduled at exact intervals and each latency is measured from its scheduled
// time, not from when a connection was free, so stalls are not hidden (coordinated omission
// is accounted for, as wrk2 does).
//
// Like wrk it speaks minimal HTTP/1.1 itself (a fixed request, Content-Length responses) over
// persistent connections, one request in flight per connection, so that the generator costs
// little on the core it shares with the sink.
//
//	loadgen -url 'http://127.0.0.1:8080/im/callback?...' -body '{...}' -rate 20000 -duration 10s -conns 32
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
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
	counter := flag.String("counter", "", "digits in -body replaced by a request number (same width, counting from a start taken from the clock's second), so that every body differs, also from other runs'")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -url must be an http URL and -rate > 0")
		os.Exit(2)
	}
	request := []byte("POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(*body)) + "\r\n\r\n" + *body)
	// The receiver answers an exact repeat of a signed callback as a duplicate without
	// forwarding it; a counter in the body keeps the requests distinct.
	counterAt := -1
	counterBase := int(time.Now().Unix()%10000) * 10000000
	if *counter != "" {
		if counterAt = bytes.LastIndex(request, []byte(*counter)); counterAt < 0 {
			fmt.Fprintln(os.Stderr, "loadgen: -counter is not in -body")
			os.Exit(2)
		}
	}

	// Like wrk2, each connection has its own schedule (request i of connection k is due at
	// start + (k + i*conns) * interval); a connection that falls behind sends at once, and the
	// latency still counts from the due time.
	total := int(*rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / *rate)
	var non200, errs atomic.Int64
	lat := make([][]time.Duration, *conns)
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	for k := range *conns {
		wg.Go(func() {
			request := append([]byte(nil), request...)
			c, err := dial(u.Host)
			if err != nil {
				errs.Add(1)
				return
			}
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for n := k; n < total; n += *conns {
				due := start.Add(time.Duration(n) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				if counterAt >= 0 {
					for i, m := counterAt+len(*counter)-1, counterBase+n; i >= counterAt; i-- {
						request[i] = byte('0' + m%10)
						m /= 10
					}
				}
				status, err := c.roundTrip(request)
				if err != nil {
					errs.Add(1)
					c.Close()
					if c, err = dial(u.Host); err != nil {
						return
					}
					continue
				}
				if status != 200 {
					non200.Add(1)
				}
				lat[k] = append(lat[k], time.Since(due))
			}
		})
	}
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
		return all[min(len(all)-1, int(p*float64(len(all))))].Round(time.Microsecond)
	}
	fmt.Printf("requests %d in %.2fs (%.0f/s, target %.0f/s), non-200 %d, errors %d\n",
		len(all), elapsed.Seconds(), float64(len(all))/elapsed.Seconds(), *rate, non200.Load(), errs.Load())
	fmt.Printf("latency p50 %v p90 %v p99 %v p99.9 %v max %v\n", pct(.50), pct(.90), pct(.99), pct(.999), pct(1))
}

type conn struct {
	net.Conn
	br *bufio.Reader
}

func dial(addr string) (*conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{c, bufio.NewReaderSize(c, 16<<10)}, nil
}

var errResponse = errors.New("malformed response")

// roundTrip writes the request and reads one response with a Content-Length body.
func (c *conn) roundTrip(request []byte) (int, error) {
	if _, err := c.Write(request); err != nil {
		return 0, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, errResponse
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errResponse
	}
	length := -1
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, errResponse
			}
		}
	}
	if length < 0 {
		return 0, errResponse
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, fmt.Errorf("reading the body: %w", err)
	}
	return status, nil
}
