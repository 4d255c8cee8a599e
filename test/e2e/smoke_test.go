package e2e

// Smoke tests of the local cluster itself, with plain Deployments (no operator): they prove
// that the node runs pods as any cluster does, with their own addresses, Services, cluster
// DNS, endpoints, kubectl logs/exec/port-forward, restarts, scaling, graceful deletion and
// garbage collection, so that the operator's end-to-end tests can trust what they see.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcallback/callback-operator/test/localcluster"
)

func TestLocalClusterRunsDeploymentPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "smoke-run")
	cs := cluster.Client
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "token"}, StringData: map[string]string{"token": "s3cret"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"level": "debug"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	tmpl := podappSpec(labels, "--note=http://$(SINK_HOST)/events", "--note=$(POD_NAME)", "--note=$(NOPE)")
	tmpl.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "IM_CALLBACK_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "token"}, Key: "token"}}},
		{Name: "LEVEL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "level"}}},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "SINK_HOST", Value: "moderation.$(POD_NAMESPACE).svc.cluster.local"},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, service(ns, "web", labels), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "web", 2, tmpl), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := waitAvailable(t, ns, "web", 2, 60*time.Second)
	t.Logf("2 pods ready %s after creating the Deployment", time.Since(start).Round(time.Millisecond))

	// Status as a kubelet reports it; each pod has its own address in the slot's range.
	ips := map[string]string{}
	for _, p := range pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !cluster.Slot.PodCIDR().Contains(ip) {
			t.Errorf("pod %s: podIP %q not in %s", p.Name, p.Status.PodIP, cluster.Slot.PodCIDR())
		}
		if len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP {
			t.Errorf("pod %s: podIPs %v", p.Name, p.Status.PodIPs)
		}
		if p.Status.HostIP != cluster.Slot.NodeIP().String() || p.Spec.NodeName != localcluster.NodeName {
			t.Errorf("pod %s: hostIP %q node %q", p.Name, p.Status.HostIP, p.Spec.NodeName)
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.StartTime == nil {
			t.Errorf("pod %s: phase %s startTime %v", p.Name, p.Status.Phase, p.Status.StartTime)
		}
		for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			if condition(&p, ct) != corev1.ConditionTrue {
				t.Errorf("pod %s: condition %s = %q", p.Name, ct, condition(&p, ct))
			}
		}
		if len(p.Status.ContainerStatuses) != 1 {
			t.Fatalf("pod %s: containerStatuses %+v", p.Name, p.Status.ContainerStatuses)
		}
		st := p.Status.ContainerStatuses[0]
		if !st.Ready || st.Started == nil || !*st.Started || st.State.Running == nil || st.RestartCount != 0 || st.ContainerID == "" {
			t.Errorf("pod %s: container status %+v", p.Name, st)
		}
		ips[p.Name] = p.Status.PodIP
	}
	if ips[pods[0].Name] == ips[pods[1].Name] {
		t.Errorf("both pods have address %s", ips[pods[0].Name])
	}

	// The process sees what a kubelet would give it, as the pod's user; reached from the host
	// at the pod's address.
	for _, p := range pods {
		var r podappReport
		if err := getJSON("http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/", &r); err != nil {
			t.Fatal(err)
		}
		wantArgs := []string{"--listen=:8080", "--note=http://moderation." + ns + ".svc.cluster.local/events", "--note=" + p.Name, "--note=$(NOPE)"}
		if !slices.Equal(r.Args, wantArgs) {
			t.Errorf("pod %s: args %q, want %q", p.Name, r.Args, wantArgs)
		}
		for k, v := range map[string]string{
			"IM_CALLBACK_TOKEN": "s3cret", "LEVEL": "debug", "POD_NAME": p.Name, "POD_NAMESPACE": ns,
			"POD_IP": p.Status.PodIP, "HOSTNAME": p.Name, "WEB_SERVICE_PORT": "80",
		} {
			if r.Env[k] != v {
				t.Errorf("pod %s: env %s=%q, want %q", p.Name, k, r.Env[k], v)
			}
		}
		if r.UID != 65532 {
			t.Errorf("pod %s: runs as uid %d, want 65532 (runAsUser)", p.Name, r.UID)
		}
		startLine := fmt.Sprintf("podapp: pid %d uid 65532", r.PID)
		if log := readLog(t, ns, p.Name, "app"); !strings.Contains(log, startLine) {
			t.Errorf("pod %s: log file lacks the start line: %q", p.Name, log)
		}
		// kubectl logs and exec reach the kubelet through the API server.
		out, err := cluster.Kubectl(ctx, "logs", "-n", ns, p.Name, "--tail=5").CombinedOutput()
		if err != nil || !strings.Contains(string(out), startLine) {
			t.Errorf("kubectl logs %s: %v: %s", p.Name, err, out)
		}
		out, err = cluster.Kubectl(ctx, "exec", "-n", ns, p.Name, "--", "/podapp", "--once").Output()
		var ex podappReport
		if err != nil || json.Unmarshal(out, &ex) != nil || ex.UID != 65532 || ex.Env["POD_NAME"] != p.Name || ex.Hostname != p.Name {
			t.Errorf("kubectl exec %s -- /podapp --once: %v: %s", p.Name, err, out)
		}
	}

	// kubectl port-forward: the host's own loopback to a pod's port, through the kubelet.
	pf := cluster.Kubectl(ctx, "port-forward", "-n", ns, "pod/"+pods[0].Name, ":8080")
	pfOut, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	line, err := bufio.NewReader(pfOut).ReadString('\n')
	local, _, ok := strings.Cut(strings.TrimPrefix(line, "Forwarding from "), " -> ")
	if err != nil || !ok {
		t.Fatalf("kubectl port-forward said %q: %v", line, err)
	}
	var viaForward podappReport
	if err := getJSONFromHost("http://"+local+"/", &viaForward); err != nil || viaForward.Env["POD_NAME"] != pods[0].Name {
		t.Errorf("through kubectl port-forward (%s): %v (answered by %q)", local, err, viaForward.Env["POD_NAME"])
	}

	// The Service's EndpointSlice lists both pods, ready.
	eventually(t, 20*time.Second, "EndpointSlice with both pods", func() error {
		got := endpointConditions(t, ns, "web")
		for name, ip := range ips {
			if c, ok := got[ip]; !ok || !c.ready {
				return fmt.Errorf("pod %s (%s): %+v in %v", name, ip, c, got)
			}
		}
		if len(got) != 2 {
			return fmt.Errorf("endpoints %v", got)
		}
		return nil
	})

	// Through the ClusterIP from the host, spread over both pods.
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil || !cluster.Slot.ServiceCIDR().Contains(ip) {
		t.Fatalf("clusterIP %q not in %s", svc.Spec.ClusterIP, cluster.Slot.ServiceCIDR())
	}
	seen := map[string]int{}
	eventually(t, 20*time.Second, "requests through the ClusterIP reach both pods", func() error {
		var r podappReport
		if err := getJSON("http://"+svc.Spec.ClusterIP+"/", &r); err != nil {
			return err
		}
		seen[r.Env["POD_NAME"]]++
		if len(seen) < 2 {
			return fmt.Errorf("reached only %v", seen)
		}
		return nil
	})

	// From inside a pod, by the Service's DNS names (CoreDNS).
	var r0 podappReport
	for _, name := range []string{"web." + ns + ".svc.cluster.local", "web." + ns, "web"} {
		var r podappReport
		u := "http://" + net.JoinHostPort(pods[0].Status.PodIP, "8080") + "/get?url=" + url.QueryEscape("http://"+name+"/")
		if err := getJSON(u, &r); err != nil {
			t.Errorf("from pod %s to http://%s/: %v", pods[0].Name, name, err)
		} else if _, ok := ips[r.Env["POD_NAME"]]; !ok {
			t.Errorf("from pod %s to http://%s/: answered by %q", pods[0].Name, name, r.Env["POD_NAME"])
		}
	}
	// Names outside the cluster resolve nowhere: CoreDNS has no upstream.
	u0 := "http://" + net.JoinHostPort(pods[0].Status.PodIP, "8080") + "/get?url=" + url.QueryEscape("http://example.com/")
	if err := getJSON(u0, &r0); err == nil || !strings.Contains(err.Error(), "example.com") {
		t.Errorf("from pod %s to http://example.com/: %v, want a failed lookup", pods[0].Name, err)
	}
	// And pod to pod, directly.
	var r podappReport
	u := "http://" + net.JoinHostPort(pods[0].Status.PodIP, "8080") + "/get?url=" + url.QueryEscape("http://"+net.JoinHostPort(pods[1].Status.PodIP, "8080")+"/")
	if err := getJSON(u, &r); err != nil || r.Env["POD_NAME"] != pods[1].Name {
		t.Errorf("pod to pod: %v (answered by %q)", err, r.Env["POD_NAME"])
	}
}

