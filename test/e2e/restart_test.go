package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/test/localcluster"
)

// TestManagerRestartKeepsCounts: the manager stops (its Deployment scaled to zero) while
// callbacks keep coming and starts again; the counts it writes afterwards are still exact,
// neither losing what the receivers counted meanwhile nor counting again what the previous
// manager had written. Not parallel: every other test shares the manager.
func TestManagerRestartKeepsCounts(t *testing.T) {
	ns := newNamespace(t, "e2e-restart")
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, "- {op: add, path: /spec/replicas, value: 2}"}}))
	rcv := waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	waitSink(t, ns, sampleSink)

	n := 0
	send := func(k int) {
		t.Helper()
		for range k {
			blacklistDelete(sampleToken, n, 1).mustAccept(t, podURL(rcv.pods[n%2]))
			n++
		}
	}
	counts := func() cbv1.Counts {
		return cbv1.Counts{Received: int64(n), Accepted: int64(n), Delivered: int64(n), Pairs: int64(n)}
	}
	send(6)
	waitCounts(t, ns, sampleName, counts(), 30*time.Second)

	ensureManager(t)
	scaleManager(t, 0)
	send(6)
	time.Sleep(2 * scrapeInterval)
	scaleManager(t, 1)
	start := time.Now()
	waitCounts(t, ns, sampleName, counts(), time.Minute)
	t.Logf("counts exact %s after the manager's restart", time.Since(start).Round(time.Millisecond))
	send(6)
	waitCounts(t, ns, sampleName, counts(), 30*time.Second)
}

// TestManagerPodDeletedDuringTraffic: the manager's pod is deleted (as a node drain or `kubectl
// delete pod` does) while callbacks flow; its Deployment starts a new pod, which takes the
// leader lease and goes on counting: the counts are exact afterwards. Not parallel.
func TestManagerPodDeletedDuringTraffic(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-mgrdelete")
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, "- {op: add, path: /spec/replicas, value: 2}"}}))
	rcv := waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	ensureManager(t)
	old := managerPods(t)
	if len(old) != 1 {
		t.Fatalf("%d manager pods, want 1", len(old))
	}
	holder := func() string {
		l, err := cluster.Client.CoordinationV1().Leases(localcluster.OperatorNamespace).List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 1 || l.Items[0].Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Items[0].Spec.HolderIdentity
	}
	eventually(t, time.Minute, "the manager pod holds the leader lease", func() error {
		if h := holder(); len(h) < len(old[0].Name) || h[:len(old[0].Name)] != old[0].Name {
			return fmt.Errorf("lease holder %q, want pod %s", h, old[0].Name)
		}
		return nil
	})

	var next atomic.Int64
	tr := startTraffic(rcv.url(), sampleToken, &next, 4, 20*time.Millisecond)
	defer func() {
		select {
		case <-tr.stop:
		default:
			tr.halt()
		}
	}()
	time.Sleep(3 * time.Second)
	if err := cluster.Client.CoreV1().Pods(localcluster.OperatorNamespace).Delete(ctx, old[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var newPod corev1.Pod
	eventually(t, 2*time.Minute, "a new manager pod, ready, holding the lease", func() error {
		pods := managerPods(t)
		i := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.UID != old[0].UID && podReady(&p) })
		if i < 0 || slices.ContainsFunc(pods, func(p corev1.Pod) bool { return p.UID == old[0].UID }) {
			return fmt.Errorf("%d pods, old one still there or no new one ready", len(pods))
		}
		newPod = pods[i]
		if h := holder(); len(h) < len(newPod.Name) || h[:len(newPod.Name)] != newPod.Name {
			return fmt.Errorf("lease holder %q", h)
		}
		return nil
	})
	t.Logf("new manager pod %s leading %s after the deletion", newPod.Name, time.Since(deleted).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	tr.halt()
	if len(tr.failures) > 0 {
		t.Fatalf("%d of %d callbacks failed, first: %v", len(tr.failures), tr.sent, tr.failures[0])
	}
	n := int64(len(tr.accepted))
	t.Logf("%d callbacks answered OK across the manager's replacement", n)
	waitSinkEvents(t, ns, sampleSink, int(n), time.Minute)
	waitCounts(t, ns, sampleName, cbv1.Counts{Received: n, Accepted: n, Delivered: n, Pairs: n}, time.Minute)
}
