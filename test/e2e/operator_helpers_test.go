package e2e

// Helpers of the operator's end-to-end tests: applying config/samples (as is or through a
// kustomize overlay), waiting for a CallbackReceiver, sending callbacks as the IM backend
// does, reading what the demo sink received, and reading counts the way a user does.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// What config/samples declares.
const (
	sampleName     = "blacklist"
	sampleSink     = "moderation"
	sampleSecret   = "im-callback-token"
	sampleToken    = "change-me-to-the-console-token"
	sampleAppID    = "1400000001"
	samplePath     = "/im/callback"
	sampleSinkPath = "/events"

	cmdBlackListDelete = "Sns.CallbackBlackListDelete"
)

var (
	crClientOnce sync.Once
	crClientVal  client.Client
	crClientErr  error
)

// crs is a client that knows CallbackReceivers.
func crs(t *testing.T) client.Client {
	t.Helper()
	crClientOnce.Do(func() {
		s := runtime.NewScheme()
		if err := clientgoscheme.AddToScheme(s); err != nil {
			crClientErr = err
			return
		}
		if err := cbv1.AddToScheme(s); err != nil {
			crClientErr = err
			return
		}
		crClientVal, crClientErr = client.New(cluster.Config, client.Options{Scheme: s})
	})
	if crClientErr != nil {
		t.Fatal(crClientErr)
	}
	return crClientVal
}

func getCR(t *testing.T, ns, name string) (*cbv1.CallbackReceiver, error) {
	t.Helper()
	cr := &cbv1.CallbackReceiver{}
	err := crs(t).Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, cr)
	return cr, err
}

// kubectl runs the control plane's kubectl against the cluster and returns its standard
// output, failing the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := cluster.Kubectl(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// samplesDir is config/samples of the checkout.
func samplesDir() string { return filepath.Join(repoRoot, "config", "samples") }

// overlay writes a kustomization that builds on config/samples: extra resources (file name
// to YAML) and JSON 6902 patches (target to patch YAML). It returns the directory for
// `kubectl apply -k`. The sample's CallbackReceiver is pinned to what the tests written
// before claims became the default test (pinnedSample), unless patches change it again; the
// tests of claims use samplesOnClaims.
func overlay(t *testing.T, resources map[string]string, patches []kpatch) string {
	t.Helper()
	return overlayOf(t, resources, append([]kpatch{pinnedSample}, patches...))
}

// pinnedSample runs the sample on one replica with an emptyDir spool, as a Deployment.
var pinnedSample = kpatch{"CallbackReceiver", sampleName, `
- {op: add, path: /spec/spool, value: {type: EmptyDir}}
- {op: add, path: /spec/replicas, value: 1}`}

// samplesOnClaims is config/samples as shipped (a claim per pod, 2 replicas), with patches.
func samplesOnClaims(t *testing.T, resources map[string]string, patches []kpatch) string {
	t.Helper()
	return overlayOf(t, resources, patches)
}

