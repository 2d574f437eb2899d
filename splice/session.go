package splice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// Options configure Open.
type Options struct {
	// Backend serves function instruments: "fentry", "kprobe" or
	// "tracepoint" (syscall roots only). Syscall root timers
	// (__x64_sys_*:timer) always go to the tracepoint backend. With
	// fentry, block counters (func+off) and indirect-call targets go to
	// kprobe, which alone can place them.
	Backend string
	// Graph is the kernel's call graph; nil opens the running kernel's
	// (and Close closes it).
	Graph *callgraph.Graph
	// Model sizes the measurement maps.
	Model measure.Config
	// Syscalls maps syscall functions to numbers; nil reads the running
	// kernel's sys_call_table.
	Syscalls *SyscallTable
	// MaxLive caps live instruments (default 4096): Insert refuses more.
	MaxLive int
	// MaxOverhead is the splice backend's kill switch: the share of all
	// CPUs, over a second, past which the module withdraws everything by
	// itself (see OpenInstruments).
	MaxOverhead float64
}

// Session is an Instrumenter over one loaded measurement model: every
// backend records into it, so that contexts nest across backends. It is
// safe for concurrent use.
type Session struct {
	backend  string
	graph    *callgraph.Graph
	ownGraph bool
	place    *Placement
	syscalls *SyscallTable
	// syscallsErr says why the syscall table could not be read.
	syscallsErr error
	maxLive     int
	res         *resources
	cleanup     runtime.Cleanup

	mu     sync.Mutex
	closed bool
	nextID uint32
	specs  map[uint32]*bpfInst // every instrument ever inserted, by id
	byNr   map[int]uint32      // live syscall roots
}

// resources are the session's kernel objects, apart from the Session so
// that a cleanup can release them when a Session is dropped unclosed.
type resources struct {
	mu    sync.Mutex
	model *measure.Model
	stats io.Closer // BPF run-time statistics, nil when refused
	live  map[uint32]*bpfInst
}

func (r *resources) close() error {
	r.mu.Lock()
	live := r.live
	r.live = nil
	r.mu.Unlock()
	var errs []error
	for _, in := range live {
		errs = append(errs, in.detach())
	}
	errs = append(errs, r.model.Close())
	if r.stats != nil {
		errs = append(errs, r.stats.Close())
	}
	return errors.Join(errs...)
}

// Open loads the measurement model and readies the backends. Nothing is
// attached until Insert.
func Open(ctx context.Context, opts Options) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Backend == "" {
		opts.Backend = DefaultBackend()
	}
	if _, ok := backends[opts.Backend]; !ok {
		return nil, fmt.Errorf("backend %q: %w (want fentry, kprobe or tracepoint)", opts.Backend, instrument.ErrNotSupported)
	}
	s := &Session{backend: opts.Backend, graph: opts.Graph, maxLive: opts.MaxLive, specs: map[uint32]*bpfInst{}, byNr: map[int]uint32{}}
	if s.maxLive == 0 {
		s.maxLive = 4096
	}
	if s.graph == nil {
		g, err := livetext.OpenGraph()
		if err != nil {
			return nil, fmt.Errorf("opening the kernel's call graph: %w", err)
		}
		s.graph, s.ownGraph = g, true
	}
	s.syscalls = opts.Syscalls
	if s.syscalls == nil {
		s.syscalls, s.syscallsErr = ReadSyscallTable(s.graph.Symbols(), s.graph.Text())
	}
	s.place = livePlacement(s.graph, s.syscalls, s.syscallsErr)
	model, err := measure.Load(opts.Model)
	if err != nil {
		s.closeGraph()
		return nil, err
	}
	s.res = &resources{model: model, live: map[uint32]*bpfInst{}}
	// Run-time statistics cost two clock reads per program run; they
	// let Overhead report what the instruments really cost.
	if c, err := ebpf.EnableStats(uint32(bpfStatsRunTime)); err == nil {
		s.res.stats = c
	}
	s.cleanup = runtime.AddCleanup(s, func(r *resources) { r.close() }, s.res)
	return s, nil
}

// bpfStatsRunTime is BPF_STATS_RUN_TIME of enum bpf_stats_type.
const bpfStatsRunTime = 0

func (s *Session) closeGraph() {
	if s.ownGraph {
		s.graph.Close()
	}
}

// Backend returns the backend that serves function instruments.
func (s *Session) Backend() string { return s.backend }

