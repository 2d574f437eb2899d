package patch

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
)

// JumpLen is the length of the jump a splice writes (e9 rel32).
const JumpLen = 5

// MaxWindow bounds a window: the longest run of instructions that reaches
// JumpLen bytes is 4 one-byte instructions and a 15-byte one.
const MaxWindow = 19

// Window is a place a splice can go: whole instructions of one function,
// at least JumpLen bytes, that may all run displaced; or one of its
// returns (a return window).
type Window struct {
	Func  callgraph.Symbol
	Off   uint32      // the site: offset of the first displaced instruction
	Insts []Displaced // the displaced instructions
	// Entry is set when the site is the function's entry (past ENDBR and
	// the ftrace site): the return address is at the top of the stack,
	// and the arithmetic flags are dead (no C function reads them).
	Entry bool
	// Return is set for a return window: a return (jmp to the return
	// thunk, or ret and the int3s after it), where the frames of timers
	// and exit counters keyed by its stack slot end (see ExitWindows).
	// Its instruction does not run displaced: the trampoline does what it
	// does, after the exit handler. The module and Build also take a
	// window at a tail call (jmp or jcc to another function's start), but
	// ExitWindows gives none: a frame ending there would miss the
	// callee's time.
	Return bool
	// FlagsLive is set when the flags may be read after the site: the
	// instrument must save them. At a return window, it is set unless
	// the part holding it starts as a compiled function does (ENDBR or
	// its seal, then the ftrace site): then its callers, by the C ABI,
	// read no flags it leaves.
	FlagsLive bool
}

// Role is what a window is to its function, the values of enum ap_role.
type Role uint8

// The roles.
const (
	RoleBlock  Role = 1 // whole instructions inside the function: counters
	RoleEntry  Role = 2 // the entry window: any instrument
	RoleReturn Role = 3 // a return window: no instrument
)

// Role returns the window's role.
func (w *Window) Role() Role {
	switch {
	case w.Return:
		return RoleReturn
	case w.Entry:
		return RoleEntry
	}
	return RoleBlock
}

// Addr returns the site's address.
func (w *Window) Addr() uint64 { return w.Func.Addr + uint64(w.Off) }

// Len returns the window's length in bytes.
func (w *Window) Len() int {
	n := 0
	for _, d := range w.Insts {
		n += len(d.Code)
	}
	return n
}

// Orig returns the bytes the window holds.
func (w *Window) Orig() []byte {
	var b []byte
	for _, d := range w.Insts {
		b = append(b, d.Code...)
	}
	return b
}

// refusef returns a refusal.
func refusef(f *callgraph.Function, format string, a ...any) error {
	return fmt.Errorf("%s: %w: %s", f.Sym.Name, ErrRefused, fmt.Sprintf(format, a...))
}

// EntrySite returns the offset where f's body starts: past ENDBR (or the
// nop that seals it) and past the ftrace site. f must have an ftrace site:
// a traceable, compiled function, whose entry ABI is known.
func EntrySite(f *callgraph.Function) (uint32, error) {
	if f.Fentry < 0 {
		return 0, refusef(f, "no ftrace site at the entry (notrace, or not a compiled function)")
	}
	for _, in := range f.Insts {
		if in.Off >= uint32(f.Fentry) {
			break
		}
		if in.Kind != callgraph.KindEndbr && in.Kind != callgraph.KindNop {
			return 0, refusef(f, "%s at +%#x before the ftrace site", in.Kind, in.Off)
		}
	}
	site := uint32(f.Fentry) + JumpLen
	if !f.IsBoundary(site) {
		return 0, refusef(f, "no instruction right after the ftrace site")
	}
	return site, nil
}

