package callgraph

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

// diffClass names one kind of disagreement between the decoder and
// objdump that is understood and allowed. Every other disagreement fails
// the differential tests.
type diffClass string

const (
	// classBothReject: the decoder stops at bytes where objdump prints
	// "(bad)" or ".byte" too. Neither finds an x86-64 instruction there (32-bit
	// code such as the PVH entry, or data in text); objdump then carries on
	// from a guessed offset, which the decoder refuses to do.
	classBothReject diffClass = "both decoders reject the bytes"
	// classOverlapsNext: the function's last instruction runs into the next
	// symbol. The retbleed and SRSO untraining sequences do this on purpose
	// (a "test"/"movabs" whose immediate is the next symbol's ret); the
	// decoder reports it, objdump prints it whole.
	classOverlapsNext diffClass = "the last instruction overlaps the next symbol"
	// classX86asmLacksVEX: x86asm's tables lack a VEX or EVEX (AVX, AVX2,
	// AVX-512) encoding that objdump decodes; the decoder stops there.
	classX86asmLacksVEX diffClass = "x86asm lacks a VEX/EVEX encoding"
	// classObjdumpLacks: objdump (binutils 2.40) does not know an encoding
	// that extra.go lists from the SDM/APM (LKGS, for example).
	classObjdumpLacks diffClass = "objdump lacks an encoding of extra.go"
)

// disagreement is one function where the boundaries differ.
type disagreement struct {
	fn     string
	class  diffClass // "" when unclassified
	detail string
}

// compareWithObjdump compares one function's instruction boundaries with
// objdump's. after holds the bytes that follow the function (for an
// instruction that runs past its end); texts holds objdump's text at the
// addresses where it gave up or decoded a VEX instruction.
func compareWithObjdump(f *Function, od []uint32, texts map[uint64]string, after []byte) *disagreement {
	ours := make([]uint32, len(f.Insts))
	for i, in := range f.Insts {
		ours[i] = in.Off
	}
	if len(f.Problems) == 0 && slices.Equal(ours, od) {
		return nil
	}
	d := &disagreement{fn: f.Sym.Name}
	at := firstDifference(ours, od)
	if len(f.Problems) > 0 && f.Problems[0].Off <= at {
		at = f.Problems[0].Off
	}
	text := texts[f.Sym.Addr+uint64(at)]
	d.detail = fmt.Sprintf("+%#x bytes % x: decoder %s; objdump %q", at, f.Code[at:min(int(at)+12, len(f.Code))], f.describeAt(at), text)
	d.class = classifyDisagreement(f, at, od, func(off uint32) string { return texts[f.Sym.Addr+uint64(off)] }, after)
	return d
}

// firstDifference returns the first offset that only one list holds.
func firstDifference(a, b []uint32) uint32 {
	for i := 0; i < len(a) || i < len(b); i++ {
		switch {
		case i >= len(a):
			return b[i]
		case i >= len(b):
			return a[i]
		case a[i] != b[i]:
			return min(a[i], b[i])
		}
	}
	return ^uint32(0)
}

// describeAt says what the decoder made of offset at.
func (f *Function) describeAt(at uint32) string {
	for _, p := range f.Problems {
		if p.Off == at {
			return "stops: " + p.Reason
		}
	}
	if in, ok := f.Inst(at); ok {
		x, name := f.Decoded(in)
		if name == "" {
			name = x.String()
		}
		return fmt.Sprintf("%d-byte %s", in.Len, name)
	}
	return "no instruction"
}

// classifyDisagreement names the class of the first disagreement at
// offset at, or returns "".
func classifyDisagreement(f *Function, at uint32, od []uint32, textAt func(uint32) string, after []byte) diffClass {
	// An instruction of the decoder's that covers at and that objdump
	// gives up on: an encoding objdump lacks.
	if len(f.Problems) == 0 {
		i := sort.Search(len(f.Insts), func(i int) bool { return f.Insts[i].End() > at })
		if in := f.Insts[i]; in.Off <= at && isExtra(f.Code[in.Off:]) && isObjdumpGiveUp(textAt(in.Off)) {
			return classObjdumpLacks
		}
		return ""
	}
	if !slices.Contains(od, at) {
		return ""
	}
	text := textAt(at)
	agreeBefore := func() bool {
		for _, in := range f.Insts {
			if in.Off < at && !slices.Contains(od, in.Off) {
				return false
			}
		}
		return true
	}
	if f.Problems[0].Off != at || !agreeBefore() {
		return ""
	}
	switch {
	case overlapsNext(f, at, after):
		return classOverlapsNext
	case isObjdumpGiveUp(text):
		return classBothReject
	case isVEX(f.Code[at:]) && strings.HasPrefix(text, "v"):
		return classX86asmLacksVEX
	}
	return ""
}

// overlapsNext: x86asm, given the bytes after the function too, decodes
// an instruction at at that ends past the function's end. (objdump prints
// its first bytes as prefixes and ".byte", having stopped at the symbol.)
func overlapsNext(f *Function, at uint32, after []byte) bool {
	code := append(slices.Clone(f.Code[at:]), after...)
	d, err := decodeOne(code)
	return err == nil && int(at)+d.length > len(f.Code)
}

// isVEX reports a VEX (C4, C5) or EVEX (62) prefix after legacy prefixes.
func isVEX(code []byte) bool {
	p, _, ok := skipPrefixes(code)
	return ok && p < len(code) && (code[p] == 0xc4 || code[p] == 0xc5 || code[p] == 0x62)
}

func isExtra(code []byte) bool {
	_, _, _, ok := decodeExtra(code)
	return ok
}

// keepObjdumpText selects the objdump lines the classifier reads.
func keepObjdumpText(text string) bool {
	return isObjdumpGiveUp(text) || strings.HasPrefix(text, "v")
}

// diffReport sums up a differential run.
type diffReport struct {
	functions int
	byClass   map[diffClass][]disagreement
}

func (r *diffReport) add(d *disagreement) {
	if r.byClass == nil {
		r.byClass = map[diffClass][]disagreement{}
	}
	r.byClass[d.class] = append(r.byClass[d.class], *d)
}

func (r *diffReport) disagreeing() int {
	n := 0
	for _, ds := range r.byClass {
		n += len(ds)
	}
	return n
}

// check logs the figures and fails on unclassified disagreements and on
// an agreement below minAgree.
func (r *diffReport) check(t *testing.T, minAgree float64) {
	t.Helper()
	agree := 1 - float64(r.disagreeing())/float64(r.functions)
	t.Logf("instruction boundaries agree with objdump on %d of %d functions (%.4f%%)", r.functions-r.disagreeing(), r.functions, 100*agree)
	for class, ds := range r.byClass {
		if class == "" {
			continue
		}
		t.Logf("  %d: %s (e.g. %s %s)", len(ds), class, ds[0].fn, ds[0].detail)
	}
	for _, d := range r.byClass[""] {
		t.Errorf("unclassified disagreement in %s: %s", d.fn, d.detail)
	}
	if agree < minAgree {
		t.Errorf("agreement %.4f%% is below %.2f%%", 100*agree, 100*minAgree)
	}
}
