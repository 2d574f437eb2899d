//go:build amd64

package patch

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/autoprof/autoprof/splice/patch/internal/machine"
)

// The layout of a differential run in the machine: the sequence in place
// at origOff, the data its RIP-relative operands reach, the relocated
// sequence at relocOff, and a stack at the end.
const (
	origOff  = machine.CodeOff
	dataOff  = origOff + 0x2000
	dataSize = 0x1000
	relocOff = dataOff + dataSize + 0x2000
	memSize  = 64 << 10
)

// template encodes one instruction at addr; rip is an address in the data
// area for a RIP-relative operand, r and s are registers (never rsp).
type template func(rnd *rand.Rand, addr, rip uint64, r, s int) []byte

func rexb(w bool, reg, rm int) byte {
	b := byte(0x40)
	if w {
		b |= 8
	}
	if reg >= 8 {
		b |= 4
	}
	if rm >= 8 {
		b |= 1
	}
	return b
}

// ripOp encodes prefix opcode modrm(reg, rip) disp32 imm: a RIP-relative
// operand, whose displacement counts from the end (after imm).
func ripOp(addr, target uint64, prefix []byte, opcode []byte, reg int, imm []byte) []byte {
	b := append(append([]byte(nil), prefix...), opcode...)
	b = append(b, byte(reg&7)<<3|5)
	end := addr + uint64(len(b)) + 4 + uint64(len(imm))
	b = binary.LittleEndian.AppendUint32(b, uint32(int32(int64(target)-int64(end))))
	return append(b, imm...)
}

var templates = []template{
	// mov rip, r64
	func(_ *rand.Rand, a, t uint64, r, _ int) []byte {
		return ripOp(a, t, []byte{rexb(true, r, 0)}, []byte{0x8b}, r, nil)
	},
	// mov r64, rip
	func(_ *rand.Rand, a, t uint64, r, _ int) []byte {
		return ripOp(a, t, []byte{rexb(true, r, 0)}, []byte{0x89}, r, nil)
	},
	// add rip, r64
	func(_ *rand.Rand, a, t uint64, r, _ int) []byte {
		return ripOp(a, t, []byte{rexb(true, r, 0)}, []byte{0x03}, r, nil)
	},
	// cmpl $imm8, rip: an immediate after the displacement
	func(rnd *rand.Rand, a, t uint64, _, _ int) []byte {
		return ripOp(a, t, nil, []byte{0x83}, 7, []byte{byte(rnd.Uint32())})
	},
	// movl $imm32, rip
	func(rnd *rand.Rand, a, t uint64, _, _ int) []byte {
		return ripOp(a, t, nil, []byte{0xc7}, 0, binary.LittleEndian.AppendUint32(nil, rnd.Uint32()))
	},
	// lea rip, r64
	func(_ *rand.Rand, a, t uint64, r, _ int) []byte {
		return ripOp(a, t, []byte{rexb(true, r, 0)}, []byte{0x8d}, r, nil)
	},
	// movzbl rip, r32
	func(_ *rand.Rand, a, t uint64, r, _ int) []byte {
		p := []byte{}
		if r >= 8 {
			p = []byte{rexb(false, r, 0)}
		}
		return ripOp(a, t, p, []byte{0x0f, 0xb6}, r, nil)
	},
	// push rip
	func(_ *rand.Rand, a, t uint64, _, _ int) []byte {
		return ripOp(a, t, nil, []byte{0xff}, 6, nil)
	},
	// xchg r64, rip
	func(_ *rand.Rand, a, t uint64, r, _ int) []byte {
		return ripOp(a, t, []byte{rexb(true, r, 0)}, []byte{0x87}, r, nil)
	},
	// push r64
	func(_ *rand.Rand, _, _ uint64, r, _ int) []byte {
		if r >= 8 {
			return []byte{0x41, 0x50 + byte(r&7)}
		}
		return []byte{0x50 + byte(r)}
	},
	// pop r64
	func(_ *rand.Rand, _, _ uint64, r, _ int) []byte {
		if r >= 8 {
			return []byte{0x41, 0x58 + byte(r&7)}
		}
		return []byte{0x58 + byte(r)}
	},
	// add, sub, xor, and, cmp r64, r64
	func(rnd *rand.Rand, _, _ uint64, r, s int) []byte {
		op := []byte{0x01, 0x29, 0x31, 0x21, 0x39}[rnd.IntN(5)]
		return []byte{rexb(true, s, r), op, 0xc0 | byte(s&7)<<3 | byte(r&7)}
	},
	// imul r64, r64
	func(_ *rand.Rand, _, _ uint64, r, s int) []byte {
		return []byte{rexb(true, r, s), 0x0f, 0xaf, 0xc0 | byte(r&7)<<3 | byte(s&7)}
	},
	// shl $imm8, r64
	func(rnd *rand.Rand, _, _ uint64, r, _ int) []byte {
		return []byte{rexb(true, 0, r), 0xc1, 0xe0 | byte(r&7), byte(rnd.IntN(63) + 1)}
	},
	// inc r64
	func(_ *rand.Rand, _, _ uint64, r, _ int) []byte {
		return []byte{rexb(true, 0, r), 0xff, 0xc0 | byte(r&7)}
	},
	// mov 8(%rsp), r64
	func(_ *rand.Rand, _, _ uint64, r, _ int) []byte {
		return []byte{rexb(true, r, 0), 0x8b, 0x44 | byte(r&7)<<3, 0x24, 0x08}
	},
	// lea -16(%rsp), %rsp and back
	func(rnd *rand.Rand, _, _ uint64, _, _ int) []byte {
		if rnd.IntN(2) == 0 {
			return []byte{0x48, 0x8d, 0x64, 0x24, 0xf0}
		}
		return []byte{0x48, 0x8d, 0x64, 0x24, 0x10}
	},
}

