package controllers_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/receiver"
)

const countsToken = "counts-test-token"

// pod is a real receiver, from the receiver package, standing in for a receiver pod. Its
// address in the EndpointSlice is podIP (the API server refuses loopback addresses there);
// the manager's scrapes to it are dialed to the loopback address ip, where its admin port
// listens, as a pod's would on its IP.
type pod struct {
	name, ip string
	podIP    string
	r        *receiver.Receiver
	url      string
	cancel   context.CancelFunc
	done     chan error
}

func startPod(t *testing.T, name, ip string, adminPort int, sink string, configure ...func(*receiver.Config)) *pod {
	t.Helper()
	cfg := receiver.DefaultConfig()
	cfg.SdkAppID = 1400000001
	cfg.Path = "/im/callback"
	cfg.Sink = sink
	cfg.Token = countsToken
	cfg.ShutdownDelay = 50 * time.Millisecond
	cfg.ShutdownTimeout = 20 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range configure {
		c(&cfg)
	}
	r, err := receiver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(adminPort)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pod{name: name, ip: ip, podIP: podIPOf(ip), r: r, url: "http://" + cb.Addr().String() + "/im/callback", cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- r.Serve(ctx, cb, admin) }()
	t.Cleanup(func() {
		cancel()
		if err := <-p.done; err != nil {
			t.Errorf("receiver %s: %v", name, err)
		}
	})
	return p
}

// stop is SIGTERM: the receiver drains, waits for the manager's final scrape, and exits.
func (p *pod) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("receiver %s: %v", p.name, err)
		}
		p.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("receiver %s did not stop", p.name)
	}
}

// traffic sends callbacks and keeps the exact counts they must produce.
type traffic struct {
	t    *testing.T
	want cbv1.Counts
	seq  int // makes every accepted callback's body distinct: a repeat is a duplicate
}

func (tr *traffic) send(p *pod, accepted, forged, ignored int) {
	tr.t.Helper()
	now := strconv.FormatInt(time.Now().Unix(), 10)
	post := func(cmd, sign, body string) int {
		q := fmt.Sprintf("SdkAppid=1400000001&CallbackCommand=%s&contenttype=json&ClientIP=10.1.2.3&OptPlatform=Android&RequestTime=%s&Sign=%s", cmd, now, sign)
		resp, err := http.Post(p.url+"?"+q, "application/json", strings.NewReader(body))
		if err != nil {
			tr.t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	body := `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"u1","To_Account":"u2"},{"From_Account":"u1","To_Account":"u3"}]}`
	var first string
	for i := range accepted {
		tr.seq++
		b := strings.Replace(body, "u3", "u"+strconv.Itoa(tr.seq+2), 1)
		if i == 0 {
			first = b
		}
		if code := post("Sns.CallbackBlackListDelete", receiver.Sign(countsToken, now), b); code != 200 {
			tr.t.Fatalf("signed callback answered %d", code)
		}
	}
	// IM retrying the first one (or a replay of it) is answered OK and counted duplicate.
	if accepted > 0 {
		if code := post("Sns.CallbackBlackListDelete", receiver.Sign(countsToken, now), first); code != 200 {
			tr.t.Fatalf("repeated callback answered %d", code)
		}
		tr.want.Received++
		tr.want.Duplicate++
	}
	for range forged {
		if code := post("Sns.CallbackBlackListDelete", receiver.Sign("not-the-token", now), body); code != 401 {
			tr.t.Fatalf("forged callback answered %d", code)
		}
	}
	for range ignored {
		if code := post("Sns.CallbackFriendAdd", receiver.Sign(countsToken, now), `{"CallbackCommand":"Sns.CallbackFriendAdd","PairList":[{"From_Account":"a","To_Account":"b","Initiator_Account":"a"}]}`); code != 200 {
			tr.t.Fatalf("unselected callback answered %d", code)
		}
	}
	a, f, i := int64(accepted), int64(forged), int64(ignored)
	tr.want.Received += a + f + i
	tr.want.Accepted += a
	tr.want.Rejected += f
	tr.want.Ignored += i
	tr.want.Delivered += a // the sink takes everything
	tr.want.Pairs += 2 * a
}

// setEndpoints writes the EndpointSlice the EndpointSlice controller would write for the
// receiver's Service: pods by name and address, terminating ones marked so.
func setEndpoints(t *testing.T, ns string, terminating map[string]bool, pods ...*pod) {
	t.Helper()
	ctx := context.Background()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist-x7k2p", Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: "blacklist",
			resources.LabelManagedBy:     resources.ManagedByValue,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
	}
	for _, p := range pods {
		term := terminating[p.name]
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.podIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(!term), Serving: ptr.To(true), Terminating: ptr.To(term)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.name},
		})
	}
	existing := &discoveryv1.EndpointSlice{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(slice), existing); err == nil {
		existing.Endpoints = slice.Endpoints
		must(t, k8sClient.Update(ctx, existing))
		return
	}
	must(t, k8sClient.Create(ctx, slice))
}

