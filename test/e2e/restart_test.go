package e2e

import (
	"testing"
	"time"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestManagerRestartKeepsCounts: the manager stops while callbacks keep coming and starts
// again; the counts it writes afterwards are still exact, neither losing what the receivers
// counted meanwhile nor counting again what the previous manager had written. Not parallel:
// every other test shares the manager.
func TestManagerRestartKeepsCounts(t *testing.T) {
	ns := newNamespace(t, "e2e-restart")
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, "- {op: add, path: /spec/replicas, value: 2}"}}))
	rcv := waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	waitAvailable(t, ns, sampleSink, 1, time.Minute)

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

	cluster.StopManager()
	restarted := false
	defer func() {
		if !restarted {
			if err := startManager(); err != nil {
				t.Errorf("restarting the manager: %v", err)
			}
		}
	}()
	send(6)
	time.Sleep(2 * scrapeInterval)
	if err := startManager(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	start := time.Now()
	waitCounts(t, ns, sampleName, counts(), time.Minute)
	t.Logf("counts exact %s after the manager's restart", time.Since(start).Round(time.Millisecond))
	send(6)
	waitCounts(t, ns, sampleName, counts(), 30*time.Second)
}
