package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/engine"
)

const keepLine = "    helm.sh/resource-policy: keep\n"

// renderCRDs returns the chart's templates/crds.yaml as rendered, verbatim.
func renderCRDs(t *testing.T, values map[string]any) string {
	t.Helper()
	c := loadChart(t)
	opts := common.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true}
	vals, err := util.ToRenderValues(c, values, opts, common.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(c, vals)
	if err != nil {
		t.Fatal(err)
	}
	out, ok := files["callback-operator/templates/crds.yaml"]
	if !ok {
		t.Fatalf("no templates/crds.yaml rendered; have %v", keys(files))
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// configCRDs is config/crd/bases, every file in name order, as the chart's glob orders them.
func configCRDs(t *testing.T) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.TrimSpace(string(data)))
		b.WriteString("\n")
	}
	return b.String()
}

// normalizeCRDStream trims the blank lines templates leave between documents.
func normalizeCRDStream(s string) string {
	var b strings.Builder
	for _, doc := range strings.Split(s, "\n---\n") {
		doc = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---"))
		if doc == "" {
			continue
		}
		b.WriteString("---\n")
		b.WriteString(doc)
		b.WriteString("\n")
	}
	return b.String()
}

func TestCRDsAreConfigCRDsByteForByte(t *testing.T) {
	want := normalizeCRDStream(configCRDs(t))

	kept := normalizeCRDStream(renderCRDs(t, nil))
	if n := strings.Count(kept, keepLine); n != strings.Count(want, "\nkind: CustomResourceDefinition\n") {
		t.Fatalf("crds.keep (the default) put the keep annotation %d times into:\n%.600s", n, kept)
	}
	if !strings.Contains(kept, "metadata:\n  annotations:\n"+keepLine) {
		t.Errorf("the keep annotation is not in metadata.annotations:\n%.400s", kept)
	}
	if d := diff(want, strings.ReplaceAll(kept, keepLine, "")); d != "" {
		t.Errorf("rendered CRDs (without the keep annotation) differ from config/crd/bases; run `make chart-sync`:\n%s", d)
	}

	notKept := normalizeCRDStream(renderCRDs(t, map[string]any{"crds": map[string]any{"keep": false}}))
	if d := diff(want, notKept); d != "" {
		t.Errorf("rendered CRDs with crds.keep=false differ from config/crd/bases:\n%s", d)
	}

	if off := normalizeCRDStream(renderCRDs(t, map[string]any{"crds": map[string]any{"enabled": false}})); off != "" {
		t.Errorf("crds.enabled=false still renders:\n%.300s", off)
	}

	// The chart's own copies are the files themselves (what `make chart-sync` copies).
	for _, p := range mustGlob(t, "config/crd/bases/*.yaml") {
		assertSameFile(t, p, filepath.Join("charts/callback-operator/files/crds", filepath.Base(p)))
	}
	if a, b := len(mustGlob(t, "config/crd/bases/*.yaml")), len(mustGlob(t, "charts/callback-operator/files/crds/*.yaml")); a != b {
		t.Errorf("config/crd/bases has %d CRDs, the chart %d: run `make chart-sync`", a, b)
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	ps, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		ps[i], _ = filepath.Rel(root, p)
	}
	return ps
}

func assertSameFile(t *testing.T, src, copied string) {
	t.Helper()
	if a, b := string(readFile(t, src)), string(readFile(t, copied)); a != b {
		t.Errorf("%s differs from %s: run `make chart-sync`:\n%s", copied, src, diff(a, b))
	}
}

func TestSyncedCopiesAreTheirSources(t *testing.T) {
	assertSameFile(t, "config/rbac/role.yaml", "charts/callback-operator/files/rbac/role.yaml")
	assertSameFile(t, "config/prometheus/alerts.yaml", "charts/callback-operator/files/prometheus/alerts.yaml")
	grafana := mustGlob(t, "config/grafana/*.json")
	if len(grafana) == 0 {
		t.Fatal("no dashboard in config/grafana")
	}
	for _, p := range grafana {
		assertSameFile(t, p, filepath.Join("charts/callback-operator/files/grafana", filepath.Base(p)))
	}
	if a, b := len(grafana), len(mustGlob(t, "charts/callback-operator/files/grafana/*.json")); a != b {
		t.Errorf("config/grafana has %d dashboards, the chart %d: run `make chart-sync`", a, b)
	}
	// config/prometheus/prometheusrule.yaml holds alerts.yaml's groups.
	docs, err := decodeAll(readFile(t, "config/prometheus/prometheusrule.yaml"))
	if err != nil || len(docs) != 1 {
		t.Fatalf("config/prometheus/prometheusrule.yaml: %d documents, %v", len(docs), err)
	}
	rules, err := decodeAll(readFile(t, "config/prometheus/alerts.yaml"))
	if err != nil || len(rules) != 1 {
		t.Fatalf("config/prometheus/alerts.yaml: %v", err)
	}
	if !reflect.DeepEqual(docs[0]["spec"], map[string]any(rules[0])) {
		t.Errorf("config/prometheus/prometheusrule.yaml's spec is not alerts.yaml: run `make chart-sync`")
	}
}

