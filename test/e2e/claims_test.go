package e2e

// End-to-end tests of the default spool, a claim per receiver pod on a StatefulSet, on the
// local cluster's StorageClass (test/localcluster's provisioner): every callback answered OK
// while the sink is down reaches the sink once it is back, whatever happens to the pods.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcallback/callback-operator/test/localcluster"
)

// TestClaimsKeepTheBacklogThroughRolloutAndScaleDown: the sample as shipped (2 replicas, a
// claim each). With the sink down: callbacks answered OK, then a rollout from a spec change
// while a client sends a callback every 20 ms through the Service (no refused connection, no
// 503), then a scale-down to 1 whose stranded claim is shown and drained by a Job; the sink
// comes back and receives every OK'd callback exactly once; the drained claim is deleted.
func TestClaimsKeepTheBacklogThroughRolloutAndScaleDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := cluster.Client
	ns := newNamespace(t, "e2e-claims")
	applyK(t, ns, samplesOnClaims(t, nil, nil))
	rcv := waitReceiver(t, ns, sampleName, 2, 3*time.Minute)
	waitSink(t, ns, sampleSink)
	if _, err := cs.AppsV1().StatefulSets(ns).Get(ctx, sampleName, metav1.GetOptions{}); err != nil {
		t.Fatalf("the receivers' StatefulSet: %v", err)
	}
	for i := range 2 {
		pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, fmt.Sprintf("spool-%s-%d", sampleName, i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != localcluster.StorageClassName {
			t.Fatalf("claim %s: phase %s, class %v", pvc.Name, pvc.Status.Phase, pvc.Spec.StorageClassName)
		}
	}

	scaleDeployment(t, ns, sampleSink, 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": sampleSink}, time.Minute)
	var sent []callback
	for i := range 60 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, rcv.url())
		sent = append(sent, c)
	}

	// 1. A rollout from a spec change, under a callback every 20 ms through the Service.
	var next atomic.Int64
	next.Store(1000)
	tr := startTraffic(rcv.url(), sampleToken, &next, 1, 20*time.Millisecond)
	start := time.Now()
	kubectl(t, "patch", "cbr", sampleName, "-n", ns, "--type=merge", "-p", `{"spec":{"delivery":{"retry":5}}}`)
	waitRolled(t, ns, sampleName, rcv.pods, 5*time.Minute)
	waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	t.Logf("rollout of 2 pods with the sink down took %s", time.Since(start).Round(time.Second))
	time.Sleep(2 * time.Second)
	tr.halt()
	t.Logf("traffic through the rollout: %d sent, answers %v", tr.sent, tr.statuses)
	for _, err := range tr.failures {
		t.Errorf("during the rollout: %v", err)
	}
	if tr.statuses[http.StatusOK] != tr.sent || tr.sent < 100 {
		t.Errorf("%d callbacks sent during the rollout, %d answered 200 OK", tr.sent, tr.statuses[http.StatusOK])
	}
	sent = append(sent, tr.accepted...)

	// 2. Scale 2 -> 1: the claim of ordinal 1 is stranded, shown, and drained by a Job.
	kubectl(t, "scale", "cbr", sampleName, "-n", ns, "--replicas=1")
	claim1 := "spool-" + sampleName + "-1"
	eventually(t, 2*time.Minute, "the stranded claim in kubectl get cbr", func() error {
		if row := getCbr(t, ns, sampleName); !strings.Contains(row["STRANDED"], claim1) {
			return fmt.Errorf("kubectl get cbr: %v", row)
		}
		return nil
	})
	eventually(t, 2*time.Minute, "the drain Job", func() error {
		_, err := cs.BatchV1().Jobs(ns).Get(ctx, sampleName+"-drain-1", metav1.GetOptions{})
		return err
	})

	// 3. The sink is back: every OK'd callback arrives once, the drained claim goes.
	scaleDeployment(t, ns, sampleSink, 1)
	waitSink(t, ns, sampleSink)
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, len(sent), 4*time.Minute), sent, sampleSinkPath, nil)
	eventually(t, 2*time.Minute, "the drained claim and its Job deleted", func() error {
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim1, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("claim %s: %w", claim1, err)
		}
		if _, err := cs.BatchV1().Jobs(ns).Get(ctx, sampleName+"-drain-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("job: %w", err)
		}
		cr, err := getCR(t, ns, sampleName)
		if err != nil {
			return err
		}
		if len(cr.Status.StrandedSpools) != 0 {
			return fmt.Errorf("stranded %+v", cr.Status.StrandedSpools)
		}
		return nil
	})
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "spool-"+sampleName+"-0", metav1.GetOptions{}); err != nil {
		t.Errorf("the claim of the kept pod: %v", err)
	}

	// 4. Deleting the resource drains and deletes the last claim before it goes.
	kubectl(t, "delete", "cbr", sampleName, "-n", ns, "--wait=false")
	eventually(t, 3*time.Minute, "the resource and its claims gone", func() error {
		if _, err := getCR(t, ns, sampleName); !apierrors.IsNotFound(err) {
			return fmt.Errorf("resource: %w", err)
		}
		l, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(l.Items) != 0 {
			return fmt.Errorf("%d claims left", len(l.Items))
		}
		return nil
	})
}