type endpointState struct{ ready, serving, terminating bool }

// endpointConditions maps each endpoint address of the Service to its conditions.
func endpointConditions(t *testing.T, ns, svc string) map[string]endpointState {
	t.Helper()
	list, err := cluster.Client.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]endpointState{}
	b := func(p *bool) bool { return p == nil || *p }
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			out[ep.Addresses[0]] = endpointState{
				ready: b(ep.Conditions.Ready), serving: b(ep.Conditions.Serving),
				terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
			}
		}
	}
	return out
}

func TestLocalClusterUnknownImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "smoke-image")
	spec := podappSpec(nil).Spec
	spec.Containers[0].Name, spec.Containers[0].Image = "c", "registry.invalid/nothing:1"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nope"}, Spec: spec}
	if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ErrImagePull in the pod's status", func() error {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "nope", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return fmt.Errorf("status %+v", p.Status)
		}
		// Images are imported, never pulled: the pull fails at once, inside the node.
		w := p.Status.ContainerStatuses[0].State.Waiting
		if (w.Reason != "ErrImagePull" && w.Reason != "ImagePullBackOff") || !strings.Contains(w.Message, "registry.invalid/nothing:1") {
			return fmt.Errorf("waiting %+v", w)
		}
		if p.Status.Phase != corev1.PodPending || condition(p, corev1.PodReady) != corev1.ConditionFalse || p.Status.PodIP == "" {
			return fmt.Errorf("phase %s ready %s podIP %q", p.Status.Phase, condition(p, corev1.PodReady), p.Status.PodIP)
		}
		return nil
	})
}

