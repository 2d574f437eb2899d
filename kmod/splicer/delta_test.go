package splicer

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestClockDeltas (issue 14, defect 9: negative clock deltas were not
// clamped) compiles the module's clock arithmetic (module/delta.h) with
// the host's C compiler and runs it: an end read on a CPU whose clock runs
// behind the start's gives 0, not 2^64 less a little, and so does a
// frame's exclusive time where its children's ends were read so; a clock
// that wrapped still gives the time between.
func TestClockDeltas(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to compile module/delta.h")
	}
	cases := []struct {
		expr string
		want uint64
	}{
		{"ap_delta(1000, 400)", 600},
		{"ap_delta(400, 1000)", 0},                   // the end's clock behind the start's
		{"ap_delta(400, 400)", 0},                    // nothing between
		{"ap_delta(5, 18446744073709551611ULL)", 10}, // wrapped: 2^64-5 to 5
		{"ap_delta(0, 9223372036854775808ULL)", 0},   // half the clock's range: taken as behind
		{"ap_excl(1000, 300)", 700},
		{"ap_excl(300, 1000)", 0}, // children's ends read on a CPU ahead
		{"ap_excl(1000, 1000)", 0},
	}
	var src strings.Builder
	src.WriteString("#include <stdio.h>\ntypedef unsigned long long u64;\ntypedef long long s64;\n" +
		"#undef __always_inline\n#define __always_inline inline __attribute__((always_inline))\n#include \"delta.h\"\nint main(void) {\n")
	for _, c := range cases {
		src.WriteString("\tprintf(\"%llu\\n\", (unsigned long long)(" + c.expr + "));\n")
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	moduleDir, _ := filepath.Abs("module")
	if err := os.WriteFile(filepath.Join(dir, "delta.c"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "delta")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Werror", "-I", moduleDir, "-o", bin, filepath.Join(dir, "delta.c")).CombinedOutput(); err != nil {
		t.Fatalf("compiling module/delta.h: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	if len(got) != len(cases) {
		t.Fatalf("%d values printed, want %d", len(got), len(cases))
	}
	for i, c := range cases {
		v, _ := strconv.ParseUint(got[i], 10, 64)
		if v != c.want {
			t.Errorf("%s = %d, want %d", c.expr, v, c.want)
		}
		if v > math.MaxInt64 {
			t.Errorf("%s = %d: a negative time wrapped", c.expr, v)
		}
	}
}