// SelectWindow chooses the window at off of f, checking every rule that
// the function's code and the kernel's tables decide. cold are f's .cold
// parts (their jumps back into f count as branches into it). With entry,
// off is ignored and the window goes at EntrySite: it must then not be a
// branch target, so that it runs exactly once per call.
func SelectWindow(f *callgraph.Function, cold []*callgraph.Function, off uint32, entry bool, t *Tables) (*Window, error) {
	if err := checkFunction(f, cold, t); err != nil {
		return nil, err
	}
	if entry {
		site, err := EntrySite(f)
		if err != nil {
			return nil, err
		}
		off = site
	}
	w := &Window{Func: f.Sym, Off: off, Entry: entry}
	if err := w.collect(f); err != nil {
		return nil, err
	}
	if err := w.checkTargets(f, cold, t); err != nil {
		return nil, err
	}
	if err := w.checkTables(f, t); err != nil {
		return nil, err
	}
	if !entry {
		w.FlagsLive = !FlagsDead(w.following(f))
	}
	return w, nil
}

// checkFunction applies the rules about the whole function.
func checkFunction(f *callgraph.Function, cold []*callgraph.Function, t *Tables) error {
	if f.Sym.Module != "" {
		return refusef(f, "a function of module %s (only the core kernel's tables are read)", f.Sym.Module)
	}
	for _, part := range append([]*callgraph.Function{f}, cold...) {
		if len(part.Problems) > 0 {
			return refusef(f, "%s has undecodable bytes at +%#x: its branches are not all known", part.Sym.Name, part.Problems[0].Off)
		}
		for _, in := range part.Insts {
			if in.Kind == callgraph.KindIndirectJump {
				return refusef(f, "%s has an indirect jump at +%#x", part.Sym.Name, in.Off)
			}
		}
		for _, s := range part.Sites {
			if s.Kind == callgraph.Indirect && s.Jump {
				return refusef(f, "%s jumps through %s at +%#x", part.Sym.Name, s.Via, s.Off)
			}
		}
		if err := checkForeign(f, part, t); err != nil {
			return err
		}
	}
	return nil
}

// checkForeign refuses a function that holds another patcher's bytes: a
// registered kprobe anywhere in it (its int3, or an optprobe's jmp, makes
// the decode of what follows a guess), an int3 in the middle of its code
// (a breakpoint kprobes/list does not show yet), or a jump out of the
// kernel's text that is not one of ours (an optprobe's, or another
// splicer's). Linux's can_probe() decodes through kprobes' int3s by
// recovering the bytes they replaced; autoprof, which cannot, refuses.
func checkForeign(f, part *callgraph.Function, t *Tables) error {
	if t == nil {
		return nil // refused later, for want of tables
	}
	if a, ok := firstIn(t.Kprobes, part.Sym.Addr, part.Sym.Addr+uint64(len(part.Code))); ok {
		return refusef(f, "a kprobe sits in %s at +%#x", part.Sym.Name, a-part.Sym.Addr)
	}
	prev := callgraph.KindJump // the function's start follows no instruction
	for _, in := range part.Insts {
		if in.Off >= part.CodeEnd {
			break
		}
		switch in.Kind {
		case callgraph.KindInt3:
			if !ends(prev) {
				return refusef(f, "%s has an int3 in its code at +%#x (another's breakpoint)", part.Sym.Name, in.Off)
			}
		case callgraph.KindJump, callgraph.KindCondJump:
			// An alternative's jump as built (into .altinstr_aux, init
			// text) is rewritten at boot: the image shows it, never the
			// running kernel.
			at := part.Sym.Addr + uint64(in.Off)
			if _, alt := spanMeets(t.Alts, at, at+uint64(in.Len)); alt {
				break
			}
			to, ok := jumpTarget(part, in)
			if ok && !t.Text.contains(to) && !t.Ours.contains(to) && t.Text != (Span{}) {
				return refusef(f, "%s jumps out of the kernel's text at +%#x, to %#x (another patcher's jump: an optprobe's?)", part.Sym.Name, in.Off, to)
			}
		}
		prev = in.Kind
	}
	return nil
}

