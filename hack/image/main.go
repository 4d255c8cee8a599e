// Command image writes container images assembled from this machine's binaries into one
// archive (the format of `docker save`; `docker load` and `ctr images import` read it), with
// no Docker engine: `make image` writes the operator's image (IMG) with it.
//
//	image --out bin/image.tar --operator ghcr.io/imcallback/callback-operator:dev --bin-dir bin
//	image --out sink.tar --program example.com/demosink:dev=bin/demosink
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/imcallback/callback-operator/internal/ociimage"
)

type programs []string

func (p *programs) String() string     { return strings.Join(*p, ",") }
func (p *programs) Set(s string) error { *p = append(*p, s); return nil }

func main() {
	out := flag.String("out", "", "archive to write (required)")
	operator := flag.String("operator", "", "the operator's image name: /manager and /receiver from --bin-dir")
	binDir := flag.String("bin-dir", "bin", "directory holding manager and receiver")
	var progs programs
	flag.Var(&progs, "program", "NAME=BINARY: an image of one program, run as nonroot (repeatable)")
	flag.Parse()
	if *out == "" || (*operator == "" && len(progs) == 0) {
		flag.Usage()
		os.Exit(2)
	}
	var specs []ociimage.Spec
	if *operator != "" {
		specs = append(specs, ociimage.Operator(*operator, filepath.Join(*binDir, "manager"), filepath.Join(*binDir, "receiver")))
	}
	for _, p := range progs {
		ref, bin, ok := strings.Cut(p, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "image: --program %q: want NAME=BINARY\n", p)
			os.Exit(2)
		}
		specs = append(specs, ociimage.Program(ref, bin))
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	if err := ociimage.WriteArchive(*out, specs...); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	for _, s := range specs {
		fmt.Printf("%s -> %s\n", s.Ref, *out)
	}
}