// TestClaimsKeepTheBacklogThroughDeletionEvictionAndSinkChange: with the sink down and
// callbacks answered OK, every receiver pod is deleted, then one is evicted through the
// Eviction API (the PodDisruptionBudget allows one), then a rollout points spec.sink at a
// second, working sink: the whole backlog arrives there, exactly once.
func TestClaimsKeepTheBacklogThroughDeletionEvictionAndSinkChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := cluster.Client
	ns := newNamespace(t, "e2e-claims-moves")
	const second = "archive"
	applyK(t, ns, samplesOnClaims(t, map[string]string{"archive.yaml": extraSink(t, second)}, nil))
	rcv := waitReceiver(t, ns, sampleName, 2, 3*time.Minute)
	waitSink(t, ns, sampleSink)
	waitSink(t, ns, second)

	scaleDeployment(t, ns, sampleSink, 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": sampleSink}, time.Minute)
	var sent []callback
	accept := func(from, n int) {
		for i := from; i < from+n; i++ {
			c := blacklistDelete(sampleToken, i, 1)
			c.mustAccept(t, rcv.url())
			sent = append(sent, c)
		}
	}
	accept(0, 40)

	// Every receiver pod deleted at once: the StatefulSet makes them again, on their claims.
	sel := metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: receiverSelector(sampleName)})
	kubectl(t, "delete", "pod", "-n", ns, "-l", sel, "--wait=false")
	waitRolled(t, ns, sampleName, rcv.pods, 3*time.Minute)
	rcv = waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	accept(100, 20)

	// One pod evicted as a node drain does.
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: rcv.pods[0].Name, Namespace: ns}}
	eventually(t, time.Minute, "the eviction admitted", func() error {
		return cs.PolicyV1().Evictions(ns).Evict(ctx, ev)
	})
	eventually(t, 3*time.Minute, "the evicted pod replaced", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, rcv.pods[0].Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID == rcv.pods[0].UID || !podReady(p) {
			return fmt.Errorf("pod %s not replaced yet", p.Name)
		}
		return nil
	})
	rcv = waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	accept(200, 20)

	// A rollout to a second, working sink: the backlog goes there.
	kubectl(t, "patch", "cbr", sampleName, "-n", ns, "--type=merge", "-p", `{"spec":{"sink":{"ref":{"name":"`+second+`"}}}}`)
	checkEvents(t, waitSinkEvents(t, ns, second, len(sent), 4*time.Minute), sent, sampleSinkPath, nil)
}

