package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ImageMap maps container images to local programs, standing in for an image registry and a
// container runtime. A key is an image repository ("ghcr.io/imcallback/callback-operator",
// matching every tag and digest) or a full reference with tag or digest (matching only that).
// A value is either a directory, standing for the image's filesystem (the container's
// command[0] is looked up there by its base name), or a file, standing for an image whose
// entrypoint is that file.
type ImageMap map[string]string

// ParseImageMapping parses "image=path" as given to --image.
func ParseImageMapping(s string) (image, path string, err error) {
	image, path, ok := strings.Cut(s, "=")
	image, path = strings.TrimSpace(image), strings.TrimSpace(path)
	if !ok || image == "" || path == "" {
		return "", "", fmt.Errorf("image mapping %q: want <image>=<directory or program>, such as ghcr.io/imcallback/callback-operator=/work/bin", s)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", fmt.Errorf("image mapping %q: %w", s, err)
	}
	return NormalizeImage(image), abs, nil
}

// Set adds an "image=path" mapping; ImageMap is a flag.Value.
func (m ImageMap) Set(s string) error {
	image, path, err := ParseImageMapping(s)
	if err != nil {
		return err
	}
	m[image] = path
	return nil
}

func (m ImageMap) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k+"="+m[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

// NormalizeImage returns the reference in the fully qualified form a container runtime uses:
// "busybox" is "docker.io/library/busybox", "user/app:1" is "docker.io/user/app:1".
func NormalizeImage(ref string) string {
	name := ref
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		if !hasSlash {
			name = "library/" + name
		}
		name = "docker.io/" + name
	}
	return name
}

// splitImage splits a normalized reference into repository and the tag or digest suffix
// (with its ":" or "@").
func splitImage(ref string) (repo, suffix string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i], ref[i:]
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return ref[:i], ref[i:]
	}
	return ref, ""
}

// Program is what runs for a container: the executable and its arguments.
type Program struct {
	Path string
	Args []string
	// ImageID identifies the local program that stands in for the image, for containerStatuses.
	ImageID string
}

// ImageError says why no program could be found for a container; Reason is the waiting
// reason a kubelet would report.
type ImageError struct {
	Reason  string
	Message string
}

func (e *ImageError) Error() string { return e.Reason + ": " + e.Message }

// Resolve finds the local program for a container of image with the given (already
// expanded) command and args, following Kubernetes' rules: command replaces the image's
// entrypoint, args are appended.
func (m ImageMap) Resolve(image string, command, args []string) (Program, error) {
	ref := NormalizeImage(image)
	target, ok := m[ref]
	if !ok {
		repo, _ := splitImage(ref)
		target, ok = m[repo]
	}
	if !ok {
		known := make([]string, 0, len(m))
		for k := range m {
			known = append(known, k)
		}
		sort.Strings(known)
		return Program{}, &ImageError{Reason: "ErrImagePull", Message: fmt.Sprintf(
			"node agent has no local program for image %q (known images: %s); map it with --image %s=<directory or program>",
			image, strings.Join(known, ", "), ref)}
	}
	st, err := os.Stat(target)
	if err != nil {
		return Program{}, &ImageError{Reason: "ErrImagePull", Message: fmt.Sprintf("image %q maps to %s: %v", image, target, err)}
	}
	var path string
	switch {
	case st.IsDir():
		if len(command) == 0 {
			return Program{}, &ImageError{Reason: "CreateContainerError", Message: fmt.Sprintf(
				"image %q maps to directory %s, which has no entrypoint: set the container's command", image, target)}
		}
		path = filepath.Join(target, filepath.Base(command[0]))
		if _, err := os.Stat(path); err != nil {
			return Program{}, &ImageError{Reason: "CreateContainerError", Message: fmt.Sprintf(
				"image %q (directory %s) has no program %q: %v", image, target, command[0], err)}
		}
		command = command[1:]
	default:
		path = target
		if len(command) > 0 {
			if filepath.Base(command[0]) != filepath.Base(target) {
				return Program{}, &ImageError{Reason: "CreateContainerError", Message: fmt.Sprintf(
					"image %q maps to the single program %s; the container's command %q is not in it", image, target, command[0])}
			}
			command = command[1:]
		}
	}
	all := append(append([]string{}, command...), args...)
	return Program{Path: path, Args: all, ImageID: "nodeagent://" + path}, nil
}
