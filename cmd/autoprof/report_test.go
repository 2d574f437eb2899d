package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/reports"
)

// fixtureRun copies a saved run from reports/testdata into a temporary
// directory and returns that directory.
func fixtureRun(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "reports", "testdata", name, reports.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, reports.RunFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestReportCommand re-renders a saved run in place and into another
// directory; the saved run.json is never rewritten, and the other
// directory gets an identical copy.
func TestReportCommand(t *testing.T) {
	dir := fixtureRun(t, "read4k-6.1")
	saved, err := os.ReadFile(filepath.Join(dir, reports.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer // not as autoprof writes it: a rewrite would show
	if err := json.Compact(&compact, saved); err != nil {
		t.Fatal(err)
	}
	saved = compact.Bytes()
	if err := os.WriteFile(filepath.Join(dir, reports.RunFile), saved, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("report", dir)
	if code != 0 || !strings.Contains(out, "FINDINGS") || !strings.Contains(out, "copy_user_enhanced_fast_string") {
		t.Fatalf("exit %d, stderr %q, stdout %.300q", code, errs, out)
	}
	for _, f := range []string{reports.ProfileFile, reports.TextFile, reports.HTMLFile, reports.FindingsFile, reports.TraceFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("report did not write %s: %v", f, err)
		}
	}
	other := filepath.Join(t.TempDir(), "out")
	code, out, _ = runCmd("report", "--json", "-o", other, filepath.Join(dir, reports.RunFile))
	var s reports.Summary
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || len(s.Findings) == 0 {
		t.Fatalf("--json: exit %d, %.200q", code, out)
	}
	if _, err := os.Stat(filepath.Join(other, reports.HTMLFile)); err != nil {
		t.Errorf("-o: %v", err)
	}
	for _, d := range []string{dir, other} {
		if got, err := os.ReadFile(filepath.Join(d, reports.RunFile)); err != nil || !bytes.Equal(got, saved) {
			t.Errorf("%s: %v; the saved run changed (%d bytes, had %d)", filepath.Join(d, reports.RunFile), err, len(got), len(saved))
		}
	}
}

// TestReportBadInput: a truncated run.json gives exit status 1, one line
// naming the file, and no output.
func TestReportBadInput(t *testing.T) {
	dir := fixtureRun(t, "read4k-6.1")
	file := filepath.Join(dir, reports.RunFile)
	data, _ := os.ReadFile(file)
	os.WriteFile(file, data[:len(data)/3], 0o644)
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, errs := runCmd("report", "-o", out, dir)
	if code != 1 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, file) || !strings.Contains(errs, "truncated") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if stdout != "" {
		t.Errorf("output on error: %q", stdout)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory made on error: %v", err)
	}
	if code, _, _ := runCmd("report"); code != 2 {
		t.Errorf("no argument: exit %d, want 2", code)
	}
}
