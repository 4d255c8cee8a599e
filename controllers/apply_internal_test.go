package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// appliedResourceVersion reads what Apply wrote into the apply configuration; if client-go
// ever renamed the embedded metadata, it would return "" and applyChild would only lose its
// shortcut, but this says so.
func TestAppliedResourceVersion(t *testing.T) {
	if got := appliedResourceVersion(appsv1ac.Deployment("a", "ns").WithResourceVersion("42")); got != "42" {
		t.Errorf("Deployment: got %q, want 42", got)
	}
	if got := appliedResourceVersion(corev1ac.ServiceAccount("a", "ns")); got != "" {
		t.Errorf("no resourceVersion: got %q", got)
	}
	if got := appliedResourceVersion(&corev1ac.ServiceApplyConfiguration{}); got != "" {
		t.Errorf("no metadata: got %q", got)
	}
}

func TestAppliedVersions(t *testing.T) {
	var s appliedVersions
	k := seenKey{kind: "*v1.Deployment", NamespacedName: types.NamespacedName{Namespace: "ns", Name: "a"}}
	d1, _ := digestOf(appsv1ac.Deployment("a", "ns").WithLabels(map[string]string{"x": "1"}))
	d2, _ := digestOf(appsv1ac.Deployment("a", "ns").WithLabels(map[string]string{"x": "2"}))
	if s.unchanged(k, "1", d1) {
		t.Fatal("unchanged before anything was recorded")
	}
	s.record(k, "1", d1)
	if !s.unchanged(k, "1", d1) {
		t.Error("same version, same configuration: unchanged")
	}
	if s.unchanged(k, "2", d1) {
		t.Error("another version (someone changed the object): must compare")
	}
	if s.unchanged(k, "1", d2) {
		t.Error("another configuration: must compare")
	}
	s.forgetOwner(k.NamespacedName)
	if s.unchanged(k, "1", d1) {
		t.Error("forgotten with its owner")
	}
	var nilSet *appliedVersions
	nilSet.record(k, "1", d1) // a reconciler built without SetupWithManager
	if nilSet.unchanged(k, "1", d1) {
		t.Error("nil set never says unchanged")
	}
}
