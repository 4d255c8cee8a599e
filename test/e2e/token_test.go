package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

const tokenChecksumAnnotation = "callbacks.imcallback.dev/token-checksum"

// TestTokenRotationRollsPods: a new value in the token Secret rolls the receiver pods (a new
// checksum in the pod template); afterwards the old token is refused with 401 and the new
// one accepted, and the counts of the replaced pods are kept.
func TestTokenRotationRollsPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-token")
	// Two replicas: the rollout replaces pods one by one, so callbacks keep being taken.
	applyK(t, ns, overlay(t, nil, []kpatch{{"CallbackReceiver", sampleName, "- {op: add, path: /spec/replicas, value: 2}"}}))
	before := waitReceiver(t, ns, sampleName, 2, 2*time.Minute)
	waitSink(t, ns, sampleSink)

	oldSum := before.pods[0].Annotations[tokenChecksumAnnotation]
	if !strings.HasPrefix(oldSum, "sha256:") || strings.Contains(oldSum, sampleToken) {
		t.Fatalf("pod %s: token checksum annotation %q", before.pods[0].Name, oldSum)
	}
	var sent []callback
	for i := range 4 {
		c := blacklistDelete(sampleToken, i, 1)
		c.mustAccept(t, podURL(before.pods[i%2]))
		sent = append(sent, c)
	}

	// Rotate: what a user does when the IM console's token changes.
	const newToken = "the-rotated-console-token"
	start := time.Now()
	patch := `{"stringData":{"token":"` + newToken + `"}}`
	if _, err := cluster.Client.CoreV1().Secrets(ns).Patch(ctx, sampleSecret, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolled(t, ns, sampleName, before.pods, 2*time.Minute)
	after := waitReceiver(t, ns, sampleName, 2, time.Minute)
	t.Logf("pods rolled %s after the rotation", time.Since(start).Round(time.Millisecond))
	for _, p := range after.pods {
		sum := p.Annotations[tokenChecksumAnnotation]
		if sum == oldSum || !strings.HasPrefix(sum, "sha256:") || strings.Contains(sum, newToken) {
			t.Errorf("pod %s: token checksum %q after rotation (before: %q)", p.Name, sum, oldSum)
		}
	}

	// The old token is refused, the new one accepted: through the Service and at each pod.
	rejected := 0
	for _, base := range []string{after.url(), podURL(after.pods[0]), podURL(after.pods[1])} {
		old := blacklistDelete(sampleToken, 100+rejected, 1)
		old.mustRefuse(t, base, http.StatusUnauthorized, "Sign")
		rejected++
		c := blacklistDelete(newToken, 200+len(sent), 1)
		c.mustAccept(t, base)
		sent = append(sent, c)
	}

	events := waitSinkEvents(t, ns, sampleSink, len(sent), 30*time.Second)
	checkEvents(t, events, sent, sampleSinkPath, nil)
	// The replaced pods' counts are kept: they were read a last time before they exited.
	n := int64(len(sent))
	waitCounts(t, ns, sampleName, cbv1.Counts{
		Received: n + int64(rejected), Accepted: n, Rejected: int64(rejected), Delivered: n, Pairs: n,
	}, 30*time.Second)
}
