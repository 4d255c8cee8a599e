package controllers

import (
	"context"
	"encoding/json"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
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
func applyChild[T client.Object, A namedApply](ctx context.Context, c client.Client, live T, desired A, extract func(T, string) (A, error)) (string, error) {
	key := types.NamespacedName{Namespace: *desired.GetNamespace(), Name: *desired.GetName()}
	action := "Updated"
	switch err := c.Get(ctx, key, live); {
	case apierrors.IsNotFound(err):
		action = "Created"
	case err != nil:
		return "", err
	default:
		applied, err := extract(live, FieldManager)
		if err == nil && sameJSON(applied, desired) {
			return "", nil
		}
	}
	if err := c.Apply(ctx, desired, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return "", err
	}
	return action, nil
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
