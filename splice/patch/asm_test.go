package patch

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestEncoding decodes what each instruction of Asm encodes.
func TestEncoding(t *testing.T) {
	for _, c := range []struct {
		asm  func(a *Asm)
		want string
	}{
		{func(a *Asm) { a.Push(RAX) }, "push %rax"},
		{func(a *Asm) { a.Push(R12) }, "push %r12"},
		{func(a *Asm) { a.Pop(RDI) }, "pop %rdi"},
		{func(a *Asm) { a.Pop(R15) }, "pop %r15"},
		{func(a *Asm) { a.Pushf() }, "pushfq"},
		{func(a *Asm) { a.Popf() }, "popfq"},
		{func(a *Asm) { a.LoadGS(RAX, 0x1fb80) }, "mov %gs:0x1fb80,%rax"},
		{func(a *Asm) { a.LoadGS(R9, 0x10) }, "mov %gs:0x10,%r9"},
		{func(a *Asm) { a.CmpGS(RAX, 0x35040) }, "cmp %gs:0x35040,%rax"},
		{func(a *Asm) { a.CmpMem32(RAX, 0x974, 1234) }, "cmpl $0x4d2,0x974(%rax)"},
		{func(a *Asm) { a.CmpMem32(R9, 8, -1) }, "cmpl $-0x1,0x8(%r9)"},
		{func(a *Asm) { a.IncGS(RAX) }, "incq %gs:(%rax)"},
		{func(a *Asm) { a.IncGS(R10) }, "incq %gs:(%r10)"},
		{func(a *Asm) { a.MovSlot(RAX, 0) }, "mov $0x0,%rax"},
		{func(a *Asm) { a.MovID(RDI, 0) }, "mov $0x0,%edi"},
		{func(a *Asm) { a.Int3() }, "int3"},
	} {
		var a Asm
		c.asm(&a)
		b, err := a.Encode()
		if err != nil {
			t.Fatal(err)
		}
		in, err := x86asm.Decode(b.Code, 64)
		if err != nil {
			t.Fatalf("% x: %v", b.Code, err)
		}
		if got := x86asm.GNUSyntax(in, 0, nil); got != c.want || in.Len != len(b.Code) {
			t.Errorf("% x decodes as %q (%d of %d bytes), want %q", b.Code, got, in.Len, len(b.Code), c.want)
		}
	}
}

// TestLabels checks that branches to labels land on them, forward and
// back, and that relocations move with their instructions.
func TestLabels(t *testing.T) {
	var a Asm
	a.Label("top").Push(RAX).Jcc(CondNE, "out").Jmp("top").Label("out").MovID(RDI, 2).JmpAbs(0xffffffff81000000)
	b, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// push (1), jne (6), jmp (5), mov (5), jmp (5)
	if len(b.Code) != 22 {
		t.Fatalf("%d bytes, want 22", len(b.Code))
	}
	if d := int32(binary.LittleEndian.Uint32(b.Code[3:])); d != 5 {
		t.Errorf("jne displacement %d, want 5 (to +12)", d)
	}
	if d := int32(binary.LittleEndian.Uint32(b.Code[8:])); d != -12 {
		t.Errorf("jmp displacement %d, want -12 (to +0)", d)
	}
	want := []Reloc{{Off: 13, End: 2, Kind: ID32}, {Off: 18, End: 22, Kind: PC32, Target: 0xffffffff81000000}}
	if len(b.Relocs) != 2 || b.Relocs[0] != want[0] || b.Relocs[1] != want[1] {
		t.Errorf("relocations %+v, want %+v", b.Relocs, want)
	}
	code, err := b.Apply(0xffffffffc0000000, []uint32{0, 0, 77}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := binary.LittleEndian.Uint32(code[13:]); id != 77 {
		t.Errorf("id %d, want 77", id)
	}
	base := uint64(0xffffffffc0000000)
	if d := int64(int32(binary.LittleEndian.Uint32(code[18:]))); base+22+uint64(d) != 0xffffffff81000000 {
		t.Errorf("jump displacement %#x does not reach the target", d)
	}
	if _, err := b.Apply(0x7f0000000000, []uint32{0, 0, 77}, nil); !errors.Is(err, ErrRange) {
		t.Errorf("relocated 127 TiB away: %v, want ErrRange", err)
	}
	var bad Asm
	if _, err := bad.Jmp("nowhere").Encode(); err == nil {
		t.Error("a branch to an undefined label encodes")
	}
}
