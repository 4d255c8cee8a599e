// Command dev runs the operator's whole job on this machine, for `make dev`, `make dev-up`
// and `make dev-down`: a local cluster (test/localcluster: etcd, kube-apiserver,
// kube-controller-manager, the CRDs and the node agent running pods as local processes),
// the manager (bin/manager) against it, and config/samples applied, with the demo sink
// (bin/demosink) standing in for the sample's event_display image. It waits until the
// CallbackReceiver is Ready and prints the kubeconfig and a signed curl to try it.
//
//	dev run    foreground; Ctrl-C tears everything down
//	dev up     the same in the background; returns once Ready (kubeconfig at .dev/kubeconfig)
//	dev down   stops what `dev up` started and cleans up after a killed run
//
// Needs root (network namespaces).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/imcallback/callback-operator/test/localcluster"
	"github.com/imcallback/callback-operator/test/nodeagent"
)

// The sample's images and what runs for them locally.
const (
	operatorImage = "ghcr.io/imcallback/callback-operator"
	sinkImage     = "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display"
)

var cbrGVR = schema.GroupVersionResource{Group: "callbacks.imcallback.dev", Version: "v1alpha1", Resource: "callbackreceivers"}

type config struct {
	dir          string
	root         string
	assets       string
	receiverTag  string
	managerArgs  string
	samples      string
	namespace    string
	receiver     string
	readyTimeout time.Duration
	background   bool
	watch        bool
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet("dev "+cmd, flag.ExitOnError)
	var c config
	fs.StringVar(&c.dir, "dir", ".dev", "state directory: kubeconfig, logs/, pid")
	fs.StringVar(&c.assets, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "directory of the control-plane binaries (default: hack/control-plane.sh)")
	fs.StringVar(&c.receiverTag, "receiver-image", "ghcr.io/imcallback/callback-operator:dev", "RECEIVER_IMAGE given to the manager")
	fs.StringVar(&c.managerArgs, "manager-args", "", "more arguments of bin/manager (it always gets --kubeconfig, --leader-elect=false, --metrics-bind-address=0, --health-probe-bind-address=127.0.0.1:0)")
	fs.StringVar(&c.samples, "samples", "config/samples", "kustomization applied once the cluster is up")
	fs.StringVar(&c.namespace, "namespace", "default", "namespace of the samples")
	fs.StringVar(&c.receiver, "receiver", "blacklist", "CallbackReceiver of the samples to wait for")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 3*time.Minute, "how long to wait for the CallbackReceiver to be Ready")
	fs.BoolVar(&c.background, "background", false, "internal: run as the background process of `dev up`")
	fs.BoolVar(&c.watch, "watch", true, "run: show `kubectl get cbr -w` and the sink's output until Ctrl-C")
	_ = fs.Parse(os.Args[2:])
	var err error
	if c.root, err = localcluster.RepoRoot(); err != nil {
		fail(err)
	}
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		fail(err)
	}
	switch cmd {
	case "run":
		err = run(c)
	case "up":
		err = up(c)
	case "down":
		err = down(c)
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: dev run|up|down [flags]  (see `go doc ./hack/dev`)")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "dev:", err)
	os.Exit(1)
}

func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func (c config) path(name string) string { return filepath.Join(c.dir, name) }

