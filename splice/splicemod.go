package splice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// SpliceModuleEnv names a built module for a splice Session to load.
const SpliceModuleEnv = splicer.ModuleEnv

// moduleSession is the splice backend: autoprof's own kernel module
// (kmod/splicer) splices a jump to a trampoline into the kernel's text for
// each instrument. A counter at the root of the calling-context tree costs
// one per-CPU increment; timers and nested counters call into the module,
// which keeps the same measurement model as the BPF backends (per-thread
// shadow stacks, interned contexts, off-CPU time from the scheduler
// tracepoint, log2 histograms, misses).
//
// The session names places (a window, its role) and instrument kinds; the
// module checks each window itself and builds its trampoline. A timer or
// an exit counter takes its function's entry window and a return window at
// each of the function's returns, and at each return of the functions it
// tail-calls (see patch.ExitWindows), shared by all of them: no return
// address is replaced, so stacks taken inside a timed function show its
// real caller.
//
// Every splice belongs to the session's open file of the module's control
// file: Close, or the death of the process, withdraws them all; so do the
// module's dead-man switch when the heartbeat stops, its overhead kill
// switch when its handlers take more than MaxOverhead of the CPUs, and
// rmmod. It is safe for concurrent use.
type moduleSession struct {
	graph  *callgraph.Graph
	cat    *spliceCatalogue
	dev    *splicer.Device
	layout patch.Layout
	loaded bool // this session loaded the module
	beat   *spliceBeat

	op sync.Mutex // serializes changes of sites

	syscallsOnce sync.Once
	sysTable     *SyscallTable

	mu     sync.Mutex
	closed bool
	specs  map[uint32]*splicedInst // every instrument, by module id
	sites  map[uint64]*spliceSite  // live block and entry windows, by address
	exits  map[string]*exitSet     // return windows of the timed functions, by spec name
	// retUsers counts the exit sets that hold each live return window,
	// by address: a function's tail callee has the same returns as the
	// callee has when it is timed itself.
	retUsers map[uint64]int
	kname    map[uint64]string // kallsyms' name of a function, where it differs
}

// splicedInst is one instrument of a moduleSession.
type splicedInst struct {
	s      *moduleSession
	id     uint32
	spec   instrument.Spec
	addr   uint64 // its site
	closed bool   // under s.mu
}

// openModule loads the module where needed and opens a session of it
// over graph.
func openModule(ctx context.Context, graph *callgraph.Graph, opts Options) (*moduleSession, error) {
	s := newModuleSession(graph)
	if err := s.open(ctx, opts); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

func newModuleSession(g *callgraph.Graph) *moduleSession {
	return &moduleSession{graph: g, specs: map[uint32]*splicedInst{}, sites: map[uint64]*spliceSite{},
		exits: map[string]*exitSet{}, retUsers: map[uint64]int{}, kname: map[uint64]string{}}
}

// spliceBeat is a session's heartbeat, apart from the session so that a
// session dropped without Close can be collected.
type spliceBeat struct {
	dev  *splicer.Device
	stop context.CancelFunc
	done chan struct{}

	mu   sync.Mutex
	dead error // the dead-man switch fired, or the module was removed
}

// startBeating beats every interval until stopBeating.
func startBeating(dev *splicer.Device, every time.Duration) *spliceBeat {
	ctx, stop := context.WithCancel(context.Background())
	b := &spliceBeat{dev: dev, stop: stop, done: make(chan struct{})}
	go b.run(ctx, every)
	return b
}

// stopBeating stops the heartbeat and waits for it.
func (b *spliceBeat) stopBeating() {
	b.stop()
	<-b.done
}

// run keeps the dead-man switch from firing while the process runs.
func (b *spliceBeat) run(ctx context.Context, every time.Duration) {
	defer close(b.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := b.dev.Beat()
			var dead error
			switch {
			case errors.Is(err, kernel.ETIMEDOUT):
				dead = fmt.Errorf("the splice module's dead-man switch withdrew every instrument: %w", err)
			case errors.Is(err, syscall.EOVERFLOW):
				dead = fmt.Errorf("the splice module's overhead kill switch withdrew every instrument (its handlers took too much of the CPUs): %w", err)
			case errors.Is(err, splicer.ErrRemoved):
				dead = err
			}
			if dead != nil {
				b.mu.Lock()
				b.dead = dead
				b.mu.Unlock()
				return
			}
		}
	}
}

// err says why the module withdrew everything by itself (the dead-man
// switch, rmmod), nil while the session lives.
func (b *spliceBeat) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dead
}

func (s *moduleSession) open(ctx context.Context, opts Options) error {
	var err error
	if s.cat, err = newSpliceCatalogue(s.graph, opts.Image); err != nil {
		return err
	}
	return s.connect(ctx, opts)
}

