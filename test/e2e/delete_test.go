package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ownerRefs(o metav1.Object, err error) ([]metav1.OwnerReference, error) {
	if err != nil {
		return nil, err
	}
	return o.GetOwnerReferences(), nil
}

// TestDeleteCollectsChildren: deleting the CallbackReceiver removes everything the operator
// made for it (Deployment, ReplicaSet, pods and their processes, Service, ServiceAccount,
// PodDisruptionBudget) through the garbage collector, and nothing the user made.
func TestDeleteCollectsChildren(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-delete")
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, "- {op: add, path: /spec/replicas, value: 2}"}}))
	rcv := waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	cs := cluster.Client
	cr := rcv.cr

	// The children, owned by the resource.
	owned := func(refs []metav1.OwnerReference) bool {
		for _, r := range refs {
			if r.UID == cr.UID && r.Controller != nil && *r.Controller {
				return true
			}
		}
		return false
	}
	children := map[string]func() ([]metav1.OwnerReference, error){
		"Deployment": func() ([]metav1.OwnerReference, error) {
			o, err := cs.AppsV1().Deployments(ns).Get(ctx, sampleName, metav1.GetOptions{})
			return ownerRefs(o, err)
		},
		"Service": func() ([]metav1.OwnerReference, error) {
			o, err := cs.CoreV1().Services(ns).Get(ctx, sampleName, metav1.GetOptions{})
			return ownerRefs(o, err)
		},
		"ServiceAccount": func() ([]metav1.OwnerReference, error) {
			o, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, sampleName, metav1.GetOptions{})
			return ownerRefs(o, err)
		},
		"PodDisruptionBudget": func() ([]metav1.OwnerReference, error) {
			o, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, sampleName, metav1.GetOptions{})
			return ownerRefs(o, err)
		},
	}
	eventually(t, 30*time.Second, "children owned by the CallbackReceiver", func() error {
		for kind, get := range children {
			refs, err := get()
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			if !owned(refs) {
				return fmt.Errorf("%s not controlled by the CallbackReceiver: %v", kind, refs)
			}
		}
		return nil
	})
	var addrs []netip.Addr
	for _, p := range rcv.pods {
		addrs = append(addrs, netip.MustParseAddr(p.Status.PodIP))
	}

	start := time.Now()
	kubectl(t, "delete", "cbr", sampleName, "-n", ns)
	eventually(t, 2*time.Minute, "children garbage-collected", func() error {
		for kind, get := range children {
			switch _, err := get(); {
			case err == nil:
				return fmt.Errorf("%s still there", kind)
			case !apierrors.IsNotFound(err):
				return fmt.Errorf("%s: %w", kind, err)
			}
		}
		sel := metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: receiverSelector(sampleName)})
		rs, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		if len(rs.Items)+len(pods.Items) > 0 {
			return fmt.Errorf("%d ReplicaSets, %d pods left", len(rs.Items), len(pods.Items))
		}
		for _, a := range addrs {
			if slices.Contains(cluster.AllocatedPodIPs(), a) {
				return fmt.Errorf("pod address %s still in use on the node", a)
			}
		}
		return nil
	})
	t.Logf("children collected %s after kubectl delete", time.Since(start).Round(time.Millisecond))
	if out := kubectl(t, "get", "cbr", "-n", ns, "-o", "name"); out != "" {
		t.Errorf("kubectl get cbr after the delete: %q", out)
	}

	// What the user applied besides the CallbackReceiver stays.
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, sampleSink, metav1.GetOptions{}); err != nil {
		t.Errorf("sink Deployment: %v", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, sampleSecret, metav1.GetOptions{}); err != nil {
		t.Errorf("token Secret: %v", err)
	}
	waitSink(t, ns, sampleSink)
}
