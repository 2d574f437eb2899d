package patch

import (
	"fmt"
	"math"
	"strconv"
)

// Kind is what an instrument does, the values of enum ap_kind (and of
// instrument.Kind).
type Kind uint32

// The instrument kinds a trampoline can hold.
const (
	Count     Kind = 1 // count executions of the site
	ExitCount Kind = 2 // count returns (the return address is hijacked)
	Timer     Kind = 3 // time entry to return
)

// Instrument is one instrument of a site: its kind and the thread groups
// it is filtered to (none: every process).
type Instrument struct {
	Kind Kind
	PIDs []int32
}

// Layout is what the splice module says about itself (AP_IOC_INFO): where
// trampolines go and the addresses and offsets they use.
type Layout struct {
	PoolStart, PoolEnd uint64 // trampolines lie in [PoolStart, PoolEnd)
	StubEnter          uint64 // entry handler stub of timers and exit counters
	StubExit           uint64 // handler stub of return windows, flags dead
	StubCount          uint64 // slow path of counters, flags dead
	// StubExitFlags and StubCountFlags give the arithmetic flags and AC
	// back (popfq), for windows where the flags may be live
	// (Window.FlagsLive). The others give back AC alone (a conditional
	// STAC): popfq is slow, and QEMU's TCG before 8.0 mistakes the flags
	// of a cmpxchg16b that follows one (kmod/splicer/module/stubs.S).
	StubExitFlags, StubCountFlags uint64
	// GSCurrent and GSRootTask are %gs offsets: of the current task
	// pointer, and of the task the fast path may count for. TaskTgid is
	// the offset of tgid in struct task_struct.
	GSCurrent, GSRootTask, TaskTgid int64
	MaxBlob                         int // the longest trampoline the module takes
}

// fastPath reports whether the counter fast path can be encoded: its
// offsets must fit in 32-bit displacements.
func (l Layout) fastPath() bool {
	fits := func(v int64) bool { return v >= math.MinInt32 && v <= math.MaxInt32 }
	return fits(l.GSCurrent) && fits(l.GSRootTask) && fits(l.TaskTgid)
}

// Build encodes the trampoline that runs insts at w, in the order given,
// then the displaced instructions, then jumps back. Instrument i's id and
// counter are relocations of index i. Timers and exit counters need an
// entry window. The splice backend orders a site's instruments timers
// first, then counters, then exit counters: a function's own timer frame
// is then open for the counts at its entry and its returns, as it is for
// the counters of its other blocks.
//
// A return window's trampoline (no instrument) calls the exit stub, then
// does what the window's instruction did: return, jump to the return
// thunk, tail-call (a conditional tail call tests its condition first).
//
// The splice module builds the same bytes itself (kmod/splicer/module/
// tramp.c); Build is their reference, which the tests run in a harness and
// the VM tests compare with what the module wrote.
func Build(w *Window, insts []Instrument, l Layout) (*Blob, error) {
	if w.Return {
		return buildReturn(w, l)
	}
	if len(insts) == 0 {
		return nil, fmt.Errorf("%s+%#x: no instrument to build a trampoline for", w.Func.Name, w.Off)
	}
	var a Asm
	var slow []int
	for i, in := range insts {
		switch in.Kind {
		case Count:
			if buildCount(&a, w, i, in.PIDs, l) {
				slow = append(slow, i)
			}
		case Timer, ExitCount:
			if !w.Entry {
				return nil, fmt.Errorf("%s+%#x: %w: a timer or exit counter goes at the function's entry", w.Func.Name, w.Off, ErrRefused)
			}
			a.Push(RDI).MovID(RDI, i).CallAbs(l.StubEnter).Pop(RDI)
		default:
			return nil, fmt.Errorf("instrument kind %d: unknown", in.Kind)
		}
	}
	for _, d := range w.Insts {
		if err := a.Relocate(d); err != nil {
			return nil, err
		}
	}
	a.JmpAbs(w.Addr() + uint64(w.Len())).Int3()
	for _, i := range slow {
		buildCountSlow(&a, w, i, l)
	}
	b, err := a.Encode()
	if err != nil {
		return nil, err
	}
	if l.MaxBlob > 0 && len(b.Code) > l.MaxBlob {
		return nil, fmt.Errorf("%s+%#x: trampoline of %d bytes, the module takes %d", w.Func.Name, w.Off, len(b.Code), l.MaxBlob)
	}
	if err := checkReach(w, b, l); err != nil {
		return nil, err
	}
	return b, nil
}

