package receiver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// spyBody is a request body that records whether it was read before the reply was written.
type spyBody struct {
	r              io.Reader
	w              *spyWriter
	readBeforeSent bool
}

func (b *spyBody) Read(p []byte) (int, error) {
	if b.w.code == 0 {
		b.readBeforeSent = true
	}
	return b.r.Read(p)
}

func (*spyBody) Close() error { return nil }

type spyWriter struct {
	*httptest.ResponseRecorder
	code int
}

func (w *spyWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseRecorder.WriteHeader(code)
}

func (w *spyWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseRecorder.Write(b)
}

// TestBodyNotReadBeforeAuth: a request that fails checks 1-6 is answered without a byte of
// its body read, so an unauthenticated client cannot make the receiver buffer bodies.
func TestBodyNotReadBeforeAuth(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.MaxBodyBytes = 4096
	r := newReceiver(t, cfg)
	big := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		name, path, query, body string
		declared                int64
		status                  int
	}{
		{"wrong path", "/other", signedQuery(CmdBlackListDelete), blackListDeleteBody, -1, 404},
		{"declared too large", testPath, signedQuery(CmdBlackListDelete), big, 5000, 413},
		{"no SdkAppid", testPath, query("CallbackCommand", CmdBlackListDelete), blackListDeleteBody, -1, 400},
		{"wrong SdkAppid", testPath, query("SdkAppid", "1", "CallbackCommand", CmdBlackListDelete), blackListDeleteBody, -1, 403},
		{"no Sign", testPath, query("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete), blackListDeleteBody, -1, 401},
		{"bad Sign", testPath, strings.Replace(signedQuery(CmdBlackListDelete), "Sign=1", "Sign=2", 1), big, 5000 - 1000, 401},
		{"skewed RequestTime", testPath, query("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "RequestTime", "1", "Sign", Sign(exampleToken, "1")), blackListDeleteBody, -1, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, tc.path+"?"+tc.query, nil)
			w := &spyWriter{ResponseRecorder: httptest.NewRecorder()}
			body := &spyBody{r: strings.NewReader(tc.body), w: w}
			req.Body, req.ContentLength = body, tc.declared
			r.Handler().ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if body.readBeforeSent {
				t.Error("the body was read before the request was refused")
			}
		})
	}
	// The same request with the right Sign is read, and accepted.
	req := httptest.NewRequest(http.MethodPost, testPath+"?"+signedQuery(CmdBlackListDelete), nil)
	w := &spyWriter{ResponseRecorder: httptest.NewRecorder()}
	body := &spyBody{r: strings.NewReader(blackListDeleteBody), w: w}
	req.Body, req.ContentLength = body, -1
	r.Handler().ServeHTTP(w, req)
	if w.Code != 200 || !body.readBeforeSent {
		t.Fatalf("signed callback: %d, read %v", w.Code, body.readBeforeSent)
	}
	if used := r.bodies.budget.inUse(); used != 0 {
		t.Errorf("%d bytes of the body budget still held after the request", used)
	}
}

// TestBodyReaderBudget: bodies being read hold at most the budget; one that finds no room
// within the wait gets errBodyBudget, and room freed by a finished body is used at once.
func TestBodyReaderBudget(t *testing.T) {
	const maxBody = 128 << 10
	b := newBodyReader(maxBody, 4*maxBody) // room for four largest bodies; large ones may use three
	b.budget.maxWait = 200 * time.Millisecond
	ctx := context.Background()

	// Three largest bodies whose senders stall after the headers hold 48 KiB.
	var writers []*io.PipeWriter
	results := make(chan error, 8)
	var mu sync.Mutex
	var bufs []*[]byte
	readBody := func(declared int64) *io.PipeWriter {
		pr, pw := io.Pipe()
		go func() {
			buf, err := b.read(ctx, pr, declared)
			mu.Lock()
			bufs = append(bufs, buf)
			mu.Unlock()
			results <- err
		}()
		return pw
	}
	for range 3 {
		writers = append(writers, readBody(maxBody))
	}
	eventually(t, "three bodies hold their buffers", func() bool { return b.budget.inUse() == 3*maxBody })

	// A fourth large one does not fit in the large share and gives up after the wait...
	if err := <-func() chan error {
		ch := make(chan error, 1)
		go func() {
			buf, err := b.read(ctx, strings.NewReader(strings.Repeat("x", maxBody)), maxBody)
			b.release(buf)
			ch <- err
		}()
		return ch
	}(); !errors.Is(err, errBodyBudget) {
		t.Fatalf("fourth large body: %v, want errBodyBudget", err)
	}
	// ...while a small callback still fits at once.
	buf, err := b.read(ctx, strings.NewReader(blackListDeleteBody), int64(len(blackListDeleteBody)))
	if err != nil || string(*buf) != blackListDeleteBody {
		t.Fatalf("small body beside the large ones: %q %v", *buf, err)
	}
	b.release(buf)
	if used := b.budget.inUse(); used != 3*maxBody {
		t.Fatalf("budget in use %d, want %d", used, 3*maxBody)
	}

	// A large body waiting for room gets it as soon as one finishes.
	waiting := readBody(maxBody)
	time.Sleep(20 * time.Millisecond)
	_, _ = writers[0].Write(make([]byte, maxBody))
	_ = writers[0].Close()
	if err := <-results; err != nil {
		t.Fatalf("first body: %v", err)
	}
	mu.Lock()
	b.release(bufs[0])
	mu.Unlock()
	eventually(t, "the waiting body took the freed room", func() bool { return b.budget.inUse() == 3*maxBody })
	for _, w := range append(writers[1:], waiting) {
		_ = w.CloseWithError(io.ErrUnexpectedEOF)
	}
	for range 3 {
		if err := <-results; err == nil {
			t.Error("a body whose sender went away was read without error")
		}
	}
	mu.Lock()
	for _, buf := range bufs[1:] {
		b.release(buf)
	}
	mu.Unlock()
	if used := b.budget.inUse(); used != 0 {
		t.Errorf("budget in use %d after all bodies were released", used)
	}
}

// TestBodyReaderSizes: bodies of every size around the class edges and the limit, declared
// or chunked, read whole or refused as too large.
func TestBodyReaderSizes(t *testing.T) {
	const maxBody = 20000 // not a class size
	b := newBodyReader(maxBody, 1<<20)
	for _, n := range []int{1, 4095, 4096, 4097, 8192, 16384, 16385, 19999, 20000, 20001, 40000} {
		body := bytes.Repeat([]byte{'a'}, n)
		for _, declared := range []int64{int64(n), -1} {
			if declared > maxBody {
				continue // refused before reading (check 3)
			}
			buf, err := b.read(context.Background(), iotestHalfReader{bytes.NewReader(body)}, declared)
			switch {
			case n > maxBody:
				if !errors.Is(err, errBodyTooLarge) {
					t.Errorf("%d bytes (declared %d): %v, want too large", n, declared, err)
				}
			case err != nil || !bytes.Equal(*buf, body):
				t.Errorf("%d bytes (declared %d): got %d bytes, %v", n, declared, len(*buf), err)
			}
			b.release(buf)
		}
	}
	if used := b.budget.inUse(); used != 0 {
		t.Errorf("budget in use %d after all bodies were released", used)
	}
}

// iotestHalfReader returns at most half of what is asked, as a slow network does.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) {
	return h.r.Read(p[:(len(p)+1)/2])
}