// connect loads the module where needed and starts the session.
func (s *moduleSession) connect(ctx context.Context, opts Options) error {
	id, err := splicer.RunningIdentity()
	if err != nil {
		return err
	}
	if err := s.load(ctx, id, opts); err != nil {
		return err
	}
	if s.dev, err = splicer.Open(); err != nil {
		return err
	}
	deadman := opts.Deadman
	if deadman <= 0 {
		deadman = 10 * time.Second
	}
	maxOverhead := opts.MaxOverhead
	if maxOverhead == 0 {
		maxOverhead = 1 // see Options.MaxOverhead
	}
	if err := s.dev.Hello(id, deadman, maxOverhead); err != nil {
		return err
	}
	s.layout = layoutOf(s.dev.Info())
	s.cat.setOurs(patch.Span{Start: s.layout.PoolStart, End: s.layout.PoolEnd})
	s.beat = startBeating(s.dev, deadman/4)
	return nil
}

// load loads the module unless it is loaded.
func (s *moduleSession) load(ctx context.Context, id splicer.Identity, opts Options) error {
	if splicer.Loaded() {
		return nil
	}
	ko := opts.Module
	if ko == "" {
		ko = os.Getenv(SpliceModuleEnv)
	}
	if ko == "" {
		kdir := opts.Headers
		if kdir == "" {
			var err error
			if kdir, err = splicer.HeadersDir(); err != nil {
				return err
			}
		}
		dir, err := os.MkdirTemp("", "autoprof-splice-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if ko, err = splicer.Build(ctx, kdir, dir); err != nil {
			return fmt.Errorf("%w: %w", instrument.ErrNotSupported, err)
		}
	}
	p, err := splicer.NewParams(id, s.graph.Symbols())
	if err != nil {
		return err
	}
	p.MaxCtxs, p.MaxThreads = opts.MaxContexts, opts.MaxThreads
	if err := splicer.Load(ko, p); err != nil {
		return err
	}
	s.loaded = true
	return nil
}

// layoutOf returns what splice/patch's reference encoder needs to build
// the trampolines the module builds.
func layoutOf(in splicer.Info) patch.Layout {
	return patch.Layout{
		PoolStart: in.PoolStart, PoolEnd: in.PoolEnd,
		StubEnter: in.StubEnter, StubExit: in.StubExit, StubCount: in.StubCount,
		StubExitFlags: in.StubExitFlags, StubCountFlags: in.StubCountFlags,
		GSCurrent: int64(in.GSCurrent), GSRootTask: int64(in.GSRootTask), TaskTgid: int64(in.TaskTgid),
		MaxBlob: int(in.SlotSize),
	}
}

// backendOf names the splice backend: it serves everything it accepts.
func (s *moduleSession) backendOf(instrument.Spec) instrument.Backend { return instrument.Splice }

// syscalls returns the running kernel's syscall table, nil where it could
// not be read. Syscall roots need nothing else here: the splice backend
// times __x64_sys_* functions at their entry like any other.
func (s *moduleSession) syscalls() *SyscallTable {
	s.syscallsOnce.Do(func() {
		s.sysTable, _ = ReadSyscallTable(s.graph.Symbols(), s.graph.Text())
	})
	return s.sysTable
}

// overhead reports the time the module's handlers have taken since the
// session began, summed over CPUs: what its overhead kill switch measures.
// The counters' inline fast path (one per-CPU increment in the root
// context) is not timed; Runs is 0.
func (s *moduleSession) overhead() (Overhead, error) {
	st, err := s.dev.Status()
	if err != nil {
		return Overhead{}, err
	}
	return Overhead{RunNs: st.HandlerNs, Enabled: true}, nil
}

// check reports whether spec could be inserted, without touching the
// kernel.
func (s *moduleSession) check(spec instrument.Spec) error {
	_, err := s.plan(spec)
	return err
}

// plan checks spec: its window, and a timer's or exit counter's return
// windows.
func (s *moduleSession) plan(spec instrument.Spec) (*patch.Window, error) {
	if err := checkShape(instrument.Splice, spec); err != nil {
		return nil, err
	}
	w, err := s.cat.window(spec)
	if err != nil {
		return nil, err
	}
	if spec.Kind == instrument.Timer || spec.Kind == instrument.ExitCount {
		if _, err := s.cat.exits(spec); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (s *moduleSession) alive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return instrument.ErrClosed
	}
	return s.beat.err()
}

// release withdraws every instrument (closing the module's device does)
// and unloads the module if the session loaded it.
func (s *moduleSession) release() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	var errs []error
	if s.beat != nil {
		s.beat.stopBeating()
	}
	if s.dev != nil {
		errs = append(errs, s.dev.Close())
	}
	if s.loaded {
		errs = append(errs, unloadSplicer())
	}
	return errors.Join(errs...)
}

// unloadSplicer unloads the module, retrying for a while: the kernel
// refuses while the module's refcount is up, which is for good once a site
// changed underneath; briefly while another unload or a load is under way.
func unloadSplicer() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := splicer.Unload()
		if err == nil || !errors.Is(err, kernel.EBUSY) && !errors.Is(err, syscall.EAGAIN) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s stays loaded (a site changed underneath it? see the kernel log): %w", splicer.ModuleName, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
