//go:build !vm

package splicer

import (
	"math"
	"testing"
)

// TestClockDeltas (issue 14, defect 9: negative clock deltas were not
// clamped) compiles the module's clock arithmetic (module/delta.h) with
// the host's C compiler and runs it: an end read on a CPU whose clock runs
// behind the start's gives 0, not 2^64 less a little, and so does a
// frame's exclusive time where its children's ends were read so; a clock
// that wrapped still gives the time between.
func TestClockDeltas(t *testing.T) {
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
	exprs := make([]string, len(cases))
	for i, c := range cases {
		exprs[i] = c.expr
	}
	got := cProbe(t, "module/delta.h", "typedef unsigned long long u64;\ntypedef long long s64;\n"+
		"#undef __always_inline\n#define __always_inline inline __attribute__((always_inline))\n#include \"delta.h\"", exprs)
	for i, c := range cases {
		if v := got[i]; v != c.want {
			t.Errorf("%s = %d, want %d", c.expr, v, c.want)
		}
		if got[i] > math.MaxInt64 {
			t.Errorf("%s = %d: a negative time wrapped", c.expr, got[i])
		}
	}
}
