package main

import (
	"strings"
	"testing"
)

func TestSymsGolden(t *testing.T) {
	useFixture(t)
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"syms.txt", []string{"syms"}},
		{"syms_subject.json", []string{"syms", "--json", "^subject"}},
		{"syms_all.txt", []string{"syms", "--all", "table|_stext"}},
	} {
		code, out, errOut := runCmd(c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		golden(t, c.golden, []byte(out))
	}
}

func TestSymsBadInput(t *testing.T) {
	useFixture(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"syms", "("}, 2, "autoprof syms: bad REGEX \"(\": error parsing regexp: missing closing ): `(`\n"},
		{[]string{"syms", "a", "b"}, 2, "autoprof syms: syms takes at most one REGEX, got \"a b\"\n"},
		{[]string{"syms", "--system-map", "x"}, 2, ""},
	} {
		code, _, errOut := runCmd(c.args...)
		if code != c.code || c.want != "" && errOut != c.want || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
