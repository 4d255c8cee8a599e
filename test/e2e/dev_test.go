package e2e

// `make dev` (hack/dev) exposes the sample through the ingress add-on and prints signed curls
// for status.callbackURL: the test runs `dev up` on a cluster of its own, runs the printed
// commands as printed, and `dev down`.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDevPrintsWorkingCurl(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	for name, pkg := range map[string]string{"dev": "./hack/dev", "demosink": "./hack/demosink"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
		cmd.Dir, cmd.Env = repoRoot, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v: %s", pkg, err, out)
		}
	}
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dev := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "dev"), args...)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	start := time.Now()
	out, err := dev("up", "--dir="+state, "--image="+receiverImage, "--image-archive="+imagesArchive,
		"--sink-binary="+filepath.Join(bin, "demosink"))
	t.Cleanup(func() {
		if out, err := dev("down", "--dir="+state); err != nil {
			t.Errorf("dev down: %v: %s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("dev up: %v: %s", err, out)
	}
	t.Logf("dev up in %s", time.Since(start).Round(time.Second))

	// The printed lines: TOKEN=..., T=...; SIGN=..., and each curl (two lines).
	lines := strings.Split(out, "\n")
	var setup []string
	var curls []string
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "TOKEN=") || strings.HasPrefix(l, "T=$(date"):
			setup = append(setup, l)
		case strings.HasPrefix(l, "curl ") && i+1 < len(lines):
			curls = append(curls, l+"\n"+lines[i+1])
		}
	}
	if len(setup) != 2 || len(curls) != 3 {
		t.Fatalf("dev up printed %d setup lines and %d curls, want 2 and 3 (plain, Ingress, HTTPRoute):\n%s", len(setup), len(curls), out)
	}
	for _, c := range curls[1:] {
		if !strings.Contains(c, "--resolve ") || !strings.Contains(c, "--cacert "+filepath.Join(state, "ca.crt")) || !strings.Contains(c, "https://") {
			t.Errorf("not a curl through the ingress trusting only the local CA: %s", c)
		}
	}
	for _, c := range curls {
		script := strings.Join(setup, "\n") + "\n" + c + "\n"
		// Once, as a user pastes it: dev up prints a command only after its address answered.
		got, err := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script).CombinedOutput()
		var r protocolReply
		if err == nil {
			err = json.Unmarshal(got, &r)
		}
		if err != nil || r != (protocolReply{ActionStatus: "OK"}) {
			t.Errorf("the printed command, run once, answered %s (%v), not ActionStatus OK:\n%s", got, err, script)
		}
	}

	// .dev/env, as a shell sources it.
	cmd := exec.CommandContext(ctx, "bash", "-c", `. "$1/env" && test -s "$CB_CA_FILE" && test -f "$KUBECONFIG" && echo "$CB_RECEIVER_ADDR $CB_INGRESS_HTTPS_ADDR"`, "bash", state)
	env, err := cmd.CombinedOutput()
	if err != nil || len(strings.Fields(string(env))) != 2 || !strings.HasPrefix(string(env), "127.0.0.1:") {
		t.Errorf("sourcing %s/env: %v: %q", state, err, env)
	}
}
