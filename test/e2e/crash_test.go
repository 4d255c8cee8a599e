package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestReceiverCrashCountsOnce: a receiver process killed without warning (SIGKILL, sent to
// the container's process on the node) is restarted by the kubelet in the same pod as a new
// incarnation; the resource is Ready again; what the old one counted and was read stays
// counted once, and the new one's counts add up from zero.
func TestReceiverCrashCountsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-crash")
	applyK(t, ns, overlay(t, nil, nil))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	pod := rcv.pods[0]

	n := 0
	send := func(k int) {
		t.Helper()
		for range k {
			blacklistDelete(sampleToken, n, 1).mustAccept(t, rcv.url())
			n++
		}
	}
	counts := func() cbv1.Counts {
		return cbv1.Counts{Received: int64(n), Accepted: int64(n), Delivered: int64(n), Pairs: int64(n)}
	}
	send(5)
	waitCounts(t, ns, sampleName, counts(), 30*time.Second)
	before, err := getCR(t, ns, sampleName)
	if err != nil {
		t.Fatal(err)
	}

	killContainer(t, &pod, "receiver")
	eventually(t, time.Minute, "receiver container restarted", func() error {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := p.Status.ContainerStatuses[0]
		if st.RestartCount < 1 || !podReady(p) {
			return fmt.Errorf("restartCount %d, ready %v", st.RestartCount, podReady(p))
		}
		if last := st.LastTerminationState.Terminated; last == nil || last.ExitCode != 137 || last.Reason != "Error" {
			return fmt.Errorf("last termination %+v, want exit code 137 (SIGKILL)", last)
		}
		return nil
	})
	rcv = waitReceiver(t, ns, sampleName, 1, time.Minute)
	if rcv.pods[0].UID != pod.UID {
		t.Errorf("the receiver runs in pod %s now, want the same pod %s restarted", rcv.pods[0].Name, pod.Name)
	}

	send(5)
	waitSinkEvents(t, ns, sampleSink, n, 30*time.Second)
	waitCounts(t, ns, sampleName, counts(), 30*time.Second)
	after, err := getCR(t, ns, sampleName)
	if err != nil {
		t.Fatal(err)
	}
	// The killed incarnation is retired: only the running process is tracked.
	if len(before.Status.Incarnations) != 1 || len(after.Status.Incarnations) != 1 ||
		before.Status.Incarnations[0].ID == after.Status.Incarnations[0].ID {
		t.Errorf("incarnations before the crash %+v, after %+v: want one each, different", before.Status.Incarnations, after.Status.Incarnations)
	}
}
