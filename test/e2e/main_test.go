// Package e2e holds the end-to-end tests. They run on a real single-node cluster
// (test/localcluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// containerd + runc, the kubelet, kube-proxy and CoreDNS), shared by all tests of the package
// and started in TestMain, with the operator installed from config/default as a user installs
// it: the manager runs as a pod, from an image assembled here from ./cmd/manager and
// ./cmd/receiver. Each test works in a namespace of its own that enforces the restricted Pod
// Security Standard. Needs root; `make test-e2e` runs them.
//
// Helpers for new tests, by file:
//   - main_test.go: the cluster, the images (receiverImage, podappImage, demosinkImage) and
//     the operator's install (scrapeInterval).
//   - cluster_helpers_test.go: namespaces, Deployments and Services, waiting for pods,
//     kubectl, pod logs (also of deleted pods and previous containers), HTTP from the host to
//     pod IPs and ClusterIPs (through the node's network namespace).
//   - node_helpers_test.go: what the kernel says of a container: its process's status,
//     mounts and cgroup files, SIGKILL, a pod's emptyDir on the node.
//   - operator_helpers_test.go: config/samples and overlays, waiting for a CallbackReceiver,
//     signed callbacks, the demo sink's events, exact counts, traffic under load.
//   - manager_helpers_test.go: the manager's pod: restart, stop, start.
//
// The cluster (package localcluster) also gives: Apply (YAML such as extra CRDs), Kubectl,
// DialContext (connections from inside the node), ContainerPID and ContainerCgroup (the
// kernel's view of a container), PodVolumeDir (an emptyDir on the node, such as a receiver's
// spool), AllocatedPodIPs, ImportImages, and InstallOperator's ManagerArgs. The kubelet syncs
// pods every 10s, so a changed Secret reaches its volumes within about that.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/imcallback/callback-operator/internal/ociimage"
	"github.com/imcallback/callback-operator/test/localcluster"
)

// Images the tests' pods use, assembled from programs built in TestMain.
const (
	// receiverImage is the operator's image (config/default's manager, and so its receivers).
	receiverImage = "ghcr.io/imcallback/callback-operator:e2e"
	// podappImage runs test/e2e/podapp, the smoke tests' program.
	podappImage = "example.com/e2e/podapp:test"
	// moderatorImage runs hack/moderator, the decision service of the moderation sample.
	moderatorImage = "example.com/e2e/moderator:test"
	// demosinkImage is the sample sink's image, here the demo sink (hack/demosink).
	demosinkImage = "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display:latest"
)

var (
	cluster *localcluster.Cluster
	// repoRoot is the checkout, whose config/samples the tests apply.
	repoRoot string
	// imagesArchive holds the images buildImages wrote (the operator's among them).
	imagesArchive string
)

// scrapeInterval is the manager's --scrape-interval in the tests: counts in status are
// exact one interval after the receivers counted.
const scrapeInterval = time.Second

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: the local cluster needs root (network namespaces, containers); run the tests as root")
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
			fmt.Fprintf(os.Stderr, "e2e: logs of every daemon are kept in %s\n", filepath.Join(workDir, "logs"))
		}
	}()
	if repoRoot, err = localcluster.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	start := time.Now()
	archive, err := buildImages(repoRoot, workDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	imagesArchive = archive
	fmt.Fprintf(os.Stderr, "e2e: programs and images built in %s\n", time.Since(start).Round(time.Millisecond))
	clusterLog, err := os.Create(filepath.Join(workDir, "localcluster.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer clusterLog.Close()
	logf := func(format string, args ...any) {
		fmt.Fprintf(clusterLog, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
	clientLog := logr.FromSlogHandler(slog.NewTextHandler(clusterLog, nil))
	klog.SetLogger(clientLog)  // client-go's
	crlog.SetLogger(clientLog) // controller-runtime's client: unset, it prints a stack trace in the test output

	// The host's own values, even when a cluster that died (or still runs) changed them already.
	sysctlsBefore := localcluster.HostSysctls()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start = time.Now()
	cluster, err = localcluster.Start(ctx, localcluster.Options{
		RepoRoot: repoRoot,
		WorkDir:  workDir,
		Images:   []string{archive},
		Logf:     logf,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the local cluster:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: local cluster (slot %d) up in %s\n", cluster.Slot.Index, time.Since(start).Round(time.Millisecond))
	slot := *cluster.Slot
	defer func() {
		stopped := time.Now()
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping the local cluster:", err)
			code = 1
		}
		fmt.Fprintf(os.Stderr, "e2e: local cluster stopped in %s\n", time.Since(stopped).Round(time.Millisecond))
		// Nothing of the cluster may be left on the host: processes, mounts, cgroups,
		// namespaces, files, and (once no other cluster runs) the kubelet's sysctls.
		if left := slot.Leftovers(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: the local cluster left behind: %q\n", left)
			code = 1
		}
		if after := localcluster.ReadSysctls(); !localcluster.OtherClustersRunning(&slot) && !maps.Equal(after, sysctlsBefore) {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: sysctls %v after the cluster, %v before\n", after, sysctlsBefore)
			code = 1
		}
	}()
	// Requests from the host go into the node's network namespace, as if sent on the node.
	for _, c := range []*http.Client{httpClient, callbackClient} {
		c.Transport.(*http.Transport).DialContext = cluster.DialContext
	}
	start = time.Now()
	if err := cluster.InstallOperator(ctx, localcluster.OperatorOptions{
		Image:       receiverImage,
		ManagerArgs: []string{"--scrape-interval=" + scrapeInterval.String()},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: installing the operator:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: operator installed in %s\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// buildImages builds the programs the tests' pods run and writes their images into one
// archive, which the cluster imports.
func buildImages(root, workDir string) (string, error) {
	dir := filepath.Join(workDir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for name, pkg := range map[string]string{
		"podapp":    "./test/e2e/podapp",
		"demosink":  "./hack/demosink",
		"moderator": "./hack/moderator",
		"manager":   "./cmd/manager",
		"receiver":  "./cmd/receiver",
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	archive := filepath.Join(workDir, "images.tar")
	return archive, ociimage.WriteArchive(archive,
		ociimage.Operator(receiverImage, filepath.Join(dir, "manager"), filepath.Join(dir, "receiver")),
		ociimage.Program(podappImage, filepath.Join(dir, "podapp")),
		ociimage.Program(demosinkImage, filepath.Join(dir, "demosink")),
		ociimage.Program(moderatorImage, filepath.Join(dir, "moderator")),
	)
}
