package patch

import (
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

var testLayout = Layout{
	PoolStart: 0xffffffffc0400000, PoolEnd: 0xffffffffc0500000,
	StubEnter: 0xffffffffc03f0000, StubCount: 0xffffffffc03f0040, StubExit: 0xffffffffc03f0080,
	StubExitFlags: 0xffffffffc03f00c0, StubCountFlags: 0xffffffffc03f0100,
	GSCurrent: 0x1fb80, GSRootTask: 0x35040, TaskTgid: 0x974, MaxBlob: 480,
}

// disasm decodes a trampoline laid out at base, one line per instruction.
func disasm(t *testing.T, code []byte, base uint64) []string {
	t.Helper()
	var out []string
	for off := 0; off < len(code); {
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			t.Fatalf("+%#x: % x: %v", off, code[off:min(off+8, len(code))], err)
		}
		out = append(out, x86asm.GNUSyntax(in, base+uint64(off), nil))
		off += in.Len
	}
	return out
}

// TestBuildSite builds the trampoline of a timer, a filtered counter and
// an exit counter at one entry window, and reads it back.
func TestBuildSite(t *testing.T) {
	f := function(t, join(nop5, movRIP, ret, int3x4))
	w, err := SelectWindow(f, nil, 0, true, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	insts := []Instrument{{Kind: Timer}, {Kind: Count, PIDs: []int32{42}}, {Kind: ExitCount}}
	b, err := Build(w, insts, testLayout)
	if err != nil {
		t.Fatal(err)
	}
	base := testLayout.PoolStart
	code, err := b.Apply(base, []uint32{7, 8, 9}, []uint64{0, 0x4000, 0})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(disasm(t, code, base), "\n")
	for _, want := range []string{
		"mov $0x7,%edi", "mov $0x8,%edi", "mov $0x9,%edi", // the ids
		"cmpl $0x2a,0x974(%rax)",   // the process filter
		"cmp %gs:0x35040,%rax",     // at the root context?
		"mov $0x4000,%rax",         // the counter's slot
		"incq %gs:(%rax)",          // one per-CPU increment
		"jmpq 0xffffffff8100100c",  // back after the window
		"callq 0xffffffffc03f0000", // the entry stub
		"callq 0xffffffffc03f0040", // the counter's slow path
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the trampoline lacks %q:\n%s", want, text)
		}
	}
	// The displaced mov still reads fn+0x1c.
	found := false
	for off := 0; off < len(code); {
		in, _ := x86asm.Decode(code[off:], 64)
		if m, ok := in.Args[1].(x86asm.Mem); ok && in.Op == x86asm.MOV && m.Base == x86asm.RIP {
			found = true
			if got := base + uint64(off+in.Len) + uint64(m.Disp); got != fnAddr+0x1c {
				t.Errorf("the displaced mov reads %#x, want %#x", got, uint64(fnAddr+0x1c))
			}
		}
		off += in.Len
	}
	if !found {
		t.Error("no displaced RIP-relative mov")
	}
	if _, err := Build(&Window{Func: w.Func, Off: w.Off, Insts: w.Insts}, []Instrument{{Kind: Timer}}, testLayout); err == nil {
		t.Error("a timer built at a window that is not the entry")
	}
}

// TestBuildFlagsLive: a counter where the flags are live saves them.
func TestBuildFlagsLive(t *testing.T) {
	w, err := SelectWindow(function(t, join(nop5, cmpEDI, movRIP, jeShort, xorEAX, ret, int3x4)), nil, 8, false, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(w, []Instrument{{Kind: Count}}, testLayout)
	if err != nil {
		t.Fatal(err)
	}
	code, err := b.Apply(testLayout.PoolStart, []uint32{1}, []uint64{8})
	if err != nil {
		t.Fatal(err)
	}
	text := disasm(t, code, testLayout.PoolStart)
	if text[0] != "pushfq" || !strings.Contains(strings.Join(text, "\n"), "popfq") {
		t.Errorf("flags not saved around the counter:\n%s", strings.Join(text, "\n"))
	}
}

// TestBuildReach refuses a trampoline pool out of reach of the site.
func TestBuildReach(t *testing.T) {
	w, err := SelectWindow(function(t, join(nop5, push3, ret)), nil, 0, true, &Tables{})
	if err != nil {
		t.Fatal(err)
	}
	far := testLayout
	far.PoolStart, far.PoolEnd = 0x7f0000000000, 0x7f0000100000
	if _, err := Build(w, []Instrument{{Kind: Count}}, far); err == nil {
		t.Error("a pool 127 TiB away from the site")
	}
}
