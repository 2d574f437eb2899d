package main

import "testing"

func TestCallsGolden(t *testing.T) {
	useFixture(t)
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"callees_subject.txt", []string{"callees", "subject"}},
		{"callees_subject_depth2.json", []string{"callees", "--depth", "2", "--json", "subject"}},
		{"callers_target_fn.txt", []string{"callers", "target_fn"}},
		{"callers_callee.json", []string{"callers", "callee", "--json"}},
	} {
		code, out, errOut := runCmd(c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		golden(t, c.golden, []byte(out))
	}
}

func TestCallsBadInput(t *testing.T) {
	useFixture(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"callees", "subject", "--depth", "0"}, 2, "autoprof callees: --depth must be at least 1, got 0\n"},
		{[]string{"callees", "nosuch"}, 2, "autoprof callees: nosuch: no such kernel function (autoprof syms REGEX lists them)\n"},
		{[]string{"callees", "0xffffffff81000190"}, 1, "autoprof callees: address 0xffffffff81000190: not in kernel text\n"},
		{[]string{"callers", "nosuch"}, 2, "autoprof callers: nosuch: no such kernel function (autoprof syms REGEX lists them)\n"},
		{[]string{"callers", "target_fn", "--depth", "2"}, 2, "autoprof callers: flag provided but not defined: -depth (autoprof callers -h lists the flags)\n"},
	} {
		code, _, errOut := runCmd(c.args...)
		if code != c.code || errOut != c.want {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
