package nodeagent

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

func testAgent(t *testing.T, objs ...any) *Agent {
	t.Helper()
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		var err error
		switch o.(type) {
		case *corev1.Service:
			err = svcs.Add(o)
		case *discoveryv1.EndpointSlice:
			err = slices.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	a := &Agent{services: corelisters.NewServiceLister(svcs), slices: discoverylisters.NewEndpointSliceLister(slices)}
	a.proxy = newProxier(a)
	return a
}

func slice(ns, svc, name string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	portName := "http"
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
		Endpoints:   eps,
	}
}

func endpoint(ip string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{
		Ready: &ready, Serving: &serving, Terminating: &terminating,
	}}
}

func TestProxyEndpointsLikeKubeProxy(t *testing.T) {
	a := testAgent(t,
		// Ready endpoints win; a terminating one that still serves is not used while they exist.
		slice("chat", "blacklist", "blacklist-a", 8080,
			endpoint("10.244.3.5", true, true, false),
			endpoint("10.244.3.4", false, true, true),
			endpoint("10.244.3.9", false, false, false)),
		slice("chat", "blacklist", "blacklist-b", 8080, endpoint("10.244.3.2", true, true, false)),
		// Only terminating endpoints: the serving ones are used (ProxyTerminatingEndpoints).
		slice("chat", "draining", "draining-a", 9000,
			endpoint("10.244.3.7", false, true, true),
			endpoint("10.244.3.8", false, false, true)),
	)
	svc := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: "chat", Name: name} }
	if got, want := a.proxy.endpoints(svc("blacklist"), "http"), []string{"10.244.3.2:8080", "10.244.3.5:8080"}; !reflect.DeepEqual(got, want) {
		t.Errorf("blacklist endpoints = %v, want %v", got, want)
	}
	if got, want := a.proxy.endpoints(svc("draining"), "http"), []string{"10.244.3.7:9000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("draining endpoints = %v, want %v", got, want)
	}
	if got := a.proxy.endpoints(svc("blacklist"), "admin"); len(got) != 0 {
		t.Errorf("endpoints of a port the slices lack = %v", got)
	}
	if got := a.proxy.endpoints(svc("nothing"), "http"); len(got) != 0 {
		t.Errorf("endpoints of an unknown Service = %v", got)
	}
}

func TestHostsFileNamesServices(t *testing.T) {
	a := testAgent(t,
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "moderation"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.20"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "dlq"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.30"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "peers"}, Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		slice("chat", "peers", "peers-a", 8080, endpoint("10.244.3.5", true, true, false), endpoint("10.244.3.6", false, false, false)),
	)
	got := string(a.hostsFile("chat", "blacklist-abc", netip.MustParseAddr("10.244.3.7")))
	want := "# Kubernetes-managed hosts file (callback-operator node agent).\n" +
		"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"10.244.3.7\tblacklist-abc\n" +
		"10.96.3.20\tmoderation.chat.svc.cluster.local moderation.chat.svc moderation.chat moderation\n" +
		"10.244.3.5\tpeers.chat.svc.cluster.local peers.chat.svc peers.chat peers\n" +
		"10.96.3.30\tdlq.other.svc.cluster.local dlq.other.svc dlq.other\n"
	if got != want {
		t.Errorf("hosts file:\n%s\nwant:\n%s", got, want)
	}
}

func TestLastLines(t *testing.T) {
	data := []byte("a\nb\nc\n")
	for n, want := range map[int]string{0: "", 1: "c\n", 2: "b\nc\n", 3: "a\nb\nc\n", 10: "a\nb\nc\n"} {
		if got := string(lastLines(data, n)); got != want {
			t.Errorf("lastLines(%d) = %q, want %q", n, got, want)
		}
	}
	if got := string(lastLines([]byte("a\nb"), 1)); got != "b" {
		t.Errorf("lastLines without final newline = %q", got)
	}
}
