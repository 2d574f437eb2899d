package patch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Reg is a 64-bit general-purpose register, numbered as in the encoding.
type Reg uint8

// The registers.
const (
	RAX Reg = iota
	RCX
	RDX
	RBX
	RSP
	RBP
	RSI
	RDI
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
)

// RelocKind says how the module fills a field of a trampoline.
type RelocKind uint32

// The relocation kinds, the values of enum ap_reloc_kind in
// kmod/splicer/module/uapi.h.
const (
	// PC32 is a signed 32-bit displacement: Target - (trampoline + End).
	PC32 RelocKind = 1
	// ID32 is the id of the site's instrument number End, as a 32-bit
	// immediate.
	ID32 RelocKind = 2
	// Slot64 is the %gs offset of the counter of the site's instrument
	// number End, as a 64-bit immediate.
	Slot64 RelocKind = 3
)

// Reloc is one field the module fills in.
type Reloc struct {
	Off    uint16 // where the field starts in the code
	End    uint16 // PC32: the end of the instruction; ID32, Slot64: the instrument
	Kind   RelocKind
	Target uint64 // PC32: the absolute address meant
}

// Blob is an encoded trampoline: code and the relocations left to apply.
type Blob struct {
	Code   []byte
	Relocs []Reloc
}

// Apply resolves the relocations for a trampoline at base whose
// instruments have ids and counter %gs offsets slots, the way the module
// does, and returns the code. It fails where a displacement does not fit
// in 32 bits.
func (b *Blob) Apply(base uint64, ids []uint32, slots []uint64) ([]byte, error) {
	out := append([]byte(nil), b.Code...)
	for _, r := range b.Relocs {
		switch r.Kind {
		case PC32:
			d, err := rel32(r.Target, base+uint64(r.End))
			if err != nil {
				return nil, err
			}
			binary.LittleEndian.PutUint32(out[r.Off:], uint32(d))
		case ID32:
			if int(r.End) >= len(ids) {
				return nil, fmt.Errorf("relocation at %#x: no instrument %d", r.Off, r.End)
			}
			binary.LittleEndian.PutUint32(out[r.Off:], ids[r.End])
		case Slot64:
			if int(r.End) >= len(slots) {
				return nil, fmt.Errorf("relocation at %#x: no counter of instrument %d", r.Off, r.End)
			}
			binary.LittleEndian.PutUint64(out[r.Off:], slots[r.End])
		default:
			return nil, fmt.Errorf("relocation kind %d at %#x: unknown", r.Kind, r.Off)
		}
	}
	return out, nil
}

// Match reports how code differs from the blob resolved for a trampoline
// at base whose instruments have ids, nil where it does not: the splice
// module builds its trampolines itself, and its tests compare them with
// this reference. The counters' slot fields (their per-CPU offsets, which
// only the module knows) are taken from code.
func (b *Blob) Match(code []byte, base uint64, ids []uint32) error {
	slots := make([]uint64, len(ids))
	for _, r := range b.Relocs {
		if r.Kind == Slot64 && int(r.End) < len(slots) && int(r.Off)+8 <= len(code) {
			slots[r.End] = binary.LittleEndian.Uint64(code[r.Off:])
		}
	}
	want, err := b.Apply(base, ids, slots)
	if err != nil {
		return err
	}
	if len(code) != len(want) {
		return fmt.Errorf("%d bytes, the reference %d", len(code), len(want))
	}
	for i := range want {
		if code[i] != want[i] {
			return fmt.Errorf("byte %#x is %#02x, the reference's %#02x (% x, want % x)", i, code[i], want[i], code, want)
		}
	}
	return nil
}

// ErrRange says a displacement does not fit in a signed 32-bit field.
var ErrRange = errors.New("displacement out of the signed 32-bit range")

// rel32 returns target - from as an int32.
func rel32(target, from uint64) (int32, error) {
	d := int64(target - from)
	if d < math.MinInt32 || d > math.MaxInt32 {
		return 0, fmt.Errorf("%#x from %#x: %w", target, from, ErrRange)
	}
	return int32(d), nil
}

// Asm is a trampoline as a list of symbolic instructions: machine code
// with labels, branches to labels or to absolute addresses, and fields the
// module fills in. Encode resolves it in one step. Every branch is
// encoded with a 32-bit displacement, so that offsets are known before
// labels are resolved. The zero value is an empty list.
type Asm struct {
	items []item
}

type itemKind uint8

const (
	itemBytes  itemKind = iota // fixed bytes, maybe with relocations
	itemLabel                  // a label here
	itemBranch                 // jmp/jcc/call to a label
)

type item struct {
	kind   itemKind
	code   []byte
	relocs []Reloc // Off and End relative to the item
	label  string
}

// Bytes appends fixed machine code.
func (a *Asm) Bytes(b ...byte) *Asm {
	a.items = append(a.items, item{kind: itemBytes, code: b})
	return a
}

// Label marks the current position.
func (a *Asm) Label(name string) *Asm {
	a.items = append(a.items, item{kind: itemLabel, label: name})
	return a
}

// relocated appends code holding relocated fields (offsets relative to
// the code).
func (a *Asm) relocated(code []byte, relocs ...Reloc) *Asm {
	a.items = append(a.items, item{kind: itemBytes, code: code, relocs: relocs})
	return a
}

// Cond is the condition code of a jcc (the low nibble of 0f 8x).
type Cond uint8

// Conditions used by trampolines.
const (
	CondE  Cond = 0x4
	CondNE Cond = 0x5
)

func (a *Asm) branch(opcode []byte, label string) *Asm {
	code := append(append([]byte(nil), opcode...), 0, 0, 0, 0)
	a.items = append(a.items, item{kind: itemBranch, code: code, label: label})
	return a
}

