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
	rcv = waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
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
			return fmt.Errorf("claim %s: %v", claim1, err)
		}
		if _, err := cs.BatchV1().Jobs(ns).Get(ctx, sampleName+"-drain-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Job: %v", err)
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
			return fmt.Errorf("resource: %v", err)
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