// TestTooLargeAnsweredToAClientThatWritesFirst: a client that writes its whole oversize body
// before reading (as Python's urllib does) gets the 413, not a connection reset.
func TestTooLargeAnsweredToAClientThatWritesFirst(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.MaxBodyBytes = 2 << 20
	rr := start(t, cfg)
	addr := strings.TrimPrefix(rr.url, "http://")
	body := bytes.Repeat([]byte("x"), 7<<20) // more than the loopback socket buffers hold
	for i := range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		req := "POST " + testPath + "?" + signedQuery(CmdBlackListDelete) + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(append([]byte(req), body...)); err != nil {
			t.Fatalf("try %d: writing the body failed (the server closed before reading it): %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("try %d: no reply: %v", i, err)
		}
		reply, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(reply) != fail("body larger than 2097152 bytes (--max-body-bytes)") {
			t.Fatalf("try %d: %d %s", i, resp.StatusCode, reply)
		}
	}
	if c := countsOf(rr.Receiver); c.rejected != 5 {
		t.Errorf("counted %+v, want 5 rejected", c)
	}
}

// TestLargeUnreadBodyRefusedAndClosed: a request refused before its body is read, whose body
// is large (or of unknown length), gets its reply at once and a closed connection, without a
// byte of the body read: the client has sent only its headers here.
func TestLargeUnreadBodyRefusedAndClosed(t *testing.T) {
	rr := start(t, testConfig(newSink(t, nil).URL))
	addr := strings.TrimPrefix(rr.url, "http://")
	badSign := testPath + "?" + strings.Replace(signedQuery(CmdBlackListDelete), "Sign=1", "Sign=2", 1)
	for _, tc := range []struct {
		name, head string
		status     int
		reply      string
		allow      string
	}{
		{"wrong method", "PUT " + testPath + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 405, fail("method not allowed: callbacks are POSTed"), "POST"},
		{"bad Sign", "POST " + badSign + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 401, fail("Sign does not match the token and RequestTime"), ""},
		{"bad Sign, chunked", "POST " + badSign + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 401, fail("Sign does not match the token and RequestTime"), ""},
		{"bad Sign, over max-body-bytes", "POST " + badSign + " HTTP/1.1\r\nHost: x\r\nContent-Length: 7340032\r\n\r\n", 413, fail("body larger than 1048576 bytes (--max-body-bytes)"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countsOf(rr.Receiver)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, tc.head); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			reply, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.status || string(reply) != tc.reply || resp.Header.Get("Content-Type") != "application/json" ||
				!resp.Close || resp.Header.Get("Allow") != tc.allow {
				t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, reply)
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("the connection is still open after the reply: %d %v", n, err)
			}
			if after := countsOf(rr.Receiver); after.rejected != before.rejected+1 {
				t.Errorf("rejected grew by %v, want 1", after.rejected-before.rejected)
			}
		})
	}
}

