// Command abuse is hack/bench-abuse.sh's abuse run: many clients send large bodies to the
// receiver as fast as they can (with a bad Sign, or with a valid one as a client holding a
// captured URL would), while valid callbacks are sent at a fixed rate beside them. It prints
// the valid callbacks' latency (from each one's scheduled time, so stalls are not hidden) and
// what the abusive clients got back; the script reads the receiver's peak RSS.
//
// The two halves can run as separate processes (-valid-url "" runs only the abuse, -clients 0
// only the valid callbacks), so that the valid sender can be given priority over the abusive
// clients on the core they share and measures the receiver, not its own starvation.
//
//	abuse -attack-url 'http://127.0.0.1:8080/im/callback?...&Sign=bad' -valid-url 'http://...&Sign=good' \
//	      -clients 256 -body-bytes 1000000 -rate 100 -duration 10s
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	attackURL := flag.String("attack-url", "", "URL the abusive clients POST to")
	validURL := flag.String("valid-url", "", "URL of the valid callbacks (signed)")
	clients := flag.Int("clients", 256, "concurrent abusive clients")
	bodyBytes := flag.Int("body-bytes", 1000000, "body size of each abusive request")
	rate := flag.Float64("rate", 100, "valid callbacks per second")
	validConns := flag.Int("valid-conns", 4, "connections the valid callbacks are spread over")
	duration := flag.Duration("duration", 10*time.Second, "how long the abuse lasts")
	flag.Parse()
	au, err1 := url.Parse(*attackURL)
	vu, err2 := url.Parse(*validURL)
	if err1 != nil || err2 != nil || (*clients > 0 && au.Scheme != "http") || (*validURL != "" && vu.Scheme != "http") || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "abuse: -attack-url and -valid-url must be http URLs, -rate > 0")
		os.Exit(2)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var st attackStats
	// The body is not JSON: with a valid Sign it is read and refused (400), with a bad one it
	// must not be read at all.
	body := bytes.Repeat([]byte("x"), *bodyBytes)
	head := []byte("POST " + au.RequestURI() + " HTTP/1.1\r\nHost: " + au.Host +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	for range *clients {
		wg.Go(func() { attack(au.Host, head, body, stop, &st) })
	}
	if *validURL == "" {
		time.Sleep(*duration)
	} else {
		if *clients > 0 {
			time.Sleep(500 * time.Millisecond) // let the abuse build up first
		}
		lat, non200, errs := valid(vu, *rate, *validConns, *duration)
		slices.Sort(lat)
		pct := func(p float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Microsecond)
		}
		fmt.Printf("valid callbacks %d at %.0f/s, non-200 %d, errors %d\n", len(lat), *rate, non200, errs)
		fmt.Printf("valid latency p50 %v p99 %v max %v\n", pct(.50), pct(.99), pct(1))
	}
	close(stop)
	wg.Wait()
	if *clients > 0 {
		fmt.Printf("abusive requests %d: replies %s, connections failed before a reply %d\n",
			st.requests.Load(), st.replies(), st.noReply.Load())
	}
}

type attackStats struct {
	requests, noReply atomic.Int64
	mu                sync.Mutex
	status            map[int]int64
}

func (s *attackStats) count(status int) {
	s.mu.Lock()
	if s.status == nil {
		s.status = map[int]int64{}
	}
	s.status[status]++
	s.mu.Unlock()
}

func (s *attackStats) replies() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	codes := make([]int, 0, len(s.status))
	for c := range s.status {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	out := ""
	for _, c := range codes {
		out += fmt.Sprintf("%d x%d ", c, s.status[c])
	}
	if out == "" {
		return "none"
	}
	return out[:len(out)-1]
}

// attack sends requests with a large body on one connection after another, as fast as the
// receiver lets it, reading whatever reply comes.
func attack(host string, head, body []byte, stop chan struct{}, st *attackStats) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", host, 5*time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		st.requests.Add(1)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// Write and read at once: the receiver may answer before it has the body.
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := c.Write(head); err == nil {
				_, _ = c.Write(body)
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			st.noReply.Add(1)
		} else {
			st.count(resp.StatusCode)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		_ = c.Close()
		<-done
	}
}

// valid sends distinct signed callbacks at a fixed rate (open loop: each latency counts from
// its scheduled time) over a few persistent connections.
func valid(u *url.URL, rate float64, conns int, duration time.Duration) ([]time.Duration, int64, int64) {
	total := int(rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	lat := make([][]time.Duration, conns)
	var non200, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	for k := range conns {
		wg.Go(func() {
			var c net.Conn
			var br *bufio.Reader
			for n := k; n < total; n += conns {
				due := start.Add(time.Duration(n) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				// Distinct bodies: the receiver would answer a repeat as a duplicate.
				b := `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"id","To_Account":"u` + strconv.Itoa(n) + `"}]}`
				req := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
					"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(b)) + "\r\n\r\n" + b
				status, err := func() (int, error) {
					if c == nil {
						var err error
						if c, err = net.DialTimeout("tcp", u.Host, 5*time.Second); err != nil {
							c = nil
							return 0, err
						}
						br = bufio.NewReader(c)
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.WriteString(c, req); err != nil {
						return 0, err
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						return 0, err
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.Close {
						return resp.StatusCode, errClosed
					}
					return resp.StatusCode, nil
				}()
				if err != nil && c != nil {
					c.Close()
					c = nil
				}
				if err != nil && !errors.Is(err, errClosed) {
					errs.Add(1)
					continue
				}
				if status != 200 {
					non200.Add(1)
				}
				lat[k] = append(lat[k], time.Since(due))
			}
			if c != nil {
				c.Close()
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return all, non200.Load(), errs.Load()
}

var errClosed = errors.New("connection closed by the server")
