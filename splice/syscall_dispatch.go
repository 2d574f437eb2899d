package splice

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
)

// Kernels since 6.9 dispatch x86-64 system calls through x64_sys_call(regs,
// nr), a switch that the compiler turns into a tree of compares and
// conditional jumps ending in calls or tail calls of the __x64_sys_*
// functions (arch/x86/entry/syscall_64.c). Where the symbol table lists no
// sys_call_table (no CONFIG_KALLSYMS_ALL), syscallsFromDispatch recovers
// the table from that tree: it follows every path from the entry with the
// interval of values the number register can still hold, and a call of
// __x64_sys_X on a path where the interval is one value k maps k to X.

// interval is a set of unsigned 32-bit values: lo..hi less the values in
// not (which a taken `je` elsewhere on the path ruled out).
type interval struct {
	lo, hi uint64
	not    []uint64 // excluded values inside lo..hi, sorted, each once
}

var fullInterval = interval{lo: 0, hi: math.MaxUint32}

// equal reports whether iv and o hold the same values as written (bounds
// and exclusions alike).
func (iv interval) equal(o interval) bool {
	return iv.lo == o.lo && iv.hi == o.hi && slices.Equal(iv.not, o.not)
}

// value returns the interval's only member, if it has exactly one.
func (iv interval) value() (uint64, bool) {
	if iv.lo > iv.hi || iv.hi-iv.lo > 64 {
		return 0, false
	}
	var only uint64
	n := 0
	for v := iv.lo; v <= iv.hi; v++ {
		if _, excluded := slices.BinarySearch(iv.not, v); !excluded {
			only, n = v, n+1
		}
	}
	return only, n == 1
}

// clamp intersects the interval with lo..hi.
func (iv interval) clamp(lo, hi uint64) interval {
	out := interval{lo: max(lo, iv.lo), hi: min(hi, iv.hi)}
	for _, v := range iv.not {
		if v >= out.lo && v <= out.hi {
			out.not = append(out.not, v)
		}
	}
	return out
}

// without removes k.
func (iv interval) without(k uint64) interval {
	if k < iv.lo || k > iv.hi {
		return iv
	}
	i, found := slices.BinarySearch(iv.not, k)
	if !found {
		iv.not = slices.Insert(slices.Clone(iv.not), i, k)
	}
	return iv
}

// split returns the intervals of the taken and the fall-through edges of
// a jcc after `cmp $k, reg` (or `test reg, reg`, k = 0), compared unsigned.
func (iv interval) split(op x86asm.Op, k uint64) (taken, fall interval, ok bool) {
	below := func(k uint64) uint64 { // k-1 without wrapping below 0
		if k == 0 {
			return 0
		}
		return k - 1
	}
	const top = math.MaxUint32
	switch op {
	case x86asm.JE:
		return iv.clamp(k, k), iv.without(k), true
	case x86asm.JNE:
		return iv.without(k), iv.clamp(k, k), true
	case x86asm.JA:
		return iv.clamp(k+1, top), iv.clamp(0, k), true
	case x86asm.JAE:
		return iv.clamp(k, top), iv.clamp(0, below(k)), true
	case x86asm.JB:
		return iv.clamp(0, below(k)), iv.clamp(k, top), true
	case x86asm.JBE:
		return iv.clamp(0, k), iv.clamp(k+1, top), true
	}
	return iv, iv, false
}

