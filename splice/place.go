package splice

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/boot"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// Placement holds every rule that decides where an instrument may go. It
// is built once per session from the running kernel (or from fixtures in
// tests) and never touches the kernel: a refused spec has had nothing
// written for it.
type Placement struct {
	syms     *callgraph.Symbols
	decode   func(callgraph.Symbol) (*callgraph.Function, error)
	sections []addrRange // text no instrument may enter
	// blacklist is debugfs kprobes/blacklist; blacklistErr says why it
	// could not be read (every kprobe is then refused).
	blacklist    []addrRange
	blacklistErr error
	// traceable is tracefs available_filter_functions; traceableErr says
	// why it could not be read (every fentry is then refused).
	traceable    map[string]bool
	traceableErr error
	syscalls     *SyscallTable
	syscallsErr  error
	// noFunctions says why no function backend (fentry, kprobe) works
	// here; nil where one does.
	noFunctions error
	// tcg is set on QEMU's emulator: see checkEmulator.
	tcg bool
}

// ErrNoFunction says a spec names no function of the kernel's symbol
// table: the input is wrong, whatever the backend.
var ErrNoFunction = errors.New("no such kernel function")

// forbiddenSections are the text sections bounded by kallsyms markers that
// no backend instruments: code that runs before the kernel is ready to
// trace it (entry, noinstr, cpuidle), kprobes' own code, and the thunks
// of retpolines and returns. The kernel's kprobe blacklist
// (populate_kprobe_blacklist, arch_populate_kprobe_blacklist) covers the
// same ground for kprobes; the markers make the rule hold for fentry too
// and where debugfs is missing.
var forbiddenSections = []struct{ start, end, name string }{
	{"__entry_text_start", "__entry_text_end", ".entry.text"},
	{"__noinstr_text_start", "__noinstr_text_end", ".noinstr.text"},
	{"__kprobes_text_start", "__kprobes_text_end", ".kprobes.text"},
	{"__cpuidle_text_start", "__cpuidle_text_end", ".cpuidle.text"},
	{"__indirect_thunk_start", "__indirect_thunk_end", ".text.__x86.indirect_thunk"},
	{"__irqentry_text_start", "__irqentry_text_end", ".irqentry.text"},
	{"__softirqentry_text_start", "__softirqentry_text_end", ".softirqentry.text"},
}

// bpfDenyList is btf_id_deny in the kernel's kernel/bpf/verifier.c (6.1
// to 6.18): functions the verifier refuses to trace with fentry/fexit
// because the trampoline itself calls them. autoprof refuses kprobes in
// them too (a call site that calls one is fine: it counts one caller's
// calls): the trampolines of its own fentry instruments call them, and a kprobe
// there counts those calls as the target's (6.1's pingpong hunt timed
// __rcu_read_lock by kprobe after fentry refused it, and found it called
// 14 times a read in pipe_read; the function tracer counted twice the
// kprobe's calls, half of them the trampolines').
var bpfDenyList = map[string]bool{
	"migrate_disable": true, "migrate_enable": true, "rcu_read_unlock_strict": true,
	"preempt_count_add": true, "preempt_count_sub": true,
	"__rcu_read_lock": true, "__rcu_read_unlock": true,
}

// bpfReentered are, by name prefix, the core kernel's functions that
// autoprof's own BPF programs run while they run: the spin locks their
// maps take (a hash map's buckets and free list are under raw spin
// locks), and BPF's own code (maps, helpers, trampolines, the rings). A
// BPF program attached to one of them runs inside another program, which
// may hold the lock it takes: the kernel checks recursion per program,
// not across programs. On 6.1 a hunt timed _raw_spin_unlock by fentry;
// the thread-exit tracepoint's program, deleting from a hash map, called
// _raw_spin_unlock with the map's free-list lock held, the fentry
// program's update took the same lock, and the CPU spun for good (an RCU
// stall, the VM hung). Neither fentry nor a kprobe goes there; a call of
// one, timed at its call site in its caller, runs outside it and is
// fine.
var bpfReentered = []string{
	"_raw_spin_", "_raw_read_", "_raw_write_", "do_raw_spin_", "do_raw_read_", "do_raw_write_",
	"queued_spin_", "native_queued_spin_", "__pv_queued_spin_", "queued_read_", "queued_write_",
	"bpf_", "__bpf_", "___bpf_", "htab_", "__htab_", "alloc_htab_elem", "free_htab_elem",
	"lookup_elem_raw", "lookup_nulls_elem_raw", "pcpu_freelist_", "__pcpu_freelist_", "___pcpu_freelist_",
	"array_map_", "percpu_array_", "stack_map_", "__stack_map_", "ringbuf_", "prealloc_",
}

