package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// TestSinkDownThenBack: the sink's Deployment is scaled to 0 for a while. Callbacks keep
// being answered OK at once; the receiver holds and retries them, and delivers each exactly
// once when the sink is back, well within the retry budget.
func TestSinkDownThenBack(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-sinkdown")
	// Retry budget: 0.5s x (1 + 2 + ... + 30) = 232s, far more than the outage.
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, `
- op: add
  path: /spec/delivery
  value: {retry: 30, backoffPolicy: linear, backoffDelay: 500ms, timeout: 1s}`}}))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	pod := rcv.pods[0]
	if args := strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(args, "--retry=30") || !strings.Contains(args, "--backoff-policy=linear") {
		t.Fatalf("receiver args do not carry spec.delivery: %s", args)
	}

	// Delivered while the sink is up.
	var before []callback
	for i := range 3 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, rcv.url())
		before = append(before, c)
	}
	checkEvents(t, waitSinkEvents(t, ns, sampleSink, len(before), 30*time.Second), before, sampleSinkPath, nil)

	// The sink stops.
	scaleDeployment(t, ns, sampleSink, 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": sampleSink}, time.Minute)
	stopped := time.Now()
	var during []callback
	for i := range 10 {
		c := blacklistDelete(sampleToken, 100+i, 2)
		sentAt := time.Now()
		c.mustAccept(t, rcv.url())
		// IM waits 2s for an answer; the receiver answers without waiting for the sink.
		if d := time.Since(sentAt); d > 2*time.Second {
			t.Errorf("callback answered after %s while the sink is down", d)
		}
		during = append(during, c)
	}
	// Accepted and held: the counts show them accepted, not delivered, not failed.
	eventually(t, 30*time.Second, "callbacks accepted and pending while the sink is down", func() error {
		cr, err := getCR(t, ns, sampleName)
		if err != nil {
			return err
		}
		c := cr.Status.Counts
		if c.Accepted != 13 || c.Delivered != 3 || c.Failed != 0 || c.DeadLettered != 0 {
			return fmt.Errorf("counts %+v", c)
		}
		return nil
	})
	eventually(t, 30*time.Second, "deliveries retried", func() error {
		m, err := podMetrics(pod)
		if err != nil {
			return err
		}
		if m["imcallback_delivery_retries_total"] < 20 {
			return fmt.Errorf("%v retries", m["imcallback_delivery_retries_total"])
		}
		return nil
	})
	// Down for a while longer than the first retries' backoff.
	time.Sleep(time.Until(stopped.Add(10 * time.Second)))

	// The sink is back (a new pod: it reports only what it received since).
	scaleDeployment(t, ns, sampleSink, 1)
	waitSink(t, ns, sampleSink)
	t.Logf("sink down for %s", time.Since(stopped).Round(time.Millisecond))
	back := time.Now()
	events := waitSinkEvents(t, ns, sampleSink, len(during), time.Minute)
	t.Logf("held callbacks delivered within %s of the sink's return", time.Since(back).Round(time.Millisecond))
	checkEvents(t, events, during, sampleSinkPath, nil)

	n := int64(len(before) + len(during))
	waitCounts(t, ns, sampleName, cbv1.Counts{
		Received: n, Accepted: n, Delivered: n, Pairs: int64(len(before) + 2*len(during)),
	}, 30*time.Second)
}

// dlqYAML is a second demo sink, the dead-letter sink.
const dlqYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: dlq
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: dlq}
  template:
    metadata:
      labels: {app.kubernetes.io/name: dlq}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: event-display
        image: gcr.io/knative-releases/knative.dev/eventing/cmd/event_display
        imagePullPolicy: IfNotPresent
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          tcpSocket: {port: http}
---
apiVersion: v1
kind: Service
metadata:
  name: dlq
spec:
  selector: {app.kubernetes.io/name: dlq}
  ports:
  - {name: http, port: 80, targetPort: http}
`

// TestSinkFailingDeadLettersOrFails: the sink answers every event 503. With a dead-letter
// sink, each event goes there after the last retry, with the dead-letter extensions. Once
// the dead-letter sink is removed from the spec (a rollout), a sink that takes nothing is
// down: events wait in the spool, failing nothing; when it answers them with an error that
// is theirs (400), they are counted failed and logged whole. Counts stay exact across the
// rollout.
func TestSinkFailingDeadLettersOrFails(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-deadletter")
	applyK(t, ns, overlay(t, map[string]string{"dlq.yaml": dlqYAML}, []kpatch{
		{"Deployment", sampleSink, `
