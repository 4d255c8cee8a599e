package sink

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

func TestServicePort(t *testing.T) {
	ports := func(ps ...corev1.ServicePort) *corev1.Service {
		s := &corev1.Service{}
		s.Namespace, s.Name = "chat", "moderation"
		s.Spec.Ports = ps
		return s
	}
	cases := []struct {
		name   string
		svc    *corev1.Service
		want   int32
		wantOK bool
	}{
		{"the only port", ports(corev1.ServicePort{Port: 8081}), 8081, true},
		{"no port", ports(), 80, true},
		{"port 80 among several", ports(corev1.ServicePort{Name: "grpc", Port: 9000}, corev1.ServicePort{Name: "web", Port: 80}), 80, true},
		{"the port named http", ports(corev1.ServicePort{Name: "grpc", Port: 9000}, corev1.ServicePort{Name: "http", Port: 8080}), 8080, true},
		{"ambiguous", ports(corev1.ServicePort{Name: "a", Port: 1}, corev1.ServicePort{Name: "b", Port: 2}), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := servicePort(c.svc)
			if ok != c.wantOK || got != c.want {
				t.Fatalf("port = %d, %v; want %d, %v", got, ok, c.want, c.wantOK)
			}
		})
	}
}

func TestResolveURIAlone(t *testing.T) {
	r := &Resolver{} // a URI alone reads nothing from the cluster
	got, err := r.Resolve(context.Background(), "chat", "spec.sink", &cbv1.Destination{URI: "https://hooks.example.com/im?x=1"})
	if err != nil || got != "https://hooks.example.com/im?x=1" {
		t.Fatalf("Resolve = %q, %v", got, err)
	}
	_, err = r.Resolve(context.Background(), "chat", "spec.sink", &cbv1.Destination{URI: "relative/path"})
	if se, ok := AsError(err); !ok || se.Reason != cbv1.ReasonSinkInvalid || !strings.HasPrefix(se.Message, "spec.sink.uri ") {
		t.Fatalf("a relative URI alone: err = %v", err)
	}
}

func TestRefOfDefaultsToTheResourcesNamespace(t *testing.T) {
	ref, ok := RefOf("chat", &cbv1.Destination{Ref: &cbv1.KReference{APIVersion: "eventing.knative.dev/v1", Kind: "Broker", Name: "default"}})
	if !ok || ref.Namespace != "chat" || ref.GVK.Group != "eventing.knative.dev" || ref.IndexKey() != "Broker.eventing.knative.dev/chat/default" {
		t.Fatalf("RefOf = %+v, %v (key %s)", ref, ok, ref.IndexKey())
	}
	if _, ok := RefOf("chat", &cbv1.Destination{URI: "http://x"}); ok {
		t.Fatal("a URI alone has no ref")
	}
}
