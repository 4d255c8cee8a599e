package controllers_test

import (
	"context"
	"reflect"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/receiver"
)

// TestSchemaDefaultsAreTheReceiversDefaults: the CRD's defaults (markers in api/) and the
// receiver's own defaults are two statements of the same contract. A minimal resource, as the
// API server stores it, must run the receiver exactly as the receiver's defaults say.
func TestSchemaDefaultsAreTheReceiversDefaults(t *testing.T) {
	ns := newNamespace(t)
	cr := &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "minimal", Namespace: ns},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001, Path: "/im/callback",
			Auth: &cbv1.AuthSpec{TokenSecretRef: cbv1.SecretKeySelector{Name: "t", Key: "k"}},
			Sink: &cbv1.Destination{URI: "http://sink.example/events"},
		},
	}
	must(t, k8sClient.Create(context.Background(), cr)) // filled with the schema's defaults
	got, err := receiver.ParseFlags(resources.Args(cr, resources.Params{SinkURI: "http://sink.example/events"}))
	if err != nil {
		t.Fatal(err)
	}
	want := receiver.DefaultConfig()
	want.SdkAppID, want.Path, want.Sink = 1400000001, "/im/callback", "http://sink.example/events"
	// The one schema default that is not a receiver default: the operator turns the spool on
	// (a claim of 1Gi per pod), where the receiver run by hand keeps its queue in memory.
	want.SpoolDir, want.SpoolMaxBytes = resources.SpoolMountPath, resources.ClaimSpoolMaxBytes(resources.DefaultSpoolSize)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("a defaulted resource runs the receiver with\n  %+v\nthe receiver's defaults are\n  %+v\n(flags %q)", got, want, resources.Args(cr, resources.Params{}))
	}
}

// TestDeadLetterSinkMessagesNameItsField: an unresolved dead-letter sink is reported under
// its own field, not spec.sink's.
func TestDeadLetterSinkMessagesNameItsField(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, cr := newReceiver(t, managerOptions{}, func(cr *cbv1.CallbackReceiver) {
		cr.Spec.Delivery.DeadLetterSink = &cbv1.Destination{Ref: &cbv1.KReference{APIVersion: "v1", Kind: "Service", Name: "dlq"}}
	})
	g.Eventually(func(g Gomega) {
		c := condition(get(g, ns, cr.Name, &cbv1.CallbackReceiver{}), cbv1.ConditionSinkResolved)
		g.Expect(c.Reason).To(Equal(cbv1.ReasonSinkNotFound))
		g.Expect(c.Message).To(Equal("spec.delivery.deadLetterSink: Service " + ns + "/dlq does not exist: create it, or point spec.delivery.deadLetterSink.ref at an existing one"))
	}).Should(Succeed())
}
