package patch

import (
	"errors"
	"fmt"
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
ffffffff81000020 T __x86_return_thunk
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
		{"kprobe elsewhere in the function", join(nop5, push3, movRBP, xorEAX, ret), 0, true, &Tables{Kprobes: []uint64{fnAddr + 13}}, "kprobe sits in fn at +0xd"},
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

// TestJumpLabelTarget (issue 14, defect 3): a static key's jump lands
// inside the window. The decode of the function shows only the nop at the
// jump label's site, not where it jumps once the key flips; the table
// does.
func TestJumpLabelTarget(t *testing.T) {
	// +5: push3 (5 bytes), +10: mov %rsp,%rbp, +13: nop5 (the jump label),
	// +18: ret.
	f := function(t, join(nop5, push3, movRBP, nop5, ret, int3x4))
	tb := &Tables{JumpLabels: []uint64{fnAddr + 13}, Targets: []uint64{fnAddr + 7}}
	_, err := SelectWindow(f, nil, 0, true, tb)
	mustRefuse(t, err, "+0x7, in the window, is a branch target")
	// At +0x5 a block window ends at +0xa: a target at +0xb is outside.
	tb.Targets = []uint64{fnAddr + 11}
	if _, err := SelectWindow(f, nil, 5, false, tb); err != nil {
		t.Errorf("a target past the window: %v", err)
	}
}

// TestForeignBytes (issue 14, defect 4): another patcher's bytes in the
// function make its decode a guess. A kprobe's int3 over the first byte
// of push %r15 (41 57) leaves 57 (push %rdi) to be decoded in its place:
// a window at the probe's address + 1 must be refused, whether or not
// kprobes/list has been read.
func TestForeignBytes(t *testing.T) {
	probed := join(nop5, []byte{0xcc, 0x57, 0x41, 0x56, 0x55}, movRBP, xorEAX, ret, int3x4)
	text := Span{0xffffffff81000000, 0xffffffff82000000}
	for _, tb := range []*Tables{{Text: text, Kprobes: []uint64{fnAddr + 5}}, {Text: text}} {
		_, err := SelectWindow(function(t, probed), nil, 6, false, tb)
		if tb.Kprobes != nil {
			mustRefuse(t, err, "kprobe sits in fn at +0x5")
		} else {
			mustRefuse(t, err, "int3 in its code at +0x5")
		}
	}
	// An optprobe's jmp into the kprobe slots, out of the kernel's text.
	opt := join(nop5, []byte{0xe9, 0x00, 0x00, 0x00, 0x40}, movRBP, xorEAX, ret, int3x4)
	_, err := SelectWindow(function(t, opt), nil, 10, false, &Tables{Text: text})
	mustRefuse(t, err, "jumps out of the kernel's text at +0x5")
	// The same jump into the splice module's pool is ours.
	ours := &Tables{Text: text, Ours: Span{fnAddr + 10 + 0x40000000, fnAddr + 10 + 0x40001000}}
	if _, err := SelectWindow(function(t, opt), nil, 10, false, ours); err != nil {
		t.Errorf("a function holding one of our jumps: %v", err)
	}
	// int3 after a return is padding, not a breakpoint.
	if _, err := SelectWindow(function(t, join(nop5, push3, movRBP, ret, int3x4, xorEAX, ret)), nil, 0, true, &Tables{Text: text}); err != nil {
		t.Errorf("int3 padding after ret: %v", err)
	}
}

// jmpTo returns a jmp rel32 at addr to target.
func jmpTo(addr, target uint64) []byte {
	d := int32(int64(target - (addr + 5)))
	return []byte{0xe9, byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24)}
}