func TestLocalClusterRestartsContainers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "smoke-restart")
	cases := map[string][]string{
		"exits":     {"--exit-after=3s"},      // restartPolicy Always: a new process
		"unhealthy": {"--unhealthy-after=3s"}, // liveness probe fails: killed and restarted
	}
	for name, args := range cases {
		tmpl := podappSpec(map[string]string{"app": name}, args...)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tmpl.Labels}, Spec: tmpl.Spec}
		pod.Spec.Containers[0].LivenessProbe.FailureThreshold = 1
		grace := int64(2)
		pod.Spec.TerminationGracePeriodSeconds = &grace
		if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name := range cases {
		var first time.Time
		eventually(t, 30*time.Second, name+": first run ready", func() error {
			p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !podReady(p) {
				return errors.New("not ready")
			}
			var r podappReport
			if err := getJSON("http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/", &r); err != nil {
				return err
			}
			first = r.Started
			return nil
		})
		eventually(t, 60*time.Second, name+": restarted", func() error {
			p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := p.Status.ContainerStatuses[0]
			if st.RestartCount < 1 || st.LastTerminationState.Terminated == nil {
				return fmt.Errorf("restartCount %d, lastState %+v", st.RestartCount, st.LastTerminationState)
			}
			last := st.LastTerminationState.Terminated
			if name == "exits" && (last.ExitCode != 3 || last.Reason != "Error") {
				return fmt.Errorf("last termination %+v, want exit code 3", last)
			}
			if name == "unhealthy" && last.ExitCode != 0 {
				// podapp exits 0 on SIGTERM: it was asked to stop, not crashed.
				return fmt.Errorf("last termination %+v, want exit code 0 after SIGTERM", last)
			}
			if !podReady(p) {
				return fmt.Errorf("not ready again")
			}
			var r podappReport
			if err := getJSON("http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/", &r); err != nil {
				return err
			}
			if r.Started.Equal(first) {
				return fmt.Errorf("still the first process, started %s", first)
			}
			return nil
		})
	}
	if log := podLogs(t, ns, "unhealthy", "app", true); !strings.Contains(log, "SIGTERM received") {
		t.Errorf("the liveness failure did not stop the container with SIGTERM: %q", log)
	}
}

