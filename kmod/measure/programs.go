package measure

import (
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// ProgKind is one of the instrument programs.
type ProgKind uint8

const (
	// Fentry runs at a function's entry (BPF trampoline).
	Fentry ProgKind = iota + 1
	// Fexit runs at a function's return (BPF trampoline).
	Fexit
	// Kprobe runs at an instruction (perf kprobe PMU).
	Kprobe
	// Kretprobe runs at a function's return (perf kprobe PMU).
	Kretprobe
)

var progNames = map[ProgKind]string{Fentry: "fentry_hit", Fexit: "fexit_hit", Kprobe: "kprobe_hit", Kretprobe: "kretprobe_hit"}

type progKey struct {
	kind ProgKind
	fn   string // the attach function for Fentry/Fexit, "" for kprobes
	id   uint32 // the instrument of an Fentry/Fexit program
}

type sharedProg struct {
	prog *ebpf.Program
	refs int
}

// Program returns the instrument program of kind for instrument id.
// Kprobe programs are shared by every instrument, which passes its id as
// the link's BPF cookie. Fentry and fexit programs are loaded for one
// function and one instrument: tracing links take a cookie only from
// Linux 6.4, so the id is built into the program instead (the call of
// bpf_get_attach_cookie becomes "r0 = id"). Call release when the
// program's link is closed; a program is unloaded with its last release.
func (m *Model) Program(kind ProgKind, fn string, id uint32) (prog *ebpf.Program, release func(), err error) {
	k := progKey{kind: kind}
	if kind == Fentry || kind == Fexit {
		k.fn, k.id = fn, id
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, os.ErrClosed
	}
	sp := m.progs[k]
	if sp == nil {
		p, err := m.load(k)
		if err != nil {
			return nil, nil, err
		}
		sp = &sharedProg{prog: p}
		m.progs[k] = sp
	}
	sp.refs++
	return sp.prog, func() { m.release(k, sp) }, nil
}

func (m *Model) release(k progKey, sp *sharedProg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sp.refs--; sp.refs == 0 && m.progs[k] == sp {
		delete(m.progs, k)
		if st, err := sp.prog.Stats(); err == nil {
			m.retired.add(st)
		}
		sp.prog.Close()
	}
}

// load loads a copy of an instrument program with its map references
// pointing at the model's maps.
func (m *Model) load(k progKey) (*ebpf.Program, error) {
	ps := m.spec.Programs[progNames[k.kind]].Copy()
	if k.fn != "" {
		ps.AttachTo = k.fn
	}
	maps := m.objs.byName()
	for i := range ps.Instructions {
		ins := &ps.Instructions[i]
		if k.fn != "" && ins.IsBuiltinCall() && ins.Constant == int64(asm.FnGetAttachCookie) {
			*ins = asm.Mov.Imm(asm.R0, int32(k.id)).WithMetadata(ins.Metadata)
			continue
		}
		if !ins.IsLoadFromMap() {
			continue
		}
		mp := maps[ins.Reference()]
		if mp == nil {
			return nil, fmt.Errorf("program %s refers to unknown map %q", ps.Name, ins.Reference())
		}
		if err := ins.AssociateMap(mp); err != nil {
			return nil, err
		}
	}
	p, err := m.newProgram(ps)
	if err != nil {
		what := ps.Name
		if k.fn != "" {
			what += " for " + k.fn
		}
		return nil, fmt.Errorf("loading %s: %w", what, err)
	}
	return p, nil
}

// newProgram loads ps, whose map references are resolved, with the
// model's kernel BTF (ebpf.NewProgram would decode vmlinux's BTF again for
// each program; only a collection load takes a shared cache).
func (m *Model) newProgram(ps *ebpf.ProgramSpec) (*ebpf.Program, error) {
	cs := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{ps.Name: ps}, Types: m.spec.Types}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{Cache: m.types})
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(ps.Name), nil
}

func (l *loaded) byName() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"busy": l.Busy, "cgroups": l.Cgroups, "ctxs": l.Ctxs, "hits": l.Hits, "insts": l.Insts, "misses": l.Misses,
		"next_ctx": l.NextCtx, "pids": l.Pids, "stats": l.Stats, "syscalls": l.Syscalls,
		"targets": l.Targets, "threads": l.Threads, "zero_thread": l.ZeroThread,
	}
}

// AttachSched attaches the sched_switch handler (off-CPU time) and the
// thread-exit handler (shadow stack cleanup). It is idempotent; the
// links live until Close.
func (m *Model) AttachSched() error {
	if err := m.attachTP("sched_switch", m.objs.SchedSwitch); err != nil {
		return err
	}
	return m.attachTP("sched_process_exit", m.objs.ThreadExit)
}

// AttachSyscalls attaches the raw_syscalls sys_enter and sys_exit
// handlers (syscall root timers), and the sched handlers.
func (m *Model) AttachSyscalls() error {
	if err := m.AttachSched(); err != nil {
		return err
	}
	if err := m.attachTP("sys_enter", m.objs.SysEnter); err != nil {
		return err
	}
	return m.attachTP("sys_exit", m.objs.SysExit)
}

func (m *Model) attachTP(name string, p *ebpf.Program) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return os.ErrClosed
	}
	if m.tpLinks[name] != nil {
		return nil
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return fmt.Errorf("attaching to tracepoint %s: %w", name, err)
	}
	m.tpLinks[name] = l
	return nil
}

// RunStats are the BPF run-time statistics of the model's programs
// (collected only while run-time statistics are enabled, see
// ebpf.EnableStats), those of unloaded programs included.
type RunStats struct {
	RunTime         time.Duration
	Runs            uint64
	RecursionMisses uint64
}

func (r *RunStats) add(s *ebpf.ProgramStats) {
	r.RunTime += s.Runtime
	r.Runs += s.RunCount
	r.RecursionMisses += s.RecursionMisses
}

// RunStats sums the statistics of every program loaded so far.
func (m *Model) RunStats() (RunStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return RunStats{}, os.ErrClosed
	}
	r := m.retired
	progs := []*ebpf.Program{m.objs.SchedSwitch, m.objs.SysEnter, m.objs.SysExit, m.objs.ThreadExit}
	for _, p := range m.progs {
		progs = append(progs, p.prog)
	}
	for _, p := range progs {
		st, err := p.Stats()
		if err != nil {
			return RunStats{}, fmt.Errorf("reading program statistics: %w", err)
		}
		r.add(st)
	}
	return r, nil
}

// Programs returns every program the model has loaded now: for run-time
// statistics.
func (m *Model) Programs() []*ebpf.Program {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	out := []*ebpf.Program{m.objs.SchedSwitch, m.objs.SysEnter, m.objs.SysExit, m.objs.ThreadExit}
	for _, p := range m.progs {
		out = append(out, p.prog)
	}
	return out
}
