package splice

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// bpfSession is the engine of the BPF backends: fentry, kprobe and
// tracepoint record into one loaded measurement model (kmod/measure), so
// that contexts nest across them. Each attach kind is one file behind the
// backend interface (insert.go): fentry.go, kprobe.go, tracepoint.go.
type bpfSession struct {
	backend  instrument.Backend
	graph    *callgraph.Graph
	place    *Placement
	sysTable *SyscallTable
	// syscallsErr says why the syscall table could not be read.
	syscallsErr error
	maxLive     int
	res         *resources

	mu     sync.Mutex
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

// openBPF loads the measurement model and readies the backends over
// graph. Nothing is attached until insert.
func openBPF(graph *callgraph.Graph, opts Options) (*bpfSession, error) {
	if _, ok := backends[opts.Backend]; !ok {
		return nil, fmt.Errorf("backend %q: %w (want fentry, kprobe, splice or tracepoint)", opts.Backend, instrument.ErrNotSupported)
	}
	s := &bpfSession{backend: opts.Backend, graph: graph, maxLive: opts.MaxLive, specs: map[uint32]*bpfInst{}, byNr: map[int]uint32{}}
	if s.maxLive == 0 {
		s.maxLive = 4096
	}
	// The measurement model (the kernel's BTF, its programs verified)
	// loads while the syscall table and the placement rules are read:
	// they share nothing but the BTF cache, which loads once for both.
	type loaded struct {
		model *measure.Model
		err   error
	}
	modelc := make(chan loaded, 1)
	go func() {
		m, err := measure.Load(opts.Model)
		modelc <- loaded{m, err}
	}()
	s.sysTable = opts.Syscalls
	if s.sysTable == nil {
		s.sysTable, s.syscallsErr = ReadSyscallTable(s.graph.Symbols(), s.graph.Text())
	}
	s.place = livePlacement(s.graph, s.sysTable, s.syscallsErr)
	m := <-modelc
	model, err := m.model, m.err
	if err != nil {
		return nil, err
	}
	s.res = &resources{model: model, live: map[uint32]*bpfInst{}}
	// Run-time statistics cost two clock reads per program run; they
	// let Overhead report what the instruments really cost.
	if c, err := ebpf.EnableStats(uint32(bpfStatsRunTime)); err == nil {
		s.res.stats = c
	}
	return s, nil
}

// bpfStatsRunTime is BPF_STATS_RUN_TIME of enum bpf_stats_type.
const bpfStatsRunTime = 0

func (s *bpfSession) syscalls() *SyscallTable { return s.sysTable }

// backendOf names the backend that serves spec: syscall root timers go
// to tracepoint (the table's entry functions, or any the 64-bit dispatch
// calls where the table could not be read), and with fentry, offsets and
// indirect-call targets go to kprobe.
func (s *bpfSession) backendOf(spec instrument.Spec) instrument.Backend {
	if spec.Offset == 0 && spec.Kind == instrument.Timer {
		if s.sysTable != nil {
			if _, ok := s.sysTable.Number(spec.Func); ok {
				return instrument.Tracepoint
			}
		}
		if instrument.IsSyscall64(spec.Func) {
			return instrument.Tracepoint
		}
	}
	if s.backend == instrument.Fentry && (spec.Offset != 0 || spec.Kind == instrument.Targets) {
		return instrument.Kprobe
	}
	return s.backend
}

// candidates are the backends that may serve spec, in order: the one
// route names, then, for fentry, kprobe, which serves any function entry
// that fentry refuses (a module without BTF, a function the trampoline
// cannot attach to) where the kernel has kprobes.
func (s *bpfSession) candidates(spec instrument.Spec) []instrument.Backend {
	b := s.backendOf(spec)
	if b == instrument.Fentry {
		return []instrument.Backend{instrument.Fentry, instrument.Kprobe}
	}
	return []instrument.Backend{b}
}

// checkWith asks whether backend b works here, then applies its
// placement rules to spec.
func (s *bpfSession) checkWith(b instrument.Backend, spec instrument.Spec) error {
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

// check reports whether spec could be inserted, without touching the
// kernel: whether each backend that may serve it works here, then its
// placement rules. Only a spec every candidate refuses is refused (see
// joinRefusals).
func (s *bpfSession) check(spec instrument.Spec) error {
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

// overhead reads the programs' run-time statistics.
func (s *bpfSession) overhead() (Overhead, error) {
	rs, err := s.res.model.RunStats()
	if err != nil {
		return Overhead{}, err
	}
	return Overhead{RunNs: uint64(rs.RunTime), Runs: rs.Runs, Enabled: s.res.stats != nil}, nil
}

func (s *bpfSession) alive() error { return nil }

// release withdraws every live instrument and unloads the model; an
// insert racing it finds no live set to join (see register).
func (s *bpfSession) release() error { return s.res.close() }