// Graph returns the session's call graph.
func (s *Session) Graph() *callgraph.Graph { return s.graph }

// Syscalls returns the syscall table, nil where it could not be read.
func (s *Session) Syscalls() *SyscallTable { return s.syscalls }

// route names the backend that serves spec.
func (s *Session) route(spec instrument.Spec) string {
	if s.syscalls != nil && spec.Offset == 0 && spec.Kind == instrument.Timer {
		if _, ok := s.syscalls.Number(spec.Func); ok {
			return "tracepoint"
		}
	}
	if instrument.IsSyscall64(spec.Func) && spec.Kind == instrument.Timer && spec.Offset == 0 {
		return "tracepoint"
	}
	if s.backend == "fentry" && (spec.Offset != 0 || spec.Kind == instrument.Targets) {
		return "kprobe"
	}
	return s.backend
}

// candidates are the backends that may serve spec, in order: the one
// route names, then, for fentry, kprobe, which serves any function entry
// that fentry refuses (a module without BTF, a function the trampoline
// cannot attach to) where the kernel has kprobes.
func (s *Session) candidates(spec instrument.Spec) []string {
	b := s.route(spec)
	if b == "fentry" {
		return []string{"fentry", "kprobe"}
	}
	return []string{b}
}

// checkWith asks whether backend b works here, then applies its
// placement rules to spec.
func (s *Session) checkWith(b string, spec instrument.Spec) error {
	if be, ok := backends[b]; ok {
		if err := be.available(); err != nil {
			return &refusal{fmt.Errorf("%s: %w: %s: %w", spec, instrument.ErrNotSupported, b, err), false}
		}
	}
	if err := s.place.Check(b, spec); err != nil {
		return &refusal{err, true}
	}
	return nil
}

// refusal is one backend's refusal of a spec; available says whether the
// backend works here (its placement rules refused), which decides which
// refusal speaks for all (see joinRefusals).
type refusal struct {
	error
	available bool
}

func (r *refusal) Unwrap() error { return r.error }

// Check reports whether spec could be inserted, without touching the
// kernel: whether each backend that may serve it works here, then its
// placement rules. Only a spec every candidate refuses is refused (see
// joinRefusals).
func (s *Session) Check(spec instrument.Spec) error {
	var refusals []error
	for _, b := range s.candidates(spec) {
		err := s.checkWith(b, spec)
		if err == nil {
			return nil
		}
		refusals = append(refusals, err)
	}
	return joinRefusals(refusals)
}

// joinRefusals returns the refusal that speaks for all, with the others
// in its text: the last one of a backend that works here (whether the
// place is unsafe or only unsupported is that backend's word: a kprobe
// backend missing from the kernel does not make fentry's notrace
// function merely unsupported), else the last.
func joinRefusals(errs []error) error {
	at := len(errs) - 1
	for i := len(errs) - 1; i >= 0; i-- {
		var r *refusal
		if errors.As(errs[i], &r) && r.available {
			at = i
			break
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	var others []string
	for i, e := range errs {
		if i != at {
			others = append(others, e.Error())
		}
	}
	return fmt.Errorf("%w (also refused: %s)", errs[at], strings.Join(others, "; "))
}

// Overhead is what the instruments' programs cost, as the kernel measured
// it (BPF run-time statistics): cumulative since Open, so that a reader
// takes differences. The trampoline or kprobe entry around each program
// is not included.
type Overhead struct {
	RunNs uint64 // total time inside the programs
	Runs  uint64 // program runs
	// Enabled is false where the kernel refused run-time statistics;
	// RunNs and Runs are then 0.
	Enabled bool
}

// Overhead reads the programs' run-time statistics.
func (s *Session) Overhead() (Overhead, error) {
	if err := s.alive(); err != nil {
		return Overhead{}, err
	}
	rs, err := s.res.model.RunStats()
	if err != nil {
		return Overhead{}, err
	}
	return Overhead{RunNs: uint64(rs.RunTime), Runs: rs.Runs, Enabled: s.res.stats != nil}, nil
}

func (s *Session) alive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return instrument.ErrClosed
	}
	return nil
}

// Close withdraws every live instrument and unloads the model. A second
// call returns ErrClosed.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return instrument.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.cleanup.Stop()
	err := s.res.close()
	s.closeGraph()
	return err
}

var _ instrument.Instrumenter = (*Session)(nil)
