// Package sink resolves a CallbackReceiver's Destination (a Service, any Addressable object,
// a URI, or an object plus a relative URI) to the URI events are sent to.
package sink

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// Error says why a destination did not resolve, in words for a condition; Reason is one of
// the SinkResolved reasons of the API (cbv1.ReasonSink*).
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Resolver resolves destinations.
type Resolver struct {
	// Services reads Services, normally from the manager's cache.
	Services client.Reader
	// Objects reads any other kind; normally the uncached API reader, as Addressables of
	// arbitrary kinds are not cached.
	Objects client.Reader
	// ClusterDomain is the cluster's DNS domain, cluster.local by default.
	ClusterDomain string
}

// Ref is what a destination's ref points at.
type Ref struct {
	GVK       schema.GroupVersionKind
	Namespace string
	Name      string
}

// IndexKey identifies the referent regardless of its API version, for field indexes: a
// change to any version of the object concerns the resources that point at it.
func (r Ref) IndexKey() string { return IndexKey(r.GVK.GroupKind(), r.Namespace, r.Name) }

// IndexKey is the index key of an object of group kind gk.
func IndexKey(gk schema.GroupKind, namespace, name string) string {
	return gk.String() + "/" + namespace + "/" + name
}

// RefOf returns the referent of d for a resource in namespace ns, if d has a ref.
func RefOf(ns string, d *cbv1.Destination) (Ref, bool) {
	if d == nil || d.Ref == nil {
		return Ref{}, false
	}
	gv, err := schema.ParseGroupVersion(d.Ref.APIVersion)
	if err != nil {
		return Ref{}, false
	}
	refNS := d.Ref.Namespace
	if refNS == "" {
		refNS = ns
	}
	return Ref{GVK: gv.WithKind(d.Ref.Kind), Namespace: refNS, Name: d.Ref.Name}, true
}

// Resolve returns the URI of d for a resource in namespace ns; field is where d stands in
// the resource (such as spec.sink), for the messages. Errors are *Error when the user can fix
// them, other errors are transient.
func (r *Resolver) Resolve(ctx context.Context, ns, field string, d *cbv1.Destination) (string, error) {
	ref, hasRef := RefOf(ns, d)
	if !hasRef {
		if d != nil && d.Ref != nil {
			return "", &Error{cbv1.ReasonSinkInvalid, fmt.Sprintf("%s.ref.apiVersion %q is not a valid API version", field, d.Ref.APIVersion)}
		}
		u, err := url.Parse(d.URI)
		if err != nil || !u.IsAbs() || u.Host == "" {
			return "", &Error{cbv1.ReasonSinkInvalid, fmt.Sprintf("%s.uri %q is not an absolute URL", field, d.URI)}
		}
		return u.String(), nil
	}

	var base *url.URL
	var err error
	if ref.GVK.Group == "" && ref.GVK.Kind == "Service" {
		base, err = r.service(ctx, field, ref)
	} else {
		base, err = r.addressable(ctx, field, ref)
	}
	if err != nil {
		return "", err
	}
	if d.URI == "" {
		return base.String(), nil
	}
	rel, err := url.Parse(d.URI)
	if err != nil {
		return "", &Error{cbv1.ReasonSinkInvalid, fmt.Sprintf("%s.uri %q is not a valid path: %v", field, d.URI, err)}
	}
	return base.ResolveReference(rel).String(), nil
}

func (r *Resolver) service(ctx context.Context, field string, ref Ref) (*url.URL, error) {
	svc := &corev1.Service{}
	if err := r.Services.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &Error{cbv1.ReasonSinkNotFound, fmt.Sprintf("%s: Service %s/%s does not exist: create it, or point %s.ref at an existing one", field, ref.Namespace, ref.Name, field)}
		}
		return nil, err
	}
	port, ok := servicePort(svc)
	if !ok {
		return nil, &Error{cbv1.ReasonSinkPortAmbiguous, fmt.Sprintf("%s: Service %s/%s has %d ports and none is 80 or named http: name the port for events http", field, svc.Namespace, svc.Name, len(svc.Spec.Ports))}
	}
	host := fmt.Sprintf("%s.%s.svc.%s", svc.Name, svc.Namespace, r.domain())
	if port != 80 {
		host += ":" + strconv.Itoa(int(port))
	}
	return &url.URL{Scheme: "http", Host: host}, nil
}

// servicePort picks the port events go to: the only one, else port 80, else the one named
// http; false when none of these is there.
func servicePort(svc *corev1.Service) (int32, bool) {
	ports := svc.Spec.Ports
	switch {
	case len(ports) == 1:
		return ports[0].Port, true
	case len(ports) == 0:
		// A headless Service without ports: plain HTTP on 80.
		return 80, true
	}
	for _, p := range ports {
		if p.Port == 80 {
			return 80, true
		}
	}
	for _, p := range ports {
		if p.Name == "http" {
			return p.Port, true
		}
	}
	return 0, false
}

func (r *Resolver) addressable(ctx context.Context, field string, ref Ref) (*url.URL, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ref.GVK)
	err := r.Objects.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u)
	switch {
	case meta.IsNoMatchError(err):
		return nil, &Error{cbv1.ReasonSinkKindUnknown, fmt.Sprintf("%s: the cluster serves no kind %s in %s: check %s.ref", field, ref.GVK.Kind, ref.GVK.GroupVersion(), field)}
	case apierrors.IsNotFound(err):
		return nil, &Error{cbv1.ReasonSinkNotFound, fmt.Sprintf("%s: %s %s/%s does not exist: create it, or fix %s.ref", field, ref.GVK.Kind, ref.Namespace, ref.Name, field)}
	case apierrors.IsForbidden(err):
		return nil, &Error{cbv1.ReasonSinkForbidden, fmt.Sprintf("%s: the operator may not read %s: bind a ClusterRole that grants get, list and watch on it and carries the label duck.knative.dev/addressable=true", field, ref.GVK.GroupKind())}
	case err != nil:
		return nil, err
	}
	raw, found, _ := unstructured.NestedString(u.Object, "status", "address", "url")
	if !found || raw == "" {
		return nil, &Error{cbv1.ReasonSinkNotAddressable, fmt.Sprintf("%s: %s %s/%s has no status.address.url yet: wait until it is ready, or point %s.ref at an Addressable", field, ref.GVK.Kind, ref.Namespace, ref.Name, field)}
	}
	base, err := url.Parse(raw)
	if err != nil || !base.IsAbs() {
		return nil, &Error{cbv1.ReasonSinkNotAddressable, fmt.Sprintf("%s: %s %s/%s has an invalid status.address.url %q", field, ref.GVK.Kind, ref.Namespace, ref.Name, raw)}
	}
	return base, nil
}

func (r *Resolver) domain() string {
	if r.ClusterDomain == "" {
		return "cluster.local"
	}
	return r.ClusterDomain
}
