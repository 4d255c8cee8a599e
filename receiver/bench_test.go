package receiver

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// benchWriter is a ResponseWriter that costs nothing, so the handler's own allocations show.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }

// rewindBody is a request body that can be replayed.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

func benchRequest(rawQuery, body string) (*http.Request, *rewindBody) {
	rb := &rewindBody{}
	rb.Reset([]byte(body))
	req := (&http.Request{
		Method: http.MethodPost, URL: &url.URL{Path: testPath, RawQuery: rawQuery},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"application/json"}},
		Body: rb, ContentLength: int64(len(body)), RemoteAddr: "192.0.2.1:1234",
	}).WithContext(context.Background())
	return req, rb
}

func benchHandler(b *testing.B, rawQuery, body string, wantCode int, accepted bool) {
	benchHandlerVarying(b, testConfig("http://127.0.0.1:1"), rawQuery, body, wantCode, accepted, nil)
}

// benchHandlerVarying runs the handler on body, changed by vary (when not nil) before each
// request.
func benchHandlerVarying(b *testing.B, cfg Config, rawQuery, body string, wantCode int, accepted bool, vary func(n int, body []byte)) {
	r := newReceiver(b, cfg)
	h := r.Handler()
	req, rb := benchRequest(rawQuery, body)
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	n := 0
	for b.Loop() {
		buf := []byte(body)
		if vary != nil {
			vary(n, buf)
			n++
		}
		rb.Reset(buf)
		clear(w.h)
		w.code = 200
		h.ServeHTTP(w, req)
		if accepted {
			dropQueued(r)
		}
	}
	if w.code != wantCode {
		b.Fatalf("status %d, want %d", w.code, wantCode)
	}
	if accepted && countsOf(r).duplicate != 0 {
		b.Fatalf("%v requests taken for duplicates", countsOf(r).duplicate)
	}
}

// BenchmarkHandlerAccepted is the hot path: a signed Sns.CallbackBlackListDelete verified,
// checked, looked up in the replay window and queued (the reply written to a free
// ResponseWriter). Each body differs, as IM's do, so none is a duplicate.
func BenchmarkHandlerAccepted(b *testing.B) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.ReplayWindowSize = 0 // the default, as in production
	body := strings.Replace(blackListDeleteBody, `"id3"`, `"00000000"`, 1)
	at := strings.Index(body, `"00000000"`) + 1
	benchHandlerVarying(b, cfg, signedQuery(CmdBlackListDelete), body, 200, true, func(n int, buf []byte) {
		for i := at + 7; i >= at; i-- {
			buf[i] = byte('0' + n%10)
			n /= 10
		}
	})
}

func BenchmarkHandlerIgnored(b *testing.B) {
	benchHandler(b, signedQuery("Group.CallbackAfterSendMsg"), `{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#1"}`, 200, false)
}

// BenchmarkHandlerRejected includes the log line written per rejection (to a discarding handler).
func BenchmarkHandlerRejected(b *testing.B) {
	q := strings.Replace(signedQuery(CmdBlackListDelete), "Sign=1", "Sign=2", 1)
	benchHandler(b, q, blackListDeleteBody, 401, false)
}

// BenchmarkEncodeEvent builds the CloudEvent and encodes it into a request with the SDK, as
// each delivery attempt does (without the network).
func BenchmarkEncodeEvent(b *testing.B) {
	r := newReceiver(b, testConfig("http://127.0.0.1:1"))
	it := &item{received: exampleNow, sdkAppID: "1400000001", command: CmdBlackListDelete, clientIP: "127.0.0.1",
		optPlatform: "RESTAPI", hasClientIP: true, hasOptPlatform: true, body: []byte(blackListDeleteBody)}
	b.ReportAllocs()
	for b.Loop() {
		ev := r.newEvent(it)
		req := &http.Request{Method: http.MethodPost, URL: r.defaultRoute.url, Header: make(http.Header, 12)}
		if err := cehttp.WriteRequest(r.bindingCtx, binding.ToMessage(&ev), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndToEnd is the whole path over loopback in one process: client, receiver
// (verification on), delivery to an httptest sink. Allocations include client and sink.
func BenchmarkEndToEnd(b *testing.B) {
	var delivered atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer s.Close()
	cfg := testConfig(s.URL)
	cfg.Workers = 16
	rr := start(b, cfg)
	u := rr.url + testPath + "?" + signedQuery(CmdBlackListDelete)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(u, "application/json", strings.NewReader(blackListDeleteBody))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	accepted := int64(countsOf(rr.Receiver).accepted)
	if err := rr.stop(b); err != nil {
		b.Fatal(err)
	}
	if delivered.Load() != accepted {
		b.Fatalf("delivered %d of %d accepted", delivered.Load(), accepted)
	}
}

// rawResponder is a minimal keep-alive HTTP/1.1 server answering every request with one
// fixed response, allocation-free per request, so that a benchmark in the same process
// counts the receiver's allocations, not the peer's.
func rawResponder(b *testing.B, response string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte(response)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 16<<10)
				for {
					length := 0
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
						if n, ok := contentLength(line); ok {
							length = n
						}
					}
					if _, err := br.Discard(length); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// contentLength parses a Content-Length header line without allocating.
func contentLength(line []byte) (int, bool) {
	const name = "content-length:"
	if len(line) <= len(name) || !bytes.EqualFold(line[:len(name)], []byte(name)) {
		return 0, false
	}
	n := 0
	for _, c := range line[len(name):] {
		if c >= '0' && c <= '9' {
			n = n*10 + int(c-'0')
		}
	}
	return n, true
}

var rawAnswerRefuse = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
	strconv.Itoa(len(answerRefuse)) + "\r\n\r\n" + answerRefuse

// BenchmarkDecision is a whole decision through the handler: checks, the CloudEvent to a
// decision service over loopback (kept alive), its answer checked and relayed. Compare with
// BenchmarkHandlerAccepted + BenchmarkDeliver, an accepted-and-delivered callback.
func BenchmarkDecision(b *testing.B) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Decisions = []Decision{{Commands: []string{CmdC2CBeforeSendMsg}, URL: rawResponder(b, rawAnswerRefuse)}}
	r := newReceiver(b, cfg)
	h := r.Handler()
	req, rb := benchRequest(signedQuery(CmdC2CBeforeSendMsg), c2cBeforeBody)
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(c2cBeforeBody)))
	for b.Loop() {
		rb.Reset([]byte(c2cBeforeBody))
		clear(w.h)
		w.code = 200
		h.ServeHTTP(w, req)
	}
	if w.code != 200 || testutil.ToFloat64(r.metrics.decisions[decisionRejected]) == 0 || testutil.ToFloat64(r.metrics.decisions[decisionFailedAllowed]) != 0 {
		b.Fatalf("status %d, decisions not relayed", w.code)
	}
}

// BenchmarkDeliver is one delivery of an accepted callback: the CloudEvent built, sent to a
// sink over loopback (kept alive) and its 202 read: what a worker does per event.
func BenchmarkDeliver(b *testing.B) {
	s := rawResponder(b, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
	r := newReceiver(b, testConfig(s))
	it := &item{received: exampleNow, sdkAppID: "1400000001", command: CmdBlackListDelete, clientIP: "127.0.0.1",
		optPlatform: "RESTAPI", hasClientIP: true, hasOptPlatform: true, body: []byte(blackListDeleteBody)}
	b.ReportAllocs()
	for b.Loop() {
		r.deliverer.deliver(context.Background(), Entry{Item: it})
	}
	if testutil.ToFloat64(r.metrics.failed) != 0 {
		b.Fatal("deliveries failed")
	}
}
