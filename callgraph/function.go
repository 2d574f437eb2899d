package callgraph

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Function is one decoded kernel function: its instructions, basic blocks,
// branch targets and call sites. Build it with Decode, or through a Graph,
// which also reads jump tables and resolves static calls. A Function is
// not modified after it is built and is safe for concurrent reads.
type Function struct {
	Sym  Symbol // the function (or .cold part) decoded
	Code []byte // the bytes decoded, Sym.Size of them

	// Insts are the instructions in offset order, from a linear sweep over
	// the whole extent (padding included), as objdump decodes them.
	Insts []Inst
	// Blocks are the basic blocks in offset order.
	Blocks []Block
	// Targets are the offsets that direct branches and recognised jump
	// tables inside the function reach, sorted, without duplicates.
	Targets []uint32
	// Sites are the calls and the jumps that leave the function: direct
	// calls, tail calls, indirect sites and static calls, by offset.
	Sites []Site
	// Returns are the offsets of ret instructions and of jmps to a return
	// thunk.
	Returns []uint32
	// Exits are jumps from the function into one of its own .cold parts
	// (or, from a cold part, back into its parent): not calls.
	Exits []Exit
	// JumpTables are the indirect jumps whose table was recognised.
	JumpTables []JumpTable
	// Problems are the bytes that could not be decoded; see Problem.
	Problems []Problem

	// Endbr is set when the function starts with ENDBR64 (IBT kernels), or
	// with the 4-byte nop the kernel writes over the ENDBR64 of a function
	// nothing calls indirectly ("sealing", Linux 6.2+).
	Endbr bool
	// Fentry is the offset of the ftrace site at entry (the 5-byte nop, or
	// the call to __fentry__ as built, or to a tracer's trampoline while
	// tracing), or -1 where the function has none (notrace).
	Fentry int
	// CodeEnd is the end of the last instruction that is not padding (int3
	// or nop at the end of the extent).
	CodeEnd uint32

	branches []decodedBranch // direct branches and calls, by offset
}

// Block is a basic block: a run of instructions entered only at Start.
type Block struct {
	Start, End uint32   // offsets; End is just past the last instruction
	Succs      []uint32 // Start offsets of the successor blocks in this function
	// Leaves is set when control may leave the function at the block's end
	// (return, tail call, indirect jump, jump to a cold part).
	Leaves bool
}

// SiteKind classifies a call site.
type SiteKind uint8

const (
	// Direct is a call to a known address.
	Direct SiteKind = iota + 1
	// Tail is a jmp to the start of another function (or into one).
	Tail
	// Indirect is a call or jmp through a register or memory, including
	// through a retpoline thunk (__x86_indirect_thunk_<reg> and the
	// call/jump/ITS variants of newer kernels).
	Indirect
	// StaticCall is a call or jmp to a static-call trampoline __SCT__*.
	StaticCall
)

var siteKindNames = [...]string{"", "direct", "tail", "indirect", "static"}

// String returns "direct", "tail", "indirect" or "static".
func (k SiteKind) String() string {
	if int(k) < len(siteKindNames) && k > 0 {
		return siteKindNames[k]
	}
	return fmt.Sprintf("sitekind(%d)", k)
}

// Site is a call site, or a jump that leaves the function for another.
type Site struct {
	Off  uint32   // of the call or jmp, from the function's start
	Len  uint8    // of the instruction
	Kind SiteKind // Direct, Tail, Indirect or StaticCall
	// Jump is set for a jmp (the callee returns to this function's caller).
	Jump bool
	// Target is the callee: the function at TargetAddr (Direct, Tail), the
	// current target of a static call where known, "" otherwise.
	Target string
	// TargetAddr is the callee's address, 0 where unknown.
	TargetAddr uint64
	// TargetOff is the offset of TargetAddr in Target: 0 for a call to a
	// function's start.
	TargetOff uint64
	// Via is the retpoline thunk of an Indirect site, or the trampoline of
	// a StaticCall.
	Via string
	// Resolved is set for a StaticCall whose trampoline was read from live
	// text; Target "" then means the static call is NULL (returns at once).
	Resolved bool
	// Operand is where an Indirect site's target comes from.
	Operand *Operand
}

