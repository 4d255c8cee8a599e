package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/imcallback/callback-operator/internal/ociimage"
)

// PauseImage is the pod sandbox image (a program of this repository, test/localcluster/pause).
const PauseImage = "localhost/callback-operator/pause:v1"

// coreDNSImage names the CoreDNS image after the version hack/node.sh built.
func (c *Cluster) coreDNSImage() string {
	return "localhost/callback-operator/coredns:" + markerValue(c.NodeAssetsDir, "coredns")
}

// systemImages writes the archive of the node's own images: the sandbox and CoreDNS.
func (c *Cluster) systemImages(ctx context.Context) (string, error) {
	dir := c.paths.join("images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	pause := filepath.Join(dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", pause, "./test/localcluster/pause")
	cmd.Dir = c.repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the pause program: %w: %s", err, out)
	}
	archive := filepath.Join(dir, "system.tar")
	err := ociimage.WriteArchive(archive,
		ociimage.Spec{Ref: PauseImage, Files: []ociimage.File{ociimage.Binary("/pause", pause)}, Entrypoint: []string{"/pause"}, User: "65535:65535"},
		ociimage.Program(c.coreDNSImage(), c.np("coredns")),
	)
	return archive, err
}

// ImportImages loads image archives (as `docker save` or `make image` write them) into the
// node's containerd, where pods find them without pulling.
func (c *Cluster) ImportImages(ctx context.Context, archives ...string) error {
	for _, a := range archives {
		cmd := exec.CommandContext(ctx, c.np("ctr"), "--address", c.paths.containerdSocket(), "--namespace", "k8s.io",
			"images", "import", "--snapshotter=overlayfs", a)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ctr images import %s: %w: %s", a, err, out)
		}
	}
	return nil
}
