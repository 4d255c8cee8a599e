package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSecretIdentityKeepsNoContent: kubectl apply stores a Secret whole in an annotation;
// the cache keeps only what tells that a Secret exists and changed.
func TestSecretIdentityKeepsNoContent(t *testing.T) {
	in := secretMetadata()
	in.ObjectMeta = metav1.ObjectMeta{
		Name: "im-callback-token", Namespace: "chat", UID: "u1", ResourceVersion: "42",
		Labels:          map[string]string{"team": "chat"},
		Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"token":"c2VjcmV0"}}`},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "x"}},
	}
	out, err := SecretIdentity(in)
	if err != nil {
		t.Fatal(err)
	}
	m := out.(*metav1.PartialObjectMetadata)
	if m.Name != "im-callback-token" || m.Namespace != "chat" || m.UID != "u1" || m.ResourceVersion != "42" {
		t.Errorf("identity lost: %+v", m.ObjectMeta)
	}
	if m.Annotations != nil || m.Labels != nil || m.ManagedFields != nil || m.OwnerReferences != nil {
		t.Errorf("the cache would hold %+v", m.ObjectMeta)
	}
	if m.GetObjectKind().GroupVersionKind().Kind != "Secret" {
		t.Error("the kind was lost")
	}
}
