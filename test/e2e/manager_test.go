package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcallback/callback-operator/test/localcluster"
)

// TestManagerInstalledFromConfigDefault: config/default installs a working manager: a
// restricted pod of the operator's image with its own ServiceAccount, holding the leader
// lease, serving its metrics over HTTPS to authorized scrapers only.
func TestManagerInstalledFromConfigDefault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := cluster.Client
	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, localcluster.OperatorNamespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nsObj.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s labels %v: want the restricted Pod Security Standard enforced", nsObj.Name, nsObj.Labels)
	}
	pods := managerPods(t)
	if len(pods) != 1 || !podReady(&pods[0]) {
		t.Fatalf("manager pods %d (want 1, ready)", len(pods))
	}
	p := pods[0]
	c := p.Spec.Containers[0]
	if c.Image != receiverImage || p.Spec.ServiceAccountName != "callback-operator-controller-manager" {
		t.Errorf("manager pod: image %s, service account %s", c.Image, p.Spec.ServiceAccountName)
	}
	if !slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("manager args %q lack --leader-elect", c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["RECEIVER_IMAGE"] != receiverImage {
		t.Errorf("RECEIVER_IMAGE %q, want the manager's own image %s", env["RECEIVER_IMAGE"], receiverImage)
	}
	if st := procStatus(t, containerPID(t, &p, "manager")); st["Uid"] != "65532 65532 65532 65532" || st["CapEff"] != "0000000000000000" || st["NoNewPrivs"] != "1" {
		t.Errorf("manager process: Uid %q CapEff %q NoNewPrivs %q", st["Uid"], st["CapEff"], st["NoNewPrivs"])
	}
	eventually(t, time.Minute, "the manager holds the leader lease", func() error {
		l, err := cs.CoordinationV1().Leases(localcluster.OperatorNamespace).Get(ctx, "callback-operator.callbacks.imcallback.dev", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := l.Spec.HolderIdentity; h == nil || !strings.HasPrefix(*h, p.Name+"_") {
			return fmt.Errorf("holder %v, want pod %s", h, p.Name)
		}
		return nil
	})

	// Metrics: HTTPS on the metrics Service, authenticated and authorized by the API server.
	svc, err := cs.CoreV1().Services(localcluster.OperatorNamespace).Get(ctx, "callback-operator-controller-manager-metrics-service", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://%s:8443/metrics", svc.Spec.ClusterIP)
	ns := newNamespace(t, "e2e-metrics")
	token := func(sa string) string {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	scraper, stranger := token("scraper"), token("stranger")
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "callback-operator-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "scraper", Namespace: ns}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoleBindings().Delete(ctx, crb.Name, metav1.DeleteOptions{}) })
	// The manager serves a self-signed certificate (config/default has no cert-manager).
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext:     cluster.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed, see above
	}}
	get := func(token string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	eventually(t, time.Minute, "metrics for the authorized scraper", func() error {
		code, body, err := get(scraper)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "controller_runtime_reconcile_total") {
			return fmt.Errorf("%d: %.200s", code, body)
		}
		return nil
	})
	for _, tc := range []struct {
		who, token string
		want       int
	}{{"no token", "", http.StatusUnauthorized}, {"a token without the metrics-reader role", stranger, http.StatusForbidden}} {
		if code, body, err := get(tc.token); err != nil || code != tc.want {
			t.Errorf("%s: %d %v %.100s, want %d", tc.who, code, err, body, tc.want)
		}
	}
}
