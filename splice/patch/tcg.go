package patch

import (
	"slices"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
)

// cmpxchg16bEmu is the kernel's fallback for CPUs without cmpxchg16b
// (arch/x86/lib/cmpxchg16b_emu.S), whose call sites are alternatives.
const cmpxchg16bEmu = "this_cpu_cmpxchg16b_emu"

// TCGCmpxchg16bHazard reports whether a probe at off in f, on QEMU's
// emulator (TCG) before 8.0, can corrupt RFLAGS through a cmpxchg16b,
// and the offset of that cmpxchg16b.
//
// The emulator keeps the arithmetic flags lazily: the last flags operation
// and its operands, written back to the CPU state only where a
// translation block ends. Its cmpxchg16b computes the flags it leaves
// from the operation written back, not from the one last run in its own
// block. A probe's way back — the popfq of an optprobe's detour or of
// ftrace's regs caller, the iretq of an int3, the popfq of a splice stub
// that gives the flags back — writes back "the whole RFLAGS word"; an add
// then in the cmpxchg16b's block makes the cmpxchg16b take the add's
// operand for RFLAGS: TF, NT and IOPL at random, until the next flags
// operation. A pushfq in that shadow (a probe's, an interrupt's) saves
// them, and its popfq or iretq loads them: a single-step trap or a double
// fault. The kernel's per-CPU cmpxchg16b in the slab allocator's fast path
// (this_cpu_cmpxchg_double, 6.1 to 6.12) has such an add in its block: the
// kernel's own optprobe for a kprobe counter at the block's first
// instruction in __kmalloc_cache_noprof oopsed the 6.12 test VM
// (exc_debug_kernel, TF set by the detour's popfq).
//
// A probe is a hazard before a cmpxchg16b and in its shadow. Before: the
// walk follows f's control flow from off, and a path is clear once a
// flags operation is followed by an instruction that ends a translation
// block (a jump, a call or a return), where the emulator writes back an
// operation of the kernel's own; a cmpxchg16b reached before that is the
// hazard. A call is followed to its return address without entering the
// callee (whose flags operation would clear the path too). The shadow:
// every instruction reached from a cmpxchg16b before a flags operation.
// Unknown flag effects clear no path and end no shadow.
//
// The kernel builds its per-CPU cmpxchg16b as an alternative to a call of
// this_cpu_cmpxchg16b_emu, patched at boot on CPUs with CX16: text read
// from the running kernel holds the cmpxchg16b, the image the call, and
// both count.
func TCGCmpxchg16bHazard(f *callgraph.Function, off uint32) (uint32, bool) {
	all := cmpxchg16bs(f)
	if len(all) == 0 {
		return 0, false
	}
	cx16 := map[uint32]bool{}
	for _, at := range all {
		cx16[at] = true
	}
	if at, ok := tcgBefore(f, off, cx16); ok {
		return at, true
	}
	for _, at := range all {
		if tcgShadow(f, at)[off] {
			return at, true
		}
	}
	return 0, false
}

// cmpxchg16bs returns the offsets of f's cmpxchg16b instructions, and of
// its calls of this_cpu_cmpxchg16b_emu (the alternative the kernel
// replaces by one at boot), in order.
func cmpxchg16bs(f *callgraph.Function) []uint32 {
	var out []uint32
	for _, in := range f.Insts {
		if in.Op == x86asm.CMPXCHG16B {
			out = append(out, in.Off)
		}
	}
	for _, s := range f.Sites {
		if s.Target == cmpxchg16bEmu {
			out = append(out, s.Off)
		}
	}
	slices.Sort(out)
	return out
}

// tcgBefore walks from off to a cmpxchg16b of cx16 that a path reaches
// before the emulator writes back a flags operation of the kernel's. The
// probed instruction's own flags operation does not count: a kprobe that
// cannot be boosted single-steps it, and the trap's iretq writes RFLAGS
// back after it. An offset is marked seen only while no flags operation
// has run since its block began: a path already clear that runs through a
// join must not hide a path that reaches it still dangerous.
func tcgBefore(f *callgraph.Function, off uint32, cx16 map[uint32]bool) (uint32, bool) {
	seen := map[uint32]bool{}
	work := []uint32{off}
	for len(work) > 0 {
		at := work[len(work)-1]
		work = work[:len(work)-1]
		wrote := false // a flags operation since the translation block began
		for {
			if !wrote {
				if seen[at] {
					break
				}
				seen[at] = true
			}
			in, ok := f.Inst(at)
			if !ok || in.End() > f.CodeEnd {
				break
			}
			if cx16[in.Off] {
				return in.Off, true
			}
			if in.Off != off {
				wrote = wrote || writesFlags(f, in)
			}
			if in.Kind == callgraph.KindOther || in.Kind == callgraph.KindNop || in.Kind == callgraph.KindEndbr {
				at = in.End()
				continue
			}
			if wrote {
				break // written back where the block ends
			}
			switch in.Kind {
			case callgraph.KindCall, callgraph.KindIndirectCall:
				at = in.End()
				continue
			case callgraph.KindJump, callgraph.KindCondJump, callgraph.KindIndirectJump:
				work = append(work, blockSuccs(f, in.Off)...) // a jump table's entries where recognised
			}
			break
		}
	}
	return 0, false
}

// tcgShadow returns the offsets reached from the cmpxchg16b at cx before
// a flags operation: where RFLAGS may hold its garbage. A call is followed
// to its return address (the callee's flags operation is unknown here).
func tcgShadow(f *callgraph.Function, cx uint32) map[uint32]bool {
	shadow := map[uint32]bool{}
	in, ok := f.Inst(cx)
	if !ok {
		return shadow
	}
	work := []uint32{in.End()}
	for len(work) > 0 {
		at := work[len(work)-1]
		work = work[:len(work)-1]
		for !shadow[at] {
			in, ok := f.Inst(at)
			if !ok || in.End() > f.CodeEnd || writesFlags(f, in) {
				break
			}
			shadow[at] = true
			switch in.Kind {
			case callgraph.KindOther, callgraph.KindNop, callgraph.KindEndbr, callgraph.KindCall, callgraph.KindIndirectCall:
				at = in.End()
				continue
			case callgraph.KindJump, callgraph.KindCondJump, callgraph.KindIndirectJump:
				work = append(work, blockSuccs(f, in.Off)...)
			}
			break
		}
	}
	return shadow
}

// TCGReturnHazard reports whether a return of f (a ret, or a jmp to the
// return thunk) lies in a cmpxchg16b's shadow, and which: a kretprobe's
// trampoline, and a splice's return window that gives the flags back,
// run pushfq and popfq there (see TCGCmpxchg16bHazard).
func TCGReturnHazard(f *callgraph.Function) (ret, cx uint32, ok bool) {
	for _, at := range cmpxchg16bs(f) {
		shadow := tcgShadow(f, at)
		for _, r := range f.Returns {
			if shadow[r] {
				return r, at, true
			}
		}
	}
	return 0, 0, false
}

// writesFlags reports whether in writes the arithmetic flags (all, or all
// but CF).
func writesFlags(f *callgraph.Function, in callgraph.Inst) bool {
	d, err := x86asm.Decode(f.Code[in.Off:in.End()], 64)
	if err != nil {
		return false
	}
	e := effect(d)
	return e == flagsWriteAll || e == flagsWriteNoCF
}

// blockSuccs returns the successors of the block that ends with the
// branch at off.
func blockSuccs(f *callgraph.Function, off uint32) []uint32 {
	for _, b := range f.Blocks {
		if b.Start <= off && off < b.End {
			return b.Succs
		}
	}
	return nil
}
