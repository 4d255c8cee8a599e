// Command bare is the ceiling of hack/bench-receiver.sh: a bare net/http server that reads
// the body and writes the protocol's fixed OK reply, nothing else.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

var ok = []byte(`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to listen on")
	flag.Parse()
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ok)
	})))
}
