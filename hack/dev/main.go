// Command dev runs the operator's whole job on this machine, for `make dev`, `make dev-up`
// and `make dev-down`: a real single-node cluster (test/localcluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, the kubelet, kube-proxy and CoreDNS in
// network namespaces of their own), the operator installed from config/default with the image
// `make image` wrote, and config/samples applied, with the demo sink (bin/demosink, imported
// under the sample's event_display image name) receiving the events. It waits until the
// CallbackReceiver is Ready and prints the kubeconfig and a signed curl to try it.
//
// With --expose (the default) the cluster also runs the ingress add-on (Traefik as the
// ingress controller and Gateway, cert-manager with the local CA, hack/traefik.sh and
// hack/cert-manager.sh build them once), config/samples-exposed is applied instead (the
// sample behind an Ingress with a cert-manager certificate, and a second receiver behind an
// HTTPRoute on the Gateway), the CA's certificate is written to <dir>/ca.crt, a host port is
// forwarded to Traefik's HTTPS entry point, and the printout has a signed
// `curl --resolve <host>:<port>:127.0.0.1 --cacert <dir>/ca.crt` for status.callbackURL.
// <dir>/env holds KUBECONFIG, CB_RECEIVER_ADDR, CB_INGRESS_HTTPS_ADDR and CB_CA_FILE for a
// shell to source.
//
//	dev run    foreground; Ctrl-C tears everything down
//	dev up     the same in the background; returns once Ready (kubeconfig at .dev/kubeconfig)
//	dev down   stops what `dev up` started and cleans up after a killed run
//
// Needs root (network namespaces, containers).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"

	"github.com/imcallback/callback-operator/internal/ociimage"
	"github.com/imcallback/callback-operator/test/localcluster"
)

// sinkImage is the sample sink's image; the demo sink is imported under its name.
const sinkImage = "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display:latest"

var cbrGVR = schema.GroupVersionResource{Group: "callbacks.imcallback.dev", Version: "v1alpha1", Resource: "callbackreceivers"}

