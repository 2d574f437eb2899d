package main

import "testing"

func TestCallersGolden(t *testing.T) {
	useFixture(t)
	for _, c := range []struct {
		golden string
		args   []string
	}{
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

func TestCallersBadInput(t *testing.T) {
	useFixture(t)
	code, _, errOut := runCmd("callers", "nosuch")
	if want := "autoprof callers: nosuch: no such kernel function (autoprof syms REGEX lists them)\n"; code != 2 || errOut != want {
		t.Errorf("exit %d, stderr %q; want 2, %q", code, errOut, want)
	}
}