// podIPOf maps 127.0.0.N to 192.0.2.N (TEST-NET-1, never routed).
func podIPOf(loopback string) string {
	return "192.0.2." + loopback[strings.LastIndexByte(loopback, '.')+1:]
}

// dialPods dials 192.0.2.N as 127.0.0.N: the network between the manager and the test's pods.
func dialPods(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if rest, ok := strings.CutPrefix(host, "192.0.2."); ok {
		host = "127.0.0." + rest
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort(host, port))
}

// freeAdminPort finds a port free on the loopback addresses the test's pods use.
func freeAdminPort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		free := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no free admin port")
	return 0
}

// TestCountsAreExact runs real receivers, sends signed, forged and unselected callbacks,
// restarts a receiver (a new incarnation), restarts the manager and scales a receiver away,
// and checks after each step that status.counts equals exactly what was sent.
func TestCountsAreExact(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ipA, ipB := "127.0.0.2", "127.0.0.3"
	adminPort := freeAdminPort(t, ipA, ipB)

	var sunk atomic.Int64
	sinkSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		sunk.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(sinkSrv.Close)

	must(t, k8sClient.Create(ctx, &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: ns},
		Spec:       cbv1.CallbackReceiverSpec{SdkAppID: 1400000001, Path: "/im/callback", Sink: &cbv1.Destination{URI: sinkSrv.URL}},
	}))
	a := startPod(t, "blacklist-a", ipA, adminPort, sinkSrv.URL)
	b := startPod(t, "blacklist-b", ipB, adminPort, sinkSrv.URL)
	setEndpoints(t, ns, nil, a, b)
	stopManager := startManager(t, ns, managerOptions{adminPort: adminPort, scrapeInterval: 300 * time.Millisecond, dial: dialPods})

	tr := &traffic{t: t}
	expectExact := func(step string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			cr := get(g, ns, "blacklist", &cbv1.CallbackReceiver{})
			g.Expect(cr.Status.Counts).To(Equal(tr.want), step)
		}).Should(Succeed(), step)
		g.Expect(sunk.Load()).To(Equal(tr.want.Delivered), "%s: the sink received every accepted callback once", step)
	}

	tr.send(a, 20, 3, 2)
	tr.send(b, 15, 1, 0)
	expectExact("two receivers")

	// Pod a's container restarts: SIGTERM, final scrape, a new process on the same address.
	setEndpoints(t, ns, map[string]bool{a.name: true}, a, b)
	a.stop(t)
	a2 := startPod(t, "blacklist-a", ipA, adminPort, sinkSrv.URL)
	setEndpoints(t, ns, nil, a2, b)
	tr.send(a2, 7, 0, 1)
	expectExact("after a restart of pod a (a new incarnation)")
	g.Expect(a2.r.Incarnation()).NotTo(Equal(a.r.Incarnation()))

	// The manager stops; traffic goes on; a new manager starts from status.
	stopManager()
	tr.send(a2, 11, 2, 0)
	tr.send(b, 9, 0, 3)
	startManager(t, ns, managerOptions{adminPort: adminPort, scrapeInterval: 300 * time.Millisecond, dial: dialPods})
	expectExact("after a manager restart")

	// Scale down: pod b terminates, is read a last time, and leaves the endpoints.
	setEndpoints(t, ns, map[string]bool{b.name: true}, a2, b)
	tr.send(b, 4, 0, 0) // callbacks already on their way to the terminating pod
	b.stop(t)
	setEndpoints(t, ns, nil, a2)
	tr.send(a2, 5, 1, 1)
	expectExact("after scaling pod b away")

	// Only the live incarnation is kept in status.
	g.Eventually(func(g Gomega) {
		cr := get(g, ns, "blacklist", &cbv1.CallbackReceiver{})
		g.Expect(cr.Status.Incarnations).To(HaveLen(1))
		g.Expect(cr.Status.Incarnations[0].ID).To(Equal(a2.r.Incarnation()))
		g.Expect(cr.Status.Incarnations[0].Pod).To(Equal("blacklist-a"))
	}).Should(Succeed())

	// Scale to zero: the totals stay, no incarnation is left.
	setEndpoints(t, ns, map[string]bool{a2.name: true}, a2)
	a2.stop(t)
	setEndpoints(t, ns, nil)
	expectExact("after scaling to zero")
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, ns, "blacklist", &cbv1.CallbackReceiver{}).Status.Incarnations).To(BeEmpty())
	}).Should(Succeed())
}
