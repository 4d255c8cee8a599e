package resources

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver"
)

// specField says how one field of the spec reaches the receiver: through its flags (set
// changes the resource and the params, check reads the receiver's parsed configuration), or
// not at all (notAFlag says where it goes instead).
type specField struct {
	set      func(*cbv1.CallbackReceiver, *Params)
	check    func(receiver.Config) bool
	notAFlag string
	// moves is how many settings of the receiver the field sets: 1 unless said otherwise.
	moves int
}

// contractFields has an entry for every leaf field of CallbackReceiverSpec. A new field
// fails TestEverySpecFieldIsInTheContract until it is listed here, with the flag that carries
// it or the reason it needs none.
var contractFields = map[string]specField{
	"sdkAppID": {
		set:   func(cr *cbv1.CallbackReceiver, _ *Params) { cr.Spec.SdkAppID = 1400009999 },
		check: func(c receiver.Config) bool { return c.SdkAppID == 1400009999 },
	},
	"path": {
		set:   func(cr *cbv1.CallbackReceiver, _ *Params) { cr.Spec.Path = "/other/path" },
		check: func(c receiver.Config) bool { return c.Path == "/other/path" },
	},
	"commands": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			cr.Spec.Commands = []cbv1.Command{"Sns.CallbackFriendAdd", "Sns.CallbackFriendDelete"}
		},
		check: func(c receiver.Config) bool {
			return reflect.DeepEqual(c.Commands, []string{"Sns.CallbackFriendAdd", "Sns.CallbackFriendDelete"})
		},
	},
	"auth.tokenSecretRef.name": {notAFlag: "the token reaches the receiver in its environment, from the Secret"},
	"auth.tokenSecretRef.key":  {notAFlag: "the token reaches the receiver in its environment, from the Secret"},
	"auth.maxClockSkew": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			cr.Spec.Auth = &cbv1.AuthSpec{MaxClockSkew: &metav1.Duration{Duration: 17 * time.Second}}
		},
		check: func(c receiver.Config) bool { return c.MaxClockSkew == 17*time.Second },
	},
	"sink.ref.apiVersion": sinkField, "sink.ref.kind": sinkField, "sink.ref.name": sinkField,
	"sink.ref.namespace": sinkField, "sink.uri": sinkField,
	"delivery.retry": {
		set:   func(cr *cbv1.CallbackReceiver, _ *Params) { delivery(cr).Retry = ptr.To(int32(7)) },
		check: func(c receiver.Config) bool { return c.Retry == 7 },
	},
	"delivery.backoffPolicy": {
		set:   func(cr *cbv1.CallbackReceiver, _ *Params) { delivery(cr).BackoffPolicy = cbv1.BackoffLinear },
		check: func(c receiver.Config) bool { return c.BackoffPolicy == receiver.BackoffLinear },
	},
	"delivery.backoffDelay": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			delivery(cr).BackoffDelay = &metav1.Duration{Duration: 1500 * time.Millisecond}
		},
		check: func(c receiver.Config) bool { return c.BackoffDelay == 1500*time.Millisecond },
	},
	"delivery.timeout": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			delivery(cr).Timeout = &metav1.Duration{Duration: 3 * time.Second}
		},
		check: func(c receiver.Config) bool { return c.DeliveryTimeout == 3*time.Second },
	},
	"delivery.deadLetterSink.ref.apiVersion": deadLetterField, "delivery.deadLetterSink.ref.kind": deadLetterField,
	"delivery.deadLetterSink.ref.name": deadLetterField, "delivery.deadLetterSink.ref.namespace": deadLetterField,
	"delivery.deadLetterSink.uri": deadLetterField,
	"routes.commands": {
		set: func(cr *cbv1.CallbackReceiver, p *Params) {
			p.Routes = []cbv1.ResolvedRoute{{Commands: []cbv1.Command{"C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"}, URI: "http://archive.example/e"}}
		},
		check: func(c receiver.Config) bool {
			return reflect.DeepEqual(c.Routes, []receiver.Route{{Commands: []string{"C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"}, Sink: "http://archive.example/e"}})
		},
	},
	"routes.sink.ref.apiVersion": routeSinkField, "routes.sink.ref.kind": routeSinkField, "routes.sink.ref.name": routeSinkField,
	"routes.sink.ref.namespace": routeSinkField, "routes.sink.uri": routeSinkField,
	"decisions.commands": {
		set: func(cr *cbv1.CallbackReceiver, p *Params) {
			p.Decisions = []cbv1.ResolvedRoute{{Commands: []cbv1.Command{"C2C.CallbackBeforeSendMsg"}, URI: "http://moderator.example/"}}
		},
		check: func(c receiver.Config) bool {
			return reflect.DeepEqual(c.Decisions, []receiver.Decision{{Commands: []string{"C2C.CallbackBeforeSendMsg"}, URL: "http://moderator.example/"}})
		},
	},
	"decisions.subscriber.ref.apiVersion": decisionField, "decisions.subscriber.ref.kind": decisionField,
	"decisions.subscriber.ref.name": decisionField, "decisions.subscriber.ref.namespace": decisionField,
	"decisions.subscriber.uri": decisionField,
	"decisionPolicy.timeout": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			cr.Spec.DecisionPolicy = &cbv1.DecisionPolicy{Timeout: &metav1.Duration{Duration: 700 * time.Millisecond}}
		},
		check: func(c receiver.Config) bool { return c.DecisionTimeout == 700*time.Millisecond },
	},
	"decisionPolicy.failurePolicy": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			cr.Spec.DecisionPolicy = &cbv1.DecisionPolicy{FailurePolicy: cbv1.DecisionFailureReject}
		},
		check: func(c receiver.Config) bool { return c.DecisionFailure == receiver.DecisionFailureReject },
	},
	"spool.type": {
		set:   func(cr *cbv1.CallbackReceiver, _ *Params) { cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir} },
		check: func(c receiver.Config) bool { return c.SpoolDir == SpoolMountPath },
		moves: 2,
	},
	"spool.sizeLimit": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir, SizeLimit: ptr.To(resource.MustParse("300Mi"))}
		},
		// The flag is within the emptyDir's limit; the volume carries the limit itself.
		check: func(c receiver.Config) bool {
			return c.SpoolDir == SpoolMountPath && c.SpoolMaxBytes == SpoolMaxBytes(resource.MustParse("300Mi"))
		},
		moves: 2,
	},
	"spool.storageClassName": {notAFlag: "the StatefulSet's claim template"},
	"spool.size": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolPersistentVolumeClaim, Size: ptr.To(resource.MustParse("300Mi"))}
		},
		// The flag is within the claim; the claim template carries the size itself.
		check: func(c receiver.Config) bool {
			return c.SpoolDir == SpoolMountPath && c.SpoolMaxBytes == ClaimSpoolMaxBytes(resource.MustParse("300Mi"))
		},
		moves: 2,
	},
	"spool.drainTimeout": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) {
			cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir, DrainTimeout: &metav1.Duration{Duration: 5 * time.Minute}}
		},
		check: func(c receiver.Config) bool { return c.ShutdownTimeout == 5*time.Minute },
		moves: 3,
	},
	"replicas":            {notAFlag: "the Deployment's replicas"},
	"image":               {notAFlag: "the container's image"},
	"resources":           {notAFlag: "the container's resources (and GOMEMLIMIT from its memory limit)"},
	"service.type":        {notAFlag: "the Service"},
	"service.port":        {notAFlag: "the Service"},
	"service.annotations": {notAFlag: "the Service"},
	"tls.secretName": {
		set: func(cr *cbv1.CallbackReceiver, _ *Params) { cr.Spec.TLS = &cbv1.TLSSpec{SecretName: "im-callback-tls"} },
		check: func(c receiver.Config) bool {
			return c.TLSCertFile == TLSCertFile && c.TLSKeyFile == TLSKeyFile
		},
		moves: 2, // the certificate and the key, from the Secret's volume
	},
	"ingress.className":                {notAFlag: "the Ingress"},
	"ingress.host":                     {notAFlag: "the Ingress"},
	"ingress.annotations":              {notAFlag: "the Ingress"},
	"ingress.tls.secretName":           {notAFlag: "the Ingress: the ingress controller terminates TLS"},
	"httpRoute.parentRefs.group":       {notAFlag: "the HTTPRoute"},
	"httpRoute.parentRefs.kind":        {notAFlag: "the HTTPRoute"},
	"httpRoute.parentRefs.namespace":   {notAFlag: "the HTTPRoute"},
	"httpRoute.parentRefs.name":        {notAFlag: "the HTTPRoute"},
	"httpRoute.parentRefs.sectionName": {notAFlag: "the HTTPRoute"},
	"httpRoute.parentRefs.port":        {notAFlag: "the HTTPRoute"},
	"httpRoute.hostnames":              {notAFlag: "the HTTPRoute"},
}

