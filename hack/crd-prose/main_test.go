package main

import (
	"strings"
	"testing"
)

func TestProse(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"one line", "one line"},
		{"a sentence broken\nin the middle.", "a sentence broken in the middle."},
		{"first paragraph\ngoes on.\n\nsecond one\nas well.", "first paragraph goes on.\n\nsecond one as well."},
		{"Options:\n- one\n- two\nafter the list", "Options:\n- one\n- two\nafter the list"},
		{"Steps:\n1. first\n2. second", "Steps:\n1. first\n2. second"},
		{"Example:\n  kubectl get cbr\nmore text", "Example:\n  kubectl get cbr\nmore text"},
		{"ends with a break\n", "ends with a break\n"},
	} {
		if got := Prose(c.in); got != c.want {
			t.Errorf("Prose(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRewriteChangesOnlyDescriptions(t *testing.T) {
	in := "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec:\n  versions:\n  - name: v1\n    schema:\n      openAPIV3Schema:\n        description: |-\n          A resource\n          of the tests.\n        properties:\n          x:\n            default: |-\n              keep\n              this\n            type: string\n"
	out, err := Rewrite([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(in, "description: |-\n          A resource\n          of the tests.", "description: A resource of the tests.", 1)
	if string(out) != want {
		t.Errorf("Rewrite =\n%s\nwant\n%s", out, want)
	}
}