- op: add
  path: /spec/template/spec/containers/0/args
  value: ["--status=503"]`},
		{"CallbackReceiver", sampleName, `
- op: add
  path: /spec/delivery
  value:
    retry: 2
    backoffPolicy: exponential
    backoffDelay: 50ms
    timeout: 1s
    deadLetterSink:
      ref: {apiVersion: v1, kind: Service, name: dlq}
      uri: /dead`},
	}))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	waitSink(t, ns, "dlq")
	if want := "http://dlq." + ns + ".svc.cluster.local/dead"; rcv.cr.Status.DeadLetterSinkURI != want {
		t.Errorf("status.deadLetterSinkURI %q, want %q", rcv.cr.Status.DeadLetterSinkURI, want)
	}

	var sent []callback
	for i := range 5 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, rcv.url())
		sent = append(sent, c)
	}
	// Dead-lettered after 1 + 2 attempts, with the reason.
	dead := waitSinkEvents(t, ns, "dlq", len(sent), 30*time.Second)
	checkEvents(t, dead, sent, "/dead", map[string]string{"deadletterattempts": "3", "deadletterreason": ""})
	for _, ev := range dead {
		a, _ := ev.attrs()
		if r := fmt.Sprint(a["deadletterreason"]); !strings.Contains(r, "503") {
			t.Errorf("event %s: deadletterreason %q does not say the sink answered 503", ev.id(), r)
		}
	}
	// The failing sink saw each event exactly three times.
	r, err := sinkEvents(t, ns, sampleSink)
	if err != nil {
		t.Fatal(err)
	}
	attempts := map[string]int{}
	for _, ev := range r.Events {
		attempts[ev.id()]++
	}
	for _, c := range sent {
		if attempts[c.eventID()] != 3 {
			t.Errorf("event %s: %d attempts at the sink, want 3", c.eventID(), attempts[c.eventID()])
		}
	}
	if r.Total != 3*len(sent) {
		t.Errorf("the sink received %d requests, want %d", r.Total, 3*len(sent))
	}
	n := int64(len(sent))
	waitCounts(t, ns, sampleName, cbv1.Counts{Received: n, Accepted: n, DeadLettered: n, Pairs: n}, 30*time.Second)

	// Without a dead-letter sink: held while the sink is down, failed and logged whole once
	// the sink refuses them.
	kubectl(t, "patch", "cbr", sampleName, "-n", ns, "--type=json", "-p", `[{"op":"remove","path":"/spec/delivery/deadLetterSink"}]`)
	waitRolled(t, ns, sampleName, rcv.pods, 2*time.Minute)
	rolled := waitReceiver(t, ns, sampleName, 1, time.Minute)
	if rolled.cr.Status.DeadLetterSinkURI != "" {
		t.Errorf("status.deadLetterSinkURI %q after removing the dead-letter sink", rolled.cr.Status.DeadLetterSinkURI)
	}
	var failed []callback
	for i := range 3 {
		c := blacklistDelete(sampleToken, 100+i, 1)
		c.mustAccept(t, rolled.url())
		failed = append(failed, c)
	}
	m := int64(len(failed))
	eventually(t, 30*time.Second, "the events waiting in the spool while the sink takes nothing", func() error {
		cr, err := getCR(t, ns, sampleName)
		if err != nil {
			return err
		}
		if c := cr.Status.Counts; c.Accepted != n+m || c.Failed != 0 || cr.Status.Spool == nil || cr.Status.Spool.Events != m {
			return fmt.Errorf("counts %+v, spool %+v", c, cr.Status.Spool)
		}
		return nil
	})
	kubectl(t, "patch", "deployment", sampleSink, "-n", ns, "--type=json", "-p",
		`[{"op":"replace","path":"/spec/template/spec/containers/0/args","value":["--status=400"]}]`)
	waitCounts(t, ns, sampleName, cbv1.Counts{
		Received: n + m, Accepted: n + m, DeadLettered: n, Failed: m, Pairs: n + m,
	}, time.Minute)
	log := readLog(t, ns, rolled.pods[0].Name, "receiver")
	for i, c := range failed {
		if !strings.Contains(log, c.eventID()) || !strings.Contains(log, fmt.Sprintf("peer-%d-0", 100+i)) {
			t.Errorf("the receiver's log lacks the failed event %s whole", c.eventID())
		}
	}
	if !strings.Contains(log, "event not delivered") {
		t.Errorf("no \"event not delivered\" line in the receiver's log")
	}
}
