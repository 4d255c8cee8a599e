package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// namedApply is an apply configuration that knows its object's name.
type namedApply interface {
	runtime.ApplyConfiguration
	GetName() *string
	GetNamespace() *string
}

// applyChild server-side applies desired, unless the fields this manager applied before
// already hold exactly these values: re-reconciling an unchanged resource sends nothing.
// The comparison uses the object's managed fields, so a field someone else changed or took
// over is applied again. It returns "Created", "Updated" or "" (nothing to do).
//
// seen skips the comparison (extracting the managed fields is most of a reconcile's CPU
// and garbage) when the child is still at the resourceVersion that the last apply or
// comparison of the same configuration left it at: then nothing can differ.
func applyChild[T client.Object, A namedApply](ctx context.Context, c client.Client, seen *appliedVersions, live T, desired A, extract func(T, string) (A, error)) (string, error) {
	key := types.NamespacedName{Namespace: *desired.GetNamespace(), Name: *desired.GetName()}
	sk := seenKey{kind: fmt.Sprintf("%T", live), NamespacedName: key}
	digest, digestErr := digestOf(desired)
	action := "Updated"
	switch err := c.Get(ctx, key, live); {
	case apierrors.IsNotFound(err):
		action = "Created"
	case err != nil:
		return "", err
	default:
		if digestErr == nil && seen.unchanged(sk, live.GetResourceVersion(), digest) {
			return "", nil
		}
		applied, err := extract(live, FieldManager)
		if err == nil && sameJSON(applied, desired) {
			if digestErr == nil {
				seen.record(sk, live.GetResourceVersion(), digest)
			}
			return "", nil
		}
	}
	if err := c.Apply(ctx, desired, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		seen.forget(sk)
		return "", err
	}
	// Apply filled desired with the object as the API server stored it.
	if rv := appliedResourceVersion(desired); digestErr == nil && rv != "" {
		seen.record(sk, rv, digest)
	} else {
		seen.forget(sk)
	}
	return action, nil
}

// appliedVersions remembers, per child, the resourceVersion at which it was last found to
// hold (or was applied with) a configuration, and that configuration's digest.
type appliedVersions struct {
	mu sync.Mutex
	m  map[seenKey]seenVersion
}

type seenKey struct {
	kind string
	types.NamespacedName
}

type seenVersion struct {
	resourceVersion string
	digest          [sha256.Size]byte
}

func (s *appliedVersions) unchanged(k seenKey, rv string, digest [sha256.Size]byte) bool {
	if s == nil || rv == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return ok && v.resourceVersion == rv && v.digest == digest
}

func (s *appliedVersions) record(k seenKey, rv string, digest [sha256.Size]byte) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[seenKey]seenVersion{}
	}
	s.m[k] = seenVersion{resourceVersion: rv, digest: digest}
}

func (s *appliedVersions) forget(k seenKey) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}

// forgetOwner drops what is remembered of the children of a resource that is gone (they
// share its namespace and name).
func (s *appliedVersions) forgetOwner(key types.NamespacedName) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if k.NamespacedName == key {
			delete(s.m, k)
		}
	}
}

func digestOf(ac any) ([sha256.Size]byte, error) {
	b, err := json.Marshal(ac)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// appliedResourceVersion reads metadata.resourceVersion from an apply configuration that
// Apply filled with the response (the typed apply configurations embed
// *ObjectMetaApplyConfiguration, which has no getter for it).
func appliedResourceVersion(ac any) string {
	v := reflect.ValueOf(ac)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return ""
	}
	f := v.FieldByName("ObjectMetaApplyConfiguration")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		return ""
	}
	om, ok := f.Interface().(*metav1ac.ObjectMetaApplyConfiguration)
	if !ok || om.ResourceVersion == nil {
		return ""
	}
	return *om.ResourceVersion
}

// fromApplied converts an apply configuration that Apply filled with the API server's
// response into the object it describes.
func fromApplied(ac any, into client.Object) error {
	b, err := json.Marshal(ac)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

// sameJSON compares two apply configurations as the API server would see them.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var ma, mb any
	if json.Unmarshal(ja, &ma) != nil || json.Unmarshal(jb, &mb) != nil {
		return false
	}
	return reflect.DeepEqual(ma, mb)
}

// TrimManagedFields is a cache transform that keeps, of each object's managed fields, only
// this operator's own applied set, which applyChild compares with; the rest is memory the
// manager would hold for nothing.
func TrimManagedFields(in any) (any, error) {
	o, ok := in.(metav1.Object)
	if !ok {
		return in, nil
	}
	mf := o.GetManagedFields()
	if len(mf) == 0 {
		return in, nil
	}
	kept := mf[:0:0]
	for _, e := range mf {
		if e.Manager == FieldManager && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == "" {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		kept = nil
	}
	o.SetManagedFields(kept)
	return in, nil
}
