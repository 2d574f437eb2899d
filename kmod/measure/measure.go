// Package measure loads autoprof's measurement model (measure.bpf.c): the
// maps every instrument records into, the per-thread shadow stacks, and
// the programs that the splice backends attach: fentry/fexit,
// kprobe/kretprobe, and the raw_syscalls and sched tracepoints.
//
// One Model serves every backend of a session, so that calling contexts
// nest across them: a syscall root opened by the sys_enter tracepoint is
// the parent of an fentry timer below it, which is the parent of a kprobe
// block counter inside it.
//
// Instrument ids are allocated by the caller (package splice), start at 1,
// and are passed to the programs as their BPF cookie. Context ids are
// allocated by the programs.
package measure

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/internal/kernelbtf"
)

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel -type inst -type ctx_stats -type ctx_key -type target_key -type pid_key measure measure.bpf.c

// MaxDepth is MAX_DEPTH in measure.bpf.c: the most instrumented frames a
// thread's shadow stack holds.
const MaxDepth = 32

// HistBuckets is HIST in measure.bpf.c.
const HistBuckets = 41

// Config sizes the model's maps. Zero fields take the defaults.
type Config struct {
	// MaxInstruments bounds instrument ids (never reused in a session).
	MaxInstruments int
	// MaxContexts bounds calling contexts. Per-CPU statistics take
	// about 370 bytes per context and CPU, so the default is the most
	// that fits in MemoryCap (at most 16384, at least 256).
	MaxContexts int
	// MaxThreads bounds the threads that hold a shadow stack at once
	// (about 1.3 KiB each, preallocated); a thread is forgotten when it
	// exits.
	MaxThreads int
	// MaxTargets bounds distinct (context, indirect-call target) pairs.
	MaxTargets int
	// MemoryCap bounds the per-CPU statistics, in bytes (default 64 MiB).
	MemoryCap int
}

// statsBytes is sizeof(struct ctx_stats).
const statsBytes = 8 * (5 + HistBuckets)

// withDefaults fills zero fields for a machine of ncpu CPUs.
func (c Config) withDefaults(ncpu int) Config {
	if c.MaxInstruments == 0 {
		c.MaxInstruments = 16384
	}
	if c.MemoryCap == 0 {
		c.MemoryCap = 64 << 20
	}
	if c.MaxContexts == 0 {
		c.MaxContexts = min(16384, max(256, c.MemoryCap/(statsBytes*max(ncpu, 1))))
	}
	if c.MaxThreads == 0 {
		c.MaxThreads = 4096
	}
	if c.MaxTargets == 0 {
		c.MaxTargets = 4096
	}
	return c
}

// syscallSlots is the size of the syscall map: x86-64 numbers stay below
// 1024 (the highest in 6.18 is 467).
const syscallSlots = 1024

// Model is a loaded measurement model. Its methods are safe for concurrent
// use.
type Model struct {
	cfg  Config
	ncpu int
	spec *ebpf.CollectionSpec
	objs *loaded
	// types is the kernel's BTF (kernelbtf), decoded once for every program the model
	// loads: an fentry or fexit program finds its target there, and
	// decoding vmlinux's BTF takes a second or more under emulation.
	types *btf.Cache

	mu      sync.Mutex
	closed  bool
	progs   map[progKey]*sharedProg
	tpLinks map[string]link.Link // attached tracepoint programs by name
	// ctxs is the last reading of the contexts map, valid while next_ctx
	// reads ctxsNext (see Contexts); ctxsNext is 0 where it must be read
	// again.
	ctxMu    sync.Mutex
	ctxs     map[uint32]Context
	ctxsNext uint32
	ctxsSeen uint32   // next_ctx at the last reading of the map
	retired  RunStats // of programs already unloaded
	cleanup  runtime.Cleanup
}

// Load loads the model's maps and its tracepoint programs (not attached
// yet). It needs CAP_BPF and CAP_PERFMON and kernel BTF.
func Load(cfg Config) (*Model, error) {
	ncpu, err := kernel.NumCPU()
	if err != nil {
		return nil, fmt.Errorf("loading the measurement model: counting CPUs: %w", err)
	}
	cfg = cfg.withDefaults(ncpu)
	spec, err := loadMeasure()
	if err != nil {
		return nil, fmt.Errorf("loading the measurement model: %w", err)
	}
	size(spec, cfg)
	_ = rlimit.RemoveMemlock()
	objs := &loaded{}
	types := kernelbtf.Cache()
	if err := spec.LoadAndAssign(objs, &ebpf.CollectionOptions{Cache: types}); err != nil {
		return nil, fmt.Errorf("loading the measurement model: %w", err)
	}
	m := &Model{cfg: cfg, ncpu: ncpu, spec: spec, objs: objs, types: types, progs: map[progKey]*sharedProg{}, tpLinks: map[string]link.Link{}}
	m.cleanup = runtime.AddCleanup(m, func(o *loaded) { o.Close() }, objs)
	return m, nil
}

// loaded is what Load loads: the maps and the tracepoint programs. The
// fentry/fexit and kprobe programs are loaded per attach point (see
// Program).
type loaded struct {
	measureMaps
	SchedSwitch *ebpf.Program `ebpf:"sched_switch"`
	SysEnter    *ebpf.Program `ebpf:"sys_enter"`
	SysExit     *ebpf.Program `ebpf:"sys_exit"`
	ThreadExit  *ebpf.Program `ebpf:"thread_exit"`
}

func (l *loaded) Close() error {
	for _, p := range []*ebpf.Program{l.SchedSwitch, l.SysEnter, l.SysExit, l.ThreadExit} {
		p.Close()
	}
	return l.measureMaps.Close()
}

// size sets every map's max_entries from cfg.
func size(spec *ebpf.CollectionSpec, cfg Config) {
	set := func(name string, n int) { spec.Maps[name].MaxEntries = uint32(n) }
	set("insts", cfg.MaxInstruments+1)
	set("hits", cfg.MaxInstruments+1)
	set("cgroups", cfg.MaxInstruments+1)
	set("pids", max(1024, cfg.MaxInstruments))
	set("threads", cfg.MaxThreads)
	set("ctxs", cfg.MaxContexts)
	set("stats", cfg.MaxContexts+1)
	set("targets", cfg.MaxTargets)
	set("syscalls", syscallSlots)
}

// Config returns the effective sizes.
func (m *Model) Config() Config { return m.cfg }

// NumCPU returns the number of possible CPUs the per-CPU maps hold.
func (m *Model) NumCPU() int { return m.ncpu }

// Close detaches the tracepoints and unloads everything. A second call
// returns os.ErrClosed.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return os.ErrClosed
	}
	m.closed = true
	m.cleanup.Stop()
	var errs []error
	for _, l := range m.tpLinks {
		errs = append(errs, l.Close())
	}
	for _, p := range m.progs {
		errs = append(errs, p.prog.Close())
	}
	errs = append(errs, m.objs.Close())
	return errors.Join(errs...)
}