// Operand is the operand of an indirect call or jump, as plain data that a
// BPF program can evaluate from pt_regs and kernel memory: the target is
// the register Base when Mem is false, else the 8 bytes at
// Segment:Disp+Base+Index*Scale. A RIP-relative operand is resolved: Base
// is "" and Disp the absolute address.
type Operand struct {
	Mem     bool   // the target is loaded from memory, not held in Base
	Segment string // "gs" for a per-CPU operand, else ""
	Base    string // lower-case 64-bit register name, "rax"; "" for none
	Index   string // index register, "" for none
	Scale   uint8  // 1, 2, 4 or 8 with an Index, else 0
	Disp    int64  // displacement (the absolute address of a RIP-relative operand)
}

// String returns the operand in AT&T syntax: "%rax", "0x10(%rbx)".
func (o Operand) String() string {
	if !o.Mem {
		return "%" + o.Base
	}
	s := ""
	if o.Segment != "" {
		s = "%" + o.Segment + ":"
	}
	if o.Disp != 0 || o.Base == "" && o.Index == "" {
		if o.Disp < 0 {
			s += fmt.Sprintf("-%#x", -o.Disp)
		} else {
			s += fmt.Sprintf("%#x", o.Disp)
		}
	}
	if o.Base == "" && o.Index == "" {
		return s
	}
	s += "("
	if o.Base != "" {
		s += "%" + o.Base
	}
	if o.Index != "" {
		s += fmt.Sprintf(",%%%s,%d", o.Index, o.Scale)
	}
	return s + ")"
}

// Exit is a jump out of the function that is not a call: to a cold part of
// the same function.
type Exit struct {
	Off    uint32 // of the jump
	Target uint64 // absolute address
}

// JumpTable is an indirect jump through a table of absolute addresses:
// "jmp *TABLE(,%idx,8)", or a load from such a table into the register
// that a following jmp (or retpoline-thunk jmp) uses.
type JumpTable struct {
	Off     uint32   // the jump
	Table   uint64   // the table's address
	Index   string   // the index register
	Entries []uint32 // the offsets the table holds, once a Graph read it
}

// IsBoundary reports whether off is the start of a decoded instruction.
func (f *Function) IsBoundary(off uint32) bool {
	i := sort.Search(len(f.Insts), func(i int) bool { return f.Insts[i].Off >= off })
	return i < len(f.Insts) && f.Insts[i].Off == off
}

// Inst returns the instruction that starts at off.
func (f *Function) Inst(off uint32) (Inst, bool) {
	i := sort.Search(len(f.Insts), func(i int) bool { return f.Insts[i].Off >= off })
	if i < len(f.Insts) && f.Insts[i].Off == off {
		return f.Insts[i], true
	}
	return Inst{}, false
}

// IsCandidate reports whether off is a candidate instrument point: the
// start of a decoded instruction before CodeEnd that is not ENDBR (sealed
// or not) and not int3, in a stretch the sweep decoded. The ftrace site's
// start counts (it is the function's entry); its other bytes are not
// boundaries. Rules of particular backends (blacklists, exception tables,
// alternatives) are package splice's.
func (f *Function) IsCandidate(off uint32) bool {
	in, ok := f.Inst(off)
	return ok && in.Off < f.CodeEnd && in.Kind != KindEndbr && in.Kind != KindInt3 && !(f.Endbr && off == 0)
}

// Place says what instrument a hunt would place at an instruction: an
// entry timer or counter, a basic-block counter, an indirect-call target
// recorder; PlaceNone elsewhere.
type Place string

// The places of a function's instructions.
const (
	PlaceNone    Place = ""
	PlaceEntry   Place = "entry"   // the function's first instruction: fentry, kprobe or splice timers and counters
	PlaceBlock   Place = "block"   // the first instruction of a basic block other than the entry
	PlaceTargets Place = "targets" // an indirect call site (kprobe records its targets)
)

