package chart

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const deployment = "Deployment " + releaseNamespace + "/callback-operator-controller-manager"

// at walks a path of map keys and list indexes ("spec.template.spec.containers.0.image").
func at(v any, path string) (any, bool) {
	for _, p := range strings.Split(path, ".") {
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = c[p]; !ok {
				return nil, false
			}
		case object:
			var ok bool
			if v, ok = c[p]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// yamlValue is a YAML literal as the objects hold it.
func yamlValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}

func args(objs map[string]object) []string {
	var out []string
	a, _ := at(objs[deployment], "spec.template.spec.containers.0.args")
	for _, x := range a.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func env(objs map[string]object, name string) (map[string]any, bool) {
	e, _ := at(objs[deployment], "spec.template.spec.containers.0.env")
	for _, x := range e.([]any) {
		if m := x.(map[string]any); m["name"] == name {
			return m, true
		}
	}
	return nil, false
}

// TestEachValueLandsWhereItShould sets one value (or a few that go together) per row and
// checks the rendered field it must set: a path into one object and the YAML it must hold,
// or a check of its own.
func TestEachValueLandsWhereItShould(t *testing.T) {
	type field struct{ object, path, want string }
	mgr := func(path, want string) field {
		return field{deployment, "spec.template.spec." + path, want}
	}
	for _, tc := range []struct {
		name   string
		values string
		fields []field
		check  func(t *testing.T, objs map[string]object)
	}{
		{name: "image tag defaults to appVersion", values: `{}`, fields: []field{
			mgr("containers.0.image", "ghcr.io/imcallback/callback-operator:dev"),
		}},
		{name: "image registry, repository and tag", values: `image: {registry: r.example.com, repository: team/cbo, tag: v1.2.3}`, fields: []field{
			mgr("containers.0.image", "r.example.com/team/cbo:v1.2.3"),
			mgr("containers.0.env.0", "{name: RECEIVER_IMAGE, value: r.example.com/team/cbo:v1.2.3}"),
		}},
		{name: "image without registry", values: `image: {registry: "", repository: cbo, tag: v1}`, fields: []field{
			mgr("containers.0.image", "cbo:v1"),
		}},
		{name: "image digest wins over the tag", values: `image: {tag: v1, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`, fields: []field{
			mgr("containers.0.image", "ghcr.io/imcallback/callback-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
		}},
		{name: "image pullPolicy", values: `image: {pullPolicy: Always}`, fields: []field{
			mgr("containers.0.imagePullPolicy", "Always"),
		}},
		{name: "receiverImage", values: `receiverImage: r.example.com/receiver:v2`, fields: []field{
			mgr("containers.0.image", "ghcr.io/imcallback/callback-operator:dev"),
			mgr("containers.0.env.0", "{name: RECEIVER_IMAGE, value: r.example.com/receiver:v2}"),
		}},
		{name: "imagePullSecrets", values: `imagePullSecrets: [{name: regcred}]`, fields: []field{
			mgr("imagePullSecrets", "[{name: regcred}]"),
		}},
		{name: "replicaCount", values: `replicaCount: 3`, fields: []field{
			{deployment, "spec.replicas", "3"},
		}},
		{name: "leaderElection off", values: `leaderElection: {enabled: false}`, check: func(t *testing.T, objs map[string]object) {
			if a := args(objs); a[0] != "--leader-elect=false" {
				t.Errorf("args %v", a)
			}
		}},
		{name: "resources", values: `resources: {requests: {cpu: 1, memory: 1Gi}, limits: {memory: 2Gi}}`, fields: []field{
			mgr("containers.0.resources", "{requests: {cpu: 1, memory: 1Gi}, limits: {memory: 2Gi}}"),
		}},
		{name: "nodeSelector", values: `nodeSelector: {kubernetes.io/os: linux}`, fields: []field{
			mgr("nodeSelector", "{kubernetes.io/os: linux}"),
		}},
		{name: "tolerations", values: `tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]`, fields: []field{
			mgr("tolerations", "[{key: dedicated, operator: Exists, effect: NoSchedule}]"),
		}},
		{name: "affinity", values: `affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: a, operator: In, values: [b]}]}]}}}`, fields: []field{
			mgr("affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.0.matchExpressions.0.key", "a"),
		}},
		{name: "topologySpreadConstraints", values: `topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]`, fields: []field{
			mgr("topologySpreadConstraints", "[{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]"),
		}},
		{name: "priorityClassName", values: `priorityClassName: system-cluster-critical`, fields: []field{
			mgr("priorityClassName", "system-cluster-critical"),
		}},
		{name: "podAnnotations and podLabels", values: `{podAnnotations: {a.example.com/x: "1"}, podLabels: {team: im}}`, fields: []field{
			{deployment, "spec.template.metadata.annotations", `{kubectl.kubernetes.io/default-container: manager, a.example.com/x: "1"}`},
			{deployment, "spec.template.metadata.labels", `{app.kubernetes.io/name: callback-operator, control-plane: controller-manager, team: im}`},
			// The selector stays: a Deployment's selector cannot change on upgrade.
			{deployment, "spec.selector.matchLabels", `{app.kubernetes.io/name: callback-operator, control-plane: controller-manager}`},
		}},
		{name: "podSecurityContext", values: `podSecurityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}`, fields: []field{
			mgr("securityContext", "{runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}"),
		}},
		{name: "securityContext", values: `securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: false, capabilities: {drop: [ALL]}}`, fields: []field{
			mgr("containers.0.securityContext.readOnlyRootFilesystem", "false"),
		}},
		{name: "allowImageOverride", values: `allowImageOverride: true`, check: func(t *testing.T, objs map[string]object) {
			if a := args(objs); !slices.Contains(a, "--allow-image-override") {
				t.Errorf("args %v", a)
			}
		}},
		{name: "logLevel", values: `logLevel: debug`, check: func(t *testing.T, objs map[string]object) {
			if a := args(objs); !slices.Contains(a, "--zap-log-level=debug") {
				t.Errorf("args %v", a)
			}
		}},
		{name: "extraArgs", values: `extraArgs: [--workers=16]`, check: func(t *testing.T, objs map[string]object) {
			if a := args(objs); a[len(a)-1] != "--workers=16" {
				t.Errorf("args %v", a)
			}
		}},
		{name: "extraEnv", values: `extraEnv: [{name: GODEBUG, value: "madvdontneed=1"}]`, check: func(t *testing.T, objs map[string]object) {
			if e, ok := env(objs, "GODEBUG"); !ok || e["value"] != "madvdontneed=1" {
				t.Errorf("GODEBUG: %v", e)
			}
		}},
		{name: "serviceAccount annotations", values: `serviceAccount: {annotations: {iam.example.com/role: cbo}}`, fields: []field{
			{"ServiceAccount " + releaseNamespace + "/callback-operator-controller-manager", "metadata.annotations", "{iam.example.com/role: cbo}"},
		}},
		{name: "fullnameOverride names every object", values: `fullnameOverride: im`, fields: []field{
			{"Deployment " + releaseNamespace + "/im-controller-manager", "spec.template.spec.serviceAccountName", "im-controller-manager"},
			{"ClusterRoleBinding /im-manager-rolebinding", "roleRef.name", "im-manager-role"},
			{"Service " + releaseNamespace + "/im-controller-manager-metrics-service", "spec.ports.0.port", "8443"},
		}},
		{name: "watchNamespaces: a Role and its bindings in each, nothing cluster-wide", values: `watchNamespaces: [chat, games, chat]`, check: func(t *testing.T, objs map[string]object) {
			e, ok := env(objs, "WATCH_NAMESPACES")
			if !ok || e["value"] != "chat,games" {
				t.Errorf("WATCH_NAMESPACES: %v", e)
			}
			for _, ns := range []string{"chat", "games"} {
				for _, k := range []string{"Role " + ns + "/callback-operator-manager-role", "RoleBinding " + ns + "/callback-operator-manager-rolebinding", "RoleBinding " + ns + "/callback-operator-addressable-resolver-rolebinding"} {
					if _, ok := objs[k]; !ok {
						t.Errorf("no %s", k)
					}
				}
			}
			for _, k := range []string{"ClusterRole /callback-operator-manager-role", "ClusterRoleBinding /callback-operator-manager-rolebinding", "ClusterRoleBinding /callback-operator-addressable-resolver-rolebinding"} {
				if _, ok := objs[k]; ok {
					t.Errorf("%s rendered with watchNamespaces", k)
				}
			}
			if !reflect.DeepEqual(objs["Role chat/callback-operator-manager-role"]["rules"], yamlValue(t, string(readFile(t, "config/rbac/role.yaml"))).(map[string]any)["rules"]) {
				t.Errorf("the Role's rules are not config/rbac/role.yaml's")
			}
		}},
		{name: "aggregateToDefaultRoles off", values: `aggregateToDefaultRoles: false`, check: func(t *testing.T, objs map[string]object) {
			for k := range objs {
				if strings.Contains(k, "callbackreceiver-") {
					t.Errorf("%s rendered", k)
				}
			}
		}},
		{name: "podMonitor: labels, interval, watched namespaces", values: `{watchNamespaces: [chat], monitoring: {podMonitor: {enabled: true, labels: {release: kps}, interval: 15s}}}`, fields: []field{
			{"PodMonitor " + releaseNamespace + "/callback-operator-receivers", "metadata.labels.release", "kps"},
			{"PodMonitor " + releaseNamespace + "/callback-operator-receivers", "spec.podMetricsEndpoints.0.interval", "15s"},
			{"PodMonitor " + releaseNamespace + "/callback-operator-receivers", "spec.namespaceSelector", "{matchNames: [chat]}"},
		}},
		{name: "serviceMonitor with Prometheus' ServiceAccount", values: `monitoring: {serviceMonitor: {enabled: true, labels: {release: kps}, interval: 30s, prometheusServiceAccount: {name: prom, namespace: monitoring}}}`, fields: []field{
			{"ServiceMonitor " + releaseNamespace + "/callback-operator-controller-manager", "metadata.labels.release", "kps"},
			{"ServiceMonitor " + releaseNamespace + "/callback-operator-controller-manager", "spec.endpoints.0.interval", "30s"},
			{"ClusterRoleBinding /callback-operator-metrics-reader", "subjects", "[{kind: ServiceAccount, name: prom, namespace: monitoring}]"},
			{"ClusterRoleBinding /callback-operator-metrics-reader", "roleRef.name", "callback-operator-metrics-reader"},
		}},
		{name: "prometheusRule labels", values: `monitoring: {prometheusRule: {enabled: true, labels: {release: kps}}}`, fields: []field{
			{"PrometheusRule " + releaseNamespace + "/callback-operator-alerts", "metadata.labels.release", "kps"},
			{"PrometheusRule " + releaseNamespace + "/callback-operator-alerts", "spec.groups.0.name", "callback-receivers"},
		}},
		{name: "dashboards: namespace, labels, annotations", values: `monitoring: {dashboards: {enabled: true, namespace: monitoring, labels: {grafana_dashboard: "1", x: z}, annotations: {grafana_folder: IM}}}`, fields: []field{
			{"ConfigMap monitoring/callback-operator-dashboard", "metadata.labels.x", "z"},
			{"ConfigMap monitoring/callback-operator-dashboard", "metadata.labels.grafana_dashboard", `"1"`},
			{"ConfigMap monitoring/callback-operator-dashboard", "metadata.annotations", "{grafana_folder: IM}"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, _ := render(t, yamlValue(t, tc.values).(map[string]any))
			for _, f := range tc.fields {
				o, ok := objs[f.object]
				if !ok {
					t.Errorf("no %s rendered; have %v", f.object, keys(objs))
					continue
				}
				got, ok := at(o, f.path)
				if !ok {
					t.Errorf("%s: no %s", f.object, f.path)
					continue
				}
				if want := yamlValue(t, f.want); !reflect.DeepEqual(got, want) {
					t.Errorf("%s %s = %s, want %s", f.object, f.path, strings.TrimSpace(toYAML(got)), strings.TrimSpace(toYAML(want)))
				}
			}
			if tc.check != nil {
				tc.check(t, objs)
			}
		})
	}
}

// TestRequiredValuesFail: a ServiceAccount name without its namespace is a render error.
func TestRequiredValuesFail(t *testing.T) {
	_, _, err := tryRender(t, yamlValue(t, `monitoring: {serviceMonitor: {enabled: true, prometheusServiceAccount: {name: prom}}}`).(map[string]any))
	if err == nil || !strings.Contains(err.Error(), "prometheusServiceAccount.namespace is required") {
		t.Errorf("err = %v", err)
	}
}

// TestSchemaRefusesMistakes: values.schema.json stops a misspelt or mistyped value at
// install time instead of rendering without it.
func TestSchemaRefusesMistakes(t *testing.T) {
	for _, values := range []string{
		`watchNamespace: [chat]`,
		`watchNamespaces: chat`,
		`monitoring: {podMonitor: {enable: true}}`,
		`image: {digest: "latest"}`,
		`replicaCount: two`,
	} {
		if _, _, err := tryRender(t, yamlValue(t, values).(map[string]any)); err == nil {
			t.Errorf("%s: rendered without error", values)
		}
	}
}