// TestLocalClusterGracefulDeletion: deleting a pod sends SIGTERM, keeps the pod (and its
// endpoint, as terminating) until the process exits or the grace period ends, then SIGKILL.
func TestLocalClusterGracefulDeletion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "smoke-delete")
	cs := cluster.Client
	for name, args := range map[string][]string{
		"polite":   {"--shutdown-delay=3s"},
		"stubborn": {"--ignore-sigterm"},
	} {
		labels := map[string]string{"app": name}
		tmpl := podappSpec(labels, args...)
		grace := int64(4)
		tmpl.Spec.TerminationGracePeriodSeconds = &grace
		if _, err := cs.CoreV1().Services(ns).Create(ctx, service(ns, name, labels), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment(ns, name, 1, tmpl), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name             string
		minLife, maxLife time.Duration
		killed           bool
	}{
		// Exits 3s after SIGTERM, within its 4s grace period (the kubelet then reports and
		// removes the pod, which takes a moment).
		{"polite", 2500 * time.Millisecond, 8 * time.Second, false},
		// Ignores SIGTERM: SIGKILL at the end of the 4s grace period.
		{"stubborn", 3500 * time.Millisecond, 10 * time.Second, true},
	} {
		pods := waitAvailable(t, ns, tc.name, 1, 60*time.Second)
		pod := pods[0]
		var r podappReport
		if err := getJSON("http://"+net.JoinHostPort(pod.Status.PodIP, "8080")+"/", &r); err != nil {
			t.Fatal(err)
		}
		pid := containerPID(t, currentPod(t, ns, pod.Name), "app")
		logs := followLogs(t, ns, pod.Name, "app")
		eventually(t, 20*time.Second, tc.name+": endpoint ready", func() error {
			if c := endpointConditions(t, ns, tc.name)[pod.Status.PodIP]; !c.ready {
				return fmt.Errorf("%+v", c)
			}
			return nil
		})
		deleted := time.Now()
		if err := cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		sawTerminating := false
		for {
			_, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := endpointConditions(t, ns, tc.name)[pod.Status.PodIP]; ok && c.terminating && !c.ready {
				sawTerminating = true
			}
			if time.Since(deleted) > tc.maxLife+5*time.Second {
				t.Fatalf("%s: pod still there %s after deletion", tc.name, time.Since(deleted))
			}
			time.Sleep(50 * time.Millisecond)
		}
		life := time.Since(deleted)
		t.Logf("%s: pod gone %s after deletion", tc.name, life.Round(time.Millisecond))
		if life < tc.minLife || life > tc.maxLife+time.Second {
			t.Errorf("%s: pod gone %s after deletion, want between %s and %s", tc.name, life, tc.minLife, tc.maxLife)
		}
		if !sawTerminating {
			t.Errorf("%s: the EndpointSlice never showed the pod as terminating", tc.name)
		}
		log := logs()
		if !strings.Contains(log, "SIGTERM received") {
			t.Errorf("%s: no SIGTERM in the log: %q", tc.name, log)
		}
		if exitedCleanly := strings.Contains(log, "exiting after SIGTERM"); exitedCleanly == tc.killed {
			t.Errorf("%s: clean exit %v, want %v: %q", tc.name, exitedCleanly, !tc.killed, log)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("%s: process %d still alive", tc.name, pid)
		}
		// The Deployment replaced it.
		waitAvailable(t, ns, tc.name, 1, 60*time.Second)
	}
}

// TestLocalClusterScalesAndCollectsGarbage: scale up and down through the Deployment, then
// delete it: the garbage collector removes ReplicaSets and pods, the kubelet their sandboxes
// (the CNI plugin releases their addresses).
func TestLocalClusterScalesAndCollectsGarbage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "smoke-scale")
	cs := cluster.Client
	labels := map[string]string{"app": "scaled"}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "scaled", 1, podappSpec(labels)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAvailable(t, ns, "scaled", 1, 60*time.Second)
	scale := func(n int32) {
		t.Helper()
		s, err := cs.AppsV1().Deployments(ns).GetScale(ctx, "scaled", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.Replicas = n
		if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, "scaled", s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	scale(3)
	three := waitAvailable(t, ns, "scaled", 3, 60*time.Second)
	addrs := map[string]bool{}
	for _, p := range three {
		addrs[p.Status.PodIP] = true
	}
	if len(addrs) != 3 {
		t.Errorf("3 pods, addresses %v", addrs)
	}
	scale(1)
	one := waitAvailable(t, ns, "scaled", 1, 60*time.Second)
	for _, p := range three {
		if p.Name == one[0].Name {
			continue
		}
		ip := p.Status.PodIP
		eventually(t, 20*time.Second, "scaled-down pod's sandbox removed", func() error {
			if slices.Contains(cluster.AllocatedPodIPs(), netip.MustParseAddr(ip)) {
				return fmt.Errorf("address %s still in use", ip)
			}
			return nil
		})
	}

	background := metav1.DeletePropagationBackground
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "scaled", metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "ReplicaSets and pods garbage-collected", func() error {
		rs, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(rs.Items)+len(pods.Items) > 0 {
			return fmt.Errorf("%d ReplicaSets, %d pods left", len(rs.Items), len(pods.Items))
		}
		return nil
	})
	ip := one[0].Status.PodIP
	eventually(t, 20*time.Second, "last pod's sandbox removed", func() error {
		if slices.Contains(cluster.AllocatedPodIPs(), netip.MustParseAddr(ip)) {
			return fmt.Errorf("address %s still in use", ip)
		}
		return nil
	})
}
