package authtoken

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		value, want string
		blank       bool
	}{
		{value: "xxxxyyyy", want: "xxxxyyyy"},
		{value: "xxxxyyyy\n", want: "xxxxyyyy"},
		{value: " \txxxx yyyy\r\n", want: "xxxx yyyy"},
		{value: "", blank: true},
		{value: "\n", blank: true},
		{value: " \t\r\n\v\f", blank: true},
		{value: "\u00a0\u2003", blank: true}, // Unicode spaces too: nothing a console shows
	} {
		got, err := Parse(tc.value)
		if tc.blank {
			if !errors.Is(err, ErrBlank) || got != "" {
				t.Errorf("Parse(%q) = %q, %v; want ErrBlank", tc.value, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.value, got, err, tc.want)
		}
	}
}
