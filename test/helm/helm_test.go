// Package helm installs the operator with its Helm chart (charts/callback-operator, with the
// helm binary `make helm` builds) on a real local cluster of its own (test/localcluster), as a
// platform engineer does: install, a CallbackReceiver Ready and delivering, upgrade with
// changed values and a changed CRD, uninstall keeping the CRD and the receivers, and a
// second release in the Role-only mode of watchNamespaces. It has its own cluster because
// test/e2e's cluster already runs the operator installed with kustomize, whose cluster-scoped
// objects and cluster-wide manager a second install would collide with.
//
// Needs root; `make test-helm` runs it (and `make test`, as part of go test ./...).
package helm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/imcallback/callback-operator/internal/ociimage"
	"github.com/imcallback/callback-operator/test/localcluster"
)

const (
	// operatorImage is the chart's image with image.tag=helm.
	operatorImage = "ghcr.io/imcallback/callback-operator:helm"
	// demosinkImage is config/samples' sink image, here the demo sink (hack/demosink).
	demosinkImage = "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display:latest"

	sampleToken = "change-me-to-the-console-token"
	sampleAppID = "1400000001"
)

var (
	cluster  *localcluster.Cluster
	repoRoot string
	helmBin  string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) (code int) {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "helm: "+format+"\n", args...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("the local cluster needs root (network namespaces, containers); run the tests as root")
	}
	var err error
	if repoRoot, err = localcluster.RepoRoot(); err != nil {
		return fail("%v", err)
	}
	if helmBin = os.Getenv("HELM"); helmBin == "" {
		helmBin = filepath.Join(repoRoot, "bin", "helm")
	}
	if _, err := os.Stat(helmBin); err != nil {
		return fail("no helm binary (%v): `make helm` builds it, or set HELM", err)
	}
	workDir, err := os.MkdirTemp("", "callback-operator-helm-")
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if code == 0 {
			_ = os.RemoveAll(workDir)
		} else {
			fmt.Fprintf(os.Stderr, "helm: logs of every daemon are kept in %s\n", filepath.Join(workDir, "logs"))
		}
	}()
	archive, err := buildImages(workDir)
	if err != nil {
		return fail("%v", err)
	}
	clusterLog, err := os.Create(filepath.Join(workDir, "localcluster.log"))
	if err != nil {
		return fail("%v", err)
	}
	defer clusterLog.Close()
	clientLog := logr.FromSlogHandler(slog.NewTextHandler(clusterLog, nil))
	klog.SetLogger(clientLog)
	crlog.SetLogger(clientLog)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	cluster, err = localcluster.Start(ctx, localcluster.Options{
		RepoRoot: repoRoot, WorkDir: workDir, Images: []string{archive},
		Logf: func(format string, args ...any) { fmt.Fprintf(clusterLog, format+"\n", args...) },
	})
	if err != nil {
		return fail("starting the local cluster: %v", err)
	}
	fmt.Fprintf(os.Stderr, "helm: local cluster (slot %d) up in %s\n", cluster.Slot.Index, time.Since(start).Round(time.Millisecond))
	slot := *cluster.Slot
	defer func() {
		if err := cluster.Stop(); err != nil {
			code = fail("stopping the local cluster: %v", err)
		}
		if left := slot.Leftovers(); len(left) > 0 {
			code = fail("FAIL: the local cluster left behind: %q", left)
		}
	}()
	callbackClient.Transport.(*http.Transport).DialContext = cluster.DialContext
	return m.Run()
}

