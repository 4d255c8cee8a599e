// Package v1alpha1 contains the CallbackReceiver API: a receiver for Tencent Cloud IM
// third-party callbacks that forwards them to a sink as CloudEvents.
//
// +kubebuilder:object:generate=true
// +groupName=callbacks.imcallback.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "callbacks.imcallback.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &CallbackReceiver{}, &CallbackReceiverList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
