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
ffffffff81002a00 T deep1
ffffffff81002c00 T deep2
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

// TestExitWindows: a timer's frames end at every return of its function:
// a jmp to the return thunk, a ret the kernel padded with int3s; a 2-byte
// jump has no room for a jump.
func TestExitWindows(t *testing.T) {
	// +5: cmp; +8: je +0x0a; +10: jmp __x86_return_thunk; +15: ret+int3s.
	code := join(nop5, cmpEDI, []byte{0x74, 0x05}, jmpTo(fnAddr+10, returnThunk), ret, int3x4)
	ws, err := ExitWindows(function(t, code), nil, &Tables{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := exitList(t, ws), "fn+0xa/5->0xffffffff81000020 fn+0xf/5->0x0"; got != want {
		t.Errorf("windows %s, want %s", got, want)
	}
	// A 2-byte jmp to the return thunk, from just before it.
	short := functionAt(t, "fn", returnThunk-0x10, join(nop5, cmpEDI, []byte{0xeb, 0x06}, int3x4))
	_, err = ExitWindows(short, nil, &Tables{}, nil)
	mustRefuse(t, err, "an instruction of 2 bytes")
	_, err = ExitWindows(function(t, join(nop5, cmpEDI, ret, xorEAX, ret)), nil, &Tables{}, nil)
	mustRefuse(t, err, "ret not followed by 4 int3s")
}

// returnThunk is __x86_return_thunk in testSyms.
const returnThunk = 0xffffffff81000020

// exitList describes windows as FUNC+OFF/LEN->TARGET, checking their role.
func exitList(t *testing.T, ws []*Window) string {
	t.Helper()
	var got []string
	for _, w := range ws {
		to, _ := w.ExitTarget()
		got = append(got, fmt.Sprintf("%s+%#x/%d->%#x", w.Func.Name, w.Off, w.Len(), to))
		if w.Role() != RoleReturn {
			t.Errorf("%s+%#x: role %d, want a return window", w.Func.Name, w.Off, w.Role())
		}
	}
	return strings.Join(got, " ")
}

// The synthetic tail calls: fn forwards to other as 6.1's __x64_sys_read
// does to ksys_read (its arguments from pt_regs, then jmp), with a
// conditional tail call to last first; other returns, or tail-calls last;
// last returns.
var (
	movPtRegs = []byte{0x48, 0x8b, 0x57, 0x60, 0x48, 0x8b, 0x77, 0x68} // mov 0x60(%rdi),%rdx; mov 0x68(%rdi),%rsi
	otherAddr = uint64(0xffffffff81001800)
	lastAddr  = uint64(0xffffffff81002800)
)

// jccTo returns a jz rel32 at addr to target.
func jccTo(addr, target uint64) []byte {
	d := int32(int64(target - (addr + 6)))
	return []byte{0x0f, 0x84, byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24)}
}

// tailCallers are fn, other and last.
func tailCallers(t *testing.T) map[string]*callgraph.Function {
	// fn: +5 mov; mov; +13 cmp; +16 jz last; +22 jmp other.
	fn := join(nop5, movPtRegs, cmpEDI, jccTo(fnAddr+16, lastAddr), jmpTo(fnAddr+22, otherAddr))
	// other: +5 cmp; +8 je +0x0a; +10 jmp last; +15 jmp __x86_return_thunk.
	other := join(nop5, cmpEDI, []byte{0x74, 0x05}, jmpTo(otherAddr+10, lastAddr), jmpTo(otherAddr+15, returnThunk))
	last := join(nop5, xorEAX, ret, int3x4)
	return map[string]*callgraph.Function{
		"fn": function(t, fn), "other": functionAt(t, "other", otherAddr, other), "last": functionAt(t, "last", lastAddr, last),
	}
}

// TestExitWindowsTailCall: a function that leaves by a tail call pops its
// return address only when the function it enters returns: its frames end
// at that function's returns (and those of the functions it tail-calls in
// turn), never at the tail call, which would time only the part before
// the jump (6.1's __x64_sys_read timed 0 to 87 ns a call). Without a way
// to decode the callees, a tail call is refused with its reason.
func TestExitWindowsTailCall(t *testing.T) {
	fns := tailCallers(t)
	callee := func(name string) (*callgraph.Function, []*callgraph.Function, error) {
		if f := fns[name]; f != nil {
			return f, nil, nil
		}
		return nil, nil, fmt.Errorf("no function %s", name)
	}
	ws, err := ExitWindows(fns["fn"], nil, &Tables{}, callee)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := exitList(t, ws), "last+0x7/5->0x0 other+0xf/5->0xffffffff81000020"; got != want {
		t.Errorf("windows %s, want %s (the returns of the tail callees, none at a tail call)", got, want)
	}
	_, err = ExitWindows(fns["fn"], nil, &Tables{}, nil)
	mustRefuse(t, err, "fn: refused: leaves by a tail call to last at +0x10: a timer ending at its returns would miss last's time")
	// A callee the rules refuse refuses the timer, with both reasons.
	_, err = ExitWindows(fns["fn"], nil, &Tables{}, func(name string) (*callgraph.Function, []*callgraph.Function, error) {
		if name == "other" {
			return nil, nil, errors.New("other is on the kprobe blacklist")
		}
		return callee(name)
	})
	mustRefuse(t, err, "a tail call to other at +0x16: a timer ending at its returns would miss other's time, and its frames cannot end at other's returns: other is on the kprobe blacklist")
	// A callee whose own exits cannot take windows (an indirect jump).
	_, err = ExitWindows(fns["fn"], nil, &Tables{}, func(name string) (*callgraph.Function, []*callgraph.Function, error) {
		if name == "last" {
			return functionAt(t, "last", lastAddr, join(nop5, jmpRAX)), nil, nil
		}
		return callee(name)
	})
	mustRefuse(t, err, "last has an indirect jump")
	// A tail jump the kernel rewrites (a static call's, one inside an
	// alternative or a paravirt site) ends no frame where the text says:
	// refused (the tail call to last is at fn+0x10).
	for _, tc := range []struct {
		t    *Tables
		want string
	}{
		{&Tables{StaticCalls: []uint64{fnAddr + 0x10}}, "fn leaves by a static call's tail jump at +0x10"},
		{&Tables{Alts: []Span{{Start: fnAddr + 0x10, End: fnAddr + 0x15}}}, "fn leaves by a tail jump at +0x10 inside an alternative"},
		{&Tables{Paravirt: []Span{{Start: fnAddr + 0x12, End: fnAddr + 0x14}}}, "fn leaves by a tail jump at +0x10 inside a paravirt site"},
	} {
		_, err := ExitWindows(fns["fn"], nil, tc.t, callee)
		mustRefuse(t, err, tc.want)
	}
	// Tail calls that go round: each function's returns once.
	loop := functionAt(t, "last", lastAddr, join(nop5, cmpEDI, jccTo(lastAddr+8, fnAddr), ret, int3x4))
	ws, err = ExitWindows(fns["fn"], nil, &Tables{}, func(name string) (*callgraph.Function, []*callgraph.Function, error) {
		if name == "last" {
			return loop, nil, nil
		}
		return callee(name)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := exitList(t, ws), "last+0xe/5->0x0 other+0xf/5->0xffffffff81000020"; got != want {
		t.Errorf("round tail calls: windows %s, want %s", got, want)
	}
	// A tail call's window, where one is made, still builds (the module
	// takes it), though ExitWindows gives none.
	w, err := returnWindow(fns["fn"], fns["fn"], 22, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(w, nil, testLayout)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := b.Apply(testLayout.PoolStart, nil, nil)
	text := strings.Join(disasm(t, code, testLayout.PoolStart), "; ")
	if !strings.Contains(text, fmt.Sprintf("push %%rdi; callq 0xffffffffc03f0080; pop %%rdi; jmpq %#x; int3", otherAddr)) {
		t.Errorf("a tail call's trampoline: %s", text)
	}
}

// TestExitWindowsTailDepth: tail calls deeper than maxTailDepth-1 refuse
// the timer rather than follow returns all over the kernel.
func TestExitWindowsTailDepth(t *testing.T) {
	chain := []string{"fn", "other", "last", "deep1", "deep2"}
	addr := map[string]uint64{"fn": fnAddr, "other": otherAddr, "last": lastAddr, "deep1": 0xffffffff81002a00, "deep2": 0xffffffff81002c00}
	link := func(name, next string) *callgraph.Function {
		if next == "" {
			return functionAt(t, name, addr[name], join(nop5, ret, int3x4))
		}
		return functionAt(t, name, addr[name], join(nop5, jmpTo(addr[name]+5, addr[next])))
	}
	for _, n := range []int{4, 5} { // functions in the chain
		fns := map[string]*callgraph.Function{}
		for i, name := range chain[:n] {
			next := ""
			if i+1 < n {
				next = chain[i+1]
			}
			fns[name] = link(name, next)
		}
		ws, err := ExitWindows(fns["fn"], nil, &Tables{}, func(name string) (*callgraph.Function, []*callgraph.Function, error) {
			return fns[name], nil, nil
		})
		if n == 4 {
			if err != nil {
				t.Fatalf("3 tail calls deep: %v", err)
			}
			if got, want := exitList(t, ws), "deep1+0x5/5->0x0"; got != want {
				t.Errorf("3 tail calls deep: windows %s, want %s", got, want)
			}
			continue
		}
		mustRefuse(t, err, "tail calls 4 deep, more than 3")
	}
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
	ws, err := ExitWindows(f, []*callgraph.Function{cold}, &Tables{}, nil)
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
