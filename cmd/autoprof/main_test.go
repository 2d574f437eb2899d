package main

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/leakcheck"
)

// TestMain fails the package's tests when they leave a kernel object
// behind: hunt and probe insert live instruments. A helper process (the
// test binary run by a test as a workload or as autoprof) is not checked:
// the instruments its parent inserts while it runs are not its leaks.
func TestMain(m *testing.M) {
	if os.Getenv("AUTOPROF_HELPER") != "" {
		os.Exit(m.Run())
	}
	os.Exit(leakcheck.Main(m))
}

// TestHelpAndVersion: -h, --help, help and help CMD print to stdout and
// exit 0, as go and perf do; --version names the build.
func TestHelpAndVersion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "usage: autoprof COMMAND"},
		{[]string{"--help"}, "usage: autoprof COMMAND"},
		{[]string{"help"}, "usage: autoprof COMMAND"},
		{[]string{"help", "hunt"}, "usage: autoprof hunt [flags] [-- CMD ARGS...]"},
		{[]string{"hunt", "-h"}, "-no-inherit"},
		{[]string{"probe", "--help"}, "usage: autoprof probe"},
		{[]string{"disasm", "-h"}, "-intel"},
		{[]string{"--version"}, "autoprof "},
		{[]string{"version"}, runtime.Version()},
	} {
		code, stdout, stderr := runCmd(c.args...)
		if code != 0 || !strings.Contains(stdout, c.want) || stderr != "" {
			t.Errorf("%q: exit %d, stdout %.200q, stderr %q; want 0 and stdout holding %q", c.args, code, stdout, stderr, c.want)
		}
	}
	if code, stdout, stderr := runCmd("help", "nosuch"); code != 2 || stdout != "" || !strings.Contains(stderr, `unknown command "nosuch"`) {
		t.Errorf("help nosuch: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestUnknownFlag: an unknown flag is one line on stderr naming it, with
// status 2, not the whole usage.
func TestUnknownFlag(t *testing.T) {
	for _, cmd := range []string{"hunt", "probe", "caps", "disasm", "diff", "report", "syms", "callees", "callers", "ui"} {
		code, stdout, stderr := runCmd(cmd, "--bogus")
		want := "autoprof " + cmd + ": flag provided but not defined: -bogus (autoprof " + cmd + " -h lists the flags)\n"
		if code != 2 || stdout != "" || stderr != want {
			t.Errorf("%s --bogus: exit %d, stdout %q, stderr %q; want 2 and %q", cmd, code, stdout, stderr, want)
		}
	}
}