// syscallsFromDispatch reads the syscall numbers out of x64_sys_call.
func syscallsFromDispatch(fn *callgraph.Function) (*SyscallTable, error) {
	reg, err := dispatchRegister(fn)
	if err != nil {
		return nil, err
	}
	blocks := make(map[uint32]*callgraph.Block, len(fn.Blocks))
	for i := range fn.Blocks {
		blocks[fn.Blocks[i].Start] = &fn.Blocks[i]
	}
	byNr := map[int]string{}
	seen := map[uint32]interval{}
	// flags is the compare whose flags reach the block's start, if any: a
	// compiler often puts `cmp; je` in one block and the `ja` on the same
	// flags in the next.
	var walk func(start uint32, iv interval, flags *x86asm.Inst)
	walk = func(start uint32, iv interval, flags *x86asm.Inst) {
		if old, ok := seen[start]; ok {
			if old.equal(iv) {
				return
			}
			// Two paths join: keep what both allow, soundly widened.
			iv = interval{lo: min(old.lo, iv.lo), hi: max(old.hi, iv.hi)}
		}
		seen[start] = iv
		b := blocks[start]
		if b == nil || iv.lo > iv.hi {
			return
		}
		if name := blockSyscall(fn, b); name != "" {
			// Each case ends in its syscall function: a tail call, a call
			// and return, or a call of a noreturn function (exit) that
			// the compiler lets fall into the next case's code. Either
			// way the path of this case ends here.
			if nr, ok := iv.value(); ok {
				byNr[int(nr)] = name
			}
			return
		}
		taken, fall, target, out, ok := blockBranch(fn, b, reg, iv, flags)
		if !ok {
			for _, s := range b.Succs {
				walk(s, iv, out)
			}
			return
		}
		walk(target, taken, out)
		walk(b.End, fall, out)
	}
	walk(fn.Blocks[0].Start, fullInterval, nil)
	if len(byNr) == 0 {
		return nil, fmt.Errorf("reading the syscall numbers out of %s: no path ends in a syscall function", fn.Sym.Name)
	}
	byName := make(map[string]int, len(byNr))
	for nr, name := range byNr {
		if old, dup := byName[name]; !dup || nr < old {
			byName[name] = nr
		}
	}
	t := NewSyscallTable(byName)
	t.byNr = byNr
	return t, nil
}

// dispatchRegister is the register of the function's first compare with
// an immediate: the syscall number.
func dispatchRegister(fn *callgraph.Function) (x86asm.Reg, error) {
	for _, in := range fn.Insts {
		d, _ := fn.Decoded(in)
		if d.Op == x86asm.CMP {
			if r, ok := d.Args[0].(x86asm.Reg); ok {
				if _, ok := d.Args[1].(x86asm.Imm); ok {
					return r, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("reading the syscall numbers out of %s: no compare of a register with a constant", fn.Sym.Name)
}

// blockSyscall is the syscall function a block calls or tail-calls.
func blockSyscall(fn *callgraph.Function, b *callgraph.Block) string {
	for _, s := range fn.Sites {
		if s.Off >= b.Start && s.Off < b.End && instrument.IsSyscall64(s.Target) && !strings.HasSuffix(s.Target, "_sys_ni_syscall") {
			return s.Target
		}
	}
	return ""
}

// blockBranch interprets a block that ends in a jcc on the flags of a
// compare of reg with a constant (or a test of reg with itself), made in
// the block or reaching it (flags), returning the intervals along its
// taken edge (to target) and its fall-through edge, and the compare whose
// flags leave the block (nil when an instruction that may write the
// flags intervened).
func blockBranch(fn *callgraph.Function, b *callgraph.Block, reg x86asm.Reg, iv interval, flags *x86asm.Inst) (taken, fall interval, target uint32, out *x86asm.Inst, ok bool) {
	var last x86asm.Inst
	var lastIn callgraph.Inst
	out = flags
	for _, in := range fn.Insts {
		if in.Off < b.Start || in.Off >= b.End {
			continue
		}
		d, _ := fn.Decoded(in)
		switch {
		case d.Op == x86asm.CMP || d.Op == x86asm.TEST:
			out = &d
		case in.Kind == callgraph.KindCondJump || in.Kind == callgraph.KindNop || in.Kind == callgraph.KindEndbr || d.Op == x86asm.MOV:
			// leave the flags as they are
		default:
			out = nil
		}
		last, lastIn = d, in
	}
	if lastIn.Kind != callgraph.KindCondJump || out == nil {
		return iv, iv, 0, out, false
	}
	rel, isRel := last.Args[0].(x86asm.Rel)
	k, isCmp := compareConstant(*out, reg)
	if !isRel || !isCmp {
		return iv, iv, 0, out, false
	}
	taken, fall, ok = iv.split(last.Op, k)
	return taken, fall, uint32(int64(lastIn.End()) + int64(rel)), out, ok
}

// compareConstant returns k for `cmp $k, reg` and 0 for `test reg, reg`.
func compareConstant(d x86asm.Inst, reg x86asm.Reg) (uint64, bool) {
	r, ok := d.Args[0].(x86asm.Reg)
	if !ok || r != reg {
		return 0, false
	}
	switch d.Op {
	case x86asm.CMP:
		imm, ok := d.Args[1].(x86asm.Imm)
		return uint64(uint32(imm)), ok
	case x86asm.TEST:
		r2, ok := d.Args[1].(x86asm.Reg)
		return 0, ok && r2 == reg
	}
	return 0, false
}
