package controllers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver"
)

// TestSpoolStatusFollowsThePods: a real receiver with a small spool and a sink that is down
// fills its spool; status.spool (written by the counts scraper) shows what waits, and the
// SpoolReady condition turns False (SpoolFull) and Ready with it; once the sink is back and
// the spool drained, both are True again.
func TestSpoolStatusFollowsThePods(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ip := "127.0.0.4"
	adminPort := freeAdminPort(t, ip)

	var up atomic.Bool
	sinkSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(sinkSrv.Close)

	cr := fixture(t, ns)
	cr.Spec.Auth = nil
	cr.Spec.Delivery = nil
	startManager(t, ns, managerOptions{adminPort: adminPort, scrapeInterval: 200 * time.Millisecond, dial: dialPods})
	must(t, k8sClient.Create(ctx, cr))
	const maxBytes = 256 << 10
	p := startPod(t, "blacklist-s", ip, adminPort, sinkSrv.URL, func(c *receiver.Config) {
		c.Token = ""
		c.SpoolDir, c.SpoolMaxBytes, c.MaxBodyBytes = t.TempDir(), maxBytes, 64<<10
		c.BackoffDelay = 10 * time.Millisecond
	})
	setEndpoints(t, ns, nil, p)

	// Fill the spool until the receiver refuses: the sink takes nothing.
	accepted := 0
	for i := 0; ; i++ {
		body := fmt.Sprintf(`{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"u%d","To_Account":"%s"}]}`, i, strings.Repeat("x", 200))
		resp, err := http.Post(p.url+"?SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete", "application/json", strings.NewReader(body))
		must(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("callback %d answered %d", i, resp.StatusCode)
		}
		accepted++
		if i > 10000 {
			t.Fatal("the spool never filled up")
		}
	}
	t.Logf("the spool took %d callbacks", accepted)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.Spool).NotTo(BeNil())
		g.Expect(got.Status.Spool.FullPods).To(Equal(int32(1)))
		g.Expect(got.Status.Spool.Events).To(BeNumerically(">=", accepted-64)) // a few are held in memory by the workers
		g.Expect(got.Status.Spool.Bytes).To(BeNumerically(">=", maxBytes*9/10))
		c := condition(got, cbv1.ConditionSpoolReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(cbv1.ReasonSpoolFull))
		g.Expect(condition(got, cbv1.ConditionReady).Reason).To(Equal(cbv1.ReasonSpoolFull))
	}, 20*time.Second).Should(Succeed())

	// The sink is back: the held events go, the spool empties, the condition follows.
	up.Store(true)
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(got.Status.Spool).NotTo(BeNil())
		g.Expect(got.Status.Spool.Events).To(BeZero())
		g.Expect(got.Status.Spool.FullPods).To(BeZero())
		g.Expect(got.Status.Counts.Delivered).To(Equal(int64(accepted)), "every accepted callback delivered")
		g.Expect(condition(got, cbv1.ConditionSpoolReady).Reason).To(Equal(cbv1.ReasonSpoolOnEmptyDir)) // room again, and its risk said
	}, 40*time.Second).Should(Succeed())
}
