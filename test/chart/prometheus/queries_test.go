// Package prometheus runs a real Prometheus (built by hack/prometheus.sh) scraping a real
// receiver (bin/receiver) under a little traffic, loads config/prometheus/alerts.yaml into it,
// and proves through its HTTP API that every alert expression and every dashboard query
// evaluates and that each metric selector in them names series that exist.
//
// `make test-chart` runs it with PROMETHEUS and RECEIVER set to those binaries.
package prometheus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var root = func() string {
	dir, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		panic(err)
	}
	return dir
}()

const (
	token    = "test-token"
	sdkAppID = "1400000001"
)

func binary(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run this through `make test-chart`, which builds it", env)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a program until the test ends, its output in the test log on failure.
func start(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	logf, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s output (tail):\n%s", filepath.Base(name), b)
		}
	})
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// callback sends one callback as IM does; sign=false sends a wrong signature.
func callback(t *testing.T, addr, command string, sign bool) int {
	t.Helper()
	now := strconv.FormatInt(time.Now().Unix(), 10)
	sum := sha256.Sum256([]byte(token + now))
	sig := hex.EncodeToString(sum[:])
	if !sign {
		sig = strings.Repeat("0", 64)
	}
	q := url.Values{"SdkAppid": {sdkAppID}, "CallbackCommand": {command}, "contenttype": {"json"},
		"ClientIP": {"10.0.0.1"}, "OptPlatform": {"iOS"}, "RequestTime": {now}, "Sign": {sig}}
	body := fmt.Sprintf(`{"CallbackCommand":%q,"PairList":[{"From_Account":"alice","To_Account":"bob-%d"}]}`, command, time.Now().UnixNano())
	resp, err := http.Post("http://"+addr+"/im/callback?"+q.Encode(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("callback: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

type apiResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
		Groups     []struct {
			Rules []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
				Error  string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"data"`
}

func api(t *testing.T, prom, path string, params url.Values) apiResult {
	t.Helper()
	r, err := tryAPI(prom, path, params)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tryAPI(prom, path string, params url.Values) (apiResult, error) {
	var r apiResult
	resp, err := http.Get("http://" + prom + path + "?" + params.Encode())
	if err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func query(t *testing.T, prom, expr string) apiResult {
	t.Helper()
	return api(t, prom, "/api/v1/query", url.Values{"query": {expr}})
}

// selectors are the metric selectors of an expression: a metric name with its braces.
var selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)

// managerMetrics come from the manager, which this test does not run (it needs an API
// server); their names are controller-runtime's (controller_runtime_reconcile_errors_total,
// leader_election_master_status) and the scrape job of the chart's ServiceMonitor.
func managerSelector(s string) bool {
	return strings.Contains(s, `job="callback-operator-manager"`)
}

func TestAlertAndDashboardQueriesNameLiveSeries(t *testing.T) {
	promBin, receiverBin := binary(t, "PROMETHEUS"), binary(t, "RECEIVER")

	// The sink: accepts every event, and counts them.
	var delivered atomic.Int64
	sink := &http.Server{Addr: freeAddr(t), ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = sink.ListenAndServe() }()
	t.Cleanup(func() { _ = sink.Close() })

	listen, admin := freeAddr(t), freeAddr(t)
	t.Setenv("IM_CALLBACK_TOKEN", token)
	start(t, receiverBin, "--sdkappid="+sdkAppID, "--path=/im/callback", "--commands=Sns.CallbackBlackListDelete",
		"--sink=http://"+sink.Addr+"/events", "--spool-dir="+t.TempDir(), "--listen="+listen, "--admin-listen="+admin,
		"--shutdown-delay=0s")
	waitFor(t, "the receiver's /readyz", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// A little traffic: forwarded, ignored (a command not selected) and refused callbacks.
	for i := 0; i < 20; i++ {
		if code := callback(t, listen, "Sns.CallbackBlackListDelete", true); code != http.StatusOK {
			t.Fatalf("signed callback answered %d", code)
		}
	}
	// Refusals stay under the 10% that CallbackReceiverRejectionsHigh fires at.
	for i := 0; i < 5; i++ {
		callback(t, listen, "Sns.CallbackFriendAdd", true)
	}
	for i := 0; i < 2; i++ {
		if code := callback(t, listen, "Sns.CallbackBlackListDelete", false); code != http.StatusUnauthorized {
			t.Fatalf("badly signed callback answered %d", code)
		}
	}
	waitFor(t, "20 events at the sink", 30*time.Second, func() bool { return delivered.Load() >= 20 })

	// Prometheus scrapes the receiver as the chart's PodMonitor does: job callback-receiver,
	// labelled namespace, callbackreceiver and pod; and evaluates alerts.yaml.
	dir := t.TempDir()
	rules := filepath.Join(root, "config", "prometheus", "alerts.yaml")
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
- job_name: callback-receiver
  static_configs:
  - targets: [%q]
    labels: {namespace: chat, callbackreceiver: blacklist, pod: blacklist-0}
`, rules, admin)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := freeAddr(t)
	start(t, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+prom, "--log.level=warn")
	waitFor(t, "5 scrapes of the receiver", 60*time.Second, func() bool {
		r, err := tryAPI(prom, "/api/v1/query", url.Values{"query": {`count_over_time(up{job="callback-receiver"}[1m]) >= 5`}})
		return err == nil && r.Status == "success" && len(r.Data.Result) == 1
	})

	// Every rule loaded and evaluated without error.
	var loaded int
	for _, g := range api(t, prom, "/api/v1/rules", nil).Data.Groups {
		for _, r := range g.Rules {
			loaded++
			if r.Health != "ok" && r.Health != "unknown" {
				t.Errorf("rule %s: health %s %s", r.Name, r.Health, r.Error)
			}
		}
	}

	var file struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string } `json:"rules"`
		} `json:"groups"`
	}
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if loaded != len(exprs) {
		t.Errorf("Prometheus loaded %d rules of %d", loaded, len(exprs))
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err = os.ReadFile(filepath.Join(root, "config", "grafana", "callback-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	grafana := strings.NewReplacer(`$namespace`, "chat", `$callbackreceiver`, "blacklist", `$__rate_interval`, "1m")
	var panels []string
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			panels = append(panels, grafana.Replace(q.Expr))
			// A dashboard query shows something for a receiver with traffic.
			if r := query(t, prom, grafana.Replace(q.Expr)); r.Status != "success" || len(r.Data.Result) == 0 {
				t.Errorf("panel %q: %s returned %s %s with %d series", p.Title, q.Expr, r.Status, r.Error, len(r.Data.Result))
			}
		}
	}

	checked, skipped := 0, 0
	for _, expr := range append(exprs, panels...) {
		if r := query(t, prom, expr); r.Status != "success" {
			t.Errorf("%s: %s %s", expr, r.ErrorType, r.Error)
		}
		for _, m := range selectorRE.FindAllString(expr, -1) {
			if managerSelector(m) {
				skipped++
				continue
			}
			checked++
			if r := query(t, prom, "count("+m+")"); r.Status != "success" || len(r.Data.Result) == 0 {
				t.Errorf("%s names no series (in %s)", m, strings.TrimSpace(expr))
			}
		}
	}
	t.Logf("%d rules loaded; %d dashboard queries; %d receiver selectors name live series; %d manager selectors not checked (no manager runs here)", loaded, len(panels), checked, skipped)

	// With this traffic nothing is wrong: no receiver alert fires or is pending.
	if r := query(t, prom, `ALERTS{alertname=~"CallbackReceiver.*"}`); len(r.Data.Result) != 0 {
		t.Errorf("receiver alerts active under healthy traffic: %s", r.Data.Result)
	}
}