// TestExitWindows: a timer's frames end at every return and tail call of
// its function: a jmp to the return thunk, a ret the kernel padded with
// int3s, a tail call; a 2-byte tail call has no room for a jump.
func TestExitWindows(t *testing.T) {
	// +5: cmp; +8: je +0x14; +10: jmp __x86_return_thunk; +15: ret+int3s;
	// +20: jmp other.
	code := join(nop5, cmpEDI, []byte{0x74, 0x0a}, jmpTo(fnAddr+10, 0xffffffff81000020),
		ret, int3x4, jmpTo(fnAddr+20, 0xffffffff81001800))
	ws, err := ExitWindows(function(t, code), nil, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range ws {
		to, _ := w.ExitTarget()
		got = append(got, fmt.Sprintf("+%#x/%d->%#x", w.Off, w.Len(), to))
		if w.Role() != RoleReturn {
			t.Errorf("+%#x: role %d, want a return window", w.Off, w.Role())
		}
	}
	want := "+0xa/5->0xffffffff81000020 +0xf/5->0x0 +0x14/5->0xffffffff81001800"
	if strings.Join(got, " ") != want {
		t.Errorf("windows %v, want %s", got, want)
	}
	b, err := Build(ws[2], nil, testLayout)
	if err != nil {
		t.Fatal(err)
	}
	code, _ = b.Apply(testLayout.PoolStart, nil, nil)
	text := strings.Join(disasm(t, code, testLayout.PoolStart), "; ")
	if !strings.Contains(text, "push %rdi; callq 0xffffffffc03f0080; pop %rdi; jmpq 0xffffffff81001800; int3") {
		t.Errorf("a tail call's trampoline: %s", text)
	}
	// A 2-byte jmp to other's start, from just before it.
	short := functionAt(t, "fn", 0xffffffff810017f0, join(nop5, cmpEDI, []byte{0xeb, 0x06}, int3x4))
	_, err = ExitWindows(short, nil, &Tables{})
	mustRefuse(t, err, "an instruction of 2 bytes")
	_, err = ExitWindows(function(t, join(nop5, cmpEDI, ret, xorEAX, ret)), nil, &Tables{})
	mustRefuse(t, err, "ret not followed by 4 int3s")
}

// TestReturnWindowFlags: a return window's flags are dead where its part
// starts as a compiled function does (ENDBR or its seal, then the ftrace
// site): its callers, by the C ABI, read no flags it leaves, and its
// trampoline calls the exit stub that gives back only AC. A .cold part
// does not start so (nor does asm code), and its return windows call the
// stub that gives the flags back. The module decides by the same bytes
// (ap_entry_site); the VM tests compare the two.
func TestReturnWindowFlags(t *testing.T) {
	f := function(t, join(nop5, cmpEDI, ret, int3x4))
	cold := functionAt(t, "fn.cold", coldAddr, join(cmpEDI, ret, int3x4))
	ws, err := ExitWindows(f, []*callgraph.Function{cold}, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 {
		t.Fatalf("%d return windows, want 2", len(ws))
	}
	for _, c := range []struct {
		w    *Window
		live bool
		stub uint64
	}{{ws[0], false, testLayout.StubExit}, {ws[1], true, testLayout.StubExitFlags}} {
		if c.w.FlagsLive != c.live {
			t.Errorf("%s+%#x: flags live %v, want %v", c.w.Func.Name, c.w.Off, c.w.FlagsLive, c.live)
		}
		b, err := Build(c.w, nil, testLayout)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := b.Apply(testLayout.PoolStart, nil, nil)
		text := strings.Join(disasm(t, code, testLayout.PoolStart), "; ")
		if want := fmt.Sprintf("push %%rdi; callq %#x; pop %%rdi; retq", c.stub); !strings.Contains(text, want) {
			t.Errorf("%s+%#x: trampoline %s, want %s", c.w.Func.Name, c.w.Off, text, want)
		}
	}
	for _, c := range []struct {
		name string
		code []byte
		want bool
	}{
		{"the ftrace nop", join(nop5, ret), true},
		{"ENDBR, the ftrace nop", join(endbr, nop5, ret), true},
		{"ENDBR sealed (6.4+), the ftrace call", join([]byte{0x66, 0x0f, 0x1f, 0x00}, []byte{0xe8, 0, 0, 0, 0}, ret), true},
		{"ENDBR sealed (6.2, 6.3), the ftrace nop", join([]byte{0x0f, 0x1f, 0x40, 0xd6}, nop5), true},
		{"no ftrace site", join(cmpEDI, ret, int3x4), false},
		{"ENDBR, no ftrace site", join(endbr, cmpEDI, ret, int3x4), false},
		{"ENDBR, then too short", join(endbr, ret), false},
	} {
		if got := compiledStart(c.code); got != c.want {
			t.Errorf("%s: compiledStart %v, want %v", c.name, got, c.want)
		}
	}
}

// TestMovablePrefixes: the prefixes a displaced instruction may have are
// the module's: lock, operand size, %gs.
func TestMovablePrefixes(t *testing.T) {
	for _, c := range []struct {
		code []byte
		ok   bool
	}{
		{[]byte{0xf0, 0x48, 0x0f, 0xb1, 0x17}, true},              // lock cmpxchg %rdx,(%rdi)
		{[]byte{0x65, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0}, true},  // mov %gs:0,%rax
		{[]byte{0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0}, false}, // %fs
		{[]byte{0x3e, 0x48, 0x89, 0xf8}, false},                   // ds (notrack)
		{[]byte{0x67, 0x8b, 0x07}, false},                         // address size
	} {
		d, err := Decode(c.code, fnAddr)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.CheckMovable(); (err == nil) != c.ok {
			t.Errorf("% x: %v, want movable %v", c.code, err, c.ok)
		}
	}
}
