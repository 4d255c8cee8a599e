package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestSpoolKeepsCallbacksThroughSIGKILL: with the spool on (the default: an emptyDir),
// callbacks answered OK while the sink is down are on disk, not only in memory. The
// receiver's process is SIGKILLed; the kubelet restarts it in the same pod, which finds them
// in its spool and, once the sink is back, delivers every one of them exactly once, as the
// same CloudEvents.
func TestSpoolKeepsCallbacksThroughSIGKILL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-spool")
	applyK(t, ns, overlay(t, nil, nil))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	pod := rcv.pods[0]
	if args := strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(args, "--spool-dir=/var/spool/imcallback") {
		t.Fatalf("the receiver runs without a spool: %s", args)
	}

	scaleDeployment(t, ns, sampleSink, 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": sampleSink}, time.Minute)
	var sent []callback
	for i := range 40 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, rcv.url())
		sent = append(sent, c)
	}
	eventually(t, 30*time.Second, "the accepted callbacks waiting in the spool", func() error {
		cr, err := getCR(t, ns, sampleName)
		if err != nil {
			return err
		}
		if sp := cr.Status.Spool; sp == nil || sp.Events != int64(len(sent)) || cr.Status.Counts.Accepted != int64(len(sent)) {
			return fmt.Errorf("spool %+v, counts %+v", cr.Status.Spool, cr.Status.Counts)
		}
		return nil
	})
	// The files are on the node's disk, in the pod's emptyDir, not in the container.
	if files, err := os.ReadDir(cluster.PodVolumeDir(&pod, "spool")); err != nil || len(files) == 0 {
		t.Fatalf("the spool's emptyDir on the node holds %d files (%v)", len(files), err)
	}

	killContainer(t, &pod, "receiver")
	eventually(t, time.Minute, "receiver container restarted in the same pod", func() error {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := p.Status.ContainerStatuses[0]
		if st.RestartCount < 1 || !podReady(p) {
			return fmt.Errorf("restartCount %d, ready %v", st.RestartCount, podReady(p))
		}
		return nil
	})
	rcv = waitReceiver(t, ns, sampleName, 1, time.Minute)
	if rcv.pods[0].UID != pod.UID {
		t.Fatalf("the receiver runs in pod %s now, want the same pod %s restarted", rcv.pods[0].Name, pod.Name)
	}
	m, err := podMetrics(rcv.pods[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := m["imcallback_replayed_total"]; got != float64(len(sent)) {
		t.Errorf("the restarted receiver found %v events in its spool, want %d", got, len(sent))
	}

	scaleDeployment(t, ns, sampleSink, 1)
	waitSink(t, ns, sampleSink)
	// Exactly once each (none was delivered before the kill), same ids, original times.
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, len(sent), 2*time.Minute), sent, sampleSinkPath, nil)
	waitCounts(t, ns, sampleName, cbv1.Counts{Received: int64(len(sent)), Accepted: int64(len(sent)), Delivered: int64(len(sent)), Pairs: int64(len(sent))}, time.Minute)
	eventually(t, 30*time.Second, "the spool empty", func() error {
		cr, err := getCR(t, ns, sampleName)
		if err != nil {
			return err
		}
		if sp := cr.Status.Spool; sp == nil || sp.Events != 0 {
			return fmt.Errorf("spool %+v", sp)
		}
		return nil
	})
}