// TestBodiesOf64KiBAreLarge: slow bodies declaring exactly 64 KiB (a stranger with a captured
// URL, or any client without a token) fill only the large share of the budget, so small
// callbacks still find room; before, 64 KiB was in the small class and took it all.
func TestBodiesOf64KiBAreLarge(t *testing.T) {
	const budget = 16 << 20
	b := newBodyReader(DefaultMaxBodyBytes, budget)
	b.budget.maxWait = 100 * time.Millisecond
	ctx := context.Background()
	var writers []*io.PipeWriter
	held := make(chan *[]byte, 400)
	for range 300 { // 300 x 64 KiB = 18.75 MiB declared, more than the whole budget
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		go func() {
			buf, _ := b.read(ctx, pr, 64<<10)
			held <- buf
		}()
	}
	defer func() {
		for _, w := range writers {
			_ = w.CloseWithError(io.ErrUnexpectedEOF)
		}
		for range writers {
			b.release(<-held)
		}
	}()
	eventually(t, "the slow bodies hold the large share", func() bool { return b.budget.inUse() == budget*3/4 })
	for i := range 50 {
		buf, err := b.read(ctx, strings.NewReader(blackListDeleteBody), int64(len(blackListDeleteBody)))
		if err != nil {
			t.Fatalf("small callback %d beside 300 slow 64 KiB bodies: %v", i, err)
		}
		b.release(buf)
	}
}