func overlayOf(t *testing.T, resources map[string]string, patches []kpatch) string {
	t.Helper()
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, samplesDir())
	if err != nil {
		t.Fatal(err)
	}
	var k strings.Builder
	k.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + rel + "\n")
	names := make([]string, 0, len(resources))
	for name := range resources {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(resources[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		k.WriteString("- " + name + "\n")
	}
	if len(patches) > 0 {
		k.WriteString("patches:\n")
		for _, p := range patches {
			fmt.Fprintf(&k, "- target: {kind: %s, name: %s}\n  patch: |\n", p.kind, p.name)
			for _, line := range strings.Split(strings.TrimSpace(p.patch), "\n") {
				k.WriteString("    " + line + "\n")
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kpatch is a JSON 6902 patch (as YAML) of one object of config/samples.
type kpatch struct{ kind, name, patch string }

// applyK is `kubectl apply -k dir -n ns`.
func applyK(t *testing.T, ns, dir string) {
	t.Helper()
	start := time.Now()
	out := kubectl(t, "apply", "-k", dir, "-n", ns)
	t.Logf("kubectl apply -k (%s): %s", time.Since(start).Round(time.Millisecond), strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))
}

// receiver is a Ready CallbackReceiver and its pods.
type receiver struct {
	ns, name string
	cr       *cbv1.CallbackReceiver
	pods     []corev1.Pod
	// clusterIP is the address of its Service (port 80).
	clusterIP string
}

// url is the callback URL through the Service's ClusterIP.
func (r *receiver) url() string { return "http://" + r.clusterIP + samplePath }

// podURL is the callback URL at a pod's own address.
func podURL(p corev1.Pod) string {
	return "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + samplePath
}

// waitReceiver waits until the CallbackReceiver is Ready with n ready pods (and no other
// pods), its status is current, and the Service's endpoints list exactly those pods, ready.
func waitReceiver(t *testing.T, ns, name string, n int, timeout time.Duration) *receiver {
	t.Helper()
	start := time.Now()
	r := &receiver{ns: ns, name: name}
	eventually(t, timeout, fmt.Sprintf("CallbackReceiver %s/%s Ready with %d replicas", ns, name, n), func() error {
		cr, err := getCR(t, ns, name)
		if err != nil {
			return err
		}
		ready := meta.FindStatusCondition(cr.Status.Conditions, cbv1.ConditionReady)
		switch {
		case ready == nil || ready.Status != metav1.ConditionTrue:
			return fmt.Errorf("Ready condition %+v", ready)
		case cr.Status.ObservedGeneration != cr.Generation || ready.ObservedGeneration != cr.Generation:
			return fmt.Errorf("status of generation %d (Ready of %d), resource at %d", cr.Status.ObservedGeneration, ready.ObservedGeneration, cr.Generation)
		case cr.Status.Replicas != int32(n) || cr.Status.ReadyReplicas != int32(n):
			return fmt.Errorf("status replicas %d, ready %d", cr.Status.Replicas, cr.Status.ReadyReplicas)
		}
		r.cr = cr
		return nil
	})
	r.pods = waitAvailable(t, ns, name, n, timeout)
	eventually(t, timeout, "the receiver's endpoints list its ready pods", func() error {
		got := endpointConditions(t, ns, name)
		for _, p := range r.pods {
			if c, ok := got[p.Status.PodIP]; !ok || !c.ready {
				return fmt.Errorf("pod %s (%s) %+v in %v", p.Name, p.Status.PodIP, c, got)
			}
		}
		if len(got) != n {
			return fmt.Errorf("endpoints %v, want the %d pods", got, n)
		}
		return nil
	})
	r.clusterIP = waitService(t, ns, name, timeout)
	t.Logf("CallbackReceiver %s/%s ready with %d pod(s) after %s", ns, name, n, time.Since(start).Round(time.Millisecond))
	return r
}

// callback is one callback request as the IM backend sends it.
type callback struct {
	appID, command, clientIP, platform string
	// requestTime and sign are sent when sign is not empty.
	requestTime, sign string
	body              []byte
}

// signature is the protocol's Sign: lower-case hex SHA-256 of token + RequestTime,
// computed here independently of the receiver's code.
func signature(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

// blacklistDelete is a signed Sns.CallbackBlackListDelete callback of the sample's app whose
// body is unique to n, with pairs entries in its PairList. Its body keeps odd but valid
// JSON (spacing, escapes, non-ASCII, unknown fields) that must reach the sink unchanged.
func blacklistDelete(token string, n, pairs int) callback {
	var list []string
	for i := range pairs {
		list = append(list, fmt.Sprintf(`{"From_Account":"user-%d","To_Account":"peer-%d-%d", "Initiator_Account" : "user-%d"}`, n, n, i, n))
	}
	body := fmt.Sprintf("{\"CallbackCommand\": \"Sns.CallbackBlackListDelete\",\n  \"PairList\":[%s],\"EventTime\":%d, \"Note\":\"caf\\u00e9 ☕ #%d\"}",
		strings.Join(list, ","), 1700000000000+int64(n), n)
	return signedCallback(token, sampleAppID, cmdBlackListDelete, []byte(body), time.Now())
}

func signedCallback(token, appID, command string, body []byte, at time.Time) callback {
	rt := strconv.FormatInt(at.Unix(), 10)
	return callback{
		appID: appID, command: command, clientIP: "203.0.113.7", platform: "iOS",
		requestTime: rt, sign: signature(token, rt), body: body,
	}
}

// query is the callback's query string, in the protocol's spelling.
func (c callback) query() string {
	q := "SdkAppid=" + url.QueryEscape(c.appID) +
		"&CallbackCommand=" + url.QueryEscape(c.command) +
		"&contenttype=json" +
		"&ClientIP=" + url.QueryEscape(c.clientIP) +
		"&OptPlatform=" + url.QueryEscape(c.platform)
	if c.sign != "" {
		q += "&RequestTime=" + c.requestTime + "&Sign=" + c.sign
	}
	return q
}

// protocolReply is the body of every answer of the receiver.
type protocolReply struct {
	ActionStatus string
	ErrorCode    int
	ErrorInfo    string
}

// callbackClient opens a new connection per request, as cold as the IM backend's first
// request, and spreads requests through a ClusterIP over the endpoints.
var callbackClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// send POSTs the callback to base (a callback URL without query) once, and decodes the
// protocol answer; an error means no answer (or not the protocol's).
func (c callback) send(base string) (int, protocolReply, error) {
	return c.sendWith(callbackClient, base)
}

// sendWith is send through another client (such as one that trusts only the local CA).
func (c callback) sendWith(cl *http.Client, base string) (int, protocolReply, error) {
	resp, err := cl.Post(base+"?"+c.query(), "application/json", bytes.NewReader(c.body))
	if err != nil {
		return 0, protocolReply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, protocolReply{}, err
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return resp.StatusCode, protocolReply{}, fmt.Errorf("answer %s with Content-Type %q: %s", resp.Status, ct, raw)
	}
	var r protocolReply
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return resp.StatusCode, r, fmt.Errorf("answer %s: not the protocol's body: %w: %s", resp.Status, err, raw)
	}
	return resp.StatusCode, r, nil
}

// mustAccept sends the callback and fails the test unless it is answered 200 OK.
func (c callback) mustAccept(t *testing.T, base string) {
	t.Helper()
	status, r, err := c.send(base)
	if err != nil || status != http.StatusOK || r != (protocolReply{ActionStatus: "OK"}) {
		t.Fatalf("callback to %s: %d %+v %v, want 200 and ActionStatus OK", base, status, r, err)
	}
}

// mustRefuse sends the callback and fails the test unless it is answered with status and
// a FAIL body whose ErrorInfo contains info.
func (c callback) mustRefuse(t *testing.T, base string, status int, info string) {
	t.Helper()
	got, r, err := c.send(base)
	if err != nil {
		t.Fatalf("callback to %s: %v", base, err)
	}
	if got != status || r.ActionStatus != "FAIL" || r.ErrorCode != 1 || !strings.Contains(r.ErrorInfo, info) {
		t.Errorf("callback to %s: %d %+v, want %d, ActionStatus FAIL, ErrorCode 1, ErrorInfo with %q", base, got, r, status, info)
	}
}

// eventID is the CloudEvent id the contract gives a callback: the first 32 hex digits of
// SHA-256(SdkAppid "\n" CallbackCommand "\n" body), computed here independently.
func eventID(appID, command string, body []byte) string {
	sum := sha256.Sum256(append([]byte(appID+"\n"+command+"\n"), body...))
	return hex.EncodeToString(sum[:])[:32]
}

func (c callback) eventID() string { return eventID(c.appID, c.command, c.body) }

// sinkEvent is one event as the demo sink's GET /events reports it.
type sinkEvent struct {
	Event      json.RawMessage `json:"event"`
	Data       []byte          `json:"data"`
	Path       string          `json:"path"`
	ReceivedAt time.Time       `json:"receivedAt"`
}

// attrs are the event's context attributes and extensions (structured JSON, data left out).
func (e sinkEvent) attrs() (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(e.Event, &m); err != nil {
		return nil, err
	}
	delete(m, "data")
	delete(m, "data_base64")
	return m, nil
}

func (e sinkEvent) id() string {
	m, _ := e.attrs()
	s, _ := m["id"].(string)
	return s
}

type sinkReport struct {
	Total  int         `json:"total"`
	Events []sinkEvent `json:"events"`
}

// sinkEvents asks a demo sink, through its Service's ClusterIP, what it received.
func sinkEvents(t *testing.T, ns, svc string) (sinkReport, error) {
	t.Helper()
	s, err := cluster.Client.CoreV1().Services(ns).Get(context.Background(), svc, metav1.GetOptions{})
	if err != nil {
		return sinkReport{}, err
	}
	var r sinkReport
	err = getJSON("http://"+s.Spec.ClusterIP+"/events", &r)
	return r, err
}

// waitSinkEvents waits until the sink received n events, checks that no more arrive for a
// while, and returns them.
func waitSinkEvents(t *testing.T, ns, svc string, n int, timeout time.Duration) []sinkEvent {
	t.Helper()
	var r sinkReport
	eventually(t, timeout, fmt.Sprintf("%d events at sink %s", n, svc), func() error {
		var err error
		if r, err = sinkEvents(t, ns, svc); err != nil {
			return err
		}
		if r.Total < n {
			return fmt.Errorf("%d events", r.Total)
		}
		return nil
	})
	// Nothing delivered twice, late: wait a while and look again.
	time.Sleep(2 * time.Second)
	r, err := sinkEvents(t, ns, svc)
	if err != nil {
		t.Fatal(err)
	}
	if r.Total != n || len(r.Events) != n {
		t.Fatalf("sink %s received %d events (%d kept), want exactly %d", svc, r.Total, len(r.Events), n)
	}
	return r.Events
}

// checkEvent compares an event with the callback it was made from, as the contract says;
// extra lists further extensions expected (dead-letter ones), "" for any value.
func checkEvent(ev sinkEvent, c callback, path string, extra map[string]string) error {
	attrs, err := ev.attrs()
	if err != nil {
		return err
	}
	want := map[string]string{
		"specversion":     "1.0",
		"id":              c.eventID(),
		"type":            "com.tencentcloud.im." + c.command,
		"source":          "/tencentcloud/im/" + c.appID,
		"datacontenttype": "application/json",
		"sdkappid":        c.appID,
		"clientip":        c.clientIP,
		"optplatform":     c.platform,
	}
	for k, v := range extra {
		want[k] = v
	}
	var errs []error
	for k, v := range want {
		if got, ok := attrs[k]; !ok || (v != "" && fmt.Sprint(got) != v) {
			errs = append(errs, fmt.Errorf("%s = %v, want %q", k, attrs[k], v))
		}
	}
	for k := range attrs {
		if _, ok := want[k]; !ok && k != "time" {
			errs = append(errs, fmt.Errorf("unexpected attribute %s = %v", k, attrs[k]))
		}
	}
	if ts, _ := attrs["time"].(string); ts == "" {
		errs = append(errs, errors.New("no time"))
	} else if at, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		errs = append(errs, fmt.Errorf("time %q: %w", ts, err))
	} else if sent, _ := strconv.ParseInt(c.requestTime, 10, 64); c.requestTime != "" && (at.Unix() < sent-1 || at.After(ev.ReceivedAt)) {
		errs = append(errs, fmt.Errorf("time %s: not between the callback's RequestTime %s and the sink's receipt %s", ts, c.requestTime, ev.ReceivedAt))
	}
	if !bytes.Equal(ev.Data, c.body) {
		errs = append(errs, fmt.Errorf("data %q, want the callback body %q byte for byte", ev.Data, c.body))
	}
	if ev.Path != path {
		errs = append(errs, fmt.Errorf("delivered to path %q, want %q", ev.Path, path))
	}
	if len(errs) > 0 {
		return fmt.Errorf("event %s: %w", c.eventID(), errors.Join(errs...))
	}
	return nil
}

// checkEvents checks that events are exactly one per callback, each as checkEvent says.
func checkEvents(t *testing.T, events []sinkEvent, sent []callback, path string, extra map[string]string) {
	t.Helper()
	byID := map[string]callback{}
	for _, c := range sent {
		byID[c.eventID()] = c
	}
	if len(byID) != len(sent) {
		t.Fatalf("test bug: %d callbacks with %d distinct event ids", len(sent), len(byID))
	}
	seen := map[string]int{}
	for _, ev := range events {
		id := ev.id()
		seen[id]++
		c, ok := byID[id]
		if !ok {
			t.Errorf("event %s matches no callback sent: %s", id, ev.Event)
			continue
		}
		if seen[id] > 1 {
			t.Errorf("event %s received %d times", id, seen[id])
			continue
		}
		if err := checkEvent(ev, c, path, extra); err != nil {
			t.Error(err)
		}
	}
	for id := range byID {
		if seen[id] == 0 {
			t.Errorf("callback with event id %s never reached the sink", id)
		}
	}
}

// waitCounts waits until status.counts is exactly want, then checks that it stays so for a
// few scrape intervals (nothing counted twice, late), and that `kubectl get cbr` prints the
// same Received, Delivered and Failed.
func waitCounts(t *testing.T, ns, name string, want cbv1.Counts, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	check := func() error {
		cr, err := getCR(t, ns, name)
		if err != nil {
			return err
		}
		if cr.Status.Counts != want {
			return fmt.Errorf("status.counts %+v, want %+v", cr.Status.Counts, want)
		}
		return nil
	}
	eventually(t, timeout, "exact counts in status", check)
	t.Logf("counts exact after waiting %s: %+v", time.Since(start).Round(time.Millisecond), want)
	time.Sleep(3 * scrapeInterval)
	if err := check(); err != nil {
		t.Fatalf("counts changed after they were exact: %v", err)
	}
	row := getCbr(t, ns, name)
	for col, v := range map[string]int64{"RECEIVED": want.Received, "DELIVERED": want.Delivered, "FAILED": want.Failed} {
		if row[col] != strconv.FormatInt(v, 10) {
			t.Errorf("kubectl get cbr: %s = %q, want %d (row %v)", col, row[col], v, row)
		}
	}
}

// getCbr runs `kubectl get cbr <name>` and returns its row by column name.
func getCbr(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	out := kubectl(t, "get", "cbr", name, "-n", ns)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get cbr %s: want a header and one row:\n%s", name, out)
	}
	header, fields := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(fields) == len(header)-1 && header[len(header)-1] == "STRANDED" {
		fields = append(fields, "") // no spool waits: the last column is empty
	}
	if len(header) != len(fields) {
		t.Fatalf("kubectl get cbr %s: %d columns, %d values:\n%s", name, len(header), len(fields), out)
	}
	row := map[string]string{}
	for i, h := range header {
		row[h] = fields[i]
	}
	return row
}

// scaleDeployment sets a Deployment's replicas (the sink's, to stop and start it).
func scaleDeployment(t *testing.T, ns, name string, n int32) {
	t.Helper()
	ctx := context.Background()
	s, err := cluster.Client.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = n
	if _, err := cluster.Client.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitNoPods waits until no pod of a Deployment's selector is left.
func waitNoPods(t *testing.T, ns string, selector map[string]string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("no pods %v in %s", selector, ns), func() error {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
			LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: selector}),
		})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		return nil
	})
}

