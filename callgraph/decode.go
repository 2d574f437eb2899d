package callgraph

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/arch/x86/x86asm"
)

// InstKind is what an instruction does to control flow.
type InstKind uint8

const (
	// KindOther falls through to the next instruction.
	KindOther InstKind = iota
	// KindJump is an unconditional direct jmp.
	KindJump
	// KindCondJump is a jcc, jrcxz or loop: taken or falls through.
	KindCondJump
	// KindCall is a direct call.
	KindCall
	// KindIndirectJump is a jmp through a register or memory.
	KindIndirectJump
	// KindIndirectCall is a call through a register or memory.
	KindIndirectCall
	// KindRet is a ret (near or far).
	KindRet
	// KindInt3 is an int3: padding, or the SLS barrier after a ret or jmp.
	KindInt3
	// KindStop ends the flow without a successor: iret, sysret, sysexit.
	KindStop
	// KindNop is a nop of any length.
	KindNop
	// KindEndbr is ENDBR64/ENDBR32, the landing pad of indirect branches
	// under IBT.
	KindEndbr
)

var kindNames = [...]string{"other", "jump", "condjump", "call", "indirectjump", "indirectcall", "ret", "int3", "stop", "nop", "endbr"}

// String returns a short lower-case name.
func (k InstKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// decoded is one instruction as the sweep sees it.
type decoded struct {
	inst   x86asm.Inst // zero for an extra encoding
	name   string      // the extra encoding's name
	length int
	kind   InstKind
	rel    int64 // direct branch displacement from the instruction's end
	direct bool
}

var errPrefixOnly = errors.New("x86asm decodes only a prefix: the opcode after it is unknown")

// decodeOne decodes the instruction at code[0:].
func decodeOne(code []byte) (decoded, error) {
	if name, n, kind, ok := decodeExtra(code); ok {
		return decoded{name: name, length: n, kind: kind}, nil
	}
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return decoded{}, err
	}
	if inst.Op == 0 {
		return decoded{}, errPrefixOnly
	}
	d := decoded{inst: inst, length: inst.Len}
	d.kind, d.rel, d.direct = classify(inst)
	return d, nil
}

// classify returns the flow kind of an x86asm instruction and, for a
// direct branch, its displacement.
func classify(inst x86asm.Inst) (InstKind, int64, bool) {
	rel, direct := inst.Args[0].(x86asm.Rel)
	switch inst.Op {
	case x86asm.JMP:
		if direct {
			return KindJump, int64(rel), true
		}
		return KindIndirectJump, 0, false
	case x86asm.CALL:
		if direct {
			return KindCall, int64(rel), true
		}
		return KindIndirectCall, 0, false
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JCXZ, x86asm.JE, x86asm.JECXZ,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP,
		x86asm.JNS, x86asm.JO, x86asm.JP, x86asm.JRCXZ, x86asm.JS,
		x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		if direct {
			return KindCondJump, int64(rel), true
		}
	case x86asm.RET, x86asm.LRET:
		return KindRet, 0, false
	case x86asm.IRET, x86asm.IRETD, x86asm.IRETQ, x86asm.SYSRET, x86asm.SYSEXIT:
		return KindStop, 0, false
	case x86asm.LJMP:
		return KindIndirectJump, 0, false
	case x86asm.LCALL:
		return KindIndirectCall, 0, false
	case x86asm.INT:
		if imm, ok := inst.Args[0].(x86asm.Imm); ok && imm == 3 && inst.Len == 1 {
			return KindInt3, 0, false
		}
	case x86asm.NOP, x86asm.FNOP:
		return KindNop, 0, false
	}
	return KindOther, 0, false
}

// Inst is one instruction of a decoded function.
type Inst struct {
	Off  uint32    // offset from the function's start
	Len  uint8     // length in bytes
	Kind InstKind  // effect on control flow
	Op   x86asm.Op // x86asm's opcode; 0 for an encoding x86asm lacks (see Function.Text)
}

// End returns the offset just past the instruction.
func (in Inst) End() uint32 { return in.Off + uint32(in.Len) }

// Problem is a stretch of a function that could not be decoded: the sweep
// stops there and resumes only at a known branch target.
type Problem struct {
	Off    uint32 // where decoding stopped
	Bytes  []byte // up to 15 bytes from Off
	Reason string // "undecodable: ...", "a branch targets the middle of an instruction", ...
}

// Error returns "+0x1a: undecodable bytes 0f 0b ...: reason".
func (p Problem) Error() string {
	return fmt.Sprintf("+%#x: bytes % x: %s", p.Off, p.Bytes, p.Reason)
}

// byte states of the sweep
const (
	unknown byte = iota
	instStart
	instInside
)

// sweep decodes code linearly from offset 0, as objdump does, so that
// padding and code after a ret are decoded too. Where bytes cannot be
// decoded it records a Problem and resumes only at direct branch targets
// found elsewhere in the function, never at a guessed offset.
func sweep(code []byte, base uint64) ([]Inst, []decodedBranch, []Problem) {
	state := make([]byte, len(code))
	insts := make([]Inst, 0, len(code)/4+1) // kernel code averages about 4 bytes an instruction
	var branches []decodedBranch
	var problems []Problem
	work := []int{0}
	middle := map[int]bool{} // branch targets inside instructions, reported
	problem := func(off int, reason string) {
		problems = append(problems, Problem{Off: uint32(off), Bytes: clone(code[off:min(off+15, len(code))]), Reason: reason})
	}
	for len(work) > 0 {
		start := work[len(work)-1]
		work = work[:len(work)-1]
		off := start
		for off < len(code) && state[off] == unknown {
			d, err := decodeOne(code[off:])
			if err != nil {
				problem(off, "undecodable: "+err.Error())
				break
			}
			end := off + d.length
			if end > len(code) {
				problem(off, fmt.Sprintf("a %d-byte instruction runs past the function's end", d.length))
				break
			}
			if overlaps(state[off+1 : end]) {
				problem(off, "the instruction here overlaps one decoded from another branch target")
				break
			}
			state[off] = instStart
			for i := off + 1; i < end; i++ {
				state[i] = instInside
			}
			insts = append(insts, Inst{Off: uint32(off), Len: uint8(d.length), Kind: d.kind, Op: d.inst.Op})
			if d.direct {
				target := int64(end) + d.rel
				branches = append(branches, decodedBranch{off: uint32(off), target: base + uint64(target)})
				if target >= 0 && target < int64(len(code)) && state[target] != instStart {
					work = append(work, int(target))
				}
			}
			off = end
		}
		switch {
		case off >= len(code) || state[off] != instInside:
		case off == start:
			if !middle[off] {
				problem(off, "a branch targets the middle of an instruction")
				middle[off] = true
			}
		default:
			problem(off, "decoding from a branch target runs into the middle of an instruction")
		}
	}
	sortInsts(insts)
	return insts, branches, problems
}

// decodedBranch is a direct branch or call and its absolute target.
type decodedBranch struct {
	off    uint32
	target uint64
}

func overlaps(s []byte) bool {
	for _, b := range s {
		if b != unknown {
			return true
		}
	}
	return false
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func sortInsts(insts []Inst) {
	slices.SortFunc(insts, func(a, b Inst) int { return cmp.Compare(a.Off, b.Off) })
}
