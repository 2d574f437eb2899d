package cdefines

import (
	"strings"
	"testing"
)

// TestParse: decimal defines count, with a comment after them too; other
// values and lower-case names do not.
func TestCDefines(t *testing.T) {
	src := "#define A 1\n#define B_2 41 // comment\n#define C (1ULL << 63)\n#define lower 3\n  #define D 7\n#define E 0x10\n"
	got, err := Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"A": 1, "B_2": 41, "D": 7}
	if len(got) != len(want) {
		t.Fatalf("cDefines = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}
