package nodeagent

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestNormalizeImage(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":      "docker.io/library/busybox",
		"busybox:1.36": "docker.io/library/busybox:1.36",
		"user/app":     "docker.io/user/app",
		"ghcr.io/imcallback/callback-operator:dev": "ghcr.io/imcallback/callback-operator:dev",
		"localhost/app":                "localhost/app",
		"registry:5000/app@sha256:abc": "registry:5000/app@sha256:abc",
	} {
		if got := NormalizeImage(in); got != want {
			t.Errorf("NormalizeImage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImageMapResolve(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"receiver", "demosink"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sink := filepath.Join(dir, "demosink")
	m := ImageMap{}
	for _, s := range []string{
		"ghcr.io/imcallback/callback-operator=" + dir,
		"gcr.io/knative-releases/knative.dev/eventing/cmd/event_display=" + sink,
		"busybox:pinned=" + dir,
	} {
		if err := m.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name          string
		image         string
		command, args []string
		wantPath      string
		wantArgs      []string
		wantReason    string
	}{
		{"directory, any tag", "ghcr.io/imcallback/callback-operator:dev", []string{"/receiver"}, []string{"--listen=:8080"},
			filepath.Join(dir, "receiver"), []string{"--listen=:8080"}, ""},
		{"directory, digest", "ghcr.io/imcallback/callback-operator@sha256:0123", []string{"/usr/bin/receiver", "-v"}, []string{"--x"},
			filepath.Join(dir, "receiver"), []string{"-v", "--x"}, ""},
		{"directory without command", "ghcr.io/imcallback/callback-operator:dev", nil, []string{"--x"}, "", nil, "CreateContainerError"},
		{"directory without that program", "ghcr.io/imcallback/callback-operator:dev", []string{"/manager"}, nil, "", nil, "CreateContainerError"},
		{"file is the entrypoint", "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display", nil, []string{"--listen=:9"},
			sink, []string{"--listen=:9"}, ""},
		{"file with its own name as command", "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display:v1", []string{"/ko-app/demosink"}, nil,
			sink, []string{}, ""},
		{"file with another command", "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display", []string{"/bin/sh"}, nil, "", nil, "CreateContainerError"},
		{"full reference matches only that tag", "busybox:pinned", []string{"receiver"}, nil, filepath.Join(dir, "receiver"), []string{}, ""},
		{"other tag of a full reference", "busybox:latest", []string{"receiver"}, nil, "", nil, "ErrImagePull"},
		{"unknown image", "nginx", nil, nil, "", nil, "ErrImagePull"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := m.Resolve(tc.image, tc.command, tc.args)
			if tc.wantReason != "" {
				var ie *ImageError
				if !errors.As(err, &ie) || ie.Reason != tc.wantReason {
					t.Fatalf("Resolve = %+v, %v; want an ImageError %s", p, err, tc.wantReason)
				}
				if ie.Message == "" {
					t.Error("empty message")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Path != tc.wantPath || (!reflect.DeepEqual(p.Args, tc.wantArgs) && (len(p.Args) != 0 || len(tc.wantArgs) != 0)) {
				t.Errorf("Resolve = %q %q, want %q %q", p.Path, p.Args, tc.wantPath, tc.wantArgs)
			}
		})
	}
}

func TestParseImageMappingRejectsGarbage(t *testing.T) {
	for _, s := range []string{"", "noequals", "=path", "image="} {
		if _, _, err := ParseImageMapping(s); err == nil {
			t.Errorf("ParseImageMapping(%q) succeeded", s)
		}
	}
}
