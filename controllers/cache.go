package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcallback/callback-operator/controllers/resources"
)

// CacheOptions keep the manager small and hold nothing it does not need: children and their
// EndpointSlices (which carry the Service's labels) are cached only when this operator made
// them, Secrets are watched as metadata only and stripped to their identity (their
// annotations can hold the whole Secret: kubectl apply's last-applied-configuration), and
// managed fields other than this operator's own are dropped. Services are cached whole:
// sinks are Services of any kind. With namespaces, the cache (and so every watch) is
// limited to them.
func CacheOptions(namespaces ...string) cache.Options {
	ours := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedByValue})}
	o := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}:            ours,
			&appsv1.StatefulSet{}:           ours,
			&batchv1.Job{}:                  ours,
			&corev1.PersistentVolumeClaim{}: ours,
			&corev1.ServiceAccount{}:        ours,
			&policyv1.PodDisruptionBudget{}: ours,
			&networkingv1.Ingress{}:         ours,
			&discoveryv1.EndpointSlice{}:    ours,
			secretMetadata():                {Transform: SecretIdentity},
		},
		DefaultTransform: TrimManagedFields,
	}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}

func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// SecretIdentity is the cache transform of Secret metadata: the reconciler needs to know
// that a Secret exists and when it changed (name, namespace, uid, resourceVersion), nothing
// else.
func SecretIdentity(in any) (any, error) {
	m, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	m.ObjectMeta = metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}
	return m, nil
}
