package splice

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernelbtf"
	"github.com/autoprof/autoprof/kmod/measure"
)

// Options configure Open.
type Options struct {
	// Backend serves function instruments: fentry, kprobe or tracepoint
	// (syscall roots only) through BPF, or splice through autoprof's own
	// module; "" is DefaultBackend. With the BPF backends, syscall root
	// timers (__x64_sys_*:timer) always go to tracepoint, and with fentry,
	// block counters (func+off) and indirect-call targets go to kprobe,
	// which alone can place them (see Session.BackendOf).
	Backend instrument.Backend
	// Graph is the kernel's call graph; nil opens the running kernel's
	// (and Close closes it).
	Graph *callgraph.Graph
	// MaxOverhead is the splice module's kill switch: the share of all
	// CPUs, over a second, past which the module withdraws everything by
	// itself, in (0, 1]; 0 is the whole of the CPUs, so that it never
	// overrides a caller's own budget (the hunt keeps the instruments'
	// cost under its budget from what Overhead reports; the switch is the
	// backstop for a controller that stops doing so).
	MaxOverhead float64

	// BPF backends only.

	// Model sizes the measurement maps.
	Model measure.Config
	// Syscalls maps syscall functions to numbers; nil reads the running
	// kernel's sys_call_table.
	Syscalls *SyscallTable
	// MaxLive caps live instruments (default 4096): Insert refuses more.
	MaxLive int

	// Splice backend only.

	// Module is a built autoprof_splice.ko for the running kernel. ""
	// uses the module if it is loaded, else $AUTOPROF_SPLICE_MODULE, else
	// builds one against Headers.
	Module string
	// Headers is the kernel headers' build directory to build the module
	// against; "" is /lib/modules/$(uname -r)/build.
	Headers string
	// Image is the running kernel's vmlinuz, whose alternatives table the
	// placement rules read; "" tries /boot/vmlinuz-$(uname -r).
	Image string
	// Deadman is how long the module waits for a heartbeat before it
	// withdraws everything: 0 means 10 s; at most 30 s.
	Deadman time.Duration
	// Limits of the module's tables (0: its defaults).
	MaxContexts, MaxThreads int
}

// Session serves instruments through one backend, whichever it is: the
// BPF backends (fentry, kprobe, tracepoint; bpf.go) record into one
// loaded measurement model, so that contexts nest across them; the splice
// backend (splicemod.go) into autoprof's own module, which keeps the same
// model. A reader cannot tell them apart except by what they cost. It is
// safe for concurrent use; Close withdraws everything, and a Session
// dropped unclosed is released by a cleanup.
type Session struct {
	backend  instrument.Backend
	graph    *callgraph.Graph
	ownGraph bool
	eng      engine
	cleanup  runtime.Cleanup
	// types holds the kernel's decoded BTF for the session's life, so
	// that every BPF object it loads, the feature probes included,
	// shares one decoding (kernelbtf).
	types *btf.Cache

	mu     sync.Mutex
	closed bool
}

// engine is what a Session needs of the mechanism behind it. An engine
// holds no reference to its Session, so that a Session dropped unclosed
// can be collected and its engine released.
type engine interface {
	check(spec instrument.Spec) error
	insert(ctx context.Context, spec instrument.Spec) (instrument.Instrument, error)
	read() (*instrument.Reading, error)
	overhead() (Overhead, error)
	syscalls() *SyscallTable
	// backendOf names the backend that serves spec (see BackendOf).
	backendOf(spec instrument.Spec) instrument.Backend
	// alive says why the engine stopped serving by itself (the module's
	// dead-man switch, rmmod), nil while it serves.
	alive() error
	// release withdraws every instrument and frees the kernel objects.
	release() error
}

