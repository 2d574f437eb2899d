package splice

import (
	"slices"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestInterval follows the number register through the compares of a
// small switch: the value sets of each edge, and the one value left where
// a case's call is reached.
func TestInterval(t *testing.T) {
	iv := fullInterval.without(3).without(1).without(3)
	if !slices.Equal(iv.not, []uint64{1, 3}) {
		t.Fatalf("without 3, 1, 3: excluded %v, want [1 3]", iv.not)
	}
	if fullInterval.not != nil {
		t.Fatal("without changed the interval it was called on")
	}
	taken, fall, ok := iv.split(x86asm.JA, 4) // cmp $4; ja
	if !ok || taken.lo != 5 || taken.hi != 0xffffffff || len(taken.not) != 0 {
		t.Errorf("ja 4 taken: %+v", taken)
	}
	if fall.lo != 0 || fall.hi != 4 || !slices.Equal(fall.not, []uint64{1, 3}) {
		t.Errorf("ja 4 fall-through: %+v", fall)
	}
	if _, ok := fall.value(); ok {
		t.Errorf("0..4 less 1 and 3 has one value: %+v", fall)
	}
	eq, ne, _ := fall.split(x86asm.JE, 2) // cmp $2; je
	if v, ok := eq.value(); !ok || v != 2 {
		t.Errorf("je 2 taken: %d, %v; want 2", v, ok)
	}
	ne = ne.without(0).without(4)
	if _, ok := ne.value(); ok {
		t.Errorf("0..4 less 0..4: a value in %+v", ne)
	}
	below, _, _ := fall.split(x86asm.JB, 1) // cmp $1; jb
	if v, ok := below.value(); !ok || v != 0 || !below.equal(interval{lo: 0, hi: 0}) {
		t.Errorf("jb 1 taken: %+v, %d, %v; want only 0", below, v, ok)
	}
	if fall.equal(fall.without(2)) || !fall.equal(fall.clamp(0, 10)) {
		t.Error("equal: wrong")
	}
}