// Jmp jumps to a label.
func (a *Asm) Jmp(label string) *Asm { return a.branch([]byte{0xe9}, label) }

// Jcc jumps to a label when cond holds.
func (a *Asm) Jcc(c Cond, label string) *Asm { return a.branch([]byte{0x0f, 0x80 | byte(c)}, label) }

// JmpAbs jumps to an absolute address (the module computes the
// displacement).
func (a *Asm) JmpAbs(target uint64) *Asm {
	return a.relocated([]byte{0xe9, 0, 0, 0, 0}, Reloc{Off: 1, End: 5, Kind: PC32, Target: target})
}

// CallAbs calls an absolute address.
func (a *Asm) CallAbs(target uint64) *Asm {
	return a.relocated([]byte{0xe8, 0, 0, 0, 0}, Reloc{Off: 1, End: 5, Kind: PC32, Target: target})
}

func rex(w bool, reg, rm Reg) byte {
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

// Push pushes a register.
func (a *Asm) Push(r Reg) *Asm {
	if r >= 8 {
		return a.Bytes(0x41, 0x50+byte(r&7))
	}
	return a.Bytes(0x50 + byte(r))
}

// Pop pops a register.
func (a *Asm) Pop(r Reg) *Asm {
	if r >= 8 {
		return a.Bytes(0x41, 0x58+byte(r&7))
	}
	return a.Bytes(0x58 + byte(r))
}

// Pushf pushes RFLAGS; Popf pops it.
func (a *Asm) Pushf() *Asm { return a.Bytes(0x9c) }

// Popf pops RFLAGS.
func (a *Asm) Popf() *Asm { return a.Bytes(0x9d) }

// Int3 stops straight-line speculation after a jump.
func (a *Asm) Int3() *Asm { return a.Bytes(0xcc) }

func le32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

// gsAbs is the ModRM and SIB of an absolute [disp32] operand, which %gs
// makes per-CPU.
func gsAbs(reg Reg) []byte { return []byte{0x04 | byte(reg&7)<<3, 0x25} }

// LoadGS loads the 64-bit per-CPU variable at %gs:off into r.
func (a *Asm) LoadGS(r Reg, off int32) *Asm {
	code := append([]byte{0x65, rex(true, r, 0), 0x8b}, gsAbs(r)...)
	return a.Bytes(append(code, le32(off)...)...)
}

// CmpGS compares r with the 64-bit per-CPU variable at %gs:off.
func (a *Asm) CmpGS(r Reg, off int32) *Asm {
	code := append([]byte{0x65, rex(true, r, 0), 0x3b}, gsAbs(r)...)
	return a.Bytes(append(code, le32(off)...)...)
}

// CmpMem32 compares the 32-bit value at disp(base) with imm.
func (a *Asm) CmpMem32(base Reg, disp int32, imm int32) *Asm {
	if base&7 == RSP || base&7 == RBP {
		panic("patch: CmpMem32 does not encode a base of rsp, rbp, r12 or r13")
	}
	code := []byte{}
	if base >= 8 {
		code = append(code, 0x41)
	}
	code = append(code, 0x81, 0x80|7<<3|byte(base&7))
	code = append(code, le32(disp)...)
	return a.Bytes(append(code, le32(imm)...)...)
}

// MovSlot loads the %gs offset of instrument inst's counter into r
// (movabs).
func (a *Asm) MovSlot(r Reg, inst int) *Asm {
	code := []byte{rex(true, 0, r), 0xb8 + byte(r&7), 0, 0, 0, 0, 0, 0, 0, 0}
	return a.relocated(code, Reloc{Off: 2, End: uint16(inst), Kind: Slot64})
}

// IncGS increments the 64-bit per-CPU counter whose %gs offset is in r:
// one read-modify-write instruction, so neither an interrupt nor a
// migration can split it.
func (a *Asm) IncGS(r Reg) *Asm {
	if r&7 == RSP || r&7 == RBP {
		panic("patch: IncGS does not encode rsp, rbp, r12 or r13")
	}
	return a.Bytes(0x65, rex(true, 0, r), 0xff, byte(r&7))
}

// MovID loads instrument inst's id into the 32-bit half of r.
func (a *Asm) MovID(r Reg, inst int) *Asm {
	code := []byte{}
	if r >= 8 {
		code = append(code, 0x41)
	}
	code = append(code, 0xb8+byte(r&7), 0, 0, 0, 0)
	return a.relocated(code, Reloc{Off: uint16(len(code) - 4), End: uint16(inst), Kind: ID32})
}

// Encode resolves labels and returns the code and its relocations.
func (a *Asm) Encode() (*Blob, error) {
	labels := map[string]int{}
	pos := 0
	for _, it := range a.items {
		if it.kind == itemLabel {
			if _, dup := labels[it.label]; dup {
				return nil, fmt.Errorf("label %q defined twice", it.label)
			}
			labels[it.label] = pos
		}
		pos += len(it.code)
	}
	if pos > math.MaxUint16 {
		return nil, fmt.Errorf("trampoline of %d bytes is too long", pos)
	}
	b := &Blob{Code: make([]byte, 0, pos)}
	for _, it := range a.items {
		at := len(b.Code)
		code := append([]byte(nil), it.code...)
		if it.kind == itemBranch {
			to, ok := labels[it.label]
			if !ok {
				return nil, fmt.Errorf("branch to undefined label %q", it.label)
			}
			binary.LittleEndian.PutUint32(code[len(code)-4:], uint32(int32(to-(at+len(code)))))
		}
		for _, r := range it.relocs {
			r.Off += uint16(at)
			if r.Kind == PC32 {
				r.End += uint16(at)
			}
			b.Relocs = append(b.Relocs, r)
		}
		b.Code = append(b.Code, code...)
	}
	return b, nil
}
