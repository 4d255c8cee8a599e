// Command sink is an accept-all CloudEvents sink for trying the receiver out and for
// the hack/bench-*.sh benchmarks. Every POST is answered 202 and counted; GET /count returns
// the count.
//
//	go run ./hack/bench/sink -listen 127.0.0.1:8081 -v     # print each event (demo)
//	go run ./hack/bench/sink -listen 127.0.0.1:8081 -raw   # minimal HTTP/1.1 loop (benchmark)
//	go run ./hack/bench/sink -listen 127.0.0.1:8082 -raw -answer '{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}'
//
// With -answer it is a decision service instead: every POST is answered 200 with that body.
// -raw answers with a tiny hand-rolled HTTP/1.1 loop instead of net/http, so that the sink,
// which shares a core with the load generator in the benchmark, costs as little as possible.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
)

var count atomic.Int64

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	verbose := flag.Bool("v", false, "print every event's headers and body")
	raw := flag.Bool("raw", false, "use the minimal HTTP/1.1 loop (benchmarks)")
	answer := flag.String("answer", "", "answer every POST with 200 and this JSON body (a decision service), instead of 202")
	flag.Parse()
	if *answer != "" {
		reply = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(*answer)) + "\r\n\r\n" + *answer)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("sink listening on http://%s", ln.Addr())
	if *raw {
		for {
			c, err := ln.Accept()
			if err != nil {
				log.Fatal(err)
			}
			go serveRaw(c)
		}
	}
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/count" {
			fmt.Fprintln(w, count.Load())
			return
		}
		body, _ := io.ReadAll(r.Body)
		n := count.Add(1)
		if *verbose {
			var keys []string
			for k := range r.Header {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintf(os.Stdout, "--- event %d: %s %s\n", n, r.Method, r.URL)
			for _, k := range keys {
				fmt.Fprintf(os.Stdout, "%s: %s\n", k, r.Header.Get(k))
			}
			fmt.Fprintf(os.Stdout, "\n%s\n", body)
		}
		if *answer != "" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(*answer))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})))
}

var (
	// reply is what the raw loop answers each POST with.
	reply    = []byte("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
	clHeader = []byte("content-length:")
)

// serveRaw answers keep-alive HTTP/1.1 requests with Content-Length bodies (what Go's
// client sends) with 202 until the peer closes.
func serveRaw(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	for {
		first := true
		isCount := false
		length := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if first {
				isCount = bytes.HasPrefix(line, []byte("GET /count "))
				first = false
				continue
			}
			if len(line) <= 2 { // the blank line ending the head
				break
			}
			if len(line) > len(clHeader) && bytes.EqualFold(line[:len(clHeader)], clHeader) {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(line[len(clHeader):])))
			}
		}
		if _, err := br.Discard(length); err != nil {
			return
		}
		if isCount {
			body := strconv.FormatInt(count.Load(), 10) + "\n"
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		} else {
			count.Add(1)
			_, _ = bw.Write(reply)
		}
		// Answer pipelined requests together, one write per batch.
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}