// TestEmptyDirRolloutWithinTheDrainTimeout: with type EmptyDir and a drainTimeout of 90 s,
// a rollout while the sink is down for less than that costs nothing: the terminating pod
// keeps delivering and the sink receives every OK'd callback once it is back.
func TestEmptyDirRolloutWithinTheDrainTimeout(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-emptydir-drain")
	applyK(t, ns, samplesOnClaims(t, nil, []kpatch{{"CallbackReceiver", sampleName, `
- {op: add, path: /spec/spool, value: {type: EmptyDir, drainTimeout: 90s}}
- {op: add, path: /spec/replicas, value: 1}`}}))
	rcv := waitReceiver(t, ns, sampleName, 1, 3*time.Minute)
	waitSink(t, ns, sampleSink)
	if g := *rcv.pods[0].Spec.TerminationGracePeriodSeconds; g != 100 {
		t.Errorf("grace period %d, want the drain and 10 s", g)
	}
	scaleDeployment(t, ns, sampleSink, 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": sampleSink}, time.Minute)
	var sent []callback
	for i := range 30 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, rcv.url())
		sent = append(sent, c)
	}
	kubectl(t, "patch", "cbr", sampleName, "-n", ns, "--type=merge", "-p", `{"spec":{"delivery":{"retry":5}}}`)
	old := rcv.pods[0]
	eventually(t, 2*time.Minute, "the old pod terminating, a new one ready", func() error {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(context.Background(), old.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("the old pod is gone before the sink is back: %w", err)
		}
		if p.DeletionTimestamp == nil {
			return fmt.Errorf("pod %s not terminating yet", p.Name)
		}
		return nil
	})
	// The old pod still holds the backlog, delivering; the sink comes back within the drain.
	time.Sleep(10 * time.Second)
	scaleDeployment(t, ns, sampleSink, 1)
	waitSink(t, ns, sampleSink)
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, len(sent), 2*time.Minute), sent, sampleSinkPath, nil)
}

// TestMigrationFromEmptyDirWithABacklog: a resource on EmptyDir (drainTimeout 90 s) holding
// callbacks its sink has not taken moves to claims: the StatefulSet starts next to the
// Deployment, the Deployment goes once every StatefulSet pod is ready, its pods deliver their
// backlog while they stop, and the sink, back within the drain, receives every OK'd callback.
func TestMigrationFromEmptyDirWithABacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := cluster.Client
	ns := newNamespace(t, "e2e-migrate")
	applyK(t, ns, samplesOnClaims(t, nil, []kpatch{{"CallbackReceiver", sampleName, `
- {op: add, path: /spec/spool, value: {type: EmptyDir, drainTimeout: 90s}}`}}))
	rcv := waitReceiver(t, ns, sampleName, 2, 3*time.Minute)
	waitSink(t, ns, sampleSink)
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, sampleName, metav1.GetOptions{}); err != nil {
		t.Fatalf("EmptyDir runs as a Deployment: %v", err)
	}
	scaleDeployment(t, ns, sampleSink, 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": sampleSink}, time.Minute)
	var sent []callback
	for i := range 40 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, rcv.url())
		sent = append(sent, c)
	}
	kubectl(t, "patch", "cbr", sampleName, "-n", ns, "--type=merge", "-p", `{"spec":{"spool":{"type":"PersistentVolumeClaim","drainTimeout":null}}}`)
	eventually(t, 2*time.Minute, "the Deployment replaced by the StatefulSet", func() error {
		if _, err := cs.AppsV1().Deployments(ns).Get(ctx, sampleName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment still there: %w", err)
		}
		return nil
	})
	time.Sleep(10 * time.Second) // the old pods hold the backlog, delivering
	scaleDeployment(t, ns, sampleSink, 1)
	waitSink(t, ns, sampleSink)
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, len(sent), 2*time.Minute), sent, sampleSinkPath, nil)
	waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
}
