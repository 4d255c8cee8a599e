package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestRouteSinkDownDoesNotStallTheOthers: one route's sink scaled to zero while callbacks of
// three commands arrive (the default sink's, another route's and its own): the default sink
// and the other route receive all of theirs at once, none is refused or failed, the dead
// route's wait in its own lane; once its sink is back they are delivered, and the resource's
// counts are exact throughout.
func TestRouteSinkDownDoesNotStallTheOthers(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-lanes")
	applyK(t, ns, overlay(t, map[string]string{
		"archive.yaml": extraSink(t, "archive"), "relations.yaml": extraSink(t, "relations"),
	}, []kpatch{{"CallbackReceiver", sampleName, `
- op: add
  path: /spec/routes
  value:
  - {commands: [Group.CallbackAfterSendMsg], sink: {ref: {apiVersion: v1, kind: Service, name: archive}, uri: /events}}
  - {commands: [Sns.CallbackFriendDelete], sink: {ref: {apiVersion: v1, kind: Service, name: relations}, uri: /events}}`}}))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	for _, s := range []string{sampleSink, "archive", "relations"} {
		waitSink(t, ns, s)
	}
	scaleDeployment(t, ns, "relations", 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": "relations"}, time.Minute)

	// Under load: 150 callbacks of each command from 12 connections at once.
	const n = 150
	var calls []callback
	for i := range n {
		calls = append(calls,
			blacklistDelete(sampleToken, 1000+i, 1),
			sendMsg("Group.CallbackAfterSendMsg", "alice", "@TGS#group", fmt.Sprintf("hello %d", i)),
			signedCallback(sampleToken, sampleAppID, "Sns.CallbackFriendDelete",
				fmt.Appendf(nil, `{"CallbackCommand":"Sns.CallbackFriendDelete","PairList":[{"From_Account":"alice","To_Account":"bob-%d"}]}`, i), time.Now()))
	}
	work := make(chan callback)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for c := range work {
				if status, reply, err := c.send(rcv.url()); err != nil || status != 200 || reply != (protocolReply{ActionStatus: "OK"}) {
					t.Errorf("%s: %d %+v %v", c.command, status, reply, err)
				}
			}
		})
	}
	begin := time.Now()
	for _, c := range calls {
		work <- c
	}
	close(work)
	wg.Wait()
	waitSinkEvents(t, ns, sampleSink, n, 30*time.Second)
	waitSinkEvents(t, ns, "archive", n, 30*time.Second)
	t.Logf("the default sink and the healthy route took their %d events each within %s of the load's start, the third route's sink down",
		n, time.Since(begin).Round(time.Millisecond))
	waitCounts(t, ns, sampleName, cbv1.Counts{Received: 3 * n, Accepted: 3 * n, Delivered: 2 * n, Pairs: 2 * n}, time.Minute)
	m, err := podMetrics(rcv.pods[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := m[`imcallback_route_queue_depth{sink="http://relations.`+ns+`.svc.cluster.local/events"}`]; got != n {
		t.Errorf("the dead route's lane holds %v, want %d", got, n)
	}

	scaleDeployment(t, ns, "relations", 1)
	waitSink(t, ns, "relations")
	waitSinkEvents(t, ns, "relations", n, time.Minute)
	waitCounts(t, ns, sampleName, cbv1.Counts{Received: 3 * n, Accepted: 3 * n, Delivered: 3 * n, Pairs: 2 * n}, time.Minute)
}
