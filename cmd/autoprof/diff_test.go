package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/reports"
)

func TestDiffCommand(t *testing.T) {
	base, new := fixtureRun(t, "read4k-6.1"), fixtureRun(t, "read64k-6.1")
	out := filepath.Join(t.TempDir(), "diff")
	code, stdout, errs := runCmd("diff", base, new, "-o", out)
	if code != 0 || !strings.Contains(stdout, "SIGNIFICANT CHANGES") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	// The copy routine is the first significant change.
	first := stdout[strings.Index(stdout, "SIGNIFICANT CHANGES"):]
	if !strings.Contains(strings.SplitN(first, "\n", 3)[1], "copy_user_enhanced_fast_string") {
		t.Errorf("first change: %q", strings.SplitN(first, "\n", 3)[1])
	}
	for _, f := range []string{reports.DiffTextFile, reports.DiffHTMLFile, reports.DiffJSONFile, reports.DiffBaseProfile, reports.DiffNewProfile} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("diff did not write %s: %v", f, err)
		}
	}
	code, stdout, _ = runCmd("diff", "--json", base, new)
	var c map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &c) != nil || c["significant"] == nil {
		t.Errorf("--json: exit %d, %.200q", code, stdout)
	}
}

// TestDiffBadInput: corrupt, mismatched or missing inputs give exit status
// 1 (2 for usage), one line, and no output directory.
func TestDiffBadInput(t *testing.T) {
	good := fixtureRun(t, "read4k-6.1")
	corrupt := fixtureRun(t, "read64k-6.1")
	os.WriteFile(filepath.Join(corrupt, reports.RunFile), []byte(`{"format": "autoprof-run/2", "meta": {`), 0o644)
	other := fixtureRun(t, "fsync-6.1")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"corrupt", []string{good, corrupt}, 1, "new: " + filepath.Join(corrupt, reports.RunFile) + ": truncated"},
		{"mismatched", []string{good, other}, 1, "no calling context in common"},
		{"missing", []string{good, filepath.Join(good, "nope")}, 1, "no such file"},
		{"one argument", []string{good}, 2, "two run directories"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "diff")
			code, stdout, errs := runCmd(append([]string{"diff", "-o", out}, c.args...)...)
			if code != c.code || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit %d and %q in one line", code, errs, c.code, c.want)
			}
			if stdout != "" {
				t.Errorf("output on error: %q", stdout)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output directory made on error: %v", err)
			}
		})
	}
}