// entryPoint is the offset an entry instrument patches: the ftrace site
// (fentry, and kprobes, which the kernel moves past ENDBR), else the first
// candidate instruction.
func (f *Function) entryPoint() uint32 {
	if f.Fentry >= 0 {
		return uint32(f.Fentry)
	}
	for _, in := range f.Insts {
		if f.IsCandidate(in.Off) {
			return in.Off
		}
	}
	return 0
}

// PlaceAt returns what a hunt would place at off: the entry, the start of
// every other basic block before CodeEnd that is a candidate point (not
// ENDBR, not int3 padding), and every indirect call site of the function
// itself. Backends refuse some of these where their own rules say so
// (package splice's Placement).
func (f *Function) PlaceAt(off uint32) Place {
	if off == f.entryPoint() {
		return PlaceEntry
	}
	for _, s := range f.Sites {
		if s.Off == off && s.Kind == Indirect {
			return PlaceTargets
		}
	}
	if i := sort.Search(len(f.Blocks), func(i int) bool { return f.Blocks[i].Start >= off }); i < len(f.Blocks) && f.Blocks[i].Start == off && off < f.CodeEnd && f.IsCandidate(off) {
		return PlaceBlock
	}
	return PlaceNone
}

// Candidates returns every candidate instrument point.
func (f *Function) Candidates() []uint32 {
	var out []uint32
	for _, in := range f.Insts {
		if f.IsCandidate(in.Off) {
			out = append(out, in.Off)
		}
	}
	return out
}

// IsTarget reports whether a direct branch or jump table inside the
// function reaches off.
func (f *Function) IsTarget(off uint32) bool {
	i := sort.Search(len(f.Targets), func(i int) bool { return f.Targets[i] >= off })
	return i < len(f.Targets) && f.Targets[i] == off
}

// Decoded returns the x86asm decoding of the instruction at in, and the
// name of an encoding x86asm lacks ("endbr64", "clac", ...) when Op is 0.
func (f *Function) Decoded(in Inst) (x86asm.Inst, string) {
	d, err := decodeOne(f.Code[in.Off:in.End()])
	if err != nil {
		return x86asm.Inst{}, "(bad)"
	}
	return d.inst, d.name
}

// Asm prints the instruction at in in AT&T syntax (objdump's), with
// branch targets and RIP-relative operands named by symbol from syms.
func (f *Function) Asm(syms *Symbols, in Inst) string { return f.AsmSyntax(syms, in, false) }

// AsmSyntax is Asm in AT&T syntax (GNU, objdump's default), or in Intel
// syntax (objdump -M intel) when intel is set.
func (f *Function) AsmSyntax(syms *Symbols, in Inst, intel bool) string {
	x, name := f.Decoded(in)
	if name != "" {
		return name
	}
	pc := f.Sym.Addr + uint64(in.Off)
	symname := func(addr uint64) (string, uint64) {
		if s, _, ok := syms.Nearest(addr); ok {
			return s.Name, s.Addr
		}
		return "", 0
	}
	var text string
	if intel {
		text = x86asm.IntelSyntax(x, pc, symname)
	} else {
		text = x86asm.GNUSyntax(x, pc, symname)
	}
	if rel, ok := x.Args[0].(x86asm.Rel); ok {
		mnemonic, _, _ := strings.Cut(text, " ")
		text = mnemonic + " " + syms.Format(uint64(int64(pc)+int64(in.Len)+int64(rel)))
	}
	return text
}

// Err joins the function's problems into one error, or returns nil.
func (f *Function) Err() error {
	if len(f.Problems) == 0 {
		return nil
	}
	errs := make([]error, len(f.Problems))
	for i, p := range f.Problems {
		errs[i] = fmt.Errorf("%s%w", f.Sym.Name, p)
	}
	return errors.Join(errs...)
}

// Calls returns the sites of kind Direct whose target is a known function,
// and the Tail sites: the static callees.
func (f *Function) Calls() []Site {
	var out []Site
	for _, s := range f.Sites {
		if (s.Kind == Direct || s.Kind == Tail) && s.Target != "" {
			out = append(out, s)
		}
	}
	return out
}