// ends reports whether an instruction of kind k never falls through, so
// that int3 may follow it as padding (the SLS barrier).
func ends(k callgraph.InstKind) bool {
	switch k {
	case callgraph.KindJump, callgraph.KindIndirectJump, callgraph.KindRet, callgraph.KindInt3, callgraph.KindStop:
		return true
	}
	return false
}

// jumpTarget returns the absolute target of the direct jump in.
func jumpTarget(f *callgraph.Function, in callgraph.Inst) (uint64, bool) {
	d, err := x86asm.Decode(f.Code[in.Off:in.End()], 64)
	if err != nil {
		return 0, false
	}
	rel, ok := d.Args[0].(x86asm.Rel)
	if !ok {
		return 0, false
	}
	return f.Sym.Addr + uint64(in.End()) + uint64(int64(rel)), true
}

// collect gathers whole instructions from the site until JumpLen bytes.
func (w *Window) collect(f *callgraph.Function) error {
	at := w.Off
	if !f.IsBoundary(at) {
		return refusef(f, "+%#x is not an instruction boundary", at)
	}
	for n := uint32(0); n < JumpLen; {
		in, ok := f.Inst(at)
		if !ok {
			return refusef(f, "no instruction at +%#x", at)
		}
		if err := w.checkInst(f, in); err != nil {
			return err
		}
		d, err := Decode(f.Code[in.Off:in.End()], f.Sym.Addr+uint64(in.Off))
		if err != nil {
			return refusef(f, "%v", err)
		}
		if err := d.CheckMovable(); err != nil {
			return fmt.Errorf("%s: %w", f.Sym.Name, err)
		}
		w.Insts = append(w.Insts, d)
		n += uint32(in.Len)
		at = in.End()
	}
	return nil
}

// checkInst refuses an instruction the window may not hold.
func (w *Window) checkInst(f *callgraph.Function, in callgraph.Inst) error {
	switch {
	case in.End() > f.CodeEnd:
		return refusef(f, "the window runs past the function's code at +%#x", f.CodeEnd)
	case f.Fentry >= 0 && in.Off < uint32(f.Fentry)+JumpLen && in.End() > uint32(f.Fentry):
		return refusef(f, "+%#x is the ftrace site", in.Off)
	case in.Kind == callgraph.KindEndbr:
		return refusef(f, "+%#x is ENDBR", in.Off)
	case in.Kind == callgraph.KindInt3:
		return refusef(f, "+%#x is int3 (padding, or another's breakpoint)", in.Off)
	case in.Kind != callgraph.KindOther && in.Kind != callgraph.KindNop:
		return refusef(f, "+%#x is a %s, which cannot run displaced", in.Off, in.Kind)
	}
	return nil
}

// checkTargets refuses a window that a branch can enter after its first
// byte (SAFETY A.3: no direct jump into (site, site+len]); an entry window
// may not be a branch target at all. The branches are the function's own,
// its .cold parts', and those the kernel's tables add (tb.Targets: jump
// labels once flipped, alternatives' replacements, static calls,
// exception fixups).
func (w *Window) checkTargets(f *callgraph.Function, cold []*callgraph.Function, tb *Tables) error {
	lo, hi := w.Off+1, w.Off+uint32(w.Len())
	if w.Entry {
		lo = w.Off
	}
	for _, t := range f.Targets {
		if lo <= t && t <= hi {
			return refusef(f, "a branch inside the function reaches +%#x, in the window", t)
		}
	}
	base := f.Sym.Addr
	if tb != nil {
		if a, ok := firstIn(tb.Targets, base+uint64(lo), base+uint64(hi)+1); ok {
			return refusef(f, "+%#x, in the window, is a branch target the kernel's tables name (a jump label's, an alternative's, a static call or an exception fixup)", a-base)
		}
	}
	// A .cold part jumps back into its parent: callgraph records that as
	// an exit, or as a jump into the middle of the parent.
	in := func(a uint64) bool { return base+uint64(lo) <= a && a <= base+uint64(hi) }
	for _, part := range cold {
		for _, e := range part.Exits {
			if in(e.Target) {
				return refusef(f, "%s jumps to +%#x, in the window", part.Sym.Name, e.Target-base)
			}
		}
		for _, s := range part.Sites {
			if s.TargetAddr != 0 && in(s.TargetAddr) {
				return refusef(f, "%s jumps to +%#x, in the window", part.Sym.Name, s.TargetAddr-base)
			}
		}
	}
	return nil
}