type config struct {
	dir           string
	root          string
	image         string
	imageArchive  string
	managerArgs   string
	samples       string
	namespace     string
	receiver      string
	listen        string
	expose        bool
	ingressListen string
	sinkBinary    string
	readyTimeout  time.Duration
	background    bool
	watch         bool
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet("dev "+cmd, flag.ExitOnError)
	var c config
	fs.StringVar(&c.dir, "dir", ".dev", "state directory: kubeconfig, logs/, pid")
	fs.StringVar(&c.image, "image", "ghcr.io/imcallback/callback-operator:dev", "the operator's image (IMG)")
	fs.StringVar(&c.imageArchive, "image-archive", "bin/image.tar", "the archive `make image` wrote with that image")
	fs.StringVar(&c.managerArgs, "manager-args", "", "more arguments of the manager (appended to config/default's)")
	fs.StringVar(&c.samples, "samples", "", "kustomization applied once the operator runs (default config/samples-exposed with --expose, else config/samples)")
	fs.BoolVar(&c.expose, "expose", true, "install Traefik and cert-manager and expose the sample through an Ingress and an HTTPRoute")
	fs.StringVar(&c.ingressListen, "ingress-listen", "127.0.0.1:0", "with --expose: host address forwarded to Traefik's HTTPS entry point (port 0: any free port)")
	fs.StringVar(&c.sinkBinary, "sink-binary", "bin/demosink", "the demo sink program, imported as the sample sink's image")
	fs.StringVar(&c.namespace, "namespace", "default", "namespace of the samples (it enforces the restricted Pod Security Standard)")
	fs.StringVar(&c.receiver, "receiver", "blacklist", "CallbackReceiver of the samples to wait for")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "host address forwarded to the receiver's Service (port 0: any free port)")
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
	if !filepath.IsAbs(c.imageArchive) {
		c.imageArchive = filepath.Join(c.root, c.imageArchive)
	}
	if !filepath.IsAbs(c.sinkBinary) {
		c.sinkBinary = filepath.Join(c.root, c.sinkBinary)
	}
	if c.samples == "" {
		c.samples = "config/samples"
		if c.expose {
			c.samples = "config/samples-exposed"
		}
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
	for _, f := range []string{"ready", "kubeconfig", "env", "ca.crt"} {
		_ = os.Remove(c.path(f))
	}
	if err := os.WriteFile(c.path("dev.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer func() {
		for _, f := range []string{"dev.pid", "ready", "slot", "kubeconfig", "env", "ca.crt"} {
			_ = os.Remove(c.path(f))
		}
	}()
	for _, f := range []string{c.imageArchive, c.sinkBinary} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s is missing: run `make image dev-tools` (or just `make dev`)", f)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A closed terminal or pipe must not kill dev before it has torn the cluster down.
	signal.Ignore(syscall.SIGPIPE)
	begin := time.Now()
	say("starting the local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy, CoreDNS)")
	devLog, err := os.OpenFile(c.path("logs/dev.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer devLog.Close()
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(time.Now().Format("15:04:05.000 ")+format+"\n", args...)
		_, _ = io.WriteString(devLog, line)
		if strings.HasPrefix(format, "local cluster") || strings.Contains(format, "sweeping") {
			fmt.Print("    " + line[13:])
		}
	}
	klog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(devLog, nil))) // client-go's

	sinkArchive := c.path("demosink-image.tar")
	if err := ociimage.WriteArchive(sinkArchive, ociimage.Program(sinkImage, c.sinkBinary)); err != nil {
		return err
	}
	cluster, err := localcluster.Start(ctx, localcluster.Options{
		RepoRoot: c.root,
		WorkDir:  c.dir,
		Images:   []string{c.imageArchive, sinkArchive},
		Logf:     logf,
	})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the local cluster")
		start := time.Now()
		if serr := cluster.Stop(); serr != nil {
			fmt.Fprintln(os.Stderr, "dev: cleaning up:", serr)
			if err == nil {
				err = serr
			}
			return
		}
		if left := cluster.Slot.Leftovers(); len(left) > 0 {
			fmt.Fprintln(os.Stderr, "dev: left behind:", strings.Join(left, "; "))
			if err == nil {
				err = errors.New("the local cluster was not cleaned up")
			}
			return
		}
		say("stopped in %s: no process, mount, cgroup, network namespace or changed sysctl of the local cluster is left", time.Since(start).Round(100*time.Millisecond))
	}()
	_ = os.WriteFile(c.path("slot"), []byte(strconv.Itoa(cluster.Slot.Index)+"\n"), 0o644)

	say("installing the operator: kustomize build config/default (image %s) | kubectl apply", c.image)
	if err := cluster.InstallOperator(ctx, localcluster.OperatorOptions{Image: c.image, ManagerArgs: strings.Fields(c.managerArgs)}); err != nil {
		diagnose(c, cluster, localcluster.OperatorNamespace)
		return err
	}
	var ingress *localcluster.Ingress
	if c.expose {
		say("installing the ingress add-on: Traefik (IngressClass %s, Gateway %s/%s) and cert-manager (ClusterIssuer %s)",
			localcluster.IngressClassName, localcluster.IngressNamespace, localcluster.GatewayName, localcluster.CAIssuer)
		if ingress, err = cluster.InstallIngress(ctx, localcluster.IngressOptions{Listen: c.ingressListen}); err != nil {
			diagnose(c, cluster, localcluster.IngressNamespace)
			return err
		}
		if err := os.WriteFile(c.path("ca.crt"), ingress.CACert, 0o644); err != nil {
			return err
		}
	}
	if err := restrictNamespace(ctx, cluster, c.namespace); err != nil {
		return err
	}
	say("applying %s to namespace %s", c.samples, c.namespace)
	apply := cluster.Kubectl(ctx, "apply", "-n", c.namespace, "-k", filepath.Join(c.root, c.samples))
	apply.Stdout, apply.Stderr = os.Stdout, os.Stderr
	if err := apply.Run(); err != nil {
		return fmt.Errorf("kubectl apply -k %s: %w", c.samples, err)
	}

	say("waiting for CallbackReceiver %s/%s to be Ready", c.namespace, c.receiver)
	obj, err := waitReady(ctx, c, cluster, c.receiver)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while waiting: just tear down
		}
		diagnose(c, cluster, c.namespace)
		return err
	}
	var gatewayObj *unstructured.Unstructured
	if ingress != nil && c.samples == "config/samples-exposed" {
		say("waiting for CallbackReceiver %s/%s (behind the Gateway) to be Ready", c.namespace, gatewayReceiver)
		if gatewayObj, err = waitReady(ctx, c, cluster, gatewayReceiver); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			diagnose(c, cluster, c.namespace)
			return err
		}
	}
	info, err := instructions(ctx, c, cluster, obj, ingress, gatewayObj)
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

