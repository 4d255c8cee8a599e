package localcluster

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/imcallback/callback-operator/internal/natstest"
)

// The NATS manifest is valid YAML for both stores, nats-server accepts its configuration
// (nats-server -t), and its StatefulSet keeps each server's store where the options say: an
// emptyDir, or a claim of the named class.
func TestNATSManifest(t *testing.T) {
	for _, class := range []string{"", "standard"} {
		var b bytes.Buffer
		if err := natsManifest.Execute(&b, map[string]any{"Namespace": "ns", "Name": "nats", "Replicas": 3,
			"Image": "img", "SyncAlways": true, "StorageClassName": class, "Routes": []string{"nats://a:6222", "nats://b:6222"}}); err != nil {
			t.Fatal(err)
		}
		var sts *appsv1.StatefulSet
		for _, doc := range strings.Split(b.String(), "\n---\n") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("class %q: %v in\n%s", class, err, doc)
			}
			if obj["kind"] == "ConfigMap" {
				var cm corev1.ConfigMap
				if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil {
					t.Fatal(err)
				}
				checkNATSConfig(t, cm.Data["nats.conf"])
			}
			if obj["kind"] == "StatefulSet" {
				sts = &appsv1.StatefulSet{}
				if err := yaml.UnmarshalStrict([]byte(doc), sts); err != nil {
					t.Fatalf("class %q: StatefulSet: %v", class, err)
				}
			}
		}
		if sts == nil {
			t.Fatalf("class %q: no StatefulSet", class)
		}
		claims := len(sts.Spec.VolumeClaimTemplates)
		if (class == "") != (claims == 0) {
			t.Errorf("class %q: %d volume claim templates", class, claims)
		}
		if !strings.Contains(b.String(), "sync_interval: always") || !strings.Contains(b.String(), "routes: [nats://a:6222, nats://b:6222]") {
			t.Errorf("class %q: config lacks sync_interval or routes:\n%s", class, b.String())
		}
	}
}

// checkNATSConfig runs nats-server -t on a configuration, as the pod would read it.
func checkNATSConfig(t *testing.T, conf string) {
	t.Helper()
	bin, err := natstest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(f, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-t", "--config", f)
	cmd.Env = append(os.Environ(), "POD_NAME=nats-0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nats-server -t: %v: %s\n%s", err, out, conf)
	}
}