// checkTables refuses text that others patch or exceptions reach.
func (w *Window) checkTables(f *callgraph.Function, t *Tables) error {
	if t == nil {
		return refusef(f, "no kernel tables to check the window against")
	}
	start, end := w.Addr(), w.Addr()+uint64(w.Len())
	if e, ok := t.exceptionIn(f.Sym.Addr, f.Sym.End()); ok {
		return refusef(f, "has an exception-table entry (instruction %#x, fixup %#x)", e.Insn, e.Fixup)
	}
	if s, ok := spanMeets(t.Alts, start, end); ok {
		return refusef(f, "the window meets an alternative at +%#x", s.Start-f.Sym.Addr)
	}
	if s, ok := spanMeets(t.Paravirt, start, end); ok {
		return refusef(f, "the window meets a paravirt site at +%#x", s.Start-f.Sym.Addr)
	}
	if anyIn(t.SMPLocks, start, end) {
		return refusef(f, "the window holds an SMP lock prefix that alternatives may rewrite")
	}
	if anyIn(t.JumpLabels, start, end) {
		return refusef(f, "the window holds a jump-label site")
	}
	if anyIn(t.StaticCalls, start, end) {
		return refusef(f, "the window holds a static call")
	}
	return nil
}

// following returns the window's instructions and the straight line of
// instructions after it, up to 16, for the flags liveness pass.
func (w *Window) following(f *callgraph.Function) []x86asm.Inst {
	var out []x86asm.Inst
	for _, d := range w.Insts {
		out = append(out, d.Inst)
	}
	at := w.Off + uint32(w.Len())
	for len(out) < 16 {
		in, ok := f.Inst(at)
		if !ok || in.End() > f.CodeEnd {
			break
		}
		d, err := x86asm.Decode(f.Code[in.Off:in.End()], 64)
		if err != nil {
			break
		}
		out = append(out, d)
		if in.Kind != callgraph.KindOther && in.Kind != callgraph.KindNop {
			break // the pass stops at control flow: reads or not, it is decided there
		}
		at = in.End()
	}
	return out
}

// Callee decodes a function that a tail call enters, with its .cold
// parts, once the placement rules of the backend allow return windows in
// it (a return window splices it as a timer's would).
type Callee func(name string) (*callgraph.Function, []*callgraph.Function, error)

// Bounds of the tail calls a timer's returns follow: how many functions
// deep, and how many return windows in all.
const (
	maxTailDepth   = 4
	maxExitWindows = 64
)

// ExitWindows returns the return windows that end the frames of f's
// timers and exit counters: a window at each return of f and its .cold
// parts (a jmp to the return thunk; or a ret, where the kernel wrote ret
// and int3s over one), and, where f leaves by a tail call (a jmp or jcc
// to another function's start), the return windows of the function it
// enters, and so on down its own tail calls. A tail call pops nothing:
// the slot of f's return address, the key of f's frames, is popped when
// the callee returns, so f's frames end there, with the callee's time in
// them, as a kretprobe's or fexit's would; the callee's returns end only
// the frames keyed by their own stack slot, so its calls from elsewhere
// end nothing of f. A window at the tail call itself would end f's frame
// before the callee ran. Without callee (nil), f is refused where it
// leaves by a tail call. f is refused where one of its exits cannot take
// a window, or where it has none (it never returns).
func ExitWindows(f *callgraph.Function, cold []*callgraph.Function, t *Tables, callee Callee) ([]*Window, error) {
	x := exitWalk{t: t, callee: callee, seen: map[string]bool{f.Sym.Name: true}, at: map[uint64]bool{}}
	if err := x.add(f, cold, 0); err != nil {
		return nil, err
	}
	return x.out, nil
}

