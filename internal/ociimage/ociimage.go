// Package ociimage assembles container images from static binaries on this machine, without
// a Docker engine or a registry: one layer holding the binaries and the files a distroless
// "static:nonroot" base provides (users, CA certificates, /tmp), and a config with the
// entrypoint and user. Archives are in the format `docker save` writes, which `docker load`
// and `ctr images import` read.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// NonRoot is the user of distroless' nonroot images, which the operator's pods run as.
const NonRoot = "65532:65532"

// CACertificates is where the image's CA bundle lives (and where Go looks first).
const CACertificates = "/etc/ssl/certs/ca-certificates.crt"

// HostCACertificates is the bundle copied into images: Debian's ca-certificates package.
var HostCACertificates = "/etc/ssl/certs/ca-certificates.crt"

// File is one file of an image's layer.
type File struct {
	// Path is absolute in the image.
	Path string
	// Source is a file on this machine to copy; Data is used when Source is empty.
	Source string
	Data   []byte
	Mode   int64
	// UID and GID own the file (root by default).
	UID, GID int
}

// Spec describes an image.
type Spec struct {
	// Ref names the image, such as ghcr.io/imcallback/callback-operator:dev.
	Ref        string
	Files      []File
	Entrypoint []string
	Cmd        []string
	// User is "uid:gid", as in a Dockerfile's USER.
	User string
	Env  []string
	// Base adds what distroless static:nonroot holds: /etc/passwd and /etc/group with root,
	// nobody and nonroot, the CA bundle, /tmp and /home/nonroot.
	Base bool
}

// Binary is a program file: mode 0755, owned by root.
func Binary(imagePath, source string) File {
	return File{Path: imagePath, Source: source, Mode: 0o755}
}

// Operator is the operator's image, as the Dockerfile's final stage builds it: /manager and
// /receiver on the distroless base, uid 65532, entrypoint /manager.
func Operator(ref, manager, receiver string) Spec {
	return Spec{
		Ref:        ref,
		Files:      []File{Binary("/manager", manager), Binary("/receiver", receiver)},
		Entrypoint: []string{"/manager"},
		User:       NonRoot,
		Base:       true,
	}
}

// Program is the image of one static program at /<basename>, run as nonroot.
func Program(ref, binary string) Spec {
	p := "/" + path.Base(binary)
	return Spec{Ref: ref, Files: []File{Binary(p, binary)}, Entrypoint: []string{p}, User: NonRoot, Base: true}
}

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
)

func baseFiles() ([]File, error) {
	certs, err := os.ReadFile(HostCACertificates)
	if err != nil {
		return nil, fmt.Errorf("CA certificates for the image (Debian's ca-certificates package): %w", err)
	}
	return []File{
		{Path: "/etc/passwd", Data: []byte(passwd), Mode: 0o644},
		{Path: "/etc/group", Data: []byte(group), Mode: 0o644},
		{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n"), Mode: 0o644},
		{Path: CACertificates, Data: certs, Mode: 0o644},
		{Path: "/tmp/", Mode: 0o1777},
		{Path: "/home/nonroot/", Mode: 0o700, UID: 65532, GID: 65532},
	}, nil
}

// epoch is the time of every file and of the image: the same binaries give the same image.
var epoch = time.Unix(0, 0).UTC()

// Build assembles the image.
func Build(s Spec) (v1.Image, error) {
	files := s.Files
	if s.Base {
		base, err := baseFiles()
		if err != nil {
			return nil, err
		}
		files = append(base, files...)
	}
	layerTar, err := layer(files)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Cmd = s.Cmd
	cf.Config.User = s.User
	cf.Config.WorkingDir = "/"
	cf.Config.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SSL_CERT_FILE=" + CACertificates,
	}, s.Env...)
	return mutate.ConfigFile(img, cf)
}

// layer is an uncompressed tar of files, with every parent directory, in a stable order.
func layer(files []File) ([]byte, error) {
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	entries := map[string]*entry{}
	addDir := func(dir string, mode int64, uid, gid int) {
		if _, ok := entries[dir]; !ok {
			entries[dir] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: mode, Uid: uid, Gid: gid, ModTime: epoch}}
		}
	}
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("%q: image paths are absolute", f.Path)
		}
		rel := strings.TrimPrefix(path.Clean(f.Path), "/")
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			addDir(d, 0o755, 0, 0)
		}
		if strings.HasSuffix(f.Path, "/") {
			entries[rel] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: epoch}}
			continue
		}
		data := f.Data
		if f.Source != "" {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return nil, err
			}
		}
		entries[rel] = &entry{
			hdr:  tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.Mode, Uid: f.UID, Gid: f.GID, Size: int64(len(data)), ModTime: epoch},
			data: data,
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive builds the images and writes them into one archive at path.
func WriteArchive(path string, specs ...Spec) error {
	refs := map[name.Reference]v1.Image{}
	for _, s := range specs {
		ref, err := name.ParseReference(s.Ref)
		if err != nil {
			return fmt.Errorf("image name %q: %w", s.Ref, err)
		}
		img, err := Build(s)
		if err != nil {
			return err
		}
		refs[ref] = img
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
