package patch

import "testing"

// BenchmarkSelectWindow measures the placement check of one entry window.
func BenchmarkSelectWindow(b *testing.B) {
	f := function(b, join(nop5, push3, movRBP, cmpEDI, jeShort, xorEAX, pop3, ret, int3x4))
	t := &Tables{}
	for b.Loop() {
		if _, err := SelectWindow(f, nil, 0, true, t); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuild measures encoding the trampoline of a site with a timer,
// a counter and an exit counter.
func BenchmarkBuild(b *testing.B) {
	w, err := SelectWindow(function(b, join(nop5, movRIP, ret, int3x4)), nil, 0, true, &Tables{})
	if err != nil {
		b.Fatal(err)
	}
	insts := []Instrument{{Kind: Timer}, {Kind: Count, PIDs: []int32{1}}, {Kind: ExitCount}}
	for b.Loop() {
		if _, err := Build(w, insts, testLayout); err != nil {
			b.Fatal(err)
		}
	}
}
