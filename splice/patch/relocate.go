package patch

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// ErrRefused is wrapped by every refusal of a place or an instruction:
// nothing may be spliced there.
var ErrRefused = errors.New("refused")

// movable are the operations that may run displaced, in a trampoline:
// none transfers control, reads the instruction pointer other than
// through a RIP-relative operand (rewritten), or changes how the next
// instruction runs (sti, mov ss). Anything else is refused, whatever it
// is: an allowlist, as the kernel's can_boost() is.
var movable = map[x86asm.Op]bool{}

func init() {
	for _, op := range []x86asm.Op{
		x86asm.MOV, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD, x86asm.LEA,
		x86asm.PUSH, x86asm.POP,
		x86asm.ADD, x86asm.ADC, x86asm.SUB, x86asm.SBB, x86asm.AND, x86asm.OR, x86asm.XOR,
		x86asm.CMP, x86asm.TEST, x86asm.INC, x86asm.DEC, x86asm.NEG, x86asm.NOT,
		x86asm.SHL, x86asm.SHR, x86asm.SAR, x86asm.ROL, x86asm.ROR, x86asm.SHLD, x86asm.SHRD,
		x86asm.IMUL, x86asm.MUL, x86asm.XCHG, x86asm.XADD, x86asm.CMPXCHG,
		x86asm.BT, x86asm.BTS, x86asm.BTR, x86asm.BTC, x86asm.BSF, x86asm.BSR, x86asm.BSWAP,
		x86asm.CBW, x86asm.CWDE, x86asm.CDQE, x86asm.CWD, x86asm.CDQ, x86asm.CQO,
		x86asm.NOP,
		x86asm.CMOVA, x86asm.CMOVAE, x86asm.CMOVB, x86asm.CMOVBE, x86asm.CMOVE, x86asm.CMOVG,
		x86asm.CMOVGE, x86asm.CMOVL, x86asm.CMOVLE, x86asm.CMOVNE, x86asm.CMOVNO, x86asm.CMOVNP,
		x86asm.CMOVNS, x86asm.CMOVO, x86asm.CMOVP, x86asm.CMOVS,
		x86asm.SETA, x86asm.SETAE, x86asm.SETB, x86asm.SETBE, x86asm.SETE, x86asm.SETG,
		x86asm.SETGE, x86asm.SETL, x86asm.SETLE, x86asm.SETNE, x86asm.SETNO, x86asm.SETNP,
		x86asm.SETNS, x86asm.SETO, x86asm.SETP, x86asm.SETS,
	} {
		movable[op] = true
	}
}

// Displaced is one instruction of a window: where it was and its bytes.
type Displaced struct {
	Addr uint64 // its address in the kernel
	Code []byte
	Inst x86asm.Inst
}

// Decode decodes the instruction at code, which lies at addr.
func Decode(code []byte, addr uint64) (Displaced, error) {
	in, err := x86asm.Decode(code, 64)
	if err != nil {
		return Displaced{}, fmt.Errorf("decoding %#x: %w", addr, err)
	}
	if in.Op == 0 {
		return Displaced{}, fmt.Errorf("decoding %#x: only a prefix", addr)
	}
	return Displaced{Addr: addr, Code: append([]byte(nil), code[:in.Len]...), Inst: in}, nil
}

// String returns the instruction in AT&T syntax.
func (d Displaced) String() string { return x86asm.GNUSyntax(d.Inst, d.Addr, nil) }

// Target returns the absolute address a RIP-relative operand means, and
// whether the instruction has one.
func (d Displaced) Target() (uint64, bool) {
	if d.Inst.PCRel != 4 {
		return 0, false
	}
	disp := int32(uint32(d.Code[d.Inst.PCRelOff]) | uint32(d.Code[d.Inst.PCRelOff+1])<<8 |
		uint32(d.Code[d.Inst.PCRelOff+2])<<16 | uint32(d.Code[d.Inst.PCRelOff+3])<<24)
	return d.Addr + uint64(d.Inst.Len) + uint64(int64(disp)), true
}

// movablePrefixes are the legacy prefixes a displaced instruction may
// have: lock, operand size and %gs (as the module's ap_insn_movable).
var movablePrefixes = map[byte]bool{0xf0: true, 0x66: true, 0x65: true}

// CheckMovable refuses an instruction that cannot run displaced.
func (d Displaced) CheckMovable() error {
	in := d.Inst
	for _, b := range d.Code {
		switch b {
		case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3:
			if !movablePrefixes[b] {
				return fmt.Errorf("%s at %#x: %w: prefix %#02x", d, d.Addr, ErrRefused, b)
			}
			continue
		}
		break
	}
	if !movable[in.Op] {
		return fmt.Errorf("%s at %#x: %w: a %s cannot run out of place", d, d.Addr, ErrRefused, in.Op)
	}
	for _, a := range in.Args {
		switch a := a.(type) {
		case nil, x86asm.Imm:
		case x86asm.Reg:
			if !isGPR(a) {
				return fmt.Errorf("%s at %#x: %w: operand %s is not a general-purpose register", d, d.Addr, ErrRefused, a)
			}
		case x86asm.Mem:
			if a.Segment != 0 && a.Segment != x86asm.GS {
				return fmt.Errorf("%s at %#x: %w: segment override %s", d, d.Addr, ErrRefused, a.Segment)
			}
			if a.Base == x86asm.RIP && (in.PCRel != 4 || in.AddrSize != 64) {
				return fmt.Errorf("%s at %#x: %w: RIP-relative operand without a 32-bit displacement", d, d.Addr, ErrRefused)
			}
			if a.Base == x86asm.EIP || a.Base == x86asm.IP {
				return fmt.Errorf("%s at %#x: %w: an EIP-relative operand", d, d.Addr, ErrRefused)
			}
		default:
			return fmt.Errorf("%s at %#x: %w: operand %v", d, d.Addr, ErrRefused, a)
		}
	}
	if in.PCRel != 0 && in.PCRel != 4 {
		return fmt.Errorf("%s at %#x: %w: %d-byte PC-relative field", d, d.Addr, ErrRefused, in.PCRel)
	}
	if in.PCRel == 4 && !hasRIPMem(in) {
		return fmt.Errorf("%s at %#x: %w: PC-relative immediate", d, d.Addr, ErrRefused)
	}
	return nil
}

func hasRIPMem(in x86asm.Inst) bool {
	for _, a := range in.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
			return true
		}
	}
	return false
}

// isGPR reports whether r is a general-purpose register of any width.
func isGPR(r x86asm.Reg) bool {
	return r >= x86asm.AL && r <= x86asm.R15
}

// Relocate appends the displaced instruction to a as it must run at a
// different address: a RIP-relative displacement becomes a relocation to
// the same absolute address.
func (a *Asm) Relocate(d Displaced) error {
	if err := d.CheckMovable(); err != nil {
		return err
	}
	target, ok := d.Target()
	if !ok {
		a.Bytes(d.Code...)
		return nil
	}
	code := append([]byte(nil), d.Code...)
	off := uint16(d.Inst.PCRelOff)
	for i := 0; i < 4; i++ {
		code[int(off)+i] = 0
	}
	a.relocated(code, Reloc{Off: off, End: uint16(len(code)), Kind: PC32, Target: target})
	return nil
}