// restrictNamespace labels the samples' namespace to enforce the restricted Pod Security
// Standard, as a namespace holding receivers should.
func restrictNamespace(ctx context.Context, cluster *localcluster.Cluster, ns string) error {
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`)
	_, err := cluster.Client.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// gatewayReceiver is config/samples-exposed's receiver behind the Gateway.
const gatewayReceiver = "blacklist-gateway"

func waitReady(ctx context.Context, c config, cluster *localcluster.Cluster, name string) (*unstructured.Unstructured, error) {
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.readyTimeout)
	defer cancel()
	last := ""
	for {
		obj, err := dyn.Resource(cbrGVR).Namespace(c.namespace).Get(ctx, name, metav1.GetOptions{})
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
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("CallbackReceiver %s/%s not Ready after %s", c.namespace, name, c.readyTimeout)
			}
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// diagnose prints what helps find out why something is not Ready.
func diagnose(c config, cluster *localcluster.Cluster, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"get", "nodes", "-o", "wide"},
		{"get", "all", "-n", ns, "-o", "wide"},
		{"describe", "pods", "-n", ns},
		{"logs", "-n", localcluster.OperatorNamespace, "deploy/" + localcluster.ManagerDeployment, "--tail=20"},
	} {
		fmt.Printf("--- kubectl %s\n", strings.Join(args, " "))
		cmd := cluster.Kubectl(ctx, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		_ = cmd.Run()
	}
	fmt.Printf("--- the daemons' logs are in %s\n", cluster.LogDir)
}

// instructions is the printout: kubeconfig, a signed curl and how to watch.
func instructions(ctx context.Context, c config, cluster *localcluster.Cluster, obj *unstructured.Unstructured, ingress *localcluster.Ingress, gatewayObj *unstructured.Unstructured) (string, error) {
	statusURL, _, _ := unstructured.NestedString(obj.Object, "status", "url")
	u, err := url.Parse(statusURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("CallbackReceiver %s has no usable status.url (%q)", c.receiver, statusURL)
	}
	// status.url names the Service by its cluster DNS name; forward the host to its ClusterIP.
	svcName, svcNS, _ := strings.Cut(strings.TrimSuffix(u.Hostname(), ".svc.cluster.local"), ".")
	svc, err := cluster.Client.CoreV1().Services(svcNS).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading the Service of %s: %w", statusURL, err)
	}
	port := 80
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	}
	clusterIP, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return "", fmt.Errorf("the Service %s/%s has no ClusterIP (%q)", svcNS, svcName, svc.Spec.ClusterIP)
	}
	local, err := cluster.Forward(c.listen, netip.AddrPortFrom(clusterIP, uint16(port)))
	if err != nil {
		return "", fmt.Errorf("forwarding %s to the receiver's Service: %w", c.listen, err)
	}
	// The curls below must work when pasted, so each address is probed first: right after
	// Ready, kube-proxy may not have programmed the Service yet, and Traefik routes a new
	// Ingress or HTTPRoute only once its provider saw the endpoints.
	if err := waitRouted(ctx, &http.Client{}, "http://"+local.String()+u.EscapedPath()); err != nil {
		return "", err
	}
	sdkAppID, _, _ := unstructured.NestedInt64(obj.Object, "spec", "sdkAppID")
	secret, _, _ := unstructured.NestedString(obj.Object, "spec", "auth", "tokenSecretRef", "name")
	key, _, _ := unstructured.NestedString(obj.Object, "spec", "auth", "tokenSecretRef", "key")
	kubectl := filepath.Join(cluster.AssetsDir, "kubectl")

	var b strings.Builder
	fmt.Fprintf(&b, "\nKubeconfig: %s\n", cluster.Kubeconfig)
	fmt.Fprintf(&b, "  export KUBECONFIG=%s; alias kubectl=%s\n", cluster.Kubeconfig, kubectl)
	node, err := cluster.Client.CoreV1().Nodes().Get(ctx, localcluster.NodeName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "  kubectl get nodes -o wide    # kubelet %s on %s, in network namespace %s\n",
		node.Status.NodeInfo.KubeletVersion, node.Status.NodeInfo.ContainerRuntimeVersion, cluster.NodeNetns())
	fmt.Fprintf(&b, "\nCallbackReceiver %s/%s is Ready at %s.\n", c.namespace, c.receiver, statusURL)
	b.WriteString(consoleURL(obj))
	fmt.Fprintf(&b, "This host's %s is forwarded to its Service (ClusterIP %s:%d, inside the node) while the cluster runs.\n", local, clusterIP, port)
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
	body := "  -d '{\"CallbackCommand\":\"Sns.CallbackBlackListDelete\",\"PairList\":[{\"From_Account\":\"alice\",\"To_Account\":\"bob\"}]}'; echo\n"
	fmt.Fprintf(&b, "curl -sS -X POST -H 'Content-Type: application/json' \"http://%s%s?%s\" \\\n", local, u.EscapedPath(), query)
	b.WriteString(body)
	env := []string{"KUBECONFIG=" + cluster.Kubeconfig, "CB_RECEIVER_ADDR=" + local.String()}
	if ingress != nil {
		caFile := c.path("ca.crt")
		env = append(env, "CB_INGRESS_HTTPS_ADDR="+ingress.HTTPSAddr.String(), "CB_CA_FILE="+caFile)
		fmt.Fprintf(&b, "\nThrough the ingress: this host's %s is forwarded to Traefik's HTTPS entry point (Service %s/traefik, ClusterIP %s:%d); %s holds the local CA that issued its certificates (cert-manager, ClusterIssuer %s).\n",
			ingress.HTTPSAddr, localcluster.IngressNamespace, ingress.ServiceIP, localcluster.TraefikHTTPSPort, caFile, localcluster.CAIssuer)
		for _, o := range []*unstructured.Unstructured{obj, gatewayObj} {
			if o == nil {
				continue
			}
			cb, _, _ := unstructured.NestedString(o.Object, "status", "callbackURL")
			cu, err := url.Parse(cb)
			if err != nil || cu.Scheme != "https" || cu.Hostname() == "" {
				continue
			}
			port := strconv.Itoa(int(ingress.HTTPSAddr.Port()))
			via := "its Ingress"
			if _, ok, _ := unstructured.NestedMap(o.Object, "spec", "httpRoute"); ok {
				via = "its HTTPRoute on Gateway " + localcluster.IngressNamespace + "/" + localcluster.GatewayName
			}
			if err := waitRouted(ctx, ingressClient(ingress), "https://"+net.JoinHostPort(cu.Hostname(), port)+cu.EscapedPath()); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "\n%s/%s at status.callbackURL %s, through %s (same TOKEN, T and SIGN):\n", c.namespace, o.GetName(), cb, via)
			fmt.Fprintf(&b, "curl -sS --resolve %s:%s:127.0.0.1 --cacert %s -X POST -H 'Content-Type: application/json' \"https://%s:%s%s?%s\" \\\n",
				cu.Hostname(), port, caFile, cu.Hostname(), port, cu.EscapedPath(), query)
			b.WriteString(body)
		}
	}
	var envFile strings.Builder
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&envFile, "export %s=%s\n", k, shellQuote(v))
	}
	if err := os.WriteFile(c.path("env"), []byte(envFile.String()), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "\n%s has %s for a shell: . %s\n", c.path("env"), strings.Join(envNames(env), ", "), c.path("env"))
	fmt.Fprintf(&b, "\n(Or from inside the node, straight to the ClusterIP: nsenter --net=%s curl ... http://%s%s?...)\n", cluster.NodeNetns(), clusterIP, u.EscapedPath())
	fmt.Fprintf(&b, "\nThe demo sink prints each CloudEvent:\n  %s --kubeconfig %s -n %s logs -f deploy/moderation\n", kubectl, cluster.Kubeconfig, c.namespace)
	fmt.Fprintf(&b, "Watch the counts:\n  %s --kubeconfig %s -n %s get cbr -w\n", kubectl, cluster.Kubeconfig, c.namespace)
	fmt.Fprintf(&b, "The manager: %s --kubeconfig %s -n %s logs deploy/%s\n", kubectl, cluster.Kubeconfig, localcluster.OperatorNamespace, localcluster.ManagerDeployment)
	fmt.Fprintf(&b, "Logs of the daemons: %s\n\n", cluster.LogDir)
	return b.String(), nil
}

// waitRouted waits until a GET of a callback URL is answered by the receiver itself (its
// protocol JSON, 405 for a GET) rather than refused on the way (a connection closed before
// kube-proxy programmed the Service, Traefik's plain-text 404 before it routes the path). The
// receiver counts that GET as rejected.
func waitRouted(ctx context.Context, client *http.Client, target string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusMethodNotAllowed && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				return nil
			}
			last = resp.Status + " " + resp.Header.Get("Content-Type")
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is not routed to the receiver within a minute (last answer: %s)", target, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ingressClient reaches Traefik's HTTPS entry point on the host whatever the URL's host
// (curl --resolve), trusting only the local CA (curl --cacert).
func ingressClient(in *localcluster.Ingress) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(in.CACert)
	addr := in.HTTPSAddr.String()
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

func envNames(env []string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		out = append(out, k)
	}
	return out
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// consoleURL says what to paste into the IM console: status.callbackURL once the receiver
// is exposed (spec.ingress or spec.httpRoute), else what the Exposed condition says is
// missing.
func consoleURL(obj *unstructured.Unstructured) string {
	if u, _, _ := unstructured.NestedString(obj.Object, "status", "callbackURL"); u != "" {
		return "Paste into the IM console (Callback configuration, callback URL): " + u + "\n"
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Exposed" {
			return fmt.Sprintf("No URL for the IM console yet (%v): %v\n", m["reason"], m["message"])
		}
	}
	return ""
}

// followSink copies the demo sink's output to the terminal (kubectl logs -f, again whenever
// the sink's pod changes).
func followSink(ctx context.Context, c config, cluster *localcluster.Cluster) {
	since := ""
	for ctx.Err() == nil {
		args := []string{"logs", "-f", "-n", c.namespace, "deploy/moderation"}
		if since != "" {
			args = append(args, "--since-time="+since)
		}
		cmd := cluster.Kubectl(ctx, args...)
		out, err := cmd.StdoutPipe()
		if err == nil && cmd.Start() == nil {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				fmt.Println("sink | " + sc.Text())
			}
			_ = cmd.Wait()
			since = time.Now().UTC().Format(time.RFC3339)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
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
	logPath := c.path("logs/dev-up.log")
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

// down stops the background run, or cleans up after a run that was killed, and checks
// that nothing of the cluster is left.
func down(c config) error {
	slot := -1
	if b, err := os.ReadFile(c.path("slot")); err == nil {
		if i, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			slot = i
		}
	}
	pid := c.running()
	if pid == 0 {
		for _, f := range []string{"dev.pid", "ready", "slot", "kubeconfig"} {
			_ = os.Remove(c.path(f))
		}
		if slot < 0 {
			fmt.Println("==> no local cluster running")
			return nil
		}
		fmt.Printf("==> cleaning up after a local cluster that was killed (slot %d)\n", slot)
		return verifyClean(slot)
	}
	fmt.Printf("==> stopping the local cluster (pid %d)\n", pid)
	start := time.Now()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Minute)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			fmt.Printf("==> pid %d did not stop within 2m and was killed\n", pid)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("==> stopped in %s\n", time.Since(start).Round(100*time.Millisecond))
	return verifyClean(slot)
}

// verifyClean sweeps the slot if it is free and holds anything, and says what was left.
func verifyClean(slot int) error {
	if slot < 0 {
		return nil
	}
	s, err := localcluster.LockSlot(slot)
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("slot %d is still held by a running process", slot)
	}
	left := s.Leftovers()
	if len(left) == 0 {
		if err := s.Release(); err != nil {
			return err
		}
		fmt.Println("==> nothing of the local cluster is left: no process, mount, cgroup, network namespace or changed sysctl")
		return nil
	}
	fmt.Printf("==> left behind, now removed: %s\n", summarize(left))
	if err := s.Release(); err != nil {
		return err
	}
	if left := s.Leftovers(); len(left) > 0 {
		return fmt.Errorf("could not remove: %s", strings.Join(left, "; "))
	}
	return nil
}

// summarize counts leftovers by kind (process, mount, cgroup, netns, files).
func summarize(left []string) string {
	counts := map[string]int{}
	var kinds []string
	for _, l := range left {
		kind, _, _ := strings.Cut(l, " ")
		if strings.HasPrefix(kind, "/") {
			kind = "file"
		}
		if counts[kind] == 0 {
			kinds = append(kinds, kind)
		}
		counts[kind]++
	}
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	return strings.Join(parts, ", ")
}
