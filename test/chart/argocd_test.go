package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// argoHealth runs a health.lua as Argo CD runs a resource customization's (util/lua/lua.go,
// useOpenLibs false): only the package, base and table libraries, no string, math, io or os,
// a one-second budget, the object as the global obj with integers as numbers.
func argoHealth(t *testing.T, script string, obj map[string]any) (status, message string) {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", luaValue(l, obj))
	if err := l.DoString(script); err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, not a table", l.Get(-1).Type())
	}
	status, message = lua.LVAsString(ret.RawGetString("status")), lua.LVAsString(ret.RawGetString("message"))
	switch status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		t.Errorf("health.lua returned status %q, which Argo CD turns into Unknown", status)
	}
	return status, message
}

// luaValue converts an object as Argo CD's decodeValue does.
func luaValue(l *lua.LState, v any) lua.LValue {
	switch c := v.(type) {
	case bool:
		return lua.LBool(c)
	case int64:
		return lua.LNumber(c)
	case float64:
		return lua.LNumber(c)
	case string:
		return lua.LString(c)
	case []any:
		arr := l.CreateTable(len(c), 0)
		for _, item := range c {
			arr.Append(luaValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(c))
		for k, item := range c {
			tbl.RawSetH(lua.LString(k), luaValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// unstructured decodes YAML as the API machinery does for Argo CD: integers as int64.
func unstructured(t *testing.T, b []byte) map[string]any {
	t.Helper()
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return numbers(v).(map[string]any)
}

func numbers(v any) any {
	switch c := v.(type) {
	case json.Number:
		if i, err := c.Int64(); err == nil {
			return i
		}
		f, _ := c.Float64()
		return f
	case []any:
		for i := range c {
			c[i] = numbers(c[i])
		}
	case map[string]any:
		for k := range c {
			c[k] = numbers(c[k])
		}
	}
	return v
}

// TestArgoCDHealth runs config/argocd/health.lua against each resource of its
// health_test.yaml, as Argo CD's own tests of resource_customizations do.
func TestArgoCDHealth(t *testing.T) {
	script := string(readFile(t, "config/argocd/health.lua"))
	var suite struct {
		Tests []struct {
			HealthStatus struct{ Status, Message string } `json:"healthStatus"`
			InputPath    string                           `json:"inputPath"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, "config/argocd/health_test.yaml"), &suite); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tc := range suite.Tests {
		t.Run(tc.InputPath, func(t *testing.T) {
			obj := unstructured(t, readFile(t, filepath.Join("config/argocd", tc.InputPath)))
			status, message := argoHealth(t, script, obj)
			if status != tc.HealthStatus.Status || message != tc.HealthStatus.Message {
				t.Errorf("health = %s %q, want %s %q", status, message, tc.HealthStatus.Status, tc.HealthStatus.Message)
			}
			seen[status] = true
		})
	}
	for _, s := range []string{"Healthy", "Progressing", "Degraded"} {
		if !seen[s] {
			t.Errorf("no test resource is %s", s)
		}
	}
	if n := len(mustGlob(t, "config/argocd/testdata/*.yaml")); n != len(suite.Tests) {
		t.Errorf("config/argocd/testdata has %d resources, health_test.yaml tests %d", n, len(suite.Tests))
	}
}

// TestArgoCDSandboxHasNoStringLibrary: the sandbox above is Argo CD's, so a script that
// reaches for the string library fails here as it would there.
func TestArgoCDSandboxHasNoStringLibrary(t *testing.T) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	if err := l.CallByParam(lua.P{Fn: l.NewFunction(lua.OpenBase), NRet: 0, Protect: true}, lua.LString(lua.BaseLibName)); err != nil {
		t.Fatal(err)
	}
	if err := l.DoString(`return string.format("%d", 1)`); err == nil {
		t.Error("string.format ran in the sandbox")
	}
}