// reenteredByBPF reports whether sym is one of bpfReentered's.
func reenteredByBPF(sym callgraph.Symbol) bool {
	if sym.Module != "" {
		return false
	}
	for _, p := range bpfReentered {
		if strings.HasPrefix(sym.Name, p) {
			return true
		}
	}
	return false
}

// PlacementSources are the kernel's own lists that the rules use, as
// readers (a file, or a test fixture); a nil reader comes with the error
// that kept it from being read, and the rules that need it then refuse.
type PlacementSources struct {
	// Blacklist is debugfs kprobes/blacklist.
	Blacklist    io.Reader
	BlacklistErr error
	// Traceable is tracefs available_filter_functions.
	Traceable    io.Reader
	TraceableErr error
	// Syscalls maps syscall functions to numbers; nil refuses syscall
	// roots, with SyscallsErr as the reason.
	Syscalls    *SyscallTable
	SyscallsErr error
	// NoFunctions says why neither fentry nor kprobe works here (caps'
	// reasons), nil where one does: a refusal of the tracepoint backend
	// says that it is the fallback, and why.
	NoFunctions error
	// TCG says the CPU is QEMU's emulator (features.QEMUTCG), where
	// probes keep clear of the slab allocator's cmpxchg16b.
	TCG bool
}

// NewPlacement builds the rules from a symbol table, a decoder of its
// functions and the kernel's lists.
func NewPlacement(syms *callgraph.Symbols, decode func(callgraph.Symbol) (*callgraph.Function, error), src PlacementSources) *Placement {
	p := &Placement{syms: syms, decode: decode, syscalls: src.Syscalls, syscallsErr: src.SyscallsErr, noFunctions: src.NoFunctions, tcg: src.TCG}
	for _, s := range forbiddenSections {
		a, okA := syms.Symbol(s.start)
		b, okB := syms.Symbol(s.end)
		if okA && okB && a.Addr < b.Addr {
			p.sections = append(p.sections, addrRange{Start: a.Addr, End: b.Addr, Name: s.name})
		}
	}
	if p.blacklistErr = src.BlacklistErr; src.Blacklist != nil {
		p.blacklist, p.blacklistErr = parseKprobeBlacklist(src.Blacklist)
	} else if p.blacklistErr == nil {
		p.blacklistErr = errors.New("no kprobe blacklist given")
	}
	if p.traceableErr = src.TraceableErr; src.Traceable != nil {
		p.traceable, p.traceableErr = parseFilterFunctions(src.Traceable)
	} else if p.traceableErr == nil {
		p.traceableErr = errors.New("no list of traceable functions given")
	}
	return p
}

// livePlacement reads the rules of the running kernel; it mounts debugfs
// and tracefs where they are missing, as perf and bpftool do.
func livePlacement(g *callgraph.Graph, syscalls *SyscallTable, syscallsErr error) *Placement {
	src := PlacementSources{Syscalls: syscalls, SyscallsErr: syscallsErr, NoFunctions: noFunctionBackend(), TCG: features.QEMUTCG()}
	if _, err := kernel.Debugfs.Ensure(); err != nil {
		src.BlacklistErr = err
	} else if f, err := os.Open(kernel.Debugfs.Path + "/kprobes/blacklist"); err != nil {
		src.BlacklistErr = err
	} else {
		defer f.Close()
		src.Blacklist = f
	}
	if b, err := readTraceable(); err != nil {
		src.TraceableErr = err
	} else {
		src.Traceable = bytes.NewReader(b)
	}
	return NewPlacement(g.Symbols(), g.FunctionOf, src)
}

// traceableCacheName is the file readTraceable keeps the list in.
const traceableCacheName = "available_filter_functions.gob"

