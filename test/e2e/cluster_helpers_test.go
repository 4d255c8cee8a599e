package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// eventually retries check until it returns nil, failing the test with its last error after
// timeout.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newNamespace makes a namespace for one test, enforcing the restricted Pod Security Standard
// (as namespaces holding receivers should), and deletes it (waiting until it is gone, so its
// pods are stopped) when the test ends.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s-%06d", prefix, rand.IntN(1000000))
	_, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting namespace %s: %v", name, err)
			return
		}
		eventually(t, 2*time.Minute, "namespace "+name+" deleted", func() error {
			_, err := cluster.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			return errors.New("still there")
		})
	})
	return name
}

// podappSpec is a pod template running podapp with the given args, as the contract's
// receiver pods look: restricted (non-root, no privilege escalation, no capabilities,
// RuntimeDefault seccomp, read-only root), named ports, HTTP probes on a named port.
func podappSpec(labels map[string]string, args ...string) corev1.PodTemplateSpec {
	nonRoot, uid, no, yes := true, int64(65532), false, true
	grace := int64(10)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &nonRoot, RunAsUser: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:    "app",
				Image:   podappImage,
				Command: []string{"/podapp"},
				Args:    append([]string{"--listen=:8080"}, args...),
				Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("http")}},
					PeriodSeconds: 1,
				},
				LivenessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
					PeriodSeconds: 1,
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					ReadOnlyRootFilesystem:   &yes,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

func deployment(ns, name string, replicas int32, tmpl corev1.PodTemplateSpec) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: tmpl,
		},
	}
}

func service(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
}

// waitAvailable waits until the Deployment (or, when there is none of that name, the
// StatefulSet) has exactly n ready pods and no others, and returns them.
func waitAvailable(t *testing.T, ns, name string, n int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	var pods []corev1.Pod
	eventually(t, timeout, fmt.Sprintf("deployment or statefulset %s/%s with %d ready pods", ns, name, n), func() error {
		var selector *metav1.LabelSelector
		d, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			s, err := cluster.Client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if s.Status.ReadyReplicas != int32(n) || s.Status.Replicas != int32(n) || s.Status.UpdatedReplicas != int32(n) || s.Status.ObservedGeneration < s.Generation {
				return fmt.Errorf("statefulset replicas %d, ready %d, updated %d", s.Status.Replicas, s.Status.ReadyReplicas, s.Status.UpdatedReplicas)
			}
			selector = s.Spec.Selector
		case err != nil:
			return err
		default:
			if d.Status.ReadyReplicas != int32(n) || d.Status.Replicas != int32(n) || d.Status.UpdatedReplicas != int32(n) {
				return fmt.Errorf("replicas %d, ready %d, updated %d", d.Status.Replicas, d.Status.ReadyReplicas, d.Status.UpdatedReplicas)
			}
			selector = d.Spec.Selector
		}
		sel := metav1.FormatLabelSelector(selector)
		list, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		if len(list.Items) != n {
			return fmt.Errorf("%d pods", len(list.Items))
		}
		for _, p := range list.Items {
			if !podReady(&p) || p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s not ready", p.Name)
			}
		}
		pods = list.Items
		return nil
	})
	return pods
}

// waitService waits until a Service's ClusterIP accepts connections on its first port, seen
// from the node: kube-proxy has programmed at least one endpoint (it follows EndpointSlices
// a moment later; until then a connection is refused). It returns the ClusterIP.
func waitService(t *testing.T, ns, name string, timeout time.Duration) string {
	t.Helper()
	var addr string
	eventually(t, timeout, fmt.Sprintf("Service %s/%s answering on its ClusterIP", ns, name), func() error {
		svc, err := cluster.Client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		addr = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := cluster.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
	host, _, _ := net.SplitHostPort(addr)
	return host
}

// waitSink waits until a demo sink (Deployment and Service of one name) has one ready pod
// and its Service answers.
func waitSink(t *testing.T, ns, name string) {
	t.Helper()
	waitAvailable(t, ns, name, 1, time.Minute)
	waitService(t, ns, name, time.Minute)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// podappReport is what podapp answers on GET / (and prints with --once).
type podappReport struct {
	Args     []string          `json:"args"`
	Env      map[string]string `json:"env"`
	UID      int               `json:"uid"`
	PID      int               `json:"pid"`
	Started  time.Time         `json:"started"`
	Hostname string            `json:"hostname"`
}

// httpClient opens a new connection per request, so that requests through a ClusterIP are
// spread over the endpoints (kube-proxy balances connections, not requests). TestMain
// makes it dial from the node's network namespace: pod IPs and ClusterIPs are reachable.
var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// getJSON GETs a URL inside the node (a pod IP or ClusterIP) and decodes the JSON answer.
func getJSON(url string, into any) error { return getJSONWith(httpClient, url, into) }

// hostClient connects from the host's own network namespace (127.0.0.1 is the host's).
var hostClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// getJSONFromHost GETs a URL of the host, such as a kubectl port-forward's.
func getJSONFromHost(url string, into any) error { return getJSONWith(hostClient, url, into) }

func getJSONWith(client *http.Client, url string, into any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return json.Unmarshal(body, into)
}

// podLogs is a container's log as `kubectl logs` shows it (previous: of the container's
// last terminated run).
func podLogs(t *testing.T, ns, pod, container string, previous bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := cluster.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s/%s/%s (previous %v): %v", ns, pod, container, previous, err)
	}
	return string(b)
}

// readLog is the log of a container's current run.
func readLog(t *testing.T, ns, pod, container string) string {
	t.Helper()
	return podLogs(t, ns, pod, container, false)
}

// followLogs streams a container's log from now on (as `kubectl logs -f`), so that what it
// writes until it exits is kept even once the pod is deleted. The function returned waits
// (up to a minute) for the stream to end and returns the log.
func followLogs(t *testing.T, ns, pod, container string) func() string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	stream, err := cluster.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		cancel()
		t.Fatalf("following the log of %s/%s/%s: %v", ns, pod, container, err)
	}
	var buf strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&buf, stream)
		stream.Close()
	}()
	return func() string {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Errorf("the log stream of %s/%s did not end", ns, pod)
		}
		cancel()
		<-done
		return buf.String()
	}
}