// exitWalk gathers the return windows of a function and of the functions
// it tail-calls.
type exitWalk struct {
	t      *Tables
	callee Callee
	seen   map[string]bool // functions walked
	at     map[uint64]bool // windows gathered, by address
	out    []*Window
}

// add gathers the return windows of f (depth tail calls below the timed
// function) and of its tail callees.
func (x *exitWalk) add(f *callgraph.Function, cold []*callgraph.Function, depth int) error {
	if err := checkFunction(f, cold, x.t); err != nil {
		return err
	}
	var tails []callgraph.Site
	n := len(x.out)
	for _, part := range append([]*callgraph.Function{f}, cold...) {
		ts, err := x.partExits(f, part)
		if err != nil {
			return err
		}
		tails = append(tails, ts...)
	}
	if len(x.out) == n && len(tails) == 0 {
		return refusef(f, "it never returns (no return, no tail call): a timer's frame would never end")
	}
	for _, s := range tails {
		if err := x.tail(f, s, depth); err != nil {
			return err
		}
	}
	return nil
}

// tail gathers the return windows of the function that f's tail call s
// enters.
func (x *exitWalk) tail(f *callgraph.Function, s callgraph.Site, depth int) error {
	why := fmt.Sprintf("leaves by a tail call to %s at +%#x: a timer ending at its returns would miss %s's time", s.Target, s.Off, s.Target)
	switch {
	case x.seen[s.Target]:
		return nil
	case x.callee == nil:
		return refusef(f, "%s (time %s instead, or use kprobe or fentry)", why, s.Target)
	case depth+1 >= maxTailDepth:
		return refusef(f, "%s, and its frames would end at the returns of tail calls %d deep, more than %d", why, depth+1, maxTailDepth-1)
	}
	x.seen[s.Target] = true
	g, gcold, err := x.callee(s.Target)
	if err == nil {
		err = x.add(g, gcold, depth+1)
	}
	if err != nil {
		return refusef(f, "%s, and its frames cannot end at %s's returns: %v", why, s.Target, err)
	}
	if len(x.out) > maxExitWindows {
		return refusef(f, "its frames would end at more than %d returns, through its tail calls", maxExitWindows)
	}
	return nil
}

// partExits gathers the return windows of one part of f, and returns its
// tail calls.
func (x *exitWalk) partExits(f, part *callgraph.Function) ([]callgraph.Site, error) {
	for _, off := range part.Returns {
		w, err := returnWindow(f, part, off, x.t)
		if err != nil {
			return nil, err
		}
		if !x.at[w.Addr()] {
			x.at[w.Addr()] = true
			x.out = append(x.out, w)
		}
	}
	var tails []callgraph.Site
	for _, s := range part.Sites {
		if !s.Jump {
			continue
		}
		if s.Kind != callgraph.Tail || s.TargetOff != 0 || s.Target == "" {
			return nil, refusef(f, "%s leaves by a %s jump at +%#x, where no return window can go", part.Sym.Name, s.Kind, s.Off)
		}
		if err := checkTailSite(f, part, s, x.t); err != nil {
			return nil, err
		}
		tails = append(tails, s)
	}
	return tails, nil
}

