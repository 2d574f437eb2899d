package patch

import (
	"encoding/binary"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
	"golang.org/x/arch/x86/x86asm"
)

// FuzzSelectWindow decodes random bytes as a function and asks for a
// window at a random offset: no panic, and an accepted window keeps every
// rule that the function's own code decides.
func FuzzSelectWindow(f *testing.F) {
	f.Add(join(nop5, push3, movRBP, ret, int3x4), uint8(5), false)
	f.Add(join(endbr, nop5, movRIP, cmpEDI, jeShort, xorEAX, ret), uint8(0), true)
	f.Add(join(nop5, pushRBP, movRBP, cmpEDI, jeShort, push3, ret), uint8(14), false)
	f.Fuzz(func(t *testing.T, code []byte, off uint8, entry bool) {
		if len(code) == 0 || len(code) > 4096 {
			return
		}
		fn, err := callgraph.Decode(callgraph.Symbol{Name: "fn", Addr: fnAddr, Size: uint64(len(code)), Type: 'T'}, code, testSyms)
		if err != nil {
			return
		}
		w, err := SelectWindow(fn, nil, uint32(off), entry, &Tables{})
		if err != nil {
			return
		}
		checkWindow(t, fn, w)
	})
}

// checkWindow checks an accepted window against the rules.
func checkWindow(t *testing.T, fn *callgraph.Function, w *Window) {
	t.Helper()
	if w.Len() < JumpLen || w.Len() > MaxWindow {
		t.Fatalf("window of %d bytes", w.Len())
	}
	if !fn.IsBoundary(w.Off) || w.Off+uint32(w.Len()) > fn.CodeEnd {
		t.Fatalf("window +%#x..+%#x: not from a boundary, or past the code (+%#x)", w.Off, w.Off+uint32(w.Len()), fn.CodeEnd)
	}
	at := w.Off
	for _, d := range w.Insts {
		in, ok := fn.Inst(at)
		if !ok || int(in.Len) != len(d.Code) {
			t.Fatalf("displaced %s at +%#x is not the function's instruction there", d, at)
		}
		if err := d.CheckMovable(); err != nil {
			t.Fatalf("displaced %s cannot move: %v", d, err)
		}
		at += uint32(in.Len)
	}
	for _, tg := range fn.Targets {
		if tg > w.Off && tg <= at {
			t.Fatalf("branch target +%#x inside the window +%#x..+%#x", tg, w.Off, at)
		}
	}
	for _, in := range fn.Insts {
		if in.Kind == callgraph.KindIndirectJump {
			t.Fatal("a window in a function with an indirect jump")
		}
	}
	if fn.Fentry >= 0 && w.Off < uint32(fn.Fentry)+JumpLen && at > uint32(fn.Fentry) {
		t.Fatal("the window overlaps the ftrace site")
	}
}

// FuzzRelocate relocates a random instruction between random addresses:
// where the splicer accepts it, the copy decodes as the same instruction
// and a RIP-relative operand reaches the same absolute address.
func FuzzRelocate(f *testing.F) {
	f.Add(movRIP, uint64(fnAddr), uint64(0xffffffffc0400000))
	f.Add([]byte{0x83, 0x3d, 0x10, 0, 0, 0, 0x05}, uint64(fnAddr), uint64(0xffffffffc0400000))
	f.Add([]byte{0x65, 0x48, 0x8b, 0x05, 0x10, 0, 0, 0}, uint64(fnAddr), uint64(fnAddr-0x70000000))
	f.Add(push3, uint64(0), uint64(1<<40))
	f.Fuzz(func(t *testing.T, code []byte, from, to uint64) {
		if len(code) > 15 {
			code = code[:15]
		}
		d, err := Decode(code, from)
		if err != nil || d.CheckMovable() != nil {
			return
		}
		var a Asm
		if err := a.Relocate(d); err != nil {
			t.Fatalf("%s: checked movable, relocation fails: %v", d, err)
		}
		b, err := a.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out, err := b.Apply(to, nil, nil)
		if err != nil {
			return // out of the 32-bit range: refused, as it must be
		}
		got, err := x86asm.Decode(out, 64)
		if err != nil || got.Len != d.Inst.Len || got.Op != d.Inst.Op || len(out) != len(d.Code) {
			t.Fatalf("%s relocated to %#x decodes as %v (%v)", d, to, got, err)
		}
		want, rip := d.Target()
		if !rip {
			if string(out) != string(d.Code) {
				t.Fatalf("%s changed in relocation: % x", d, out)
			}
			return
		}
		disp := int32(binary.LittleEndian.Uint32(out[got.PCRelOff:]))
		if reach := to + uint64(got.Len) + uint64(int64(disp)); reach != want {
			t.Fatalf("%s at %#x reached %#x; relocated to %#x it reaches %#x", d, from, want, to, reach)
		}
	})
}