// register returns a register other than rsp.
func register(rnd *rand.Rand) int {
	for {
		if r := rnd.IntN(16); r != machine.RSP {
			return r
		}
	}
}

// sequence encodes 1 to 4 instructions at addr, at least JumpLen bytes,
// as a window would hold them.
func sequence(rnd *rand.Rand, addr uint64) []byte {
	var code []byte
	for n := 0; n < 4 && (len(code) < JumpLen || n == 0); n++ {
		t := templates[rnd.IntN(len(templates))]
		target := addr - origOff + dataOff + uint64(rnd.IntN(dataSize/8-2))*8
		code = append(code, t(rnd, addr+uint64(len(code)), target, register(rnd), register(rnd))...)
	}
	return code
}

// TestRelocatedRunsAlike runs random sequences of RIP-relative loads and
// stores, stack operations and arithmetic in place and relocated, from
// the same registers, flags and memory, and compares what they leave.
func TestRelocatedRunsAlike(t *testing.T) {
	m, err := machine.New(memSize)
	if err != nil {
		t.Skipf("no executable mapping here: %v", err)
	}
	defer m.Close()
	base, mem := m.Base(), m.Mem()
	rnd := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	data := make([]byte, dataSize)
	for i := 0; i < n; i++ {
		code := sequence(rnd, base+origOff)
		var insts []Displaced
		for off := 0; off < len(code); {
			d, err := Decode(code[off:], base+origOff+uint64(off))
			if err != nil {
				t.Fatalf("% x: %v", code, err)
			}
			insts = append(insts, d)
			off += len(d.Code)
		}
		var a Asm
		for _, d := range insts {
			if err := a.Relocate(d); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
		}
		a.JmpAbs(base + origOff + uint64(len(code)))
		blob, err := a.Encode()
		if err != nil {
			t.Fatal(err)
		}
		reloc, err := blob.Apply(base+relocOff, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		// In place: the sequence, then a jump to the exit, where the
		// relocated one jumps back too.
		copy(mem[origOff:], code)
		jmp := []byte{0xe9, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(jmp[1:], uint32(int32(int64(m.Exit())-int64(base+origOff+uint64(len(code))+5))))
		copy(mem[origOff+len(code):], jmp)
		copy(mem[relocOff:], reloc)

		var in machine.Regs
		for r := range in.GPR {
			in.GPR[r] = rnd.Uint64()
		}
		in.GPR[machine.RSP] = base + memSize - 256
		in.RFLAGS = rnd.Uint64()
		for k := range data {
			data[k] = byte(rnd.Uint32())
		}
		copy(mem[dataOff:], data)
		stack := append([]byte(nil), mem[memSize-1024:]...)
		want := m.Run(base+origOff, in)
		wantMem := append([]byte(nil), mem[dataOff:dataOff+dataSize]...)
		wantStack := append([]byte(nil), mem[memSize-1024:]...)
		copy(mem[dataOff:], data)
		copy(mem[memSize-1024:], stack)
		got := m.Run(base+relocOff, in)
		if got.GPR != want.GPR || got.RFLAGS&machine.FlagsMask != want.RFLAGS&machine.FlagsMask {
			t.Fatalf("%v: relocated to %#x it leaves\nregs %x flags %#x\nin place\nregs %x flags %#x",
				insts, base+relocOff, got.GPR, got.RFLAGS, want.GPR, want.RFLAGS)
		}
		if !bytes.Equal(mem[dataOff:dataOff+dataSize], wantMem) || !bytes.Equal(mem[memSize-1024:], wantStack) {
			t.Fatalf("%v: relocated, its memory differs from in place", insts)
		}
	}
}
