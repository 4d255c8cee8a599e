package receiver

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServerRefusalsCounted: the replies net/http writes itself, before the handler, are
// counted under rejected reasons like the handler's; a 100 Continue is not a reply, and the
// handler's own replies on the same connection are not counted twice.
func TestServerRefusalsCounted(t *testing.T) {
	rr := start(t, testConfig(newSink(t, nil).URL))
	addr := strings.TrimPrefix(rr.url, "http://")
	signed := testPath + "?" + signedQuery(CmdBlackListDelete)
	body := blackListDeleteBody
	post := "POST " + signed + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"

	// raw sends the requests on one connection and reads a reply for each.
	raw := func(t *testing.T, requests ...string) []int {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		var codes []int
		for _, req := range requests {
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err == nil && resp.StatusCode == http.StatusContinue {
				resp, err = http.ReadResponse(br, nil)
			}
			if err != nil {
				t.Fatalf("no reply to %.60q: %v", req, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
		}
		return codes
	}
	for _, tc := range []struct {
		name     string
		requests []string
		codes    []int
		reasons  map[string]float64
		accepted float64
	}{
		{"a 100 KB query", []string{"POST " + testPath + "?x=" + strings.Repeat("a", 100<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n"},
			[]int{431}, map[string]float64{"headers_too_large": 1}, 0},
		{"not HTTP", []string{"HELLO\r\n\r\n"}, []int{400}, map[string]float64{"malformed_request": 1}, 0},
		{"no Host", []string{"POST " + signed + " HTTP/1.1\r\nContent-Length: 0\r\n\r\n"}, []int{400}, map[string]float64{"malformed_request": 1}, 0},
		{"unknown transfer coding", []string{"POST " + signed + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"},
			[]int{501}, map[string]float64{"unsupported_transfer_encoding": 1}, 0},
		{"unknown HTTP version", []string{"POST " + signed + " HTTP/9.9\r\nHost: x\r\n\r\n"}, []int{505}, map[string]float64{"protocol_error": 1}, 0},
		{"unknown Expect", []string{post + "Expect: teapot\r\n\r\n" + body}, []int{417}, map[string]float64{"protocol_error": 1}, 0},
		{"100-continue, then the handler's reply", []string{post + "Expect: 100-continue\r\n\r\n" + body}, []int{200}, nil, 1},
		{"handled requests, then a malformed one, on one connection",
			[]string{post + "\r\n" + body, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"},
			[]int{200, 404, 400}, map[string]float64{"not_found": 1, "malformed_request": 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countsOf(rr.Receiver)
			reasonsBefore := map[string]float64{}
			for reason := range tc.reasons {
				reasonsBefore[reason] = reasonCount(t, rr.Receiver, reason)
			}
			codes := raw(t, tc.requests...)
			if len(codes) != len(tc.codes) {
				t.Fatalf("replies %v, want %v", codes, tc.codes)
			}
			for i := range codes {
				if codes[i] != tc.codes[i] {
					t.Fatalf("replies %v, want %v", codes, tc.codes)
				}
			}
			after := countsOf(rr.Receiver)
			var wantRejected float64
			for reason, n := range tc.reasons {
				wantRejected += n
				if got := reasonCount(t, rr.Receiver, reason) - reasonsBefore[reason]; got != n {
					t.Errorf("%s grew by %v, want %v", reason, got, n)
				}
			}
			if after.rejected-before.rejected != wantRejected || after.accepted-before.accepted != tc.accepted {
				t.Errorf("rejected grew by %v (want %v), accepted by %v (want %v)",
					after.rejected-before.rejected, wantRejected, after.accepted-before.accepted, tc.accepted)
			}
		})
	}
}
