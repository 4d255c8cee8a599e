package e2e

// The operator's whole job on the samples a user applies first: kubectl apply -k
// config/samples, receiver pods Ready, signed callbacks become CloudEvents at the sink, bad
// ones are refused, and kubectl get cbr shows exact counts.

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

func TestSamplesDeliverSignedCallbacks(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "e2e-samples")

	// 1. Apply the samples as the README says; the receiver becomes Ready.
	start := time.Now()
	applyK(t, ns, overlay(t, nil, nil))
	rcv := waitReceiver(t, ns, sampleName, 1, 2*time.Minute)
	waitSink(t, ns, sampleSink)
	t.Logf("samples applied and ready in %s", time.Since(start).Round(time.Millisecond))
	st := rcv.cr.Status
	if want := "http://" + sampleName + "." + ns + ".svc.cluster.local" + samplePath; st.URL != want {
		t.Errorf("status.url %q, want %q", st.URL, want)
	}
	if want := "http://" + sampleSink + "." + ns + ".svc.cluster.local" + sampleSinkPath; st.SinkURI != want {
		t.Errorf("status.sinkURI %q, want %q", st.SinkURI, want)
	}
	for _, c := range []string{cbv1.ConditionReady, cbv1.ConditionSinkResolved, cbv1.ConditionAvailable, "TokenResolved"} {
		if !conditionTrue(rcv.cr, c) {
			t.Errorf("condition %s not True: %+v", c, rcv.cr.Status.Conditions)
		}
	}
	if row := getCbr(t, ns, sampleName); row["READY"] != "True" || row["REPLICAS"] != "1" || row["URL"] != st.URL || row["RECEIVED"] != "0" {
		t.Errorf("kubectl get cbr before any callback: %v", row)
	}

	// 2. Signed callbacks, through the Service's ClusterIP and at the pod's own address.
	pod := rcv.pods[0]
	var sent []callback
	pairs := 0
	for i := range 10 {
		c := blacklistDelete(sampleToken, i, 1+i%3)
		pairs += 1 + i%3
		if i%2 == 0 {
			c.mustAccept(t, rcv.url())
		} else {
			c.mustAccept(t, podURL(pod))
		}
		sent = append(sent, c)
	}
	// Platforms compare case-insensitively and unknown ones pass; the extension carries
	// the value as sent. ClientIP may be IPv6.
	odd := blacklistDelete(sampleToken, 100, 1)
	odd.platform, odd.clientIP = "macOS", "2001:db8::7"
	odd.mustAccept(t, rcv.url())
	sent = append(sent, odd)
	pairs++

	// Refused, each with the protocol's FAIL body, and never forwarded.
	forged := blacklistDelete(sampleToken, 200, 1)
	forged.sign = signature("not-the-token", forged.requestTime)
	forged.mustRefuse(t, rcv.url(), http.StatusUnauthorized, "Sign")
	stale := blacklistDelete(sampleToken, 201, 1)
	stale.requestTime = strconv.FormatInt(time.Now().Add(-2*time.Minute).Unix(), 10)
	stale.sign = signature(sampleToken, stale.requestTime)
	stale.mustRefuse(t, rcv.url(), http.StatusUnauthorized, "RequestTime")
	future := blacklistDelete(sampleToken, 202, 1)
	future.requestTime = strconv.FormatInt(time.Now().Add(2*time.Minute).Unix(), 10)
	future.sign = signature(sampleToken, future.requestTime)
	future.mustRefuse(t, podURL(pod), http.StatusUnauthorized, "RequestTime")
	otherApp := blacklistDelete(sampleToken, 203, 1)
	otherApp.appID = "1400000002"
	otherApp.mustRefuse(t, rcv.url(), http.StatusForbidden, "SdkAppid")
	unsigned := blacklistDelete(sampleToken, 204, 1)
	unsigned.sign = ""
	unsigned.mustRefuse(t, rcv.url(), http.StatusUnauthorized, "Sign")
	rejected := 5
	// A command not selected is answered OK and only counted.
	ignored := signedCallback(sampleToken, sampleAppID, "Sns.CallbackFriendAdd",
		[]byte(`{"CallbackCommand":"Sns.CallbackFriendAdd","PairList":[{"From_Account":"a","To_Account":"b","Initiator_Account":"a"}],"ClientCmd":"friend_add"}`), time.Now())
	ignored.mustAccept(t, rcv.url())

	// One CloudEvent per accepted callback, right attributes, body byte for byte.
	events := waitSinkEvents(t, ns, sampleSink, len(sent), 30*time.Second)
	checkEvents(t, events, sent, sampleSinkPath, nil)

	// 3. Exact counts, in status and in kubectl get cbr.
	waitCounts(t, ns, sampleName, cbv1.Counts{
		Received: int64(len(sent) + rejected + 1), Accepted: int64(len(sent)), Rejected: int64(rejected), Ignored: 1,
		Delivered: int64(len(sent)), Pairs: int64(pairs),
	}, 30*time.Second)

	// The refusals are logged with their reason, never with the Sign.
	log := readLog(t, ns, pod.Name, "receiver")
	for _, reason := range []string{"signature_mismatch", "request_time_skew", "wrong_sdkappid", "missing_signature"} {
		if !strings.Contains(log, reason) {
			t.Errorf("receiver log lacks a %s line", reason)
		}
	}
	if strings.Contains(log, forged.sign) || strings.Contains(log, sampleToken) {
		t.Errorf("receiver log shows a Sign or the token")
	}
}

func conditionTrue(cr *cbv1.CallbackReceiver, typ string) bool {
	for _, c := range cr.Status.Conditions {
		if c.Type == typ {
			return c.Status == "True"
		}
	}
	return false
}
