package patch

import (
	"errors"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
)

// The synthetic kernel: fn at fnAddr, its cold part at coldAddr.
const (
	fnAddr   = 0xffffffff81001000
	coldAddr = 0xffffffff81002000
)

var testSyms = func() *callgraph.Symbols {
	s, err := callgraph.ParseKallsyms(strings.NewReader(`ffffffff81000000 T _stext
ffffffff81000010 T __fentry__
ffffffff81001000 T fn
ffffffff81001800 T other
ffffffff81002000 t fn.cold
ffffffff81002800 T last
ffffffff81003000 T _etext
`))
	if err != nil {
		panic(err)
	}
	return s
}()

// function decodes code as fn.
func function(t testing.TB, code []byte) *callgraph.Function {
	t.Helper()
	return functionAt(t, "fn", fnAddr, code)
}

func functionAt(t testing.TB, name string, addr uint64, code []byte) *callgraph.Function {
	t.Helper()
	f, err := callgraph.Decode(callgraph.Symbol{Name: name, Addr: addr, Size: uint64(len(code)), Type: 'T'}, code, testSyms)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Pieces of functions.
var (
	nop5    = []byte{0x0f, 0x1f, 0x44, 0x00, 0x00} // the ftrace site
	endbr   = []byte{0xf3, 0x0f, 0x1e, 0xfa}
	pushRBP = []byte{0x55}
	movRBP  = []byte{0x48, 0x89, 0xe5}             // mov %rsp,%rbp
	push3   = []byte{0x41, 0x57, 0x41, 0x56, 0x55} // push %r15; push %r14; push %rbp
	movRIP  = []byte{0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00}
	cmpEDI  = []byte{0x83, 0xff, 0x01} // cmp $1,%edi
	jeShort = []byte{0x74, 0x02}       // je .+2
	xorEAX  = []byte{0x31, 0xc0}
	pop3    = []byte{0x5d, 0x41, 0x5e, 0x41, 0x5f}
	ret     = []byte{0xc3}
	int3x4  = []byte{0xcc, 0xcc, 0xcc, 0xcc}
	callRel = []byte{0xe8, 0x00, 0x00, 0x00, 0x00}
	jmpRAX  = []byte{0xff, 0xe0}
)

func join(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func mustRefuse(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a refusal saying %q", want)
	}
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
		t.Fatalf("refused with %q; want ErrRefused saying %q", err, want)
	}
}

