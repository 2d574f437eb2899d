package splicer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cProbe compiles with the host's gcc a program of prelude (includes of
// the module's headers, and what they need) whose main prints each of
// exprs as an unsigned 64-bit value, runs it and returns the values in
// order. It skips where the host has no gcc; what names what is probed.
func cProbe(t *testing.T, what, prelude string, exprs []string) []uint64 {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skipf("no gcc to compile %s", what)
	}
	var src strings.Builder
	src.WriteString("#include <stdio.h>\n" + prelude + "\nint main(void) {\n")
	for _, e := range exprs {
		src.WriteString("\tprintf(\"%llu\\n\", (unsigned long long)(" + e + "));\n")
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	moduleDir, _ := filepath.Abs("module")
	if err := os.WriteFile(filepath.Join(dir, "probe.c"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Werror", "-I", moduleDir, "-o", bin, filepath.Join(dir, "probe.c")).CombinedOutput(); err != nil {
		t.Fatalf("compiling the probe of %s: %v\n%s", what, err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(exprs) {
		t.Fatalf("the probe of %s printed %d values, want %d", what, len(lines), len(exprs))
	}
	vals := make([]uint64, len(lines))
	for i, l := range lines {
		if vals[i], err = strconv.ParseUint(l, 10, 64); err != nil {
			t.Fatalf("the probe of %s printed %q", what, l)
		}
	}
	return vals
}
