package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestReceiverOOMKilledRestartsInPlace: a receiver pushed over its (small) memory limit is
// killed by the kernel (OOMKilled, exit code 137), restarted by the kubelet in the same pod,
// and the resource is Ready again. Nothing it answered OK is lost: the restarted process
// finds the callbacks in its spool (the pod's emptyDir) and delivers every one once the sink
// is back. The counts stay consistent: what was read before the kill stays counted (never
// less), the new process counts from zero on top of it.
func TestReceiverOOMKilledRestartsInPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-oom")
	const limit = 40 << 20
	// Events wait long between attempts, so that while the sink is away every accepted
	// callback stays in the receiver's memory.
	// The sink keeps what it received in memory: room for the large callbacks, and only the
	// last two kept for GET /events (its total counts them all).
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, `
- {op: add, path: /spec/resources, value: {requests: {cpu: 50m, memory: 40Mi}, limits: {memory: 40Mi}}}
- {op: add, path: /spec/delivery, value: {retry: 20, backoffDelay: 10s}}`}, {"Deployment", sampleSink, `
- {op: replace, path: /spec/template/spec/containers/0/resources/limits/memory, value: 512Mi}
- {op: add, path: /spec/template/spec/containers/0/args, value: [--max-events=2]}`}}))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	pod := rcv.pods[0]
	if got := cgroupFile(t, &pod, "receiver", "memory", "memory.limit_in_bytes"); got != fmt.Sprint(limit) {
		t.Fatalf("memory.limit_in_bytes of the receiver's cgroup: %s, want %d", got, limit)
	}

	var sent []callback
	for i := range 3 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, rcv.url())
		sent = append(sent, c)
	}
	waitCounts(t, ns, sampleName, cbv1.Counts{Received: 3, Accepted: 3, Delivered: 3, Pairs: 3}, 30*time.Second)

	scaleDeployment(t, ns, sampleSink, 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": sampleSink}, time.Minute)
	note := strings.Repeat("x", 900<<10)
	var maxSeen cbv1.Counts
	accepted, oomKilled := 0, false
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < 300 && !oomKilled && time.Now().Before(deadline); i++ {
		body := fmt.Sprintf(`{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"big-%d","To_Account":"peer"}],"Note":"%s"}`, i, note)
		c := signedCallback(sampleToken, sampleAppID, cmdBlackListDelete, []byte(body), time.Now())
		status, _, err := c.send(rcv.url())
		if err == nil && status == http.StatusOK {
			accepted++
			sent = append(sent, c)
		}
		if cr, err := getCR(t, ns, sampleName); err == nil && cr.Status.Counts.Accepted > maxSeen.Accepted {
			maxSeen = cr.Status.Counts
		}
		p := currentPod(t, ns, pod.Name)
		if st := p.Status.ContainerStatuses[0]; st.LastTerminationState.Terminated != nil || st.State.Terminated != nil {
			oomKilled = true
		}
	}
	if !oomKilled {
		t.Fatalf("the receiver was not killed after %d callbacks of 900 KiB (limit %d)", accepted, limit)
	}
	t.Logf("the receiver died after %d large callbacks were accepted; status counted %d of them before", accepted, maxSeen.Accepted-3)

	eventually(t, 2*time.Minute, "receiver OOMKilled and restarted in the same pod", func() error {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := p.Status.ContainerStatuses[0]
		last := st.LastTerminationState.Terminated
		if last == nil || last.Reason != "OOMKilled" || last.ExitCode != 137 {
			return fmt.Errorf("last termination %+v, want OOMKilled with exit code 137", last)
		}
		if st.RestartCount < 1 || !podReady(p) {
			return fmt.Errorf("restartCount %d, ready %v", st.RestartCount, podReady(p))
		}
		return nil
	})
	scaleDeployment(t, ns, sampleSink, 1)
	waitSink(t, ns, sampleSink)
	rcv = waitReceiver(t, ns, sampleName, 1, time.Minute)
	if rcv.pods[0].UID != pod.UID {
		t.Fatalf("the receiver runs in pod %s now, want the same pod %s restarted", rcv.pods[0].Name, pod.Name)
	}

	// Nothing lost: every callback answered OK, also those the killed process held, reaches
	// the sink, once (the sink's new pod counts what it received since it started: all but
	// the first 3; none delivered twice, as none was delivered before the kill).
	want := len(sent) - 3
	eventually(t, 2*time.Minute, fmt.Sprintf("%d large events at the sink", want), func() error {
		r, err := sinkEvents(t, ns, sampleSink)
		if err != nil {
			return err
		}
		if r.Total != want {
			return fmt.Errorf("%d events", r.Total)
		}
		return nil
	})

	// Consistent: nothing counted before the kill is lost or counted twice; the restarted
	// process counts as delivered what it replayed from the spool.
	var c cbv1.Counts
	eventually(t, time.Minute, "counts consistent after the kill", func() error {
		cr, err := getCR(t, ns, sampleName)
		if err != nil {
			return err
		}
		c = cr.Status.Counts
		switch {
		case c.Received != c.Accepted+c.Rejected+c.Ignored+c.Unavailable+c.Decided+c.Duplicate:
			return fmt.Errorf("counts %+v: received is not the sum of the outcomes", c)
		case c.Accepted < maxSeen.Accepted || c.Accepted > int64(len(sent)):
			return fmt.Errorf("accepted %d after the kill, want between %d (counted before) and %d (answered OK)", c.Accepted, maxSeen.Accepted, len(sent))
		case c.Delivered != int64(len(sent)) || c.Failed != 0 || c.DeadLettered != 0:
			return fmt.Errorf("counts %+v: want all %d delivered, nothing failed or dead-lettered", c, len(sent))
		case len(cr.Status.Incarnations) != 1:
			return fmt.Errorf("incarnations %+v, want only the restarted process", cr.Status.Incarnations)
		}
		return nil
	})
	for i := range 5 {
		blacklistDelete(sampleToken, 100+i, 1).mustAccept(t, rcv.url())
	}
	after := c
	after.Received += 5
	after.Accepted += 5
	after.Delivered += 5
	after.Pairs += 5
	waitCounts(t, ns, sampleName, after, 30*time.Second)
	if got := cgroupFile(t, &rcv.pods[0], "receiver", "memory", "memory.limit_in_bytes"); got != fmt.Sprint(limit) {
		t.Errorf("memory.limit_in_bytes of the restarted receiver: %s, want %d", got, limit)
	}
}
