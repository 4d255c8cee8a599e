package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestScaleWhileTrafficFlows: kubectl scale cbr 1 → 3 → 1, then a rollout, while callbacks
// flow through the Service. Every callback is answered OK, every accepted one reaches the
// sink exactly once, and the counts stay exact, the final counters of the scaled-down and
// replaced pods included.
func TestScaleWhileTrafficFlows(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-scale")
	applyK(t, ns, overlay(t, nil, nil))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)

	var next atomic.Int64
	tr := startTraffic(rcv.url(), sampleToken, &next, 4, 50*time.Millisecond)
	halted := false
	defer func() {
		if !halted {
			tr.halt()
		}
	}()
	waitOK := func(n int) {
		t.Helper()
		eventually(t, time.Minute, fmt.Sprintf("%d more callbacks answered OK", n), func() error {
			if got := tr.okCount(); got < n {
				return fmt.Errorf("%d so far", got)
			}
			return nil
		})
	}
	waitOK(50)

	start := time.Now()
	kubectl(t, "scale", "cbr", sampleName, "-n", ns, "--replicas=3")
	three := waitReceiver(t, ns, sampleName, 3, 2*time.Minute)
	t.Logf("scaled up to 3 in %s", time.Since(start).Round(time.Millisecond))
	// Each of the three pods takes part of the traffic.
	eventually(t, time.Minute, "every pod accepting callbacks", func() error {
		for _, p := range three.pods {
			m, err := podMetrics(p)
			if err != nil {
				return fmt.Errorf("pod %s: %w", p.Name, err)
			}
			if m[`imcallback_callbacks_total{outcome="accepted"}`] < 10 {
				return fmt.Errorf("pod %s accepted %v", p.Name, m[`imcallback_callbacks_total{outcome="accepted"}`])
			}
		}
		return nil
	})
	if row := getCbr(t, ns, sampleName); row["REPLICAS"] != "3" || row["READY"] != "True" {
		t.Errorf("kubectl get cbr at 3 replicas: %v", row)
	}
	// The scale subresource, as an HPA reads it.
	if out := kubectl(t, "get", "cbr", sampleName, "-n", ns, "--subresource=scale", "-o", "jsonpath={.spec.replicas} {.status.replicas} {.status.selector}"); out != "3 3 app.kubernetes.io/instance=blacklist,app.kubernetes.io/name=callback-receiver" {
		t.Errorf("scale subresource: %q", out)
	}
	// More than one replica: a PodDisruptionBudget keeps all but one through drains.
	pdb, err := cluster.Client.PolicyV1().PodDisruptionBudgets(ns).Get(t.Context(), sampleName, metav1.GetOptions{})
	if err != nil {
		t.Errorf("PodDisruptionBudget at 3 replicas: %v", err)
	} else if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v", pdb.Spec.MaxUnavailable)
	}

	start = time.Now()
	kubectl(t, "scale", "cbr", sampleName, "-n", ns, "--replicas=1")
	one := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	// The two others are gone: they drained, were read a last time, and exited.
	waitPodsGone(t, ns, three.pods, one.pods[0].Name, time.Minute)
	t.Logf("scaled down to 1 in %s", time.Since(start).Round(time.Millisecond))
	eventually(t, 30*time.Second, "PodDisruptionBudget removed at 1 replica", func() error {
		_, err := cluster.Client.PolicyV1().PodDisruptionBudgets(ns).Get(t.Context(), sampleName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		return errors.New("still there")
	})
	waitOK(tr.okCount() + 50)

	// A rollout (here a changed delivery setting; an upgrade of the operator is the same):
	// new pods first, then the old one drains.
	start = time.Now()
	kubectl(t, "patch", "cbr", sampleName, "-n", ns, "--type=merge", "-p", `{"spec":{"delivery":{"retry":4}}}`)
	waitRolled(t, ns, sampleName, one.pods, 2*time.Minute)
	waitReceiver(t, ns, sampleName, 1, time.Minute)
	t.Logf("rolled out in %s", time.Since(start).Round(time.Millisecond))
	waitOK(tr.okCount() + 50)
	tr.halt()
	halted = true

	t.Logf("traffic: %d callbacks sent, answers %v, %d answered OK", tr.sent, tr.statuses, len(tr.accepted))
	for _, err := range tr.failures {
		t.Errorf("callback not answered OK: %v", err)
	}
	if tr.statuses[http.StatusOK] != tr.sent {
		t.Errorf("%d callbacks sent, %d answered 200 OK", tr.sent, tr.statuses[http.StatusOK])
	}

	// No accepted callback lost or delivered twice.
	events := waitSinkEvents(t, ns, sampleSink, len(tr.accepted), time.Minute)
	checkEvents(t, events, tr.accepted, sampleSinkPath, nil)

	ok, unavailable := int64(len(tr.accepted)), int64(tr.statuses[http.StatusServiceUnavailable])
	waitCounts(t, ns, sampleName, cbv1.Counts{
		Received: int64(tr.sent), Accepted: ok, Unavailable: unavailable, Rejected: int64(tr.sent) - ok - unavailable,
		Delivered: ok, Pairs: ok,
	}, 30*time.Second)
	if row := getCbr(t, ns, sampleName); row["REPLICAS"] != "1" || row["READY"] != "True" {
		t.Errorf("kubectl get cbr after scaling down: %v", row)
	}
}

// waitPodsGone waits until every pod of pods but keep is deleted from the API server, which
// the node agent does only once their processes exited.
func waitPodsGone(t *testing.T, ns string, pods []corev1.Pod, keep string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "scaled-down pods gone", func() error {
		list, err := cluster.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			for _, old := range pods {
				if p.UID == old.UID && p.Name != keep {
					return fmt.Errorf("pod %s still there", p.Name)
				}
			}
		}
		return nil
	})
}
