// Command crd-prose rewrites the descriptions of generated CRD files so that they read as
// prose in `kubectl explain`: controller-gen keeps the line breaks of the Go doc comments,
// and kubectl, which wraps text itself, then breaks lines mid-sentence. Lines of a paragraph
// are joined with a space; blank lines (paragraphs), list items and indented lines keep their
// breaks. Everything else in the files is written back as it was.
//
//	go run ./hack/crd-prose config/crd/bases/*.yaml
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := rewrite(path); err != nil {
			fmt.Fprintf(os.Stderr, "crd-prose: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func rewrite(path string) error {
	in, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := Rewrite(in)
	if err != nil {
		return err
	}
	if bytes.Equal(in, out) {
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

// Rewrite returns the CRD in with every description turned into prose. It round-trips
// through sigs.k8s.io/yaml, which writes what controller-gen writes (sorted keys, literal
// blocks), so nothing but the descriptions changes.
func Rewrite(in []byte) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(in, &doc); err != nil {
		return nil, err
	}
	walk(doc)
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(in, []byte("---\n")) {
		out = append([]byte("---\n"), out...)
	}
	return out, nil
}

func walk(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "description" {
				v[k] = Prose(s)
				continue
			}
			walk(x)
		}
	case []any:
		for _, x := range v {
			walk(x)
		}
	}
}

// Prose joins the lines of each paragraph of s with a space. A line stays on its own when
// it is blank, starts a list item ("- ", "* ", "1. "), or is indented (code, tables), and
// so does the line after it.
func Prose(s string) string {
	lines := strings.Split(s, "\n")
	var out strings.Builder
	for i, line := range lines {
		if i > 0 {
			prev := lines[i-1]
			if keepsBreak(prev) || keepsBreak(line) {
				out.WriteByte('\n')
			} else {
				out.WriteByte(' ')
			}
		}
		out.WriteString(line)
	}
	return out.String()
}

func keepsBreak(line string) bool {
	if strings.TrimSpace(line) == "" || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
		return true
	}
	if strings.HasPrefix(line, "- ") || strings.HasPrefix(line, "* ") {
		return true
	}
	// "1. ", "12. "
	i := 0
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	return i > 0 && strings.HasPrefix(line[i:], ". ")
}