// compareWithConfig asserts that the chart renders exactly config's objects (but the
// Namespace, which `helm install --create-namespace` makes), equal but for who installed them.
// fix, when not nil, adjusts a config object where the chart is meant to differ.
func compareWithConfig(t *testing.T, config, chart map[string]object, fix func(object)) {
	t.Helper()
	for k, want := range config {
		if want.kind() == "Namespace" {
			continue
		}
		got, ok := chart[k]
		if !ok {
			t.Errorf("the chart does not render %s", k)
			continue
		}
		labels, _ := want["metadata"].(map[string]any)["labels"].(map[string]any)
		_, named := labels["app.kubernetes.io/name"]
		w, g := withoutReleaseLabels(want, named), withoutReleaseLabels(got, named)
		if w.kind() == "CustomResourceDefinition" { // the keep annotation: TestCRDsAreConfigCRDsByteForByte
			delete(g["metadata"].(map[string]any)["annotations"].(map[string]any), "helm.sh/resource-policy")
		}
		if fix != nil {
			fix(w)
		}
		if d := diff(toYAML(w), toYAML(g)); d != "" {
			t.Errorf("%s differs from config/:\n%s", k, d)
		}
	}
	for k := range chart {
		if _, ok := config[k]; !ok {
			t.Errorf("the chart renders %s, which config/ does not have", k)
		}
	}
}

func TestDefaultValuesInstallConfigDefault(t *testing.T) {
	chart, _ := render(t, nil)
	compareWithConfig(t, kustomize(t, "config/default"), chart, nil)
}

func TestWatchNamespacesInstallsConfigNamespaced(t *testing.T) {
	// config/namespaced watches the manager's own namespace, read from the downward API; the
	// chart names the namespaces (any list of them), so WATCH_NAMESPACES is a literal value.
	chart, _ := render(t, map[string]any{"watchNamespaces": []any{releaseNamespace}})
	compareWithConfig(t, kustomize(t, "config/namespaced"), chart, func(o object) {
		if o.kind() != "Deployment" {
			return
		}
		c := container(o)
		for _, e := range c["env"].([]any) {
			e := e.(map[string]any)
			if e["name"] == "WATCH_NAMESPACES" {
				delete(e, "valueFrom")
				e["value"] = releaseNamespace
			}
		}
	})
}

// container is the manager container of a Deployment object.
func container(o object) map[string]any {
	spec := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	return spec["containers"].([]any)[0].(map[string]any)
}

func TestMonitoringInstallsConfigPrometheusAndGrafana(t *testing.T) {
	base, _ := render(t, nil)
	all, _ := render(t, map[string]any{"monitoring": map[string]any{
		"podMonitor":     map[string]any{"enabled": true},
		"serviceMonitor": map[string]any{"enabled": true},
		"prometheusRule": map[string]any{"enabled": true},
		"dashboards":     map[string]any{"enabled": true},
	}})
	added := map[string]object{}
	for k, o := range all {
		if _, ok := base[k]; !ok {
			added[k] = o
		}
	}
	config := kustomize(t, "config/prometheus")
	// config/grafana's ConfigMap has no namespace (apply it into Grafana's); the chart puts
	// it into the release namespace unless monitoring.dashboards.namespace says otherwise.
	for k, o := range kustomize(t, "config/grafana") {
		o["metadata"].(map[string]any)["namespace"] = releaseNamespace
		config[strings.Replace(k, " /", " "+releaseNamespace+"/", 1)] = o
	}
	compareWithConfig(t, config, added, nil)
}

func TestLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults": nil,
		"everything on": {
			"watchNamespaces": []any{"chat", "games"},
			"monitoring": map[string]any{
				"podMonitor":     map[string]any{"enabled": true},
				"serviceMonitor": map[string]any{"enabled": true, "prometheusServiceAccount": map[string]any{"name": "prometheus", "namespace": "monitoring"}},
				"prometheusRule": map[string]any{"enabled": true},
				"dashboards":     map[string]any{"enabled": true},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = releaseNamespace
			res := l.Run([]string{chartDir}, values)
			for _, m := range res.Messages {
				t.Logf("helm lint: %s", m)
			}
			for _, err := range res.Errors {
				t.Errorf("helm lint --strict: %v", err)
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
}

func TestNotesSayHowToCreateAReceiver(t *testing.T) {
	_, notes := render(t, nil)
	for _, want := range []string{"kind: CallbackReceiver", "kubectl -n chat get cbr", "every namespace", "kept on `helm uninstall`"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
	_, notes = render(t, map[string]any{"watchNamespaces": []any{"chat"}, "crds": map[string]any{"keep": false}})
	if !strings.Contains(notes, "reconciling CallbackReceivers in: chat.") || strings.Contains(notes, "kept on") {
		t.Errorf("NOTES.txt with watchNamespaces=[chat] and crds.keep=false:\n%s", notes)
	}
}
