package localcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerdConfigAsContainerdReadsIt: containerd (the cached binary) reads the config
// with the settings that decide whether pods run on these machines, and nothing outside the
// slot's directory but Debian's runc and CNI plugins.
func TestContainerdConfigAsContainerdReadsIt(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	nodeAssets, err := assets(context.Background(), root, "LOCALCLUSTER_NODE_ASSETS", "node.sh")
	if err != nil {
		t.Fatal(err)
	}
	p := paths{dir: t.TempDir()}
	cfg := filepath.Join(p.dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(containerdConfig(p, PauseImage)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(nodeAssets, "containerd"), "--config", cfg, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, out)
	}
	dump := string(out)
	for _, want := range []string{
		"restrict_oom_score_adj = true",
		"netns_mounts_under_state_dir = true",
		"SystemdCgroup = false",
		"BinaryName = '" + RuncBinary + "'",
		"sandbox = '" + PauseImage + "'",
		"config_path = '" + p.registryHostsDir() + "'",
		"conf_dir = '" + p.cniConfDir() + "'",
		"address = '" + p.containerdSocket() + "'",
		"root = '" + p.join("containerd", "root") + "'",
		"state = '" + p.join("containerd", "state") + "'",
		"disable_tcp_service = true",
		"stream_server_address = '127.0.0.1'",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("containerd's view of the config lacks %q", want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/run/a`:                `/run/a`,
		`/run/with\040space`:    `/run/with space`,
		`/run/tab\011and\134bs`: "/run/tab\tand\\bs",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitImage(t *testing.T) {
	for in, want := range map[string][2]string{
		"ghcr.io/imcallback/callback-operator:dev": {"ghcr.io/imcallback/callback-operator", "dev"},
		"localhost:5000/x":                         {"localhost:5000/x", "latest"},
		"localhost:5000/x:v1":                      {"localhost:5000/x", "v1"},
	} {
		if repo, tag := splitImage(in); repo != want[0] || tag != want[1] {
			t.Errorf("splitImage(%q) = %q, %q, want %q", in, repo, tag, want)
		}
	}
}