// checkTailSite refuses a tail call whose jump the kernel may rewrite: a
// static call's (the live text shows jmp to the current target, which
// PREEMPT_DYNAMIC or any static_call_update changes, e.g. to
// __static_call_return0), or one inside an alternative or a paravirt
// site. Frames that were to end at the old target's returns would never
// end.
func checkTailSite(f, part *callgraph.Function, s callgraph.Site, t *Tables) error {
	if t == nil {
		return refusef(f, "no kernel tables to check its tail call at +%#x against", s.Off)
	}
	at := part.Sym.Addr + uint64(s.Off)
	end := at + 1
	if in, ok := part.Inst(s.Off); ok {
		end = at + uint64(in.Len)
	}
	switch {
	case anyIn(t.StaticCalls, at, end):
		return refusef(f, "%s leaves by a static call's tail jump at +%#x, whose target the kernel rewrites: frames cannot end at its returns", part.Sym.Name, s.Off)
	case func() bool { _, ok := spanMeets(t.Alts, at, end); return ok }():
		return refusef(f, "%s leaves by a tail jump at +%#x inside an alternative, which the kernel rewrites", part.Sym.Name, s.Off)
	case func() bool { _, ok := spanMeets(t.Paravirt, at, end); return ok }():
		return refusef(f, "%s leaves by a tail jump at +%#x inside a paravirt site, which the kernel rewrites", part.Sym.Name, s.Off)
	}
	return nil
}

// returnWindow makes the return window at off of part, a part of f.
func returnWindow(f, part *callgraph.Function, off uint32, t *Tables) (*Window, error) {
	in, ok := part.Inst(off)
	if !ok {
		return nil, refusef(f, "%s: no instruction at +%#x", part.Sym.Name, off)
	}
	code := part.Code[off:]
	n := int(in.Len)
	switch {
	case in.Kind == callgraph.KindRet:
		if len(code) < JumpLen || string(code[:JumpLen]) != "\xc3\xcc\xcc\xcc\xcc" {
			return nil, refusef(f, "%s returns at +%#x with a ret not followed by 4 int3s: no room for a jump", part.Sym.Name, off)
		}
		n = JumpLen
	case n == JumpLen && code[0] == 0xe9, n == 6 && code[0] == 0x0f && code[1]&0xf0 == 0x80:
	default:
		return nil, refusef(f, "%s leaves at +%#x by an instruction of %d bytes: no room for a jump", part.Sym.Name, off, n)
	}
	w := &Window{Func: part.Sym, Off: off, Return: true, FlagsLive: !compiledStart(part.Code)}
	for at := 0; at < n; {
		d, err := Decode(code[at:n], part.Sym.Addr+uint64(off)+uint64(at))
		if err != nil {
			return nil, refusef(f, "%v", err)
		}
		w.Insts = append(w.Insts, d)
		at += d.Inst.Len
	}
	for _, tg := range part.Targets {
		if tg > off && tg < off+uint32(n) {
			return nil, refusef(f, "a branch reaches +%#x, inside the return at +%#x", tg, off)
		}
	}
	if err := w.checkTables(part, t); err != nil {
		return nil, err
	}
	if a, ok := firstIn(t.Targets, w.Addr()+1, w.Addr()+uint64(n)); ok {
		return nil, refusef(f, "%#x, inside the return at +%#x, is a branch target the kernel's tables name", a, off)
	}
	return w, nil
}

// compiledStart reports whether code starts as a compiled, traceable
// function does: ENDBR (or the nop that seals it) if any, then the ftrace
// site, a 5-byte nop or a call. The splice module decides a return
// window's flags by the same bytes (ap_entry_site).
func compiledStart(code []byte) bool {
	off := 0
	if len(code) >= 4 {
		switch string(code[:4]) {
		case "\xf3\x0f\x1e\xfa", "\x66\x0f\x1f\x00", "\x0f\x1f\x40\xd6":
			off = 4
		}
	}
	if len(code) < off+JumpLen {
		return false
	}
	return string(code[off:off+JumpLen]) == "\x0f\x1f\x44\x00\x00" || code[off] == 0xe8
}

// ExitTarget returns where a return window's jump goes (the return thunk,
// or the function tail-called), and whether it has one (a ret has none).
func (w *Window) ExitTarget() (uint64, bool) {
	if !w.Return || len(w.Insts) == 0 {
		return 0, false
	}
	d := w.Insts[0]
	rel, ok := d.Inst.Args[0].(x86asm.Rel)
	if !ok {
		return 0, false
	}
	return d.Addr + uint64(d.Inst.Len) + uint64(int64(rel)), true
}