// waitRolled waits until a CallbackReceiver's pods are all new (none of old), as many as
// before, and ready.
func waitRolled(t *testing.T, ns, name string, old []corev1.Pod, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "receiver pods replaced", func() error {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
			LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: receiverSelector(name)}),
		})
		if err != nil {
			return err
		}
		if len(pods.Items) != len(old) {
			return fmt.Errorf("%d pods, want %d", len(pods.Items), len(old))
		}
		for _, p := range pods.Items {
			if slices.ContainsFunc(old, func(o corev1.Pod) bool { return o.UID == p.UID }) {
				return fmt.Errorf("pod %s not replaced", p.Name)
			}
			if !podReady(&p) || p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s not ready", p.Name)
			}
		}
		return nil
	})
}

// receiverSelector selects a CallbackReceiver's pods.
func receiverSelector(name string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "callback-receiver", "app.kubernetes.io/instance": name}
}

var metricLine = regexp.MustCompile(`(?m)^([a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$`)

// podMetrics reads a receiver pod's counters from its admin port: series (name and labels,
// as printed) to value.
func podMetrics(p corev1.Pod) (map[string]float64, error) {
	resp, err := httpClient.Get("http://" + net.JoinHostPort(p.Status.PodIP, "9090") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	for _, m := range metricLine.FindAllStringSubmatch(string(body), -1) {
		v, err := strconv.ParseFloat(m[3], 64)
		if err == nil {
			out[m[1]+m[2]] = v
		}
	}
	return out, nil
}

// traffic sends signed callbacks through a URL from several goroutines at a bounded rate
// until stopped, each exactly once (no retries): every request must get an answer.
type traffic struct {
	client      *http.Client
	base, token string
	next        *atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	sent     int
	statuses map[int]int
	failures []error
	accepted []callback // answered 200 OK
}

// startTraffic starts workers goroutines, each sending one callback every pause. Callback
// bodies are unique, numbered from *next on.
func startTraffic(base, token string, next *atomic.Int64, workers int, pause time.Duration) *traffic {
	return startTrafficWith(callbackClient, base, token, next, workers, pause)
}

// startTrafficWith is startTraffic through another client.
func startTrafficWith(cl *http.Client, base, token string, next *atomic.Int64, workers int, pause time.Duration) *traffic {
	tr := &traffic{client: cl, base: base, token: token, next: next, stop: make(chan struct{}), statuses: map[int]int{}}
	for range workers {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for {
				select {
				case <-tr.stop:
					return
				default:
				}
				c := blacklistDelete(token, int(next.Add(1)), 1)
				status, r, err := c.sendWith(tr.client, base)
				tr.mu.Lock()
				tr.sent++
				switch {
				case err != nil:
					tr.failures = append(tr.failures, err)
				default:
					tr.statuses[status]++
					if status == http.StatusOK && r.ActionStatus == "OK" {
						tr.accepted = append(tr.accepted, c)
					} else if len(tr.failures) < 20 {
						tr.failures = append(tr.failures, fmt.Errorf("answer %d %+v", status, r))
					}
				}
				tr.mu.Unlock()
				select {
				case <-tr.stop:
					return
				case <-time.After(pause):
				}
			}
		}()
	}
	return tr
}

// okCount is how many callbacks were answered 200 OK so far.
func (tr *traffic) okCount() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.accepted)
}

// halt stops the traffic and waits for the requests in flight.
func (tr *traffic) halt() {
	close(tr.stop)
	tr.wg.Wait()
}
