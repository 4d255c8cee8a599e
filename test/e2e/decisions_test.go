package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// extraSink is config/samples' demo sink under another name: a second and third consumer.
func extraSink(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(samplesDir(), "sink.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "moderation", name)
}

// moderatorYAML runs hack/moderator, the moderation sample's decision service: it refuses
// messages with "spam" (ErrorCode 120001, which the sender's client sees) and rewrites
// "darn" to "d**n".
const moderatorYAML = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: moderator}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: moderator}}
  template:
    metadata: {labels: {app.kubernetes.io/name: moderator}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: moderator
        image: ` + moderatorImage + `
        imagePullPolicy: IfNotPresent
        args: [--listen=:8080, --ban=spam, --rewrite=darn=d**n, --refuse-code=120001, --refuse-info=message blocked]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: moderator}
spec:
  selector: {app.kubernetes.io/name: moderator}
  ports: [{name: http, port: 80, targetPort: http}]
`

// sendRaw POSTs a callback and returns the status and the answer's raw body.
func (c callback) sendRaw(base string) (int, []byte, time.Duration, error) {
	start := time.Now()
	resp, err := callbackClient.Post(base+"?"+c.query(), "application/json", bytes.NewReader(c.body))
	if err != nil {
		return 0, nil, time.Since(start), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, time.Since(start), err
}

func sendMsg(command, from, target, text string) callback {
	field := `"To_Account":"` + target + `"`
	if strings.HasPrefix(command, "Group.") {
		field = `"GroupId":"` + target + `"`
	}
	body := fmt.Sprintf(`{"CallbackCommand":%q,"From_Account":%q,%s,"MsgRandom":%d,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":%q}}],"CloudCustomData":"keep"}`,
		command, from, field, time.Now().UnixNano(), text)
	return signedCallback(sampleToken, sampleAppID, command, []byte(body), time.Now())
}

// TestOneURLRoutesAndDecisions: one CallbackReceiver is the app's only callback URL.
// After-callbacks of two commands arrive at two other sinks than the default one; the
// send-message before-callbacks are decided by the moderation sample (a banned word refused,
// another rewritten, IM's answer relayed as the service gave it); with the decision service
// scaled to zero, the default failure policy allows within the decision timeout.
func TestOneURLRoutesAndDecisions(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-decide")
	applyK(t, ns, overlay(t, map[string]string{
		"archive.yaml": extraSink(t, "archive"), "relations.yaml": extraSink(t, "relations"), "moderator.yaml": moderatorYAML,
	}, []kpatch{{"CallbackReceiver", sampleName, `
- op: add
  path: /spec/routes
  value:
  - {commands: [C2C.CallbackAfterSendMsg, Group.CallbackAfterSendMsg], sink: {ref: {apiVersion: v1, kind: Service, name: archive}, uri: /events}}
  - {commands: [Sns.CallbackFriendDelete], sink: {ref: {apiVersion: v1, kind: Service, name: relations}, uri: /events}}
- op: add
  path: /spec/decisions
  value:
  - {commands: [C2C.CallbackBeforeSendMsg, Group.CallbackBeforeSendMsg], subscriber: {ref: {apiVersion: v1, kind: Service, name: moderator}}}
- op: add
  path: /spec/decisionPolicy
  value: {timeout: 500ms}`}}))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	for _, s := range []string{sampleSink, "archive", "relations"} {
		waitSink(t, ns, s)
	}
	waitService(t, ns, "moderator", time.Minute)
	cr := rcv.cr
	if len(cr.Status.Routes) != 2 || cr.Status.Routes[0].URI != "http://archive."+ns+".svc.cluster.local/events" ||
		len(cr.Status.Decisions) != 1 || cr.Status.Decisions[0].URI != "http://moderator."+ns+".svc.cluster.local" {
		t.Fatalf("status routes %+v, decisions %+v", cr.Status.Routes, cr.Status.Decisions)
	}

	// A banned word: refused with the code the sender's client sees.
	status, answer, _, err := sendMsg("C2C.CallbackBeforeSendMsg", "alice", "bob", "buy spam now").sendRaw(rcv.url())
	if err != nil || status != 200 || string(answer) != `{"ActionStatus":"OK","ErrorCode":120001,"ErrorInfo":"message blocked"}` {
		t.Fatalf("a message with the banned word: %d %s %v", status, answer, err)
	}
	// Another word rewritten: allowed with the changed MsgBody, other members kept.
	status, answer, _, err = sendMsg("Group.CallbackBeforeSendMsg", "alice", "@TGS#group", "darn it").sendRaw(rcv.url())
	var changed struct {
		ActionStatus string
		ErrorCode    *int
		MsgBody      []struct{ MsgType, MsgContent json.RawMessage }
	}
	if err != nil || status != 200 || json.Unmarshal(answer, &changed) != nil || changed.ErrorCode == nil || *changed.ErrorCode != 0 ||
		len(changed.MsgBody) != 1 || !strings.Contains(string(changed.MsgBody[0].MsgContent), `d**n it`) {
		t.Fatalf("a message to rewrite: %d %s %v", status, answer, err)
	}

	// After-callbacks of three commands, three sinks.
	blacklistDelete(sampleToken, 1, 1).mustAccept(t, rcv.url())
	archived := sendMsg("Group.CallbackAfterSendMsg", "alice", "@TGS#group", "hello")
	archived.mustAccept(t, rcv.url())
	unfriended := signedCallback(sampleToken, sampleAppID, "Sns.CallbackFriendDelete",
		[]byte(`{"CallbackCommand":"Sns.CallbackFriendDelete","PairList":[{"From_Account":"alice","To_Account":"bob"}]}`), time.Now())
	unfriended.mustAccept(t, rcv.url())
	checkEvents(t, waitSinkEvents(t, ns, "archive", 1, 30*time.Second), []callback{archived}, "/events", nil)
	checkEvents(t, waitSinkEvents(t, ns, "relations", 1, 30*time.Second), []callback{unfriended}, "/events", nil)
	waitSinkEvents(t, ns, sampleSink, 1, 30*time.Second)

	// The decision service is gone: allowed (IM's own behaviour), within the timeout.
	scaleDeployment(t, ns, "moderator", 0)
	waitNoPods(t, ns, map[string]string{"app.kubernetes.io/name": "moderator"}, time.Minute)
	status, answer, took, err := sendMsg("C2C.CallbackBeforeSendMsg", "alice", "bob", "spam again").sendRaw(rcv.url())
	if err != nil || status != 200 || string(answer) != `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}` {
		t.Fatalf("without a decision service: %d %s %v, want the failure policy's allow", status, answer, err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("answered after %s: the 500ms decision timeout bounds the exchange", took)
	}
	waitCounts(t, ns, sampleName, cbv1.Counts{Received: 6, Accepted: 3, Decided: 3, Delivered: 3, Pairs: 2}, 30*time.Second)
	m, err := podMetrics(rcv.pods[0])
	if err != nil {
		t.Fatal(err)
	}
	for result, want := range map[string]float64{"allowed": 1, "rejected": 1, "failed_allowed": 1, "failed_rejected": 0} {
		if got := m[`imcallback_decisions_total{result="`+result+`"}`]; got != want {
			t.Errorf("decisions %s: %v, want %v", result, got, want)
		}
	}
}
