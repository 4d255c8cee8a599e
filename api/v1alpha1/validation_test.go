package v1alpha1_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// validObject is the smallest CallbackReceiver the schema accepts, as plain JSON values, so
// that a test can break it in ways the Go types could not express.
func validObject(ns string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "callbacks.imcallback.dev/v1alpha1",
		"kind":       "CallbackReceiver",
		"metadata":   map[string]any{"generateName": "cbr-", "namespace": ns},
		"spec": map[string]any{
			"sdkAppID": int64(1400000001),
			"path":     "/im/callback",
			"sink": map[string]any{
				"ref": map[string]any{"apiVersion": "v1", "kind": "Service", "name": "moderation"},
				"uri": "/events",
			},
		},
	}}
}

func TestValidObjectIsAccepted(t *testing.T) {
	ns := newNamespace(t)
	obj := validObject(ns)
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		t.Fatalf("the minimal valid object was refused: %v", err)
	}
}

func TestSampleIsAcceptedAndDefaulted(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	samples := filepath.Join("..", "..", "config", "samples")

	// The sample's Secret and sink are plain objects; they must be accepted too.
	for _, file := range []string{"token_secret.yaml", "sink.yaml"} {
		for _, doc := range readDocs(t, filepath.Join(samples, file)) {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			u.SetNamespace(ns)
			if err := k8sClient.Create(ctx, u); err != nil {
				t.Fatalf("%s: creating %s: %v", file, u.GetKind(), err)
			}
		}
	}

	docs := readDocs(t, filepath.Join(samples, "callbacks_v1alpha1_callbackreceiver.yaml"))
	if len(docs) != 1 {
		t.Fatalf("want one CallbackReceiver in the sample, got %d documents", len(docs))
	}
	cr := &cbv1.CallbackReceiver{}
	if err := yaml.UnmarshalStrict(docs[0], cr); err != nil {
		t.Fatalf("the sample does not match the Go types: %v", err)
	}
	cr.Namespace = ns
	if err := k8sClient.Create(ctx, cr); err != nil {
		t.Fatalf("the sample was refused: %v", err)
	}

	got := &cbv1.CallbackReceiver{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: cr.Name}, got); err != nil {
		t.Fatal(err)
	}
	s := got.Spec
	checks := []struct {
		field     string
		got, want any
	}{
		{"sdkAppID", s.SdkAppID, int64(1400000001)},
		{"path", s.Path, "/im/callback"},
		{"commands", s.Commands, []cbv1.Command{cbv1.Command(contract.DefaultCommand)}},
		{"replicas", ptr.Deref(s.Replicas, -1), int32(2)},
		{"spool.type", s.Spool.Type, cbv1.SpoolPersistentVolumeClaim},
		{"auth.tokenSecretRef", s.Auth.TokenSecretRef, cbv1.SecretKeySelector{Name: "im-callback-token", Key: "token"}},
		{"auth.maxClockSkew", s.Auth.MaxClockSkew.Duration, 60 * time.Second},
		{"delivery.retry", ptr.Deref(s.Delivery.Retry, -1), int32(3)},
		{"delivery.backoffPolicy", s.Delivery.BackoffPolicy, cbv1.BackoffExponential},
		{"delivery.backoffDelay", s.Delivery.BackoffDelay.Duration, 200 * time.Millisecond},
		{"delivery.timeout", s.Delivery.Timeout.Duration, time.Second},
		{"service.type", string(s.Service.Type), "ClusterIP"},
		// Not defaulted by the schema: the controller picks 443 with spec.tls, else 80.
		{"service.port", s.Service.Port, int32(0)},
		{"sink.uri", s.Sink.URI, "/events"},
		{"sink.ref.name", s.Sink.Ref.Name, "moderation"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

// TestDefaultCommandsWhenOmitted: a resource without commands forwards the seed callback.
// TestCommandsAreNotDefaultedBySchema: without spec.commands the receiver's own default
// applies (Sns.CallbackBlackListDelete unless a route or decision takes it), so the schema
// writes none: a default here would collide with a route or decision of that command.
func TestCommandsAreNotDefaultedBySchema(t *testing.T) {
	ns := newNamespace(t)
	obj := validObject(ns)
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	if got, found, _ := unstructured.NestedStringSlice(obj.Object, "spec", "commands"); found {
		t.Fatalf("commands defaulted to %v", got)
	}
	// auth is optional and gets no defaults when absent: no half-configured authentication.
	if _, found, _ := unstructured.NestedMap(obj.Object, "spec", "auth"); found {
		t.Fatalf("auth was defaulted although omitted: %v", obj.Object["spec"])
	}
	// A route of the receiver's default command, without spec.commands, is accepted.
	obj = validObject(ns)
	if err := unstructured.SetNestedField(obj.Object, []any{map[string]any{
		"commands": []any{contract.DefaultCommand}, "sink": map[string]any{"uri": "http://other.chat.svc.cluster.local"},
	}}, "spec", "routes"); err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		t.Fatalf("a route of %s was refused: %v", contract.DefaultCommand, err)
	}
}

func TestInvalidManifestsAreRefusedWithAClearMessage(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name  string
		field []string // where to set value; value nil deletes the field
		value any
		want  string // a substring of the API server's message
	}{
		{"sdkAppID zero", []string{"spec", "sdkAppID"}, int64(0), "sdkAppID must be the app's SDKAppID from the IM console, a number greater than 0"},
		{"spool storageClassName on an emptyDir", []string{"spec", "spool"}, map[string]any{"type": "EmptyDir", "storageClassName": "fast"}, "spool.storageClassName applies only to type PersistentVolumeClaim"},
		{"spool size on an emptyDir", []string{"spec", "spool"}, map[string]any{"type": "EmptyDir", "size": "2Gi"}, "spool.size applies only to type PersistentVolumeClaim"},
		{"spool drainTimeout on claims", []string{"spec", "spool"}, map[string]any{"drainTimeout": "5m"}, "spool.drainTimeout applies only to type EmptyDir"},
		{"spool size too small", []string{"spec", "spool"}, map[string]any{"size": "1Mi"}, "spool.size must be at least 64Mi"},
		{"spool drainTimeout too long", []string{"spec", "spool"}, map[string]any{"type": "EmptyDir", "drainTimeout": "2h"}, "spool.drainTimeout must be a duration between 5s and 1h"},
		{"spool type unknown", []string{"spec", "spool"}, map[string]any{"type": "HostPath"}, `supported values: "PersistentVolumeClaim", "EmptyDir", "None"`},
		{"sdkAppID negative", []string{"spec", "sdkAppID"}, int64(-5), "sdkAppID must be the app's SDKAppID"},
		{"sdkAppID missing", []string{"spec", "sdkAppID"}, nil, "spec.sdkAppID: Required value"},
		{"sdkAppID not a number", []string{"spec", "sdkAppID"}, "1400000001x", `spec.sdkAppID in body must be of type integer`},
		{"path missing", []string{"spec", "path"}, nil, "spec.path: Required value"},
		{"path relative", []string{"spec", "path"}, "im/callback", "path must be absolute: start it with '/'"},
		{"path with query", []string{"spec", "path"}, "/im/callback?SdkAppid=1", "path must not contain '?' or '#'"},
		{"path with fragment", []string{"spec", "path"}, "/im/callback#x", "path must not contain '?' or '#'"},
		{"path with empty segment", []string{"spec", "path"}, "/im//callback", "path must not contain an empty segment ('//')"},
		{"path with dot-dot", []string{"spec", "path"}, "/im/../callback", "path must not contain '.' or '..' segments"},
		{"path ending in dot-dot", []string{"spec", "path"}, "/im/..", "path must not contain '.' or '..' segments"},
		{"path with space", []string{"spec", "path"}, "/im/call back", "path may contain only URL path characters"},
		{"path too long", []string{"spec", "path"}, "/" + strings.Repeat("a", 256), "spec.path: Too long: may not be more than 256"},
		{"commands empty", []string{"spec", "commands"}, []any{}, "spec.commands in body should have at least 1 items"},
		{"commands duplicated", []string{"spec", "commands"}, []any{"Sns.CallbackBlackListDelete", "Sns.CallbackBlackListDelete"}, `spec.commands[1]: Duplicate value: "Sns.CallbackBlackListDelete"`},
		{"command malformed", []string{"spec", "commands"}, []any{"blacklist-delete"}, "each command must look like Sns.CallbackBlackListDelete"},
		{"nowhere to go", []string{"spec", "sink"}, nil, "say where callbacks go: set spec.sink (for spec.commands), spec.routes or spec.decisions"},
		{"commands without a sink", []string{"spec"}, map[string]any{"sdkAppID": int64(1), "path": "/p", "commands": []any{"Sns.CallbackFriendAdd"},
			"routes": []any{map[string]any{"commands": []any{"Sns.CallbackFriendDelete"}, "sink": map[string]any{"uri": "http://r"}}}},
			"spec.commands are forwarded to spec.sink: set spec.sink, or move the commands into spec.routes"},
		{"a command in commands and a route", []string{"spec"}, map[string]any{"sdkAppID": int64(1), "path": "/p",
			"commands": []any{"Sns.CallbackBlackListDelete"}, "sink": map[string]any{"uri": "http://s"},
			"routes": []any{map[string]any{"commands": []any{"Sns.CallbackFriendAdd", "Sns.CallbackBlackListDelete"}, "sink": map[string]any{"uri": "http://r"}}}},
			"command Sns.CallbackBlackListDelete is in both spec.commands and spec.routes: list each command once"},
		{"a command in commands and a decision", []string{"spec"}, map[string]any{"sdkAppID": int64(1), "path": "/p",
			"commands": []any{"Sns.CallbackBlackListDelete"}, "sink": map[string]any{"uri": "http://s"},
			"decisions": []any{map[string]any{"commands": []any{"Sns.CallbackBlackListDelete"}, "subscriber": map[string]any{"uri": "http://d"}}}},
			"command Sns.CallbackBlackListDelete is in both spec.commands and spec.decisions: list each command once"},
		{"a command in two routes", []string{"spec", "routes"}, []any{
			map[string]any{"commands": []any{"C2C.CallbackAfterSendMsg"}, "sink": map[string]any{"uri": "http://a"}},
			map[string]any{"commands": []any{"Group.CallbackAfterSendMsg", "C2C.CallbackAfterSendMsg"}, "sink": map[string]any{"uri": "http://b"}}},
			"a command is in two of spec.routes: list each command once"},
		{"a command in two decisions", []string{"spec", "decisions"}, []any{
			map[string]any{"commands": []any{"C2C.CallbackBeforeSendMsg"}, "subscriber": map[string]any{"uri": "http://a"}},
			map[string]any{"commands": []any{"C2C.CallbackBeforeSendMsg"}, "subscriber": map[string]any{"uri": "http://b"}}},
			"a command is in two of spec.decisions: list each command once"},
		{"a command in a route and a decision", []string{"spec"}, map[string]any{"sdkAppID": int64(1), "path": "/p",
			"routes":    []any{map[string]any{"commands": []any{"C2C.CallbackBeforeSendMsg"}, "sink": map[string]any{"uri": "http://r"}}},
			"decisions": []any{map[string]any{"commands": []any{"C2C.CallbackBeforeSendMsg"}, "subscriber": map[string]any{"uri": "http://d"}}}},
			"a command is in both spec.routes and spec.decisions: list each command once"},
		{"a decision without a subscriber", []string{"spec", "decisions"}, []any{map[string]any{"commands": []any{"C2C.CallbackBeforeSendMsg"}}},
			"spec.decisions[0].subscriber: Required value"},
		{"a route without commands", []string{"spec", "routes"}, []any{map[string]any{"sink": map[string]any{"uri": "http://r"}}},
			"spec.routes[0].commands: Required value"},
		{"decision timeout over 1.5s", []string{"spec", "decisionPolicy", "timeout"}, "1600ms",
			"decisionPolicy.timeout must be a duration between 1ms and 1.5s, inside IM's 2-second budget, such as 1s"},
		{"decision failure policy unknown", []string{"spec", "decisionPolicy", "failurePolicy"}, "allow", `Unsupported value: "allow": supported values: "Allow", "Reject"`},
		{"sink empty", []string{"spec", "sink"}, map[string]any{}, "set ref, uri or both to say where events go"},
		{"sink uri relative without ref", []string{"spec", "sink"}, map[string]any{"uri": "moderation/events"}, "uri without ref must be an absolute http or https URL"},
		{"sink uri not http", []string{"spec", "sink"}, map[string]any{"uri": "ftp://sink.chat/events"}, "uri without ref must be an absolute http or https URL"},
		{"sink uri absolute with ref", []string{"spec", "sink", "uri"}, "http://other.chat.svc/events", "with ref, uri must be a path relative to the ref's address"},
		{"sink ref without name", []string{"spec", "sink", "ref", "name"}, nil, "spec.sink.ref.name: Required value"},
		{"sink ref kind lower-case", []string{"spec", "sink", "ref", "kind"}, "service", "kind must be a Kubernetes kind in CamelCase"},
		{"dead-letter sink uri relative", []string{"spec", "delivery", "deadLetterSink"}, map[string]any{"uri": "dlq"}, "spec.delivery.deadLetterSink: Invalid value: uri without ref must be an absolute http or https URL"},
		{"dead-letter sink empty", []string{"spec", "delivery", "deadLetterSink"}, map[string]any{}, "spec.delivery.deadLetterSink: Invalid value: set ref, uri or both"},
		{"retry above 100", []string{"spec", "delivery", "retry"}, int64(101), "spec.delivery.retry in body should be less than or equal to 100"},
		{"retry negative", []string{"spec", "delivery", "retry"}, int64(-1), "spec.delivery.retry in body should be greater than or equal to 0"},
		{"backoff policy unknown", []string{"spec", "delivery", "backoffPolicy"}, "fibonacci", `Unsupported value: "fibonacci": supported values: "exponential", "linear"`},
		{"backoff delay zero", []string{"spec", "delivery", "backoffDelay"}, "0s", "backoffDelay must be a duration between 1ms and 1h, such as 200ms"},
		{"backoff delay not a duration", []string{"spec", "delivery", "backoffDelay"}, "soon", "backoffDelay must be a duration between 1ms and 1h"},
		{"backoff delay too long", []string{"spec", "delivery", "backoffDelay"}, "2h", "backoffDelay must be a duration between 1ms and 1h"},
		{"timeout too long", []string{"spec", "delivery", "timeout"}, "10m", "timeout must be a duration between 1ms and 5m, such as 1s"},
		{"timeout negative", []string{"spec", "delivery", "timeout"}, "-1s", "timeout must be a duration between 1ms and 5m"},
		{"replicas above 100", []string{"spec", "replicas"}, int64(101), "spec.replicas in body should be less than or equal to 100"},
		{"replicas negative", []string{"spec", "replicas"}, int64(-1), "spec.replicas in body should be greater than or equal to 0"},
		{"auth without token secret", []string{"spec", "auth"}, map[string]any{}, "spec.auth.tokenSecretRef: Required value"},
		{"auth without secret key", []string{"spec", "auth"}, map[string]any{"tokenSecretRef": map[string]any{"name": "im-callback-token"}}, "spec.auth.tokenSecretRef.key: Required value"},
		{"auth without secret name", []string{"spec", "auth"}, map[string]any{"tokenSecretRef": map[string]any{"key": "token"}}, "spec.auth.tokenSecretRef.name: Required value"},
		{"auth secret name invalid", []string{"spec", "auth"}, map[string]any{"tokenSecretRef": map[string]any{"name": "IM Token", "key": "token"}}, "tokenSecretRef.name must be a Secret name"},
		{"max clock skew zero", []string{"spec", "auth"}, map[string]any{"tokenSecretRef": map[string]any{"name": "t", "key": "token"}, "maxClockSkew": "0s"}, "maxClockSkew must be a duration between 1s and 1h, such as 60s"},
		{"service type ExternalName", []string{"spec", "service", "type"}, "ExternalName", `Unsupported value: "ExternalName"`},
		{"service port zero", []string{"spec", "service", "port"}, int64(0), "spec.service.port in body should be greater than or equal to 1"},
		{"image with space", []string{"spec", "image"}, "my image", "image must be an image reference without spaces"},
		{"tls without secret", []string{"spec", "tls"}, map[string]any{}, "spec.tls.secretName: Required value"},
		{"tls secret name invalid", []string{"spec", "tls", "secretName"}, "My_Cert", "secretName must be a Secret name"},
		{"ingress and httpRoute together", []string{"spec"}, withExposure(map[string]any{"ingress": ingressSpec, "httpRoute": routeSpec}), "set at most one of ingress and httpRoute"},
		{"ingress without host", []string{"spec", "ingress"}, map[string]any{"className": "nginx"}, "spec.ingress.host: Required value"},
		{"ingress host with scheme", []string{"spec", "ingress"}, map[string]any{"host": "https://im.example.com"}, "host must be a lower-case DNS name"},
		{"ingress host wildcard", []string{"spec", "ingress"}, map[string]any{"host": "*.example.com"}, "host must be a lower-case DNS name"},
		{"ingress host IP address", []string{"spec", "ingress"}, map[string]any{"host": "203.0.113.7"}, "not an IP address"},
		{"ingress host with port", []string{"spec", "ingress"}, map[string]any{"host": "im.example.com:8443"}, "host must be a lower-case DNS name"},
		{"ingress class invalid", []string{"spec", "ingress"}, map[string]any{"host": "im.example.com", "className": "Nginx Public"}, "className must be an IngressClass name"},
		{"ingress tls without secret", []string{"spec", "ingress"}, map[string]any{"host": "im.example.com", "tls": map[string]any{}}, "spec.ingress.tls.secretName: Required value"},
		{"httpRoute without parents", []string{"spec", "httpRoute"}, map[string]any{"parentRefs": []any{}, "hostnames": []any{"im.example.com"}}, "spec.httpRoute.parentRefs in body should have at least 1 items"},
		{"httpRoute without hostnames", []string{"spec", "httpRoute"}, map[string]any{"parentRefs": []any{map[string]any{"name": "public"}}}, "spec.httpRoute.hostnames: Required value"},
		{"httpRoute wildcard hostname", []string{"spec", "httpRoute"}, map[string]any{"parentRefs": []any{map[string]any{"name": "public"}}, "hostnames": []any{"*.example.com"}}, "each hostname must be a lower-case DNS name"},
		{"httpRoute duplicate hostname", []string{"spec", "httpRoute"}, map[string]any{"parentRefs": []any{map[string]any{"name": "public"}}, "hostnames": []any{"im.example.com", "im.example.com"}}, "Duplicate value"},
		{"httpRoute parent without name", []string{"spec", "httpRoute"}, map[string]any{"parentRefs": []any{map[string]any{"kind": "Gateway"}}, "hostnames": []any{"im.example.com"}}, "spec.httpRoute.parentRefs[0].name: Required value"},
		{"httpRoute parent port zero", []string{"spec", "httpRoute"}, map[string]any{"parentRefs": []any{map[string]any{"name": "public", "port": int64(0)}}, "hostnames": []any{"im.example.com"}}, "should be greater than or equal to 1"},
		{"exposed path with an escaped slash", []string{"spec"}, withExposure(map[string]any{"path": "/im%2Fcallback", "ingress": ingressSpec}), "may use '%' only as a percent-escape"},
		{"exposed path with a bare percent", []string{"spec"}, withExposure(map[string]any{"path": "/im%zz", "httpRoute": routeSpec}), "may use '%' only as a percent-escape"},
	}
	if len(cases) < 15 {
		t.Fatalf("the issue asks for at least 15 invalid manifests, have %d", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj := validObject(ns)
			if c.value == nil {
				unstructured.RemoveNestedField(obj.Object, c.field...)
			} else if err := unstructured.SetNestedField(obj.Object, c.value, c.field...); err != nil {
				t.Fatal(err)
			}
			err := k8sClient.Create(context.Background(), obj)
			if err == nil {
				t.Fatalf("accepted, want refused with %q", c.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("message\n  %s\ndoes not say\n  %s", err, c.want)
			}
		})
	}
}

