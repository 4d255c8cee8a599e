package ociimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// finalStage is what the Dockerfile's last stage declares.
type finalStage struct {
	from       string
	copies     map[string]string // destination -> source in the build stage
	user       string
	entrypoint []string
}

func parseDockerfile(t *testing.T, path string) finalStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st finalStage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			st = finalStage{from: fields[1], copies: map[string]string{}}
		case "COPY":
			args := fields[1:]
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				args = args[1:]
			}
			if len(args) == 2 {
				st.copies[args[1]] = args[0]
			}
		case "USER":
			st.user = fields[1]
		case "ENTRYPOINT":
			raw := strings.TrimSpace(strings.TrimPrefix(sc.Text(), fields[0]))
			if err := json.Unmarshal([]byte(raw), &st.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: not the exec form: %v", raw, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return st
}

type layerFile struct {
	hdr  tar.Header
	data []byte
}

// imageFiles reads an archive's image back as a docker load would see it.
func imageFiles(t *testing.T, archive, ref string) (map[string]layerFile, []string, string) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(hdr.Name, "/")] = layerFile{hdr: *hdr, data: data}
	}
	return files, cf.Config.Entrypoint, cf.Config.User
}

// TestOperatorImageMatchesDockerfile: `make image` and `make docker-build` make the same
// image: the Dockerfile final stage's files, user and entrypoint, on what its distroless
// base provides.
func TestOperatorImageMatchesDockerfile(t *testing.T) {
	st := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	if st.from != "gcr.io/distroless/static:nonroot" {
		t.Fatalf("the Dockerfile's final stage is FROM %s: update Spec.Base to what that base holds", st.from)
	}
	dir := t.TempDir()
	bins := map[string][]byte{}
	for _, b := range []string{"manager", "receiver"} {
		bins["/"+b] = []byte("#!binary " + b)
		if err := os.WriteFile(filepath.Join(dir, b), bins["/"+b], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const ref = "ghcr.io/imcallback/callback-operator:test"
	archive := filepath.Join(dir, "image.tar")
	if err := WriteArchive(archive, Operator(ref, filepath.Join(dir, "manager"), filepath.Join(dir, "receiver"))); err != nil {
		t.Fatal(err)
	}
	files, entrypoint, user := imageFiles(t, archive, ref)

	if user != st.user {
		t.Errorf("user %q, the Dockerfile says %q", user, st.user)
	}
	if !slices.Equal(entrypoint, st.entrypoint) {
		t.Errorf("entrypoint %q, the Dockerfile says %q", entrypoint, st.entrypoint)
	}
	var copied []string
	for dst := range st.copies {
		copied = append(copied, dst)
		f, ok := files[dst]
		switch {
		case !ok:
			t.Errorf("%s (COPY in the Dockerfile) is not in the image", dst)
		case f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode&0o111 == 0 || f.hdr.Uid != 0:
			t.Errorf("%s: type %c mode %o uid %d, want an executable file of root", dst, f.hdr.Typeflag, f.hdr.Mode, f.hdr.Uid)
		case !bytes.Equal(f.data, bins[dst]):
			t.Errorf("%s: not the binary given", dst)
		}
	}
	// Nothing else at the top: the Dockerfile copies exactly these binaries.
	var top []string
	for p, f := range files {
		if filepath.Dir(p) == "/" && f.hdr.Typeflag == tar.TypeReg {
			top = append(top, p)
		}
	}
	slices.Sort(top)
	slices.Sort(copied)
	if !slices.Equal(top, copied) {
		t.Errorf("files at / %q, the Dockerfile copies %q", top, copied)
	}

	// What the distroless nonroot base provides and the binaries rely on.
	if !strings.Contains(string(files["/etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd lacks the nonroot user: %q", files["/etc/passwd"].data)
	}
	if !strings.Contains(string(files["/etc/group"].data), "nonroot:x:65532:") {
		t.Errorf("/etc/group lacks the nonroot group")
	}
	if tmp := files["/tmp"]; tmp.hdr.Typeflag != tar.TypeDir || tmp.hdr.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp: %+v, want a sticky world-writable directory", tmp.hdr)
	}
	if home := files["/home/nonroot"]; home.hdr.Typeflag != tar.TypeDir || home.hdr.Uid != 65532 {
		t.Errorf("/home/nonroot: %+v, want a directory of uid 65532", home.hdr)
	}
	pool, n := x509.NewCertPool(), 0
	for rest := files[CACertificates].data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", CACertificates, err)
		}
		pool.AddCert(c)
		n++
	}
	if n < 10 {
		t.Errorf("%s holds %d certificates", CACertificates, n)
	}
}

// TestBuildIsReproducible: the same binaries give the same image digest.
func TestBuildIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "demosink")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	var digests []string
	for range 2 {
		img, err := Build(Program("example.com/demosink:1", bin))
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("digests %v", digests)
	}
}
