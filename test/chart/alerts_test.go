package chart

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// githubAnchors are the fragment names GitHub gives README's headings.
func githubAnchors(readme string) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(readme, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		anchors[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return anchors
}

// TestAlertsSayWhatAndLinkARunbook: every alert has a severity, a summary, a description and
// a runbook URL into a README section that exists; the promtool unit tests cover each alert.
func TestAlertsSayWhatAndLinkARunbook(t *testing.T) {
	var rules ruleFile
	if err := yaml.Unmarshal(readFile(t, "config/prometheus/alerts.yaml"), &rules); err != nil {
		t.Fatal(err)
	}
	anchors := githubAnchors(string(readFile(t, "README.md")))
	tests := string(readFile(t, "config/prometheus/alerts_test.yaml"))
	const prefix = "https://github.com/imcallback/callback-operator/blob/main/README.md#"
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			switch r.Labels["severity"] {
			case "critical", "warning":
			default:
				t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s", r.Alert, a)
				}
			}
			url := r.Annotations["runbook_url"]
			if !strings.HasPrefix(url, prefix) || !anchors[strings.TrimPrefix(url, prefix)] {
				t.Errorf("%s: runbook_url %q is not a README section", r.Alert, url)
			}
			// Firing and not firing: an exp_alerts: [] line and an expected alert.
			if !strings.Contains(tests, "alertname: "+r.Alert+", exp_alerts: []}") || !strings.Contains(tests, "alertname: "+r.Alert+"\n") {
				t.Errorf("%s: alerts_test.yaml does not test it both firing and not firing", r.Alert)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d alerts", n)
	}
}

// TestDashboard: the dashboard is Grafana JSON whose every panel queries the chosen
// Prometheus data source, filtered by the namespace and CallbackReceiver variables.
func TestDashboard(t *testing.T) {
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct{ Name string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string               `json:"title"`
			Datasource struct{ UID string } `json:"datasource"`
			Targets    []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, "config/grafana/callback-operator.json"), &d); err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if strings.Join(vars, ",") != "datasource,namespace,callbackreceiver" || d.UID == "" {
		t.Errorf("uid %q, variables %v", d.UID, vars)
	}
	for _, p := range d.Panels {
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d queries", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, `namespace=~"$namespace", callbackreceiver=~"$callbackreceiver"`) {
				t.Errorf("panel %q: query not filtered by the variables: %s", p.Title, q.Expr)
			}
		}
	}
}