// TestValidVariantsAreAccepted guards against rules that refuse what they should allow.
func TestValidVariantsAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name  string
		field []string
		value any
	}{
		{"sink uri alone", []string{"spec", "sink"}, map[string]any{"uri": "https://hooks.example.com/im?x=1"}},
		{"sink ref alone", []string{"spec", "sink"}, map[string]any{"ref": map[string]any{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "mod", "namespace": "other"}}},
		{"path with allowed characters", []string{"spec", "path"}, "/im/callback-v2/~app_1;x=y/%20"},
		{"path root", []string{"spec", "path"}, "/"},
		{"several commands", []string{"spec", "commands"}, []any{"Sns.CallbackBlackListDelete", "Sns.CallbackFriendAdd", "C2C.CallbackAfterSendMsg"}},
		{"only decisions", []string{"spec"}, map[string]any{"sdkAppID": int64(1), "path": "/p",
			"decisions":      []any{map[string]any{"commands": []any{"C2C.CallbackBeforeSendMsg", "Group.CallbackBeforeSendMsg"}, "subscriber": map[string]any{"ref": map[string]any{"apiVersion": "v1", "kind": "Service", "name": "moderator"}}}},
			"decisionPolicy": map[string]any{"timeout": "1500ms", "failurePolicy": "Reject"}}},
		{"routes, decisions and commands, each command once", []string{"spec"}, map[string]any{"sdkAppID": int64(1), "path": "/p",
			"commands":  []any{"Sns.CallbackBlackListDelete"},
			"sink":      map[string]any{"uri": "http://s"},
			"routes":    []any{map[string]any{"commands": []any{"C2C.CallbackAfterSendMsg"}, "sink": map[string]any{"uri": "http://a"}}, map[string]any{"commands": []any{"Group.CallbackAfterSendMsg"}, "sink": map[string]any{"uri": "http://b"}}},
			"decisions": []any{map[string]any{"commands": []any{"C2C.CallbackBeforeSendMsg"}, "subscriber": map[string]any{"uri": "http://d"}}}}},
		{"durations", []string{"spec", "delivery"}, map[string]any{"retry": int64(0), "backoffPolicy": "linear", "backoffDelay": "1m30s", "timeout": "250ms", "deadLetterSink": map[string]any{"uri": "http://dlq.chat.svc.cluster.local"}}},
		{"replicas zero", []string{"spec", "replicas"}, int64(0)},
		{"spool on claims, everything", []string{"spec", "spool"}, map[string]any{"type": "PersistentVolumeClaim", "storageClassName": "fast", "size": "10Gi"}},
		{"spool on an emptyDir with a drain", []string{"spec", "spool"}, map[string]any{"type": "EmptyDir", "sizeLimit": "2Gi", "drainTimeout": "10m"}},
		{"load balancer service", []string{"spec", "service"}, map[string]any{"type": "LoadBalancer", "port": int64(8443), "annotations": map[string]any{"service.beta.kubernetes.io/x": "y"}}},
		{"tls", []string{"spec", "tls"}, map[string]any{"secretName": "im-callback-tls"}},
		{"ingress, everything", []string{"spec", "ingress"}, map[string]any{"className": "nginx", "host": "im-callback.example.com", "annotations": map[string]any{"cert-manager.io/cluster-issuer": "letsencrypt"}, "tls": map[string]any{"secretName": "im-callback-example-com"}}},
		{"httpRoute, everything", []string{"spec", "httpRoute"}, map[string]any{"parentRefs": []any{
			map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra", "name": "public", "sectionName": "https", "port": int64(443)},
			map[string]any{"group": "", "kind": "Service", "name": "mesh"},
		}, "hostnames": []any{"im.example.com", "im.example.org"}}},
		{"exposed path with a percent-escape", []string{"spec"}, withExposure(map[string]any{"path": "/im/callback%20v2", "ingress": ingressSpec})},
		{"unexposed path with an escaped slash", []string{"spec", "path"}, "/im%2Fcallback"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj := validObject(ns)
			if err := unstructured.SetNestedField(obj.Object, c.value, c.field...); err != nil {
				t.Fatal(err)
			}
			if err := k8sClient.Create(context.Background(), obj); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

var (
	ingressSpec = map[string]any{"host": "im.example.com"}
	routeSpec   = map[string]any{"parentRefs": []any{map[string]any{"name": "public"}}, "hostnames": []any{"im.example.com"}}
)

// withExposure is the valid object's spec with the given fields set.
func withExposure(fields map[string]any) map[string]any {
	spec := validObject("").Object["spec"].(map[string]any)
	for k, v := range fields {
		spec[k] = v
	}
	return spec
}

// readDocs splits a YAML file into its documents.
func readDocs(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for _, d := range strings.Split(string(b), "\n---") {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