func buildImages(workDir string) (string, error) {
	dir := filepath.Join(workDir, "bin")
	for name, pkg := range map[string]string{"manager": "./cmd/manager", "receiver": "./cmd/receiver", "demosink": "./hack/demosink"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	archive := filepath.Join(workDir, "images.tar")
	return archive, ociimage.WriteArchive(archive,
		ociimage.Operator(operatorImage, filepath.Join(dir, "manager"), filepath.Join(dir, "receiver")),
		ociimage.Program(demosinkImage, filepath.Join(dir, "demosink")),
	)
}

// run runs a command against the cluster and returns its standard output; failing, it fails
// the test unless allowFail.
func run(t *testing.T, allowFail bool, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if name == "kubectl" {
		cmd = cluster.Kubectl(ctx, args...)
	} else {
		cmd = exec.CommandContext(ctx, name, append(args, "--kubeconfig", cluster.Kubeconfig)...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.Bytes())
		if !allowFail {
			t.Fatal(err)
		}
	}
	return string(out), err
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, _ := run(t, false, "kubectl", args...)
	return out
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	out, _ := run(t, false, helmBin, args...)
	t.Logf("helm %s: %s", args[0], time.Since(start).Round(time.Millisecond))
	return out
}

// exists says whether kubectl get finds the object.
func exists(t *testing.T, args ...string) bool {
	t.Helper()
	_, err := run(t, true, "kubectl", append([]string{"get", "-o", "name"}, args...)...)
	return err == nil
}

func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// restrictedNamespace creates a namespace that enforces the restricted Pod Security Standard.
func restrictedNamespace(t *testing.T, ns string) {
	t.Helper()
	kubectl(t, "create", "namespace", ns)
	kubectl(t, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
}

// sample applies config/samples into ns and waits for its CallbackReceiver to be Ready.
func sample(t *testing.T, ns string) {
	t.Helper()
	restrictedNamespace(t, ns)
	kubectl(t, "apply", "-n", ns, "-k", filepath.Join(repoRoot, "config", "samples"))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=180s", "callbackreceiver/blacklist")
}

var callbackClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// deliver sends one signed callback to the sample receiver's Service and waits until the
// CallbackReceiver's status counts it delivered.
func deliver(t *testing.T, ns string) {
	t.Helper()
	before := jsonpathInt(t, ns, "{.status.counts.delivered}")
	ip := kubectl(t, "get", "service", "blacklist", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	rt := strconv.FormatInt(time.Now().Unix(), 10)
	sum := sha256.Sum256([]byte(sampleToken + rt))
	q := "SdkAppid=" + sampleAppID + "&CallbackCommand=Sns.CallbackBlackListDelete&contenttype=json&ClientIP=203.0.113.7&OptPlatform=iOS&RequestTime=" + rt + "&Sign=" + hex.EncodeToString(sum[:])
	body := fmt.Sprintf(`{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"alice","To_Account":"bob-%d"}]}`, time.Now().UnixNano())
	eventually(t, time.Minute, "the receiver answers a signed callback OK", func() error {
		resp, err := callbackClient.Post("http://"+ip+"/im/callback?"+q, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"ActionStatus":"OK"`) {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return nil
	})
	eventually(t, time.Minute, "status.counts.delivered grows", func() error {
		if n := jsonpathInt(t, ns, "{.status.counts.delivered}"); n <= before {
			return fmt.Errorf("delivered %d, was %d", n, before)
		}
		return nil
	})
}

func jsonpathInt(t *testing.T, ns, path string) int64 {
	t.Helper()
	s := kubectl(t, "get", "callbackreceiver", "blacklist", "-n", ns, "-o", "jsonpath="+path)
	n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n
}

// chartCopy copies the chart into a temporary directory and marks its CRD with an
// annotation, standing for a CRD changed by a new version of the chart.
func chartCopy(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "callback-operator")
	if err := os.CopyFS(dst, os.DirFS(filepath.Join(repoRoot, "charts", "callback-operator"))); err != nil {
		t.Fatal(err)
	}
	crd := filepath.Join(dst, "files", "crds", "callbacks.imcallback.dev_callbackreceivers.yaml")
	b, err := os.ReadFile(crd)
	if err != nil {
		t.Fatal(err)
	}
	marked := strings.Replace(string(b), "\nmetadata:\n  annotations:\n", "\nmetadata:\n  annotations:\n    callbacks.imcallback.dev/chart-test: upgraded\n", 1)
	if marked == string(b) {
		t.Fatal("the CRD has no metadata.annotations to mark")
	}
	if err := os.WriteFile(crd, []byte(marked), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestInstallUpgradeUninstallAndWatchNamespaces(t *testing.T) {
	chart := filepath.Join(repoRoot, "charts", "callback-operator")
	const ns, release = "callback-operator-system", "callback-operator"
	const crd = "crd/callbackreceivers.callbacks.imcallback.dev"
	restrictedNamespace(t, ns)

	// Install: the manager Ready, the sample Ready and delivering.
	helm(t, "install", release, chart, "-n", ns, "--set", "image.tag=helm",
		"--set-json", `extraArgs=["--scrape-interval=1s"]`, "--wait", "--timeout", "3m")
	if err := cluster.WaitDeployment(context.Background(), ns, "callback-operator-controller-manager", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := kubectl(t, "get", crd, "-o", `jsonpath={.metadata.annotations.helm\.sh/resource-policy}`); got != "keep" {
		t.Errorf("CRD resource-policy %q, want keep", got)
	}
	sample(t, "chat")
	deliver(t, "chat")

	// Upgrade with changed values and a changed CRD: the manager rolls, the CRD is upgraded.
	oldPods := kubectl(t, "get", "pods", "-n", ns, "-l", "control-plane=controller-manager", "-o", "jsonpath={.items[*].metadata.name}")
	helm(t, "upgrade", release, chartCopy(t), "-n", ns, "--reuse-values", "--set", "podLabels.rollout=two", "--wait", "--timeout", "3m")
	kubectl(t, "rollout", "status", "-n", ns, "deployment/callback-operator-controller-manager", "--timeout=2m")
	eventually(t, 2*time.Minute, "the manager rolled to pods labelled rollout=two", func() error {
		newPods := kubectl(t, "get", "pods", "-n", ns, "-l", "control-plane=controller-manager,rollout=two", "-o", "jsonpath={.items[*].metadata.name}")
		all := kubectl(t, "get", "pods", "-n", ns, "-l", "control-plane=controller-manager", "-o", "jsonpath={.items[*].metadata.name}")
		if newPods == "" || newPods != all || strings.Contains(all, oldPods) {
			return fmt.Errorf("pods %q (labelled: %q), before the upgrade %q", all, newPods, oldPods)
		}
		return nil
	})
	if got := kubectl(t, "get", crd, "-o", `jsonpath={.metadata.annotations.callbacks\.imcallback\.dev/chart-test}`); got != "upgraded" {
		t.Errorf("the CRD was not upgraded: annotation %q", got)
	}
	deliver(t, "chat")

	// Uninstall: the manager goes; the CRD, the CallbackReceiver and its receiver stay.
	helm(t, "uninstall", release, "-n", ns, "--wait", "--timeout", "2m")
	eventually(t, time.Minute, "the manager's Deployment is deleted", func() error {
		if exists(t, "deployment", "-n", ns, "callback-operator-controller-manager") {
			return fmt.Errorf("still there")
		}
		return nil
	})
	for _, obj := range [][]string{{crd}, {"callbackreceiver", "-n", "chat", "blacklist"}, {"statefulset", "-n", "chat", "blacklist"}, {"service", "-n", "chat", "blacklist"}} {
		if !exists(t, obj...) {
			t.Errorf("%v was deleted by helm uninstall", obj)
		}
	}
	for _, obj := range [][]string{{"clusterrole", "callback-operator-manager-role"}, {"clusterrolebinding", "callback-operator-manager-rolebinding"}} {
		if exists(t, obj...) {
			t.Errorf("%v outlived helm uninstall", obj)
		}
	}

	// A release for one namespace: a Role there, nothing cluster-wide, reconciles only there.
	sampleNS, opNS := "team", "team-operator"
	restrictedNamespace(t, opNS)
	restrictedNamespace(t, sampleNS)
	helm(t, "install", "team", chart, "-n", opNS, "--set", "image.tag=helm", "--set", "crds.enabled=false",
		"--set", "watchNamespaces={"+sampleNS+"}", "--set-json", `extraArgs=["--scrape-interval=1s"]`, "--wait", "--timeout", "3m")
	if !exists(t, "role", "-n", sampleNS, "team-callback-operator-manager-role") || !exists(t, "rolebinding", "-n", sampleNS, "team-callback-operator-manager-rolebinding") {
		t.Errorf("no manager Role and RoleBinding in %s", sampleNS)
	}
	if exists(t, "clusterrole", "team-callback-operator-manager-role") {
		t.Error("a manager ClusterRole with watchNamespaces")
	}
	kubectl(t, "apply", "-n", sampleNS, "-k", filepath.Join(repoRoot, "config", "samples"))
	kubectl(t, "wait", "-n", sampleNS, "--for=condition=Ready", "--timeout=180s", "callbackreceiver/blacklist")
	deliver(t, sampleNS)
	// chat's receiver, kept from the first release, is outside the watched namespaces: a
	// change to it is not observed.
	gen := kubectl(t, "get", "callbackreceiver", "blacklist", "-n", "chat", "-o", "jsonpath={.status.observedGeneration}")
	kubectl(t, "patch", "callbackreceiver", "blacklist", "-n", "chat", "--type=merge", "-p", `{"spec":{"replicas":2}}`)
	time.Sleep(10 * time.Second)
	if now := kubectl(t, "get", "callbackreceiver", "blacklist", "-n", "chat", "-o", "jsonpath={.status.observedGeneration}"); now != gen {
		t.Errorf("chat's CallbackReceiver was reconciled (observedGeneration %s, was %s) by a manager watching only %s", now, gen, sampleNS)
	}
	if out := kubectl(t, "logs", "-n", opNS, "deployment/team-callback-operator-controller-manager"); strings.Contains(out, `"namespace":"chat"`) {
		t.Errorf("the team manager logged about namespace chat:\n%s", out)
	}
	helm(t, "uninstall", "team", "-n", opNS, "--wait", "--timeout", "2m")
}