func TestEntryWindow(t *testing.T) {
	f := function(t, join(nop5, push3, movRBP, xorEAX, pop3, ret, int3x4))
	w, err := SelectWindow(f, nil, 0, true, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Off != 5 || w.Len() != 5 || len(w.Insts) != 3 || !w.Entry || w.FlagsLive {
		t.Fatalf("window at +%#x, %d bytes, %d instructions, entry %v, flags live %v; want +0x5, 5, 3, entry, dead",
			w.Off, w.Len(), len(w.Insts), w.Entry, w.FlagsLive)
	}
	if w.Addr() != fnAddr+5 || string(w.Orig()) != string(push3) {
		t.Fatalf("window at %#x holding % x", w.Addr(), w.Orig())
	}
}

func TestEntryWindowAfterEndbr(t *testing.T) {
	f := function(t, join(endbr, nop5, movRIP, ret, int3x4))
	w, err := SelectWindow(f, nil, 0, true, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Off != 9 || w.Len() != 7 {
		t.Fatalf("window at +%#x, %d bytes; want +0x9, 7 bytes", w.Off, w.Len())
	}
	if _, ok := w.Insts[0].Target(); !ok {
		t.Fatal("mov 0x10(%rip),%rax: no RIP-relative target")
	}
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		name  string
		code  []byte
		off   uint32
		entry bool
		t     *Tables
		want  string
	}{
		{"notrace", join(push3, movRBP, ret), 0, true, &Tables{}, "no ftrace site"},
		{"call in the window", join(nop5, pushRBP, callRel, ret), 0, true, &Tables{}, "is a call"},
		{"indirect jump anywhere", join(nop5, push3, movRBP, jmpRAX), 0, true, &Tables{}, "indirect jump"},
		// je at +0xc jumps to +0x10, inside the window [+0xe, +0x13).
		{"jump into bytes 1..4", join(nop5, pushRBP, movRBP, cmpEDI, jeShort, push3, ret), 14, false, &Tables{}, "reaches +0x10"},
		{"not an instruction boundary", join(nop5, push3, movRBP, ret), 6, false, &Tables{}, "not an instruction boundary"},
		{"past the code", join(nop5, push3, ret, int3x4), 11, false, &Tables{}, "past the function's code"},
		{"ftrace site", join(nop5, push3, ret), 0, false, &Tables{}, "ftrace site"},
		{"exception table", join(nop5, push3, movRBP, ret), 0, true, &Tables{Extable: []ExEntry{{Insn: fnAddr + 8, Fixup: 0xffffffff81002800}}}, "exception-table"},
		{"exception fixup", join(nop5, push3, movRBP, ret), 0, true, &Tables{Extable: []ExEntry{{Insn: 0xffffffff81002800, Fixup: fnAddr + 9}}}, "exception-table"},
		{"jump label", join(nop5, push3, movRBP, ret), 0, true, &Tables{JumpLabels: []uint64{fnAddr + 7}}, "jump-label"},
		{"static call", join(nop5, push3, movRBP, ret), 0, true, &Tables{StaticCalls: []uint64{fnAddr + 5}}, "static call"},
		{"alternative", join(nop5, push3, movRBP, ret), 0, true, &Tables{Alts: []Span{{fnAddr + 2, fnAddr + 7}}}, "alternative"},
		{"paravirt", join(nop5, push3, movRBP, ret), 0, true, &Tables{Paravirt: []Span{{fnAddr + 9, fnAddr + 12}}}, "paravirt"},
		{"smp lock", join(nop5, push3, movRBP, ret), 0, true, &Tables{SMPLocks: []uint64{fnAddr + 6}}, "lock prefix"},
		{"kprobe", join(nop5, push3, movRBP, ret), 0, true, &Tables{Kprobes: []uint64{fnAddr + 5}}, "kprobe"},
		{"no tables", join(nop5, push3, movRBP, ret), 0, true, nil, "no kernel tables"},
		{"endbr", join(endbr, nop5, push3, ret), 0, false, &Tables{}, "ENDBR"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := SelectWindow(function(t, c.code), nil, c.off, c.entry, c.t)
			mustRefuse(t, err, c.want)
		})
	}
}

// TestBranchToEntry: a loop back to the entry site may start a block
// counter's window, never an entry window (it would count more than the
// calls).
func TestBranchToEntry(t *testing.T) {
	// +5: push3 (5 bytes); +10: cmp; +13: jne back to +5.
	code := join(nop5, push3, cmpEDI, []byte{0x75, 0xf6}, ret)
	f := function(t, code)
	_, err := SelectWindow(f, nil, 0, true, &Tables{})
	mustRefuse(t, err, "reaches +0x5")
	w, err := SelectWindow(f, nil, 5, false, &Tables{})
	if err != nil {
		t.Fatalf("a block window at the loop head: %v", err)
	}
	if w.FlagsLive {
		t.Error("flags are live at +0x5, but cmp writes them all before jne reads them")
	}
}

// TestColdPartJumpsIn: the .cold part of fn jumps back into the window.
func TestColdPartJumpsIn(t *testing.T) {
	f := function(t, join(nop5, push3, movRBP, ret))
	// jmp from fn.cold back to fn+7 (e9 rel32 from coldAddr+5).
	rel := int32(fnAddr + 7 - (coldAddr + 5))
	cold := functionAt(t, "fn.cold", coldAddr, []byte{0xe9, byte(rel), byte(rel >> 8), byte(rel >> 16), byte(rel >> 24), 0xcc})
	_, err := SelectWindow(f, []*callgraph.Function{cold}, 0, true, &Tables{})
	mustRefuse(t, err, "fn.cold jumps to +0x7")
}

func TestFlagsLive(t *testing.T) {
	// At +8 (after cmp): mov then je, which reads ZF.
	code := join(nop5, cmpEDI, movRIP, jeShort, xorEAX, ret, int3x4)
	w, err := SelectWindow(function(t, code), nil, 8, false, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	if !w.FlagsLive {
		t.Error("flags dead before a je that reads them")
	}
}
