package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

func newReceiver(t *testing.T, ns string, replicas int32) *cbv1.CallbackReceiver {
	t.Helper()
	cr := &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: ns},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001,
			Path:     "/im/callback",
			Sink:     &cbv1.Destination{URI: "http://moderation.chat.svc.cluster.local/events"},
			Replicas: ptr.To(replicas),
		},
	}
	if err := k8sClient.Create(context.Background(), cr); err != nil {
		t.Fatalf("creating CallbackReceiver: %v", err)
	}
	return cr
}

func TestScaleSubresourceReadsAndWritesReplicas(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cr := newReceiver(t, ns, 2)

	cr.Status.Replicas = 2
	cr.Status.Selector = "app.kubernetes.io/instance=blacklist"
	if err := k8sClient.Status().Update(ctx, cr); err != nil {
		t.Fatalf("writing status: %v", err)
	}

	scale := &autoscalingv1.Scale{}
	if err := k8sClient.SubResource("scale").Get(ctx, cr, scale); err != nil {
		t.Fatalf("reading scale: %v", err)
	}
	if scale.Spec.Replicas != 2 || scale.Status.Replicas != 2 || scale.Status.Selector != cr.Status.Selector {
		t.Fatalf("scale = spec %d, status %d, selector %q; want 2, 2, %q",
			scale.Spec.Replicas, scale.Status.Replicas, scale.Status.Selector, cr.Status.Selector)
	}

	// kubectl scale cbr blacklist --replicas=3
	scale.Spec.Replicas = 3
	if err := k8sClient.SubResource("scale").Update(ctx, cr, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("writing scale: %v", err)
	}
	got := &cbv1.CallbackReceiver{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), got); err != nil {
		t.Fatal(err)
	}
	if r := ptr.Deref(got.Spec.Replicas, -1); r != 3 {
		t.Fatalf("spec.replicas = %d after scaling to 3", r)
	}

	// The schema's bound holds through the scale subresource too.
	scale = &autoscalingv1.Scale{}
	if err := k8sClient.SubResource("scale").Get(ctx, cr, scale); err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 101
	err := k8sClient.SubResource("scale").Update(ctx, cr, client.WithSubResourceBody(scale))
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "less than or equal to 100") {
		t.Fatalf("scaling to 101: want Invalid (at most 100), got %v", err)
	}
}

func TestShortNameCategoryAndSubresourcesAreServed(t *testing.T) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	list, err := dc.ServerResourcesForGroupVersion(cbv1.GroupVersion.String())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]metav1.APIResource{}
	for _, r := range list.APIResources {
		byName[r.Name] = r
	}
	main, ok := byName["callbackreceivers"]
	if !ok {
		t.Fatalf("callbackreceivers not served; have %v", reflect.ValueOf(byName).MapKeys())
	}
	if !reflect.DeepEqual(main.ShortNames, []string{"cbr"}) {
		t.Errorf("short names = %v, want [cbr]", main.ShortNames)
	}
	if !reflect.DeepEqual(main.Categories, []string{"imcallback"}) {
		t.Errorf("categories = %v, want [imcallback]", main.Categories)
	}
	if !main.Namespaced || main.Kind != "CallbackReceiver" {
		t.Errorf("namespaced=%v kind=%s", main.Namespaced, main.Kind)
	}
	for _, sub := range []string{"callbackreceivers/status", "callbackreceivers/scale"} {
		if _, ok := byName[sub]; !ok {
			t.Errorf("subresource %s not served", sub)
		}
	}
}

func TestPrinterColumns(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cr := newReceiver(t, ns, 2)
	cr.Status = cbv1.CallbackReceiverStatus{
		Replicas:       2,
		ReadyReplicas:  2,
		URL:            "http://blacklist." + ns + ".svc.cluster.local/im/callback",
		SinkURI:        "http://moderation.chat.svc.cluster.local/events",
		CallbackURL:    "https://im.example.com/im/callback",
		Spool:          &cbv1.SpoolStatus{Events: 42, Bytes: 1 << 20},
		StrandedSpools: []cbv1.StrandedSpool{{Name: "spool-blacklist-2", Kind: "PersistentVolumeClaim", State: "Draining"}},
		Counts:         cbv1.Counts{Received: 10, Accepted: 6, Rejected: 1, Decided: 3, Delivered: 5, Failed: 1},
	}
	meta.SetStatusCondition(&cr.Status.Conditions, metav1.Condition{
		Type: cbv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", Message: "ok",
	})
	if err := k8sClient.Status().Update(ctx, cr); err != nil {
		t.Fatal(err)
	}

	// What `kubectl get cbr` (and `-o wide`) asks the API server for.
	table := getTable(t, fmt.Sprintf("/apis/%s/namespaces/%s/callbackreceivers", cbv1.GroupVersion, ns))
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	wantNames := []string{"Name", "Ready", "Replicas", "Received", "Delivered", "Failed", "URL", "Age", "Reason", "Sink", "Callback URL", "Decided", "Waiting", "Stranded"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("columns = %v, want %v", names, wantNames)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("want 1 row, got %d", len(table.Rows))
	}
	cells := table.Rows[0].Cells
	// JSON numbers decode as float64.
	want := []any{"blacklist", "True", float64(2), float64(10), float64(5), float64(1), cr.Status.URL}
	if !reflect.DeepEqual(cells[:7], want) {
		t.Fatalf("row = %v, want it to start with %v", cells, want)
	}
	if cells[13] != "spool-blacklist-2" {
		t.Errorf("Stranded = %v, want the claim still to be drained", cells[13])
	}
	if cells[8] != "Ready" || cells[9] != cr.Status.SinkURI || cells[10] != cr.Status.CallbackURL || cells[11] != float64(3) || cells[12] != float64(42) {
		t.Fatalf("wide columns = %v", cells[8:])
	}
}

// getTable GETs path as a server-side Table, as kubectl get does.
func getTable(t *testing.T, path string) *metav1.Table {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(body, table); err != nil {
		t.Fatal(err)
	}
	return table
}