// Open opens a session of opts.Backend: it loads the measurement model,
// or the splice module where it is not loaded. Nothing is attached until
// Insert.
func Open(ctx context.Context, opts Options) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	types := kernelbtf.Cache()
	// What start-up needs and does not depend on one another is read side
	// by side: the kernel's types (every backend's programs resolve them),
	// its symbols (the graph), and the function backends' probes (the
	// default backend, the placement rules' reasons). Each is kept by its
	// owner (the cache, LiveSymbols, the probes' once), so a failure here
	// is met again, and said, where it is needed.
	go types.Kernel()
	if opts.Graph == nil {
		go callgraph.LiveSymbols()
	}
	var probes sync.WaitGroup
	probes.Go(func() { features.HaveFentry() })
	probes.Go(func() { features.HaveKprobe() })
	defer probes.Wait() // their test programs are gone before Open returns
	if opts.Backend == "" {
		opts.Backend = DefaultBackend()
	}
	if _, err := instrument.ParseBackend(string(opts.Backend)); err != nil {
		return nil, fmt.Errorf("%w: %w", err, instrument.ErrNotSupported)
	}
	s := &Session{backend: opts.Backend, graph: opts.Graph, types: types}
	if s.graph == nil {
		g, err := livetext.OpenGraph()
		if err != nil {
			return nil, fmt.Errorf("opening the kernel's call graph: %w", err)
		}
		s.graph, s.ownGraph = g, true
	}
	var err error
	if opts.Backend == instrument.Splice {
		s.eng, err = openModule(ctx, s.graph, opts)
	} else {
		s.eng, err = openBPF(s.graph, opts)
	}
	if err != nil {
		s.closeGraph()
		return nil, err
	}
	s.releaseDropped()
	return s, nil
}

// releaseDropped makes a Session dropped unclosed release its engine.
func (s *Session) releaseDropped() {
	s.cleanup = runtime.AddCleanup(s, func(e engine) { e.release() }, s.eng)
}

func (s *Session) closeGraph() {
	if s.ownGraph {
		s.graph.Close()
	}
}

// Backend names the backend that serves function instruments.
func (s *Session) Backend() instrument.Backend { return s.backend }

// BackendOf names the backend that serves spec: the splice backend serves
// everything it accepts itself; with the BPF backends, timers of the
// syscall entry functions go to tracepoint, and with fentry, offsets and
// indirect-call targets go to kprobe.
func (s *Session) BackendOf(spec instrument.Spec) instrument.Backend { return s.eng.backendOf(spec) }

// Graph returns the session's call graph.
func (s *Session) Graph() *callgraph.Graph { return s.graph }

// Syscalls returns the running kernel's syscall table, nil where it could
// not be read.
func (s *Session) Syscalls() *SyscallTable { return s.eng.syscalls() }

// Check reports whether spec could be inserted, without touching the
// kernel. Refusals wrap ErrUnsafe or ErrNotSupported.
func (s *Session) Check(spec instrument.Spec) error { return s.eng.check(spec) }

// Insert checks spec and makes it live. On any error nothing of it stays
// in the kernel.
func (s *Session) Insert(ctx context.Context, spec instrument.Spec) (instrument.Instrument, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	return s.eng.insert(ctx, spec)
}

// Read returns the cumulative readings of every instrument inserted so
// far, withdrawn ones included (their counts stop growing).
func (s *Session) Read() (*instrument.Reading, error) {
	if err := s.alive(); err != nil {
		return nil, err
	}
	return s.eng.read()
}

// Overhead is what the instruments cost, as the kernel measured it:
// cumulative since Open, so that a reader takes differences.
type Overhead struct {
	RunNs uint64 // total time inside the instruments' programs or handlers
	Runs  uint64 // program runs; 0 where the kernel does not count them
	// Enabled is false where the kernel measured nothing (it refused BPF
	// run-time statistics); RunNs and Runs are then 0.
	Enabled bool
}

// Overhead reads what the instruments have cost: the BPF programs'
// run-time statistics (the trampoline or kprobe entry around each program
// not included), or the time the splice module's handlers took, summed
// over CPUs (the counters' inline fast path is not timed).
func (s *Session) Overhead() (Overhead, error) {
	if err := s.alive(); err != nil {
		return Overhead{}, err
	}
	return s.eng.overhead()
}

func (s *Session) alive() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return instrument.ErrClosed
	}
	return s.eng.alive()
}

// Close withdraws every live instrument and releases the backend (the
// model, or the module's file; the module itself where this session
// loaded it). A second call returns ErrClosed.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return instrument.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.cleanup.Stop()
	err := s.eng.release()
	s.closeGraph()
	return err
}

var _ instrument.Instrumenter = (*Session)(nil)
