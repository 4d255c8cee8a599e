package sink

import (
	"context"
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
		reason string
	}{
		{"the only port", ports(corev1.ServicePort{Port: 8081}), 8081, ""},
		{"no port", ports(), 80, ""},
		{"port 80 among several", ports(corev1.ServicePort{Name: "grpc", Port: 9000}, corev1.ServicePort{Name: "web", Port: 80}), 80, ""},
		{"the port named http", ports(corev1.ServicePort{Name: "grpc", Port: 9000}, corev1.ServicePort{Name: "http", Port: 8080}), 8080, ""},
		{"ambiguous", ports(corev1.ServicePort{Name: "a", Port: 1}, corev1.ServicePort{Name: "b", Port: 2}), 0, ReasonPortAmbiguous},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := servicePort(c.svc)
			if c.reason != "" {
				se, ok := AsError(err)
				if !ok || se.Reason != c.reason {
					t.Fatalf("err = %v, want reason %s", err, c.reason)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("port = %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestResolveURIAlone(t *testing.T) {
	r := &Resolver{} // a URI alone reads nothing from the cluster
	got, err := r.Resolve(context.Background(), "chat", &cbv1.Destination{URI: "https://hooks.example.com/im?x=1"})
	if err != nil || got != "https://hooks.example.com/im?x=1" {
		t.Fatalf("Resolve = %q, %v", got, err)
	}
	_, err = r.Resolve(context.Background(), "chat", &cbv1.Destination{URI: "relative/path"})
	if se, ok := AsError(err); !ok || se.Reason != ReasonInvalid {
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
