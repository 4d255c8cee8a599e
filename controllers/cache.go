package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcallback/callback-operator/controllers/resources"
)

// CacheOptions keep the manager small: children and their EndpointSlices (which carry the
// Service's labels) are cached only when this operator made them, Secrets are watched as
// metadata only, and managed fields other than this operator's own are dropped.
// Services are cached whole: sinks are Services of any kind.
func CacheOptions() cache.Options {
	ours := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedByValue})}
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}:            ours,
			&corev1.ServiceAccount{}:        ours,
			&policyv1.PodDisruptionBudget{}: ours,
			&discoveryv1.EndpointSlice{}:    ours,
		},
		DefaultTransform: TrimManagedFields,
	}
}
