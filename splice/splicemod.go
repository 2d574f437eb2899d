package splice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// SpliceOptions configure OpenSplice.
type SpliceOptions struct {
	// Graph is the running kernel's call graph; nil opens it (and Close
	// closes it).
	Graph *callgraph.Graph
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

// SpliceModuleEnv names a built module for OpenSplice to load.
const SpliceModuleEnv = splicer.ModuleEnv

// SpliceSession is the splice backend: autoprof's own kernel module
// (kmod/splicer) splices a jump to a trampoline into the kernel's text for
// each instrument. A counter at the root of the calling-context tree costs
// one per-CPU increment; timers and nested counters call into the module,
// which keeps the same measurement model as the BPF backends (per-thread
// shadow stacks, interned contexts, off-CPU time from the scheduler
// tracepoint, log2 histograms, misses).
//
// Every splice belongs to the session's open file of the module's control
// file: Close, or the death of the process, withdraws them all; so do the
// module's dead-man switch when the heartbeat stops, and rmmod. It is safe
// for concurrent use.
type SpliceSession struct {
	graph    *callgraph.Graph
	ownGraph bool
	cat      *spliceCatalogue
	dev      *splicer.Device
	layout   patch.Layout
	loaded   bool // this session loaded the module
	beat     *spliceBeat
	cleanup  runtime.Cleanup

	op sync.Mutex // serializes changes of sites

	syscallsOnce sync.Once
	syscalls     *SyscallTable

	mu     sync.Mutex
	closed bool
	specs  map[uint32]*splicedInst // every instrument, by module id
	sites  map[uint64]*spliceSite  // live sites, by address
	kname  map[uint64]string       // kallsyms' name of a function, where it differs
	maxID  uint32
}

// splicedInst is one instrument of a SpliceSession.
type splicedInst struct {
	s      *SpliceSession
	id     uint32
	spec   Spec
	addr   uint64 // its site
	closed bool   // under s.mu
}

// OpenSplice loads the module where needed and opens a session.
func OpenSplice(ctx context.Context, opts SpliceOptions) (*SpliceSession, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := newSpliceSession(opts.Graph)
	if s.graph == nil {
		g, err := callgraph.OpenLive()
		if err != nil {
			return nil, fmt.Errorf("opening the kernel's call graph: %w", err)
		}
		s.graph, s.ownGraph = g, true
	}
	if err := s.open(ctx, opts); err != nil {
		s.release()
		return nil, err
	}
	// A session dropped without Close: stop its heartbeat, so that the
	// dead-man switch can fire, and close the device, which withdraws
	// everything. Neither the heartbeat nor this holds s.
	s.cleanup = runtime.AddCleanup(s, func(b *spliceBeat) { b.stopBeating(); b.dev.Close() }, s.beat)
	return s, nil
}

func newSpliceSession(g *callgraph.Graph) *SpliceSession {
	return &SpliceSession{graph: g, specs: map[uint32]*splicedInst{}, sites: map[uint64]*spliceSite{}, kname: map[uint64]string{}}
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

func (s *SpliceSession) open(ctx context.Context, opts SpliceOptions) error {
	var err error
	if s.cat, err = newSpliceCatalogue(s.graph, opts.Image); err != nil {
		return err
	}
	return s.connect(ctx, opts)
}

// connect loads the module where needed and starts the session.
func (s *SpliceSession) connect(ctx context.Context, opts SpliceOptions) error {
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
	if err := s.dev.Hello(id, deadman); err != nil {
		return err
	}
	s.layout = layoutOf(s.dev.Info())
	s.beat = startBeating(s.dev, deadman/4)
	return nil
}

// load loads the module unless it is loaded.
func (s *SpliceSession) load(ctx context.Context, id splicer.Identity, opts SpliceOptions) error {
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
			return fmt.Errorf("%w: %w", ErrNotSupported, err)
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

func layoutOf(in splicer.Info) patch.Layout {
	return patch.Layout{
		PoolStart: in.PoolStart, PoolEnd: in.PoolEnd,
		StubEnter: in.StubEnter, StubCount: in.StubCount,
		GSCurrent: int64(in.GSCurrent), GSRootTask: int64(in.GSRootTask), TaskTgid: int64(in.TaskTgid),
		MaxBlob: splicer.MaxBlob,
	}
}

// Backend returns "splice".
func (s *SpliceSession) Backend() string { return "splice" }

// Graph returns the session's call graph.
func (s *SpliceSession) Graph() *callgraph.Graph { return s.graph }

// Syscalls returns the running kernel's syscall table, nil where it could
// not be read. Syscall roots need nothing else here: the splice backend
// times __x64_sys_* functions at their entry like any other.
func (s *SpliceSession) Syscalls() *SyscallTable {
	s.syscallsOnce.Do(func() {
		s.syscalls, _ = ReadSyscallTable(s.graph.Symbols(), s.graph.Text())
	})
	return s.syscalls
}

// Overhead reports no kernel-measured run time: splice instruments run no
// BPF program, and timing their own handlers would cost as much as they
// do. Enabled is false.
func (s *SpliceSession) Overhead() (Overhead, error) {
	if err := s.alive(); err != nil {
		return Overhead{}, err
	}
	return Overhead{}, nil
}

// Check reports whether spec could be inserted, without touching the
// kernel.
func (s *SpliceSession) Check(spec Spec) error {
	_, err := s.plan(spec)
	return err
}

// plan checks spec and encodes its trampoline.
func (s *SpliceSession) plan(spec Spec) (*patch.Blob, error) {
	if err := checkSpliceShape(spec); err != nil {
		return nil, err
	}
	w, err := s.cat.window(spec)
	if err != nil {
		return nil, err
	}
	if err := s.cat.returns(spec); err != nil {
		return nil, err
	}
	b, err := patch.Build(w, []patch.Instrument{{Kind: patch.Kind(spec.Kind), PIDs: pids32(spec.Target.PIDs)}}, s.layout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", spec, ErrUnsafe, err)
	}
	return b, nil
}

// checkSpliceShape refuses what the splice backend cannot do anywhere.
func checkSpliceShape(spec Spec) error {
	if spec.Func == "" {
		return refuse(spec, ErrNotSupported, "no function")
	}
	switch spec.Kind {
	case Count:
	case Timer, ExitCount:
		if spec.Offset != 0 {
			return refuse(spec, ErrNotSupported, "a %s needs a function entry, not an offset", spec.Kind)
		}
	case Targets:
		return refuse(spec, ErrNotSupported, "the splice backend does not capture indirect call targets (use kprobe)")
	default:
		return refuse(spec, ErrNotSupported, "unknown instrument kind")
	}
	if spec.Target.Cgroup != "" {
		return refuse(spec, ErrNotSupported, "the splice backend filters by process, not by cgroup")
	}
	if len(spec.Target.PIDs) > splicer.MaxPIDs {
		return refuse(spec, ErrNotSupported, "the splice backend filters on at most %d processes", splicer.MaxPIDs)
	}
	for _, p := range spec.Target.PIDs {
		if p <= 0 {
			return refuse(spec, ErrNotSupported, "target pid %d: not a process id", p)
		}
	}
	return nil
}

func pids32(p []int) []int32 {
	out := make([]int32, len(p))
	for i, v := range p {
		out[i] = int32(v)
	}
	return out
}

// Insert checks spec and makes it live.
func (s *SpliceSession) Insert(ctx context.Context, spec Spec) (Instrument, error) {
	ins, err := s.InsertAll(ctx, []Spec{spec})
	if err != nil {
		return nil, err
	}
	return ins[0], nil
}

// spliceSite is a spliced window and the live instruments its trampoline
// runs, in order (see siteOrder).
type spliceSite struct {
	w     *patch.Window
	insts []*splicedInst
}

// siteOrder orders a site's instruments: timers, then counters, then exit
// counters, so that the function's own timer frame is open for both
// counts, as for the counters of its other blocks (see patch.Build).
func siteOrder(k Kind) int {
	switch k {
	case Timer:
		return 0
	case Count:
		return 1
	}
	return 2
}

// siteChange is a site as a batch would leave it.
type siteChange struct {
	addr  uint64
	w     *patch.Window
	keep  []*splicedInst // live instruments that stay
	added []Spec         // new instruments
	index []int          // added[i] is specs[index[i]]
	req   splicer.Splice
}

// InsertAll inserts specs in one batch: the module waits for one RCU-tasks
// grace period for all of them, where Insert waits for one each. The
// instrument of a spec that failed is nil, and the error joins every
// failure. Up to splicer.SiteInsts instruments share one place.
func (s *SpliceSession) InsertAll(ctx context.Context, specs []Spec) ([]Instrument, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.alive(); err != nil {
		return nil, err
	}
	s.op.Lock()
	defer s.op.Unlock()
	out := make([]Instrument, len(specs))
	var errs []error
	changes := map[uint64]*siteChange{}
	var order []uint64
	for i, spec := range specs {
		c, err := s.stage(changes, spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(c.added) == 0 {
			order = append(order, c.addr)
		}
		c.added = append(c.added, spec)
		c.index = append(c.index, i)
	}
	var batch []splicer.Splice
	var staged []*siteChange
	for _, addr := range order {
		c := changes[addr]
		if err := s.request(c); err != nil {
			errs = append(errs, err)
			continue
		}
		batch = append(batch, c.req)
		staged = append(staged, c)
	}
	if len(batch) > 0 {
		if taken, err := s.insertBatch(batch); !taken {
			return nil, err
		} else if err != nil {
			errs = append(errs, err) // the retried splices are refused, the others are live
		}
	}
	for k, c := range staged {
		c.req = batch[k]
		if c.req.Err != 0 {
			for _, spec := range c.added {
				errs = append(errs, spliceErr(spec, c.req))
			}
			continue
		}
		s.commit(c, out)
	}
	return out, errors.Join(errs...)
}

// stage adds spec to the change of its site.
func (s *SpliceSession) stage(changes map[uint64]*siteChange, spec Spec) (*siteChange, error) {
	if err := checkSpliceShape(spec); err != nil {
		return nil, err
	}
	w, err := s.cat.window(spec)
	if err != nil {
		return nil, err
	}
	if err := s.cat.returns(spec); err != nil {
		return nil, err
	}
	addr := w.Addr()
	c := changes[addr]
	if c == nil {
		c = &siteChange{addr: addr, w: w}
		s.mu.Lock()
		site := s.sites[addr]
		s.mu.Unlock()
		if site != nil {
			c.w, c.keep = site.w, site.insts
		}
		if other := s.overlapping(w, addr); other != "" {
			return nil, refuse(spec, ErrUnsafe, "its window overlaps the one of %s", other)
		}
		changes[addr] = c
	}
	if w.Entry && !c.w.Entry {
		if len(c.keep) > 0 {
			return nil, refuse(spec, ErrNotSupported, "a block counter holds the same place, spliced without the entry's guarantees")
		}
		c.w = w
	}
	if len(c.keep)+len(c.added) >= splicer.SiteInsts {
		return nil, refuse(spec, ErrNotSupported, "%d instruments hold this place already, the most one place takes", splicer.SiteInsts)
	}
	return c, nil
}

// overlapping names the instrument of another live site that w overlaps.
func (s *SpliceSession) overlapping(w *patch.Window, addr uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, site := range s.sites {
		if a != addr && a < addr+uint64(w.Len()) && addr < a+uint64(site.w.Len()) {
			return site.insts[0].spec.String()
		}
	}
	return ""
}

// request encodes the trampoline of a site change and the module's request.
func (s *SpliceSession) request(c *siteChange) error {
	type member struct {
		spec Spec
		id   uint32
	}
	var all []member
	first := Spec{Point: Point{Func: c.w.Func.Name, Offset: uint64(c.w.Off)}}
	if len(c.added) > 0 {
		first = c.added[0]
	}
	for _, in := range c.keep {
		all = append(all, member{in.spec, in.id})
	}
	for _, spec := range c.added {
		all = append(all, member{spec, 0})
	}
	sort.SliceStable(all, func(i, j int) bool { return siteOrder(all[i].spec.Kind) < siteOrder(all[j].spec.Kind) })
	insts := make([]patch.Instrument, len(all))
	for i, m := range all {
		insts[i] = patch.Instrument{Kind: patch.Kind(m.spec.Kind), PIDs: pids32(m.spec.Target.PIDs)}
	}
	b, err := patch.Build(c.w, insts, s.layout)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", first, ErrUnsafe, err)
	}
	if len(b.Relocs) > splicer.MaxRelocs || len(b.Code) > splicer.MaxBlob {
		return refuse(first, ErrNotSupported, "a trampoline of %d bytes and %d relocations does not fit the module's", len(b.Code), len(b.Relocs))
	}
	sp := &c.req
	sp.Addr, sp.Func = c.w.Addr(), c.w.Func.Addr
	s.mu.Lock()
	name, ok := s.kname[c.w.Func.Addr]
	s.mu.Unlock()
	if !ok {
		name = c.w.Func.Name
	}
	if err := sp.SetName(name); err != nil {
		return refuse(first, ErrNotSupported, "%w", err)
	}
	sp.Len, sp.NInsns = uint8(c.w.Len()), uint8(len(c.w.Insts))
	copy(sp.Orig[:], c.w.Orig())
	sp.BlobLen = uint16(copy(sp.Blob[:], b.Code))
	for i, r := range b.Relocs {
		sp.Relocs[i] = splicer.Reloc{Off: r.Off, End: r.End, Kind: uint32(r.Kind), Target: r.Target}
	}
	sp.NRelocs = uint32(len(b.Relocs))
	if len(c.keep) > 0 {
		sp.Flags = splicer.FlagReplace
	}
	sp.NInst = uint32(len(all))
	for i, m := range all {
		r := &sp.Insts[i]
		r.Kind, r.ID, r.NPIDs = splicer.Kind(m.spec.Kind), m.id, uint32(len(m.spec.Target.PIDs))
		for k, p := range m.spec.Target.PIDs {
			r.PIDs[k] = int32(p)
		}
	}
	return nil
}

// commit records a site the module made live, and its new instruments.
func (s *SpliceSession) commit(c *siteChange, out []Instrument) {
	site := &spliceSite{w: c.w}
	byID := map[uint32]*splicedInst{}
	for _, in := range c.keep {
		byID[in.id] = in
	}
	taken := make([]bool, len(c.added))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := uint32(0); i < c.req.NInst; i++ {
		r := c.req.Insts[i]
		in := byID[r.ID]
		if in == nil {
			// New ones of a kind come back in the order they were added
			// (request's sort is stable).
			for k, spec := range c.added {
				if !taken[k] && Kind(r.Kind) == spec.Kind {
					taken[k] = true
					in = &splicedInst{s: s, id: r.ID, spec: spec, addr: c.addr}
					out[c.index[k]] = in
					break
				}
			}
		}
		if in == nil {
			continue
		}
		s.specs[in.id] = in
		s.maxID = max(s.maxID, in.id)
		site.insts = append(site.insts, in)
	}
	s.sites[c.addr] = site
}

// insertBatch hands the batch to the module; a splice refused because
// kallsyms names its function by an alias is retried with that name.
// taken says whether the module took the batch: then each splice's Err
// says whether it is live, even when err reports that the retry failed
// (the retried splices keep their first refusal).
func (s *SpliceSession) insertBatch(batch []splicer.Splice) (taken bool, err error) {
	if err := s.cat.refreshKprobes(); err != nil {
		return false, err
	}
	if _, err := s.dev.Insert(batch); err != nil {
		return false, err
	}
	var retry []int
	for i := range batch {
		sp := &batch[i]
		if sp.Err != -int32(syscall.ENOENT) || !s.isAlias(sp.Func, sp.FoundName()) {
			continue
		}
		s.mu.Lock()
		s.kname[sp.Func] = sp.FoundName()
		s.mu.Unlock()
		sp.SetName(sp.FoundName())
		retry = append(retry, i)
	}
	if len(retry) == 0 {
		return true, nil
	}
	again := make([]splicer.Splice, len(retry))
	for k, i := range retry {
		again[k] = batch[i]
		for j := range again[k].Insts {
			if again[k].Insts[j].ID != 0 && batch[i].Flags&splicer.FlagReplace == 0 {
				again[k].Insts[j].ID = 0 // ids handed out by the refused try are not ours
			}
		}
	}
	if _, err := s.dev.Insert(again); err != nil {
		return true, fmt.Errorf("splicing again under kallsyms' names: %w", err)
	}
	for k, i := range retry {
		batch[i] = again[k]
	}
	return true, nil
}

// isAlias reports whether name is a symbol at addr.
func (s *SpliceSession) isAlias(addr uint64, name string) bool {
	for _, a := range s.graph.Symbols().Aliases(addr) {
		if a.Name == name {
			return true
		}
	}
	return false
}

// spliceErr explains the module's refusal of a splice.
func spliceErr(spec Spec, sp splicer.Splice) error {
	errno := syscall.Errno(-sp.Err)
	switch errno {
	case syscall.EBUSY:
		return fmt.Errorf("%s: %w: the bytes at the site are not the ones analysed, or another splice holds them (nothing written): %w", spec, ErrUnsafe, errno)
	case syscall.EPERM:
		return fmt.Errorf("%s: %w: the module refuses the site (outside core kernel text, or its function has exception-table entries): %w", spec, ErrUnsafe, errno)
	case syscall.ENOENT, syscall.ERANGE:
		return fmt.Errorf("%s: %w: kallsyms does not place the window inside %s (found %q): %w", spec, ErrUnsafe, spec.Func, sp.FoundName(), errno)
	case syscall.ENOSPC:
		return fmt.Errorf("%s: %w: the module's trampoline slots or instrument ids are all used: %w", spec, ErrNotSupported, errno)
	}
	return fmt.Errorf("%s: splicing: %w", spec, errno)
}

func (s *SpliceSession) alive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.beat.err()
}

// Spec returns the instrument's spec.
func (in *splicedInst) Spec() Spec { return in.spec }

// Close withdraws the instrument: the site is spliced out, or, where
// other instruments share it, its trampoline is replaced by one without
// this instrument. A second call returns ErrClosed.
func (in *splicedInst) Close() error {
	s := in.s
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	if in.closed || s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	in.closed = true
	site := s.sites[in.addr]
	s.mu.Unlock()
	if site == nil {
		return nil // withdrawn with its site already (the dead-man switch, rmmod)
	}
	var keep []*splicedInst
	for _, o := range site.insts {
		if o != in {
			keep = append(keep, o)
		}
	}
	if len(keep) == 0 {
		if _, err := s.dev.Withdraw([]uint64{in.addr}); err != nil && !errors.Is(err, splicer.ErrRemoved) {
			return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, err))
		}
		s.mu.Lock()
		delete(s.sites, in.addr)
		s.mu.Unlock()
		return nil
	}
	c := &siteChange{addr: in.addr, w: site.w, keep: keep}
	if err := s.request(c); err != nil {
		return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, err))
	}
	batch := []splicer.Splice{c.req}
	if _, err := s.insertBatch(batch); errors.Is(err, splicer.ErrRemoved) {
		return nil // the module withdrew everything as it went
	} else if err != nil {
		return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, err))
	}
	if batch[0].Err != 0 {
		return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, spliceErr(in.spec, batch[0])))
	}
	c.req = batch[0]
	s.commit(c, nil)
	return nil
}

// stillLive undoes Close's mark after the module refused to withdraw the
// instrument, which stays live and in its site (a later Close may try
// again; the session's end withdraws it in any case), and returns err.
func (in *splicedInst) stillLive(err error) error {
	in.s.mu.Lock()
	in.closed = false
	in.s.mu.Unlock()
	return err
}

// Close withdraws every instrument (closing the module's device does) and
// unloads the module if the session loaded it. A second call returns
// ErrClosed.
func (s *SpliceSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.cleanup.Stop()
	return s.release()
}

func (s *SpliceSession) release() error {
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
	if s.ownGraph {
		s.graph.Close()
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

var _ Instrumenter = (*SpliceSession)(nil)
