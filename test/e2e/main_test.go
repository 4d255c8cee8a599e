// Package e2e holds the end-to-end tests: they run on a local cluster (test/localcluster:
// real etcd, kube-apiserver and kube-controller-manager, and the project's node agent running
// pods as local processes), shared by all tests of the package and started in TestMain.
// Each test works in a namespace of its own. Needs root; `make test-e2e` runs them.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/imcallback/callback-operator/test/localcluster"
	"github.com/imcallback/callback-operator/test/nodeagent"
)

// Images the tests' pods use, and the local programs that stand in for them.
const (
	podappImage   = "example.com/e2e/podapp:test"
	demosinkImage = "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display"
	// receiverImage is the manager's RECEIVER_IMAGE; its repository maps to binDir, which
	// holds the receiver built from ./cmd/receiver.
	receiverImage = "ghcr.io/imcallback/callback-operator:e2e"
)

var (
	cluster *localcluster.Cluster
	// binDir holds the programs built for the pods (world-readable: pods run as non-root).
	binDir string
	// repoRoot is the checkout, whose config/samples the tests apply.
	repoRoot string
)

// scrapeInterval is the manager's --scrape-interval in the tests: counts in status are
// exact one interval after the receivers counted.
const scrapeInterval = time.Second

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: the local cluster's node agent needs root (network namespaces); run the tests as root")
		return 1
	}
	workDir, err := os.MkdirTemp("", "callback-operator-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() {
		if code == 0 {
			_ = os.RemoveAll(workDir)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: logs of the control plane, the node agent and every pod are kept in %s\n", workDir)
		}
	}()
	root, err := localcluster.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = root
	binDir = filepath.Join(workDir, "bin")
	if err := buildPrograms(root, binDir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	agentLog, err := os.Create(filepath.Join(workDir, "nodeagent.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer agentLog.Close()
	logf := func(format string, args ...any) {
		fmt.Fprintf(agentLog, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
	// envtest and client-go log through controller-runtime's logger and klog.
	logger := logr.FromSlogHandler(slog.NewTextHandler(agentLog, nil))
	ctrllog.SetLogger(logger)
	klog.SetLogger(logger)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	cluster, err = localcluster.Start(ctx, localcluster.Options{
		RepoRoot: root,
		WorkDir:  workDir,
		Images: nodeagent.ImageMap{
			repository(podappImage):   binDir,
			repository(receiverImage): binDir,
			demosinkImage:             filepath.Join(binDir, "demosink"),
		},
		Logf: logf,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the local cluster:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: local cluster (slot %d) up in %s\n", cluster.Slot.Index, time.Since(start).Round(time.Millisecond))
	if err := startManager(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		_ = cluster.Stop()
		return 1
	}

	code = m.Run()

	slot := *cluster.Slot
	stopped := time.Now()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stopping the local cluster:", err)
		code = 1
	}
	fmt.Fprintf(os.Stderr, "e2e: local cluster stopped in %s\n", time.Since(stopped).Round(time.Millisecond))
	// Nothing of the cluster may be left on the host: processes, namespaces, links, files.
	if left := slot.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the local cluster left behind: %q\n", left)
		code = 1
	}
	return code
}

// startManager runs bin/manager against the cluster as the tests expect it.
func startManager() error {
	return cluster.StartManager(filepath.Join(binDir, "manager"), receiverImage,
		"--scrape-interval="+scrapeInterval.String())
}

// buildPrograms builds the programs the tests' pods run.
func buildPrograms(root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	for name, pkg := range map[string]string{
		"podapp":   "./test/e2e/podapp",
		"demosink": "./hack/demosink",
		"manager":  "./cmd/manager",
		"receiver": "./cmd/receiver",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return nil
}

// repository is an image reference without its tag.
func repository(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}
