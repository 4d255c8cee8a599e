package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	// The release of the comparisons: named and placed as config/default names and places the
	// operator, so that the chart's objects carry the same names.
	releaseName      = "callback-operator"
	releaseNamespace = "callback-operator-system"
)

// root is the checkout's top directory (this module lives in test/chart).
var root = func() string {
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return dir
}()

var chartDir = filepath.Join(root, "charts", "callback-operator")

// object is one Kubernetes object, as YAML decodes it.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) meta(field string) string {
	m, _ := o["metadata"].(map[string]any)
	s, _ := m[field].(string)
	return s
}

// key identifies an object in a release: kind, namespace and name.
func (o object) key() string {
	return o.kind() + " " + o.meta("namespace") + "/" + o.meta("name")
}

func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading %s: %v", chartDir, err)
	}
	return c
}

// render renders the chart as `helm template` would for an install, with values merged over
// values.yaml, and returns its objects by key and the NOTES.
func render(t *testing.T, values map[string]any) (map[string]object, string) {
	t.Helper()
	objs, notes, err := tryRender(t, values)
	if err != nil {
		t.Fatalf("rendering the chart with %v: %v", values, err)
	}
	return objs, notes
}

func tryRender(t *testing.T, values map[string]any) (map[string]object, string, error) {
	t.Helper()
	c := loadChart(t)
	opts := common.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true}
	vals, err := util.ToRenderValuesWithSchemaValidation(c, values, opts, common.DefaultCapabilities, false)
	if err != nil {
		return nil, "", err
	}
	files, err := engine.Render(c, vals)
	if err != nil {
		return nil, "", err
	}
	objs := map[string]object{}
	var notes string
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			notes = files[name]
			continue
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		docs, err := decodeAll([]byte(files[name]))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		for _, o := range docs {
			if _, dup := objs[o.key()]; dup {
				return nil, "", fmt.Errorf("%s: %s rendered twice", name, o.key())
			}
			objs[o.key()] = o
		}
	}
	return objs, notes, nil
}

// decodeAll decodes a multi-document YAML stream, skipping empty documents.
func decodeAll(b []byte) ([]object, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		if len(o) > 0 {
			out = append(out, o)
		}
	}
}

// kustomize builds a directory of config/ as `kustomize build` does.
func kustomize(t *testing.T, dir string) map[string]object {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := decodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]object{}
	for _, o := range docs {
		objs[o.key()] = o
	}
	return objs
}

// releaseLabels are the labels that say who installed an object (Helm or kustomize) and
// which release: they are what may differ between the chart and config/.
var releaseLabels = []string{
	"app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart",
}

// withoutReleaseLabels returns a deep copy of o without releaseLabels in its metadata, and
// without app.kubernetes.io/name unless keepName (objects config/ generates unlabelled, such
// as the manager's role, carry it in the chart).
func withoutReleaseLabels(o object, keepName bool) object {
	c := deepCopy(o)
	if m, ok := c["metadata"].(map[string]any); ok {
		if l, ok := m["labels"].(map[string]any); ok {
			for _, k := range releaseLabels {
				delete(l, k)
			}
			if !keepName {
				delete(l, "app.kubernetes.io/name")
			}
			if len(l) == 0 {
				delete(m, "labels")
			}
		}
	}
	return c
}

func deepCopy(o object) object {
	b, err := yaml.Marshal(o)
	if err != nil {
		panic(err)
	}
	var c object
	if err := yaml.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return c
}

func toYAML(o any) string {
	b, err := yaml.Marshal(o)
	if err != nil {
		return fmt.Sprint(o)
	}
	return string(b)
}

// diff says where two YAML renderings first differ, with a few lines of each around it
// (empty when equal).
func diff(want, got string) string {
	if want == got {
		return ""
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	excerpt := func(lines []string) string {
		from, to := max(0, i-3), min(len(lines), i+4)
		return strings.Join(lines[from:to], "\n")
	}
	return fmt.Sprintf("first difference at line %d\n--- config/ (or the source):\n%s\n--- chart:\n%s\n", i+1, excerpt(w), excerpt(g))
}

// readFile reads a file of the checkout.
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
