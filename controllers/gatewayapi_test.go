package controllers_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/internal/testenv"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestGatewayAPIInstalledLater runs against an API server of its own, without the Gateway
// API CRDs: a resource that asks for an HTTPRoute gets a condition that says so, the
// manager asks discovery about it once per recheck interval (no storm), and once the CRDs
// are installed the route is created and its watch runs.
func TestGatewayAPIInstalledLater(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	bare, err := testenv.Start("..")
	must(t, err)
	t.Cleanup(func() { _ = bare.Stop() })
	ns := bare.Namespace(t, "no-gateway-api-")

	// Requests of the manager about the Gateway API group.
	var asked atomic.Int64
	managerConfig := rest.CopyConfig(bare.Config)
	managerConfig.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasPrefix(r.URL.Path, "/apis/"+gwv1.GroupName) {
				asked.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	const recheck = time.Second
	startManager(t, ns, managerOptions{config: managerConfig, gatewayAPIRecheck: recheck})
	cr := &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: ns},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001, Path: "/im/callback",
			Sink: &cbv1.Destination{URI: "http://moderation.example.com/events"},
			HTTPRoute: &cbv1.HTTPRouteSpec{
				ParentRefs: []cbv1.ParentReference{{Name: "public"}},
				Hostnames:  []cbv1.Hostname{"im.example.com"},
			},
		},
	}
	must(t, bare.Client.Create(ctx, cr))
	// More resources that ask for routes: they share one answer, not one question each.
	for _, name := range []string{"second", "third", "fourth", "fifth"} {
		more := cr.DeepCopy()
		more.Name, more.ResourceVersion, more.UID = name, "", ""
		must(t, bare.Client.Create(ctx, more))
	}
	expectExposedIn(g, bare.Client, ns, metav1.ConditionFalse, cbv1.ReasonGatewayAPINotInstalled, "", "install the Gateway API CRDs")

	// The rest of the receiver is made as usual.
	g.Eventually(func(g Gomega) {
		got := &cbv1.CallbackReceiver{}
		g.Expect(bare.Client.Get(ctx, client.ObjectKeyFromObject(cr), got)).To(Succeed())
		g.Expect(condition(got, cbv1.ConditionSinkResolved).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(got, cbv1.ConditionAvailable).Reason).To(Equal(cbv1.ReasonRollingOut))
	}).Should(Succeed())

	// No storm: about one question per recheck interval, whatever the number of resources.
	const window = 4 * time.Second
	before := asked.Load()
	time.Sleep(window)
	n := asked.Load() - before
	t.Logf("%d requests about the Gateway API group in %s (recheck every %s)", n, window, recheck)
	if n > int64(window/recheck)+2 {
		t.Fatalf("the manager asked about the Gateway API %d times in %s, with a recheck every %s", n, window, recheck)
	}

	// The CRDs arrive: the route is made, and its status (written as a Gateway controller
	// would) reaches the resource through the route watch, which started at run time.
	gatewayCRDs, err := testenv.GatewayAPICRDs()
	must(t, err)
	must(t, bare.InstallCRDs(gatewayCRDs))
	expectExposedIn(g, bare.Client, ns, metav1.ConditionFalse, cbv1.ReasonRoutePending, "", "Waiting for Gateway "+ns+"/public")
	setRouteStatusIn(g, bare.Client, ns, metav1.ConditionTrue, "Accepted", "")
	expectExposedIn(g, bare.Client, ns, metav1.ConditionTrue, cbv1.ReasonRouteAccepted, "https://im.example.com/im/callback")
}