// Sinks are resolved by the controller; the resolved URI is the flag.
var (
	sinkField = specField{
		set:   func(_ *cbv1.CallbackReceiver, p *Params) { p.SinkURI = "http://resolved.example/events" },
		check: func(c receiver.Config) bool { return c.Sink == "http://resolved.example/events" },
	}
	routeSinkField = specField{
		set: func(_ *cbv1.CallbackReceiver, p *Params) {
			p.Routes = []cbv1.ResolvedRoute{{Commands: []cbv1.Command{"Sns.CallbackFriendAdd"}, URI: "http://route.example/r"}}
		},
		check: func(c receiver.Config) bool {
			return len(c.Routes) == 1 && c.Routes[0].Sink == "http://route.example/r"
		},
	}
	decisionField = specField{
		set: func(_ *cbv1.CallbackReceiver, p *Params) {
			p.Decisions = []cbv1.ResolvedRoute{{Commands: []cbv1.Command{"Group.CallbackBeforeSendMsg"}, URI: "http://decide.example/"}}
		},
		check: func(c receiver.Config) bool {
			return len(c.Decisions) == 1 && c.Decisions[0].URL == "http://decide.example/"
		},
	}
	deadLetterField = specField{
		set:   func(_ *cbv1.CallbackReceiver, p *Params) { p.DeadLetterSinkURI = "http://dlq.example/dead" },
		check: func(c receiver.Config) bool { return c.DeadLetterSink == "http://dlq.example/dead" },
	}
)