// running returns the pid of a live dev process of this state directory, or 0.
func (c config) running() int {
	b, err := os.ReadFile(c.path("dev.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), "run") {
		return 0 // the pid was reused
	}
	return pid
}

func run(c config) (err error) {
	if pid := c.running(); pid != 0 {
		return fmt.Errorf("a local cluster of %s is already running (pid %d); stop it with `make dev-down`", c.dir, pid)
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
		return err
	}
	for _, f := range []string{"ready", "kubeconfig"} {
		_ = os.Remove(c.path(f))
	}
	if err := os.WriteFile(c.path("dev.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer func() {
		for _, f := range []string{"dev.pid", "ready", "slot", "kubeconfig"} {
			_ = os.Remove(c.path(f))
		}
	}()
	for _, b := range []string{"manager", "receiver", "demosink"} {
		if _, err := os.Stat(filepath.Join(c.root, "bin", b)); err != nil {
			return fmt.Errorf("bin/%s is missing: run `make build dev-tools` (or just `make dev`)", b)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begin := time.Now()
	say("starting the local cluster (etcd, kube-apiserver, kube-controller-manager, node agent)")
	agentLog, err := os.OpenFile(c.path("logs/nodeagent.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer agentLog.Close()
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(time.Now().Format("15:04:05.000 ")+format+"\n", args...)
		_, _ = io.WriteString(agentLog, line)
		if strings.HasPrefix(format, "local cluster") || strings.Contains(format, "sweeping") {
			fmt.Print("    " + line[13:])
		}
	}
	logger := logr.FromSlogHandler(slog.NewTextHandler(agentLog, nil))
	ctrllog.SetLogger(logger) // envtest's
	klog.SetLogger(logger)    // client-go's
	cluster, err := localcluster.Start(ctx, localcluster.Options{
		AssetsDir: c.assets,
		RepoRoot:  c.root,
		WorkDir:   c.dir,
		Images: nodeagent.ImageMap{
			operatorImage: filepath.Join(c.root, "bin"),
			sinkImage:     filepath.Join(c.root, "bin", "demosink"),
		},
		Logf: logf,
	})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the local cluster")
		if serr := cluster.Stop(); serr != nil {
			fmt.Fprintln(os.Stderr, "dev: cleaning up:", serr)
			if err == nil {
				err = serr
			}
			return
		}
		say("stopped: no process, network namespace or link of the local cluster is left")
	}()
	_ = os.WriteFile(c.path("slot"), []byte(strconv.Itoa(cluster.Slot.Index)+"\n"), 0o644)

	say("starting bin/manager (RECEIVER_IMAGE=%s, log %s)", c.receiverTag, c.path("logs/manager.log"))
	if err := cluster.StartManager(filepath.Join(c.root, "bin", "manager"), c.receiverTag, strings.Fields(c.managerArgs)...); err != nil {
		return err
	}

	say("applying %s", c.samples)
	apply := cluster.Kubectl(ctx, "apply", "-n", c.namespace, "-k", filepath.Join(c.root, c.samples))
	apply.Stdout, apply.Stderr = os.Stdout, os.Stderr
	if err := apply.Run(); err != nil {
		return fmt.Errorf("kubectl apply -k %s: %w", c.samples, err)
	}

	say("waiting for CallbackReceiver %s/%s to be Ready (manager log: %s)", c.namespace, c.receiver, c.path("logs/manager.log"))
	obj, err := waitReady(ctx, c, cluster)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while waiting: just tear down
		}
		diagnose(c, cluster)
		return err
	}
	info, err := instructions(ctx, c, cluster, obj)
	if err != nil {
		return err
	}
	say("ready after %s", time.Since(begin).Round(time.Second))
	fmt.Print(info)
	if err := os.WriteFile(c.path("ready"), []byte(info), 0o644); err != nil {
		return err
	}

	if c.background || !c.watch {
		<-ctx.Done()
		return nil
	}
	say("kubectl get cbr -w, and the demo sink's output (sink |); Ctrl-C stops everything")
	watch := cluster.Kubectl(ctx, "get", "cbr", "-n", c.namespace, "-w")
	watch.Stdout, watch.Stderr = os.Stdout, os.Stderr
	watch.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := watch.Start(); err == nil {
		defer func() { _ = watch.Process.Kill(); _ = watch.Wait() }()
	}
	go followSink(ctx, c, cluster)
	<-ctx.Done()
	fmt.Println()
	return nil
}

func waitReady(ctx context.Context, c config, cluster *localcluster.Cluster) (*unstructured.Unstructured, error) {
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.readyTimeout)
	defer cancel()
	last := ""
	for {
		obj, err := dyn.Resource(cbrGVR).Namespace(c.namespace).Get(ctx, c.receiver, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, x := range conds {
				m, _ := x.(map[string]any)
				if m["type"] != "Ready" {
					continue
				}
				if m["status"] == "True" {
					return obj, nil
				}
				if msg := fmt.Sprintf("%v: %v", m["reason"], m["message"]); msg != last {
					fmt.Printf("    Ready=%v %s\n", m["status"], msg)
					last = msg
				}
			}
		}
		select {
		case <-cluster.ManagerExited():
			return nil, fmt.Errorf("bin/manager exited; see %s", c.path("logs/manager.log"))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("CallbackReceiver %s/%s not Ready after %s", c.namespace, c.receiver, c.readyTimeout)
			}
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// diagnose prints what helps find out why the receiver is not Ready.
func diagnose(c config, cluster *localcluster.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"get", "cbr,deploy,rs,pods,svc,endpointslices", "-n", c.namespace, "-o", "wide"},
		{"describe", "cbr", c.receiver, "-n", c.namespace},
	} {
		fmt.Printf("--- kubectl %s\n", strings.Join(args, " "))
		cmd := cluster.Kubectl(ctx, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		_ = cmd.Run()
	}
	fmt.Printf("--- last lines of %s\n", c.path("logs/manager.log"))
	b, _ := os.ReadFile(c.path("logs/manager.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	fmt.Println(strings.Join(lines[max(0, len(lines)-20):], "\n"))
	fmt.Printf("--- pod logs and the node agent's log are in %s\n", c.path("logs"))
}

// instructions is the printout: kubeconfig, a signed curl and how to watch.
func instructions(ctx context.Context, c config, cluster *localcluster.Cluster, obj *unstructured.Unstructured) (string, error) {
	statusURL, _, _ := unstructured.NestedString(obj.Object, "status", "url")
	u, err := url.Parse(statusURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("CallbackReceiver %s has no usable status.url (%q)", c.receiver, statusURL)
	}
	// status.url names the Service by its cluster DNS name; the host reaches its ClusterIP.
	svcName, svcNS, _ := strings.Cut(strings.TrimSuffix(u.Hostname(), ".svc.cluster.local"), ".")
	svc, err := cluster.Client.CoreV1().Services(svcNS).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading the Service of %s: %w", statusURL, err)
	}
	hostPort := svc.Spec.ClusterIP
	if p := u.Port(); p != "" && p != "80" {
		hostPort += ":" + p
	}
	sdkAppID, _, _ := unstructured.NestedInt64(obj.Object, "spec", "sdkAppID")
	secret, _, _ := unstructured.NestedString(obj.Object, "spec", "auth", "tokenSecretRef", "name")
	key, _, _ := unstructured.NestedString(obj.Object, "spec", "auth", "tokenSecretRef", "key")
	kubectl := filepath.Join(cluster.AssetsDir, "kubectl")

	var b strings.Builder
	fmt.Fprintf(&b, "\nKubeconfig: %s\n", cluster.Kubeconfig)
	fmt.Fprintf(&b, "  export KUBECONFIG=%s; alias kubectl=%s\n", cluster.Kubeconfig, kubectl)
	fmt.Fprintf(&b, "\nCallbackReceiver %s/%s is Ready at %s (ClusterIP %s, reachable from this host).\n", c.namespace, c.receiver, statusURL, svc.Spec.ClusterIP)
	b.WriteString("\nSend a signed Sns.CallbackBlackListDelete callback:\n\n")
	if secret != "" {
		fmt.Fprintf(&b, "TOKEN=$(%s --kubeconfig %s -n %s get secret %s -o jsonpath='{.data.%s}' | base64 -d)\n",
			kubectl, cluster.Kubeconfig, c.namespace, secret, strings.ReplaceAll(key, ".", "\\."))
		b.WriteString("T=$(date +%s); SIGN=$(printf '%s%s' \"$TOKEN\" \"$T\" | sha256sum | cut -d' ' -f1)\n")
	}
	query := fmt.Sprintf("SdkAppid=%d&CallbackCommand=Sns.CallbackBlackListDelete&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI", sdkAppID)
	if secret != "" {
		query += "&RequestTime=$T&Sign=$SIGN"
	}
	fmt.Fprintf(&b, "curl -sS -X POST -H 'Content-Type: application/json' \"http://%s%s?%s\" \\\n", hostPort, u.EscapedPath(), query)
	b.WriteString("  -d '{\"CallbackCommand\":\"Sns.CallbackBlackListDelete\",\"PairList\":[{\"From_Account\":\"alice\",\"To_Account\":\"bob\"}]}'; echo\n")
	fmt.Fprintf(&b, "\nThe demo sink prints each CloudEvent to %s\n", filepath.Join(cluster.LogDir, c.namespace+"_<moderation pod>_event-display.log"))
	fmt.Fprintf(&b, "Watch the counts:\n  %s --kubeconfig %s -n %s get cbr -w\n", kubectl, cluster.Kubeconfig, c.namespace)
	fmt.Fprintf(&b, "Logs of every pod, the manager and the control plane: %s\n\n", cluster.LogDir)
	return b.String(), nil
}

// followSink copies the demo sink's output to the terminal, following the sink pods.
func followSink(ctx context.Context, c config, cluster *localcluster.Cluster) {
	offsets := map[string]int64{}
	for ctx.Err() == nil {
		pods, err := cluster.Client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=moderation"})
		if err == nil {
			for _, p := range pods.Items {
				for _, ct := range p.Spec.Containers {
					path := cluster.Agent.LogPath(p.Namespace, p.Name, ct.Name)
					offsets[path] = printNew(path, offsets[path], p.Status.Phase)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func printNew(path string, off int64, _ corev1.PodPhase) int64 {
	f, err := os.Open(path)
	if err != nil {
		return off
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return off // an incomplete line waits for its end
		}
		off += int64(len(line))
		fmt.Print("sink | " + line)
	}
}

// up starts `dev run` in the background and returns once the receiver is Ready.
func up(c config) error {
	if pid := c.running(); pid != 0 {
		return fmt.Errorf("a local cluster of %s is already running (pid %d); stop it with `make dev-down`", c.dir, pid)
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
		return err
	}
	_ = os.Remove(c.path("ready"))
	logPath := c.path("logs/dev.log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{"run", "--background"}, os.Args[2:]...)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir, _ = os.Getwd()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	fmt.Printf("==> starting the local cluster in the background (pid %d, log %s)\n", cmd.Process.Pid, logPath)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		if info, err := os.ReadFile(c.path("ready")); err == nil {
			fmt.Print(string(info))
			fmt.Println("Stop it with `make dev-down`.")
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			fmt.Fprint(os.Stderr, string(b))
			if err == nil {
				err = errors.New("it exited")
			}
			return fmt.Errorf("the local cluster did not come up (%w); log above and in %s", err, logPath)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// down stops the background run, or cleans up after a run that was killed.
func down(c config) error {
	pid := c.running()
	if pid == 0 {
		if b, err := os.ReadFile(c.path("slot")); err == nil {
			if i, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				if s, err := nodeagent.LockSlot(i); err == nil && s != nil {
					fmt.Printf("==> cleaning up after a local cluster that was killed (slot %d)\n", i)
					if err := s.Release(); err != nil {
						return err
					}
				}
			}
		}
		for _, f := range []string{"dev.pid", "ready", "slot", "kubeconfig"} {
			_ = os.Remove(c.path(f))
		}
		fmt.Println("==> no local cluster running")
		return nil
	}
	fmt.Printf("==> stopping the local cluster (pid %d)\n", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			fmt.Println("==> stopped")
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("pid %d did not stop within 90s and was killed; run `make dev-down` again to clean up", pid)
}