func label(name string, i int) string { return name + strconv.Itoa(i) }

// buildReturn encodes a return window's trampoline.
func buildReturn(w *Window, l Layout) (*Blob, error) {
	var a Asm
	d := w.Insts[0]
	cc := d.Inst.Len == 6 // jcc rel32: a conditional tail call
	if cc {
		a.Jcc(Cond(d.Code[1]&0xf^1), "not")
	}
	stub := l.StubExit
	if w.FlagsLive {
		stub = l.StubExitFlags
	}
	a.Push(RDI).CallAbs(stub).Pop(RDI)
	if target, ok := w.ExitTarget(); ok {
		a.JmpAbs(target)
	} else {
		a.Bytes(0xc3) // ret
	}
	a.Int3()
	if cc {
		a.Label("not").JmpAbs(w.Addr() + uint64(w.Len())).Int3()
	}
	return a.Encode()
}

// buildCount emits counter i's entry and reports whether it has a slow
// path to emit after the body. The fast path counts in the root context
// with one per-CPU increment: when the current task is the one the module
// marked as sitting in the root context (ap_root_task), and it passes a
// single-process filter. Anything else calls the module. With several
// processes to filter, every hit calls the module.
func buildCount(a *Asm, w *Window, i int, pids []int32, l Layout) bool {
	if len(pids) > 1 || !l.fastPath() {
		a.Push(RDI).MovID(RDI, i).CallAbs(l.countStub(w)).Pop(RDI)
		return false
	}
	if w.FlagsLive {
		a.Pushf()
	}
	a.Push(RAX).LoadGS(RAX, int32(l.GSCurrent))
	if len(pids) == 1 {
		a.CmpMem32(RAX, int32(l.TaskTgid), pids[0]).Jcc(CondNE, label("done", i))
	}
	a.CmpGS(RAX, int32(l.GSRootTask)).Jcc(CondNE, label("slow", i))
	a.MovSlot(RAX, i).IncGS(RAX)
	a.Label(label("done", i)).Pop(RAX)
	if w.FlagsLive {
		a.Popf()
	}
	a.Label(label("next", i))
	return true
}

// countStub returns the stub counters at w call.
func (l Layout) countStub(w *Window) uint64 {
	if w.FlagsLive {
		return l.StubCountFlags
	}
	return l.StubCount
}

// buildCountSlow emits counter i's call into the module, after the body:
// flags and %rax restored first, %rdi carries the id; then back to the
// next instrument.
func buildCountSlow(a *Asm, w *Window, i int, l Layout) {
	a.Label(label("slow", i)).Pop(RAX)
	if w.FlagsLive {
		a.Popf()
	}
	a.Push(RDI).MovID(RDI, i).CallAbs(l.countStub(w)).Pop(RDI).Jmp(label("next", i))
}

// checkReach checks that every displacement fits wherever in the pool the
// trampoline goes, and that the site's jump reaches the pool.
func checkReach(w *Window, b *Blob, l Layout) error {
	if l.PoolEnd <= l.PoolStart {
		return nil
	}
	for _, base := range []uint64{l.PoolStart, l.PoolEnd - 1} {
		if _, err := rel32(base, w.Addr()+JumpLen); err != nil {
			return fmt.Errorf("%s+%#x: the jump to the trampoline pool: %w", w.Func.Name, w.Off, err)
		}
		for _, r := range b.Relocs {
			if r.Kind != PC32 {
				continue
			}
			if _, err := rel32(r.Target, base+uint64(r.End)); err != nil {
				return fmt.Errorf("%s+%#x: relocating to %#x: %w", w.Func.Name, w.Off, r.Target, err)
			}
		}
	}
	return nil
}