func delivery(cr *cbv1.CallbackReceiver) *cbv1.DeliverySpec {
	if cr.Spec.Delivery == nil {
		cr.Spec.Delivery = &cbv1.DeliverySpec{}
	}
	return cr.Spec.Delivery
}

// TestArgsThroughTheReceiversParser feeds the arguments the manager writes through the
// receiver's own flag parser, one spec field at a time: each lands in the receiver's
// configuration, and nothing else moves from the receiver's defaults.
func TestArgsThroughTheReceiversParser(t *testing.T) {
	defaults := func(p Params) receiver.Config {
		c := receiver.DefaultConfig()
		c.SdkAppID, c.Path, c.Sink, c.DeadLetterSink = 1400000001, "/im/callback", p.SinkURI, p.DeadLetterSinkURI
		return c
	}
	got, err := receiver.ParseFlags(Args(base(), params))
	if err != nil {
		t.Fatal(err)
	}
	if want := defaults(params); !reflect.DeepEqual(got, want) {
		t.Fatalf("a minimal resource: receiver config\n  %+v\nwant its defaults\n  %+v", got, want)
	}
	for path, f := range contractFields {
		if f.notAFlag != "" {
			continue
		}
		t.Run(path, func(t *testing.T) {
			cr, p := base(), params
			f.set(cr, &p)
			got, err := receiver.ParseFlags(Args(cr, p))
			if err != nil {
				t.Fatalf("the receiver refuses the manager's flags %q: %v", Args(cr, p), err)
			}
			if !f.check(got) {
				t.Fatalf("%s did not reach the receiver: flags %q gave %+v", path, Args(cr, p), got)
			}
			// Nothing else moves from the receiver's defaults.
			if diff := differingFields(got, defaults(p)); len(diff) > max(1, f.moves) {
				t.Errorf("setting %s changed the receiver's %v", path, diff)
			}
		})
	}
}

// differingFields names the fields of two configurations that differ.
func differingFields(a, b receiver.Config) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		if va.Type().Field(i).Type.Kind() == reflect.Func {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, va.Type().Field(i).Name)
		}
	}
	return out
}

// TestEverySpecFieldIsInTheContract walks CallbackReceiverSpec: every leaf field must be
// in contractFields, and every entry there must be a field.
func TestEverySpecFieldIsInTheContract(t *testing.T) {
	leaves := map[string]bool{}
	specLeaves(reflect.TypeFor[cbv1.CallbackReceiverSpec](), "", leaves)
	for path := range leaves {
		if _, ok := contractFields[path]; !ok {
			t.Errorf("spec.%s is not in contractFields: say which receiver flag carries it, or why none does", path)
		}
	}
	for path := range contractFields {
		if !leaves[path] {
			t.Errorf("contractFields lists %s, which is not a spec field", path)
		}
	}
}

// Types that are values of their own, not structures of spec fields.
var leafTypes = map[reflect.Type]bool{
	reflect.TypeFor[metav1.Duration]():             true,
	reflect.TypeFor[corev1.ResourceRequirements](): true,
	reflect.TypeFor[resource.Quantity]():           true,
}

func specLeaves(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || leafTypes[t] {
		out[strings.TrimSuffix(prefix, ".")] = true
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		specLeaves(f.Type, prefix+name+".", out)
	}
}