// readTraceable returns tracefs available_filter_functions, or the copy
// this boot's first reader kept (boot.Cache): the kernel prints it record
// by record at every read, a third of a second of a hunt's start-up under
// emulation, and it changes only as modules come and go.
func readTraceable() ([]byte, error) {
	mods, modsErr := boot.Modules()
	cache := boot.OpenCache(traceableCacheName)
	var b []byte
	if modsErr == nil && cache.Load(mods, &b) {
		return b, nil
	}
	if _, err := kernel.Tracefs.Ensure(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(kernel.Tracefs.Path + "/available_filter_functions")
	if err != nil {
		return nil, err
	}
	if modsErr == nil {
		cache.Store(mods, b) // a hunt without the cache only starts slower
	}
	return b, nil
}

// noFunctionBackend says why neither fentry nor kprobe works on the
// running kernel, in caps' words; nil where one does.
func noFunctionBackend() error {
	fentry, kprobe := features.HaveFentry(), features.HaveKprobe()
	if fentry == nil || kprobe == nil {
		return nil
	}
	return fmt.Errorf("%w; %w", fentry, kprobe)
}

// refuse returns a refusal of spec wrapping kind (ErrUnsafe or
// ErrNotSupported); format may wrap the cause with %w.
func refuse(spec instrument.Spec, kind error, format string, a ...any) error {
	return fmt.Errorf("%s: %w: "+format, append([]any{spec, kind}, a...)...)
}

// Check applies every rule of backend to spec. It returns nil or an error
// wrapping ErrUnsafe or ErrNotSupported whose text is one line saying why.
func (p *Placement) Check(backend instrument.Backend, spec instrument.Spec) error {
	if err := checkShape(backend, spec); err != nil {
		if backend == instrument.Tracepoint && p.noFunctions != nil {
			return fmt.Errorf("%w, the only backend here: %w", err, p.noFunctions)
		}
		return err
	}
	sym, err := p.syms.Func(spec.Func)
	switch {
	case errors.Is(err, callgraph.ErrUnknownFunction):
		return fmt.Errorf("%s: %w: %s is not in the kernel's symbol table", spec, ErrNoFunction, spec.Func)
	case backend == instrument.Tracepoint:
		return p.checkSyscall(spec)
	case err != nil:
		return fmt.Errorf("%s: %w: %w", spec, instrument.ErrUnsafe, err)
	}
	addr := sym.Addr + spec.Offset
	if spec.Offset >= sym.Size {
		return refuse(spec, instrument.ErrUnsafe, "offset %#x is past the end of %s (%d bytes)", spec.Offset, sym.Name, sym.Size)
	}
	for _, s := range p.sections {
		if s.Start <= addr && addr < s.End {
			return refuse(spec, instrument.ErrUnsafe, "%s is in %s, which is never instrumented", sym.Name, s.Name)
		}
	}
	switch backend {
	case instrument.Fentry:
		err = p.checkFentry(spec, sym)
	case instrument.Kprobe:
		if err = p.checkKprobe(spec, sym, addr); err == nil {
			// Timers and exit counters add a kretprobe at every return.
			kret := spec.Kind == instrument.Timer || spec.Kind == instrument.ExitCount
			err = p.checkEmulator(spec, sym, uint32(spec.Offset), kret)
		}
	}
	if err != nil {
		return err
	}
	return p.checkCode(spec, sym)
}

// checkShape refuses what a backend cannot do whatever the place.
func checkShape(backend instrument.Backend, spec instrument.Spec) error {
	if spec.Func == "" {
		return refuse(spec, instrument.ErrNotSupported, "no function")
	}
	if !spec.Kind.IsValid() {
		return refuse(spec, instrument.ErrNotSupported, "unknown instrument kind")
	}
	if spec.IsCallSite() {
		if spec.Kind != instrument.Timer || spec.Offset == 0 {
			return refuse(spec, instrument.ErrNotSupported, "a call site takes a timer at the call's offset (callee@func+OFF:timer)")
		}
		if backend != instrument.Kprobe {
			return refuse(spec, instrument.ErrNotSupported, "the %s backend cannot time a call site (kprobe can)", backend)
		}
		return nil
	}
	if spec.Offset != 0 && (spec.Kind == instrument.Timer || spec.Kind == instrument.ExitCount) {
		return refuse(spec, instrument.ErrNotSupported, "a %s needs a function entry, not an offset", spec.Kind)
	}
	if spec.Kind == instrument.Targets && spec.Offset == 0 {
		return refuse(spec, instrument.ErrNotSupported, "a targets instrument goes at an indirect call site, func+OFF")
	}
	switch backend {
	case instrument.Fentry:
		if spec.Offset != 0 || spec.Kind == instrument.Targets {
			return refuse(spec, instrument.ErrNotSupported, "fentry instruments function entries and returns only (use kprobe for func+off)")
		}
	case instrument.Tracepoint:
		if spec.Kind != instrument.Timer || spec.Offset != 0 {
			return refuse(spec, instrument.ErrNotSupported, "the tracepoint backend times whole syscalls only (FUNC:timer with FUNC a __x64_sys_* function)")
		}
	case instrument.Kprobe:
	case instrument.Splice:
		if spec.Kind == instrument.Targets {
			return refuse(spec, instrument.ErrNotSupported, "the splice backend does not capture indirect call targets (use kprobe)")
		}
		if spec.Target.Cgroup != "" {
			return refuse(spec, instrument.ErrNotSupported, "the splice backend filters by process, not by cgroup")
		}
		if len(spec.Target.PIDs) > splicer.MaxPIDs {
			return refuse(spec, instrument.ErrNotSupported, "the splice backend filters on at most %d processes", splicer.MaxPIDs)
		}
		if err := spec.Target.CheckPIDs(); err != nil {
			return refuse(spec, instrument.ErrNotSupported, "target %v", err)
		}
	default:
		return refuse(spec, instrument.ErrNotSupported, "unknown backend %q", backend)
	}
	return nil
}

func (p *Placement) checkFentry(spec instrument.Spec, sym callgraph.Symbol) error {
	if bpfDenyList[sym.Name] {
		return refuse(spec, instrument.ErrUnsafe, "%s is on BPF's deny list (btf_id_deny)", sym.Name)
	}
	if reenteredByBPF(sym) {
		return refuse(spec, instrument.ErrUnsafe, "%s runs inside autoprof's own BPF programs (a spin lock or BPF's own code), where another program of autoprof's would take a lock they hold: time its calls at their call sites", sym.Name)
	}
	if p.traceableErr != nil {
		return refuse(spec, instrument.ErrNotSupported, "cannot read available_filter_functions to rule out notrace functions: %w", p.traceableErr)
	}
	if !p.traceable[sym.Name] {
		return refuse(spec, instrument.ErrUnsafe, "%s is not in available_filter_functions (notrace, inlined or not traceable)", sym.Name)
	}
	return nil
}

func (p *Placement) checkKprobe(spec instrument.Spec, sym callgraph.Symbol, addr uint64) error {
	if err := p.checkBlacklist(spec, sym, addr); err != nil {
		return err
	}
	if reenteredByBPF(sym) {
		return refuse(spec, instrument.ErrUnsafe, "%s runs inside autoprof's own BPF programs (a spin lock or BPF's own code), where another program of autoprof's would take a lock they hold: time its calls at their call sites", sym.Name)
	}
	return p.checkTraceable(spec, sym)
}

// checkEmulator refuses, on QEMU's emulator, a probe at off in sym that
// can start or meet the emulator's corruption of a cmpxchg16b's flags
// (patch.TCGCmpxchg16bHazard): kprobes (int3, optprobe detours and
// ftrace's regs caller all load RFLAGS back) and splices (a stub that
// gives the flags back runs popfq, and every site is armed and withdrawn
// through an int3 whose iretq loads RFLAGS back); with returns,
// also a return of sym in a cmpxchg16b's shadow (patch.TCGReturnHazard),
// where a kretprobe's trampoline runs pushfq and popfq. Real CPUs have no
// such rule.
func (p *Placement) checkEmulator(spec instrument.Spec, sym callgraph.Symbol, off uint32, returns bool) error {
	if !p.tcg {
		return nil
	}
	f, err := p.decode(sym)
	if err != nil {
		return fmt.Errorf("%s: %w: decoding %s: %w", spec, instrument.ErrUnsafe, sym.Name, err)
	}
	const why = "(QEMU before 8.0 computes them from a stale record)"
	if at, ok := patch.TCGCmpxchg16bHazard(f, off); ok {
		return refuse(spec, instrument.ErrUnsafe, "on QEMU's emulator (TCG), a probe at %s+%#x can corrupt the flags of the cmpxchg16b at +%#x %s", sym.Name, off, at, why)
	}
	if !returns {
		return nil
	}
	if r, at, ok := patch.TCGReturnHazard(f); ok {
		return refuse(spec, instrument.ErrUnsafe, "on QEMU's emulator (TCG), a return probe at %s+%#x, in the shadow of the cmpxchg16b at +%#x, can load its corrupt flags %s", sym.Name, r, at, why)
	}
	return nil
}

// checkTailCallee applies the rules for return windows in sym, a function
// a timed function tail-calls (the splice backend's timers end at its
// returns) for a timer on the function timed: BPF's deny list, the kprobe
// blacklist, and the traceable functions, except for the body of the
// syscall whose wrapper is timed (__do_sys_X under __x64_sys_X or
// __ia32_sys_X), which is notrace only because SYSCALL_DEFINE declares it
// static inline (the kernel's inline implies notrace) and runs where its
// wrapper runs. spec names sym.
func (p *Placement) checkTailCallee(timed string, spec instrument.Spec, sym callgraph.Symbol) error {
	if syscallBodyOf(timed, sym.Name) {
		return p.checkBlacklist(spec, sym, sym.Addr)
	}
	if err := p.checkKprobe(spec, sym, sym.Addr); err != nil {
		return err
	}
	return p.checkFentry(spec, sym)
}

// syscallBodyOf reports whether body is __do_sys_X (or a clone of it,
// __do_sys_X.part.0) and wrapper __x64_sys_X or __ia32_sys_X.
func syscallBodyOf(wrapper, body string) bool {
	x, ok := strings.CutPrefix(body, "__do_sys_")
	if !ok {
		return false
	}
	x, _, _ = strings.Cut(x, ".")
	return x != "" && (wrapper == "__x64_sys_"+x || wrapper == "__ia32_sys_"+x)
}

// checkBlacklist refuses addr in sym where BPF's deny list or the kprobe
// blacklist names it.
func (p *Placement) checkBlacklist(spec instrument.Spec, sym callgraph.Symbol, addr uint64) error {
	if bpfDenyList[sym.Name] {
		return refuse(spec, instrument.ErrUnsafe, "%s is called by the BPF trampolines of autoprof's own instruments (BPF's deny list, btf_id_deny): a kprobe there would count their calls", sym.Name)
	}
	if p.blacklistErr != nil {
		return refuse(spec, instrument.ErrNotSupported, "cannot read the kprobe blacklist: %w", p.blacklistErr)
	}
	if r, ok := rangeHolding(p.blacklist, addr); ok {
		return refuse(spec, instrument.ErrUnsafe, "%s is on the kprobe blacklist (%s)", spec.Point, r.Name)
	}
	// A suffixed clone (foo.part.0, foo.constprop.0) is blacklisted with its
	// base, as within_kprobe_blacklist() judges it.
	if base, _, suffixed := strings.Cut(sym.Name, "."); suffixed {
		if b, err := p.syms.Func(base); err == nil {
			if r, ok := rangeHolding(p.blacklist, b.Addr); ok {
				return refuse(spec, instrument.ErrUnsafe, "%s is a clone of %s, on the kprobe blacklist", sym.Name, r.Name)
			}
		}
	}
	return nil
}

// checkTraceable refuses sym where it has no ftrace location.
func (p *Placement) checkTraceable(spec instrument.Spec, sym callgraph.Symbol) error {
	// Kprobe events (the perf kprobe PMU included) refuse any place in a
	// function without an ftrace location unless the kernel is built with
	// CONFIG_KPROBE_EVENTS_ON_NOTRACE, which distro kernels are not:
	// within_notrace_func in kernel/trace/trace_kprobe.c, which judges a
	// suffixed symbol (foo.cold, foo.isra.0) by its base where the suffixed
	// one has none.
	if p.traceableErr != nil {
		return refuse(spec, instrument.ErrNotSupported, "cannot read available_filter_functions to rule out notrace functions: %w", p.traceableErr)
	}
	if !p.traceable[sym.Name] {
		base, _, suffixed := strings.Cut(sym.Name, ".")
		if !suffixed || !p.traceable[base] {
			return refuse(spec, instrument.ErrUnsafe, "%s is not in available_filter_functions (notrace): kprobe events refuse it", sym.Name)
		}
	}
	return nil
}

// checkCode decodes the function: an offset must be a candidate
// instruction boundary, and a targets instrument must sit on an indirect
// call whose operand a BPF program can evaluate.
func (p *Placement) checkCode(spec instrument.Spec, sym callgraph.Symbol) error {
	if spec.Offset == 0 {
		return nil
	}
	f, err := p.decode(sym)
	if err != nil {
		return fmt.Errorf("%s: %w: decoding %s: %w", spec, instrument.ErrUnsafe, sym.Name, err)
	}
	off := uint32(spec.Offset)
	if !f.IsBoundary(off) {
		return refuse(spec, instrument.ErrUnsafe, "offset %#x is not an instruction boundary of %s", off, sym.Name)
	}
	if !f.IsCandidate(off) {
		return refuse(spec, instrument.ErrUnsafe, "offset %#x of %s is padding, ENDBR or int3", off, sym.Name)
	}
	if spec.Kind == instrument.Targets {
		_, err := indirectOperand(f, off)
		if err != nil {
			return refuse(spec, instrument.ErrUnsafe, "%w", err)
		}
	}
	if spec.IsCallSite() {
		if _, err := p.callReturn(f, spec.Point); err != nil {
			return refuse(spec, instrument.ErrUnsafe, "%w", err)
		}
	}
	return nil
}

// CallReturn returns the offset of the instruction the call at call site
// pt returns to, where the second half of a call-site timer goes (see
// callReturn).
func (p *Placement) CallReturn(pt instrument.Point) (uint32, error) {
	sym, err := p.syms.Func(pt.Func)
	if err != nil {
		return 0, err
	}
	f, err := p.decode(sym)
	if err != nil {
		return 0, fmt.Errorf("decoding %s: %w", sym.Name, err)
	}
	return p.callReturn(f, pt)
}

// callReturn returns the offset of the instruction a call site's call
// returns to. The site must be a call (not a tail jump) to the start of
// pt.Callee, and the instruction after it one that only the callee's
// return reaches, or a frame would be closed that no call opened: inside
// the function's code, not padding, no branch of the function, jump table
// or jump back from one of its .cold parts targets it, and the function
// has no indirect jump whose targets are unknown.
func (p *Placement) callReturn(f *callgraph.Function, pt instrument.Point) (uint32, error) {
	ret, err := callReturnIn(f, pt)
	if err != nil {
		return 0, err
	}
	for _, s := range f.Sites {
		if s.Kind == callgraph.Indirect && s.Jump {
			return 0, fmt.Errorf("%s has an indirect jump at %#x whose targets are unknown", f.Sym.Name, s.Off)
		}
	}
	addr := f.Sym.Addr + uint64(ret)
	for _, part := range p.syms.ColdParts(f.Sym) {
		cf, err := p.decode(part)
		if err != nil {
			return 0, fmt.Errorf("decoding %s: %w", part.Name, err)
		}
		for _, e := range cf.Exits {
			if e.Target == addr {
				return 0, fmt.Errorf("%s+%#x, where the call returns, is also reached from %s", f.Sym.Name, ret, part.Name)
			}
		}
	}
	return ret, nil
}

// callReturnIn applies the rules of callReturn that need f alone.
func callReturnIn(f *callgraph.Function, pt instrument.Point) (uint32, error) {
	off := uint32(pt.Offset)
	for _, s := range f.Sites {
		if s.Off != off {
			continue
		}
		if s.Jump {
			return 0, fmt.Errorf("%s+%#x is a tail jump to %s: it does not return here", f.Sym.Name, off, s.Target)
		}
		if s.Target != pt.Callee || s.TargetOff != 0 {
			return 0, fmt.Errorf("%s+%#x calls %s, not %s", f.Sym.Name, off, callName(s), pt.Callee)
		}
		ret := off + uint32(s.Len)
		switch {
		case ret >= f.CodeEnd || !f.IsBoundary(ret) || !f.IsCandidate(ret):
			return 0, fmt.Errorf("the call at %s+%#x does not return to an instruction of %s (the callee does not return?)", f.Sym.Name, off, f.Sym.Name)
		case f.IsTarget(ret):
			return 0, fmt.Errorf("%s+%#x, where the call at %#x returns, is also a branch target", f.Sym.Name, ret, off)
		}
		return ret, nil
	}
	return 0, fmt.Errorf("%s+%#x is not a call site", f.Sym.Name, off)
}

func callName(s callgraph.Site) string {
	if s.Target == "" {
		return "an unknown target"
	}
	return s.Target
}

// indirectOperand returns the operand of the indirect call at off.
func indirectOperand(f *callgraph.Function, off uint32) (*callgraph.Operand, error) {
	for _, s := range f.Sites {
		if s.Off != off {
			continue
		}
		if s.Kind != callgraph.Indirect || s.Operand == nil {
			return nil, fmt.Errorf("%s+%#x is a %s site, not an indirect call", f.Sym.Name, off, s.Kind)
		}
		if s.Operand.Segment != "" {
			return nil, fmt.Errorf("%s+%#x calls through a %%%s-relative operand, which is not read", f.Sym.Name, off, s.Operand.Segment)
		}
		return s.Operand, nil
	}
	return nil, fmt.Errorf("%s+%#x is not a call site", f.Sym.Name, off)
}

// checkSyscall accepts a root timer on a function of the syscall table.
func (p *Placement) checkSyscall(spec instrument.Spec) error {
	if p.syscalls == nil {
		return refuse(spec, instrument.ErrNotSupported, "no syscall table: %w", p.syscallsErr)
	}
	if _, ok := p.syscalls.Number(spec.Func); !ok {
		if !instrument.IsSyscall64(spec.Func) && p.noFunctions != nil {
			return refuse(spec, instrument.ErrNotSupported, "%s is not a syscall function (__x64_sys_*), and only syscalls can be timed here (the tracepoint backend): %w", spec.Func, p.noFunctions)
		}
		if !instrument.IsSyscall64(spec.Func) {
			return refuse(spec, instrument.ErrNotSupported, "%s is not a syscall function (__x64_sys_*): the tracepoint backend times whole syscalls only (--backend fentry or kprobe times functions)", spec.Func)
		}
		return refuse(spec, instrument.ErrNotSupported, "%s is not in the syscall table", spec.Func)
	}
	return nil
}

// ReachWarning says where the code of a function runs when calls to the
// function itself miss some or all of it, for an instrument at its entry:
// GCC inlined it into callers (ksys_pread64 into __x64_sys_pread64, the
// out-of-line copy left for the compat syscalls), or its callers call a
// .part/.constprop/.isra copy of it. "" where nothing says so. A function
// called only through pointers has no caller in the static graph either,
// and the warning says so.
func ReachWarning(spec instrument.Spec, r callgraph.Reach) string {
	if spec.Offset != 0 || instrument.IsSyscall(spec.Func) {
		return ""
	}
	var copies []string
	for _, c := range r.Copies {
		if c.Callers > 0 {
			copies = append(copies, fmt.Sprintf("%s (%d call sites)", c.Name, c.Callers))
		}
	}
	in := strings.Join(r.InlinedInto, ", ")
	switch {
	case r.Callers > 0 && len(r.InlinedInto) > 0:
		return fmt.Sprintf("%s: the compiler also inlined %s, probably into %s (each calls every function %s calls, and not %s): only the calls of its %d call sites are counted; instrument those functions too", spec, r.Func, in, r.Func, r.Func, r.Callers)
	case r.Callers > 0:
		return ""
	case len(copies) > 0:
		return fmt.Sprintf("%s: no call in the kernel's code reaches %s; its callers call the compiler's copies %s, where its code runs: instrument those to count it", spec, r.Func, strings.Join(copies, ", "))
	case len(r.InlinedInto) > 0:
		return fmt.Sprintf("%s: no call in the kernel's code reaches %s: the compiler inlined it where it is called, probably into %s (each calls every function it calls), and this instrument may count nothing; instrument those instead (unless it is called through a pointer)", spec, r.Func, in)
	}
	return fmt.Sprintf("%s: no call in the kernel's code reaches %s: it is inlined where it is called, or called only through a pointer; this instrument may count nothing", spec, r.Func)
}

// ReachWarnings returns ReachWarning for each spec at a function entry
// that g's callers index finds unreached, by spec string. Building the
// index decodes the whole kernel (about 2 s of CPU on current hardware).
func ReachWarnings(g *callgraph.Graph, specs []instrument.Spec) map[string]string {
	out := map[string]string{}
	for _, s := range specs {
		if s.Offset != 0 || instrument.IsSyscall(s.Func) {
			continue
		}
		r, err := g.Reach(s.Func)
		if err != nil {
			continue
		}
		if w := ReachWarning(s, r); w != "" {
			out[s.String()] = w
		}
	}
	return out
}
