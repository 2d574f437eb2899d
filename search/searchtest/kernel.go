// Package searchtest simulates a kernel for tests of the search
// controller: a call tree with known costs that is at once a
// instrument.Instrumenter, a search.Graph, a search.Sampler, a
// search.Population and a search.OverheadMeter. Time is read from the
// time package, so that tests run it under testing/synctest with a fake
// clock.
package searchtest

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// Func is a simulated kernel function.
type Func struct {
	Name string
	// OnNs and OffNs are the function's own cost per call, on CPU and
	// blocked, callees excluded.
	OnNs, OffNs float64
	Calls       []Call
	Blocks      []Block
	// NoTrace makes Check refuse the function (a notrace or blacklisted
	// function).
	NoTrace bool
	// SystemRate is how often other tasks call the function, per second:
	// its instruments cost there too, though their filter drops the hits.
	SystemRate float64
	// Frameless makes the function reach its callees by jumps (tail
	// calls): its frame is in no stack sample taken in them, only in
	// those of its own code.
	Frameless bool
	// JumpsThroughPointer makes its direct calls jumps through a pointer
	// (ops->store): the static call graph names none of them.
	JumpsThroughPointer bool
}

// Call is a call from one function to another, N times per call of the
// caller; Site is the offset of an indirect call site (0 for a direct
// call).
type Call struct {
	Func string
	N    uint64
	Site uint64
}

// Block is a basic block at Off, executed PerCall times per call.
type Block struct {
	Off     uint64
	PerCall uint64
}

// Root is an operation the target performs Rate times per second (a
// syscall); Entry are the frames that lead to it in stacks.
type Root struct {
	Func  string
	Rate  float64
	Entry []string
	// From is when, after Start, the target begins to make these calls
	// (a thread or a child that starts later).
	From time.Duration
}

// Kernel is the simulated kernel. Set its fields, then call Start.
type Kernel struct {
	Funcs map[string]*Func
	Roots []Root
	// TargetThreads is the target's thread count (1 by default).
	TargetThreads int
	CPUs          int
	// CostPerHitNs is what one instrument hit really costs: Overhead
	// reports it, and with ProbeEffect the kernel runs that much longer
	// for every hit, where real instruments cost: a timer's entry and
	// exit in its function's caller (around the timed window), a block
	// counter or a target recorder in the function that holds it.
	CostPerHitNs float64
	ProbeEffect  bool
	// InsideNs is the part of a timer's CostPerHitNs that, with
	// ProbeEffect, falls inside its own window (between its clock
	// reads); Calibrate reports it.
	InsideNs float64
	// CalibrationSpeed is how many times faster than during the hunt the
	// machine ran the instruments while Calibrate measured them (0: as
	// fast): Calibrate reports the costs divided by it, as a calibration
	// on an idle machine does for a hunt on a busy one.
	CalibrationSpeed float64
	// CalibrationOverstates multiplies the cost per hit Calibrate reports
	// (not the programs' run time, RunShare): a calibration whose
	// machine was busy with something else while it timed the hits, as
	// the run time the kernel measures is not (0: 1).
	CalibrationOverstates float64
	// RunShare is the part of a hit's cost that its programs' run time
	// is, as the kernel's BPF run-time statistics measure it (0: all of
	// it). Where it is set, Overhead reports that part only and Calibrate
	// reports the run time per hit too (search.BPFCostKey).
	RunShare float64
	// Noise is the relative jitter of every cost, drawn per function per
	// reading.
	Noise float64
	Seed  uint64
	// Offsets allows counters at basic-block offsets (like kprobes).
	Offsets bool
	// Busy makes Insert answer instrument.ErrBusy that many times for a
	// spec (by its String) before it takes it.
	Busy map[string]int
	// OnlyRoots refuses every function but the roots with
	// ErrNotSupported (a kernel with tracepoints and no function
	// instruments).
	OnlyRoots bool
	// NothingTimed refuses every instrument with ErrNotSupported (a
	// kernel where only stack samples work).
	NothingTimed bool
	// NoTargets refuses indirect-call target recorders with
	// ErrNotSupported (the splice backend).
	NoTargets bool
	// NoCallSites refuses call-site timers with ErrNotSupported.
	NoCallSites bool
	// NotSupported names functions whose instruments are refused with
	// ErrNotSupported (fexit cannot attach to some functions).
	NotSupported map[string]bool
	// SamplePeriod is the sampler's period (1 ms by default).
	SamplePeriod time.Duration
	// SampleSkew makes the sampler's rounds alternately overstate and
	// understate the time by this fraction, as real off-CPU samples do: a
	// wait is charged in the round it ends, not in the rounds it spanned.
	SampleSkew  float64
	BackendName instrument.Backend

	mu      sync.Mutex
	rng     *rand.Rand
	start   time.Time
	last    time.Time
	live    map[string]*inst
	ctxs    map[string]*ctxAcc
	targets map[string]*instrument.TargetReading
	allHits float64 // every instrument's, for Overhead
	samples int     // Sample calls so far
	// done is each root's operations so far, fractional: with
	// ProbeEffect every op takes longer, while the wait between ops does
	// not, so the thread makes fewer of them.
	done     map[string]float64
	inserted int
	maxLive  int
	jitter   map[string]float64
	// hits counts every run of each instrument, by spec: the target's
	// hits and, for entry timers, other tasks' (SystemRate).
	hits map[string]float64
}

type ctxAcc struct {
	path                         instrument.Path
	kind                         instrument.Kind
	calls                        uint64
	incl, excl, inclOff, exclOff float64
	hist                         [instrument.HistBuckets]uint64
}

type inst struct {
	k      *Kernel
	spec   instrument.Spec
	closed bool
}

func (i *inst) Spec() instrument.Spec { return i.spec }

func (i *inst) Close() error {
	i.k.mu.Lock()
	defer i.k.mu.Unlock()
	if i.closed {
		return instrument.ErrClosed
	}
	i.k.advance(time.Now())
	i.closed = true
	delete(i.k.live, i.spec.String())
	return nil
}

// Start readies the kernel; its operations start now.
func (k *Kernel) Start() *Kernel {
	k.rng = rand.New(rand.NewPCG(k.Seed, 1))
	k.start = time.Now()
	k.last = k.start
	k.live = map[string]*inst{}
	k.ctxs = map[string]*ctxAcc{}
	k.targets = map[string]*instrument.TargetReading{}
	k.done = map[string]float64{}
	k.hits = map[string]float64{}
	if k.CPUs == 0 {
		k.CPUs = 2
	}
	if k.TargetThreads == 0 {
		k.TargetThreads = 1
	}
	if k.SamplePeriod == 0 {
		k.SamplePeriod = time.Millisecond
	}
	if k.BackendName == "" {
		k.BackendName = "fake"
	}
	return k
}

// Backend implements instrument.Instrumenter.
func (k *Kernel) Backend() instrument.Backend { return k.BackendName }

func (k *Kernel) isRoot(fn string) bool {
	for _, r := range k.Roots {
		if r.Func == fn {
			return true
		}
	}
	return false
}

// Check implements instrument.Instrumenter.
func (k *Kernel) Check(spec instrument.Spec) error {
	f := k.Funcs[spec.Func]
	switch {
	case f == nil:
		return fmt.Errorf("%s: unknown function: %w", spec, instrument.ErrUnsafe)
	case f.NoTrace:
		return fmt.Errorf("%s: notrace: %w", spec, instrument.ErrUnsafe)
	case k.NothingTimed:
		return fmt.Errorf("%s: no instruments: %w", spec, instrument.ErrNotSupported)
	case k.OnlyRoots && !k.isRoot(spec.Func):
		return fmt.Errorf("%s: no function instruments: %w", spec, instrument.ErrNotSupported)
	case k.NotSupported[spec.Func]:
		return fmt.Errorf("%s: this function cannot be instrumented: %w", spec, instrument.ErrNotSupported)
	}
	switch spec.Kind {
	case instrument.Timer:
		if spec.IsCallSite() {
			return k.checkCallSite(f, spec)
		}
		if spec.Offset != 0 {
			return fmt.Errorf("%s: a timer needs a function entry: %w", spec, instrument.ErrUnsafe)
		}
	case instrument.Count:
		if spec.Offset == 0 {
			return nil
		}
		if !k.Offsets {
			return fmt.Errorf("%s: offsets: %w", spec, instrument.ErrNotSupported)
		}
		for _, b := range f.Blocks {
			if b.Off == spec.Offset {
				return nil
			}
		}
		return fmt.Errorf("%s: not a block start: %w", spec, instrument.ErrUnsafe)
	case instrument.Targets:
		if k.NoTargets {
			return fmt.Errorf("%s: no target capture: %w", spec, instrument.ErrNotSupported)
		}
		for _, c := range f.Calls {
			if c.Site != 0 && c.Site == spec.Offset {
				return nil
			}
		}
		return fmt.Errorf("%s: not an indirect call site: %w", spec, instrument.ErrUnsafe)
	default:
		return fmt.Errorf("%s: %w", spec, instrument.ErrNotSupported)
	}
	return nil
}

// checkCallSite accepts a call-site timer on a direct call of f to the
// callee at the spec's offset, where offsets can be instrumented.
func (k *Kernel) checkCallSite(f *Func, spec instrument.Spec) error {
	if !k.Offsets || k.NoCallSites {
		return fmt.Errorf("%s: call sites: %w", spec, instrument.ErrNotSupported)
	}
	for j, c := range f.Calls {
		if c.Site == 0 && CallOff(j) == spec.Offset && c.Func == spec.Callee {
			return nil
		}
	}
	return fmt.Errorf("%s: not a call of %s: %w", spec, spec.Callee, instrument.ErrUnsafe)
}

// Insert implements instrument.Instrumenter.
func (k *Kernel) Insert(_ context.Context, spec instrument.Spec) (instrument.Instrument, error) {
	if err := k.Check(spec); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	key := spec.String()
	if k.Busy[key] > 0 {
		k.Busy[key]--
		return nil, fmt.Errorf("%s: no slot free: %w", key, instrument.ErrBusy)
	}
	if k.live[key] != nil {
		return nil, fmt.Errorf("%s: already live", key)
	}
	k.advance(time.Now())
	i := &inst{k: k, spec: spec}
	k.live[key] = i
	k.inserted++
	k.maxLive = max(k.maxLive, len(k.live))
	return i, nil
}

// Read implements instrument.Instrumenter.
func (k *Kernel) Read() (*instrument.Reading, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	k.advance(now)
	r := &instrument.Reading{At: now}
	keys := make([]string, 0, len(k.ctxs))
	for key := range k.ctxs {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		a := k.ctxs[key]
		r.Contexts = append(r.Contexts, instrument.ContextReading{
			Path: a.path, Kind: a.kind, Calls: a.calls,
			InclNs: uint64(a.incl), ExclNs: uint64(a.excl),
			InclOffCPUNs: uint64(a.inclOff), ExclOffCPUNs: uint64(a.exclOff),
			Hist: a.hist,
		})
	}
	keys = keys[:0]
	for key := range k.targets {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		r.Targets = append(r.Targets, *k.targets[key])
	}
	r.Hits = map[string]uint64{}
	for key, n := range k.hits {
		r.Hits[key] = uint64(n)
	}
	return r, nil
}

// Close implements instrument.Instrumenter.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.live = map[string]*inst{}
	return nil
}

// Overhead implements search.OverheadMeter: hits times the cost per hit,
// the other tasks' calls of timed functions included.
func (k *Kernel) Overhead() (time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.advance(time.Now())
	return time.Duration(k.allHits * k.CostPerHitNs * k.runShare()), nil
}

func (k *Kernel) runShare() float64 {
	if k.RunShare == 0 {
		return 1
	}
	return k.RunShare
}

// Calibrate implements search.Calibrator: the kernel knows its cost, at
// CalibrationSpeed.
func (k *Kernel) Calibrate(context.Context, instrument.Instrumenter) (map[string]float64, error) {
	speed := k.CalibrationSpeed
	if speed == 0 {
		speed = 1
	}
	c := map[string]float64{string(k.BackendName): k.CostPerHitNs / speed * max(k.CalibrationOverstates, 1)}
	if k.InsideNs > 0 {
		c[string(k.BackendName)+":inside"] = k.InsideNs / speed
	}
	if k.RunShare > 0 {
		c[search.BPFCostKey(string(k.BackendName))] = k.CostPerHitNs * k.RunShare / speed
	}
	return c, nil
}

// Threads implements search.Population.
func (k *Kernel) Threads() (int, error) { return k.TargetThreads, nil }

// Live returns the number of live instruments.
func (k *Kernel) Live() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.live)
}

// Inserted returns how many instruments were ever inserted, and the most
// live at once.
func (k *Kernel) Inserted() (total, maxLive int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.inserted, k.maxLive
}

// Ops returns the operations of root i that start in (from, to].
func (k *Kernel) Ops(i int, from, to time.Time) uint64 { return k.ops(k.Roots[i], from, to) }

// ops returns the operations of a root that start in (from, to].
func (k *Kernel) ops(r Root, from, to time.Time) uint64 {
	a := math.Floor(max(from.Sub(k.start)-r.From, 0).Seconds() * r.Rate)
	b := math.Floor(max(to.Sub(k.start)-r.From, 0).Seconds() * r.Rate)
	return uint64(b - a)
}

// activeFor is how long, of the d up to now, root r has been making calls.
func (k *Kernel) activeFor(r Root, now time.Time, d time.Duration) time.Duration {
	return min(d, max(now.Sub(k.start)-r.From, 0))
}

// advance runs the operations up to now with the instruments live now.
func (k *Kernel) advance(now time.Time) {
	if !now.After(k.last) {
		return
	}
	dt := now.Sub(k.last).Seconds()
	k.jitter = map[string]float64{}
	for _, r := range k.Roots {
		n := k.ops(r, k.last, now)
		if k.ProbeEffect {
			// An op's time now (the walk measures nothing), and the
			// wait after each op, which instruments do not stretch.
			incl, _, _, _ := k.walk(r.Func, nil, 0, 0)
			cycle := 1e9 / r.Rate
			s := cycle / (incl + max(cycle-k.InclNs(r.Func), 0))
			before := k.done[r.Func]
			k.done[r.Func] = before + dt*r.Rate*s
			n = uint64(math.Floor(k.done[r.Func]) - math.Floor(before))
		}
		if n > 0 {
			k.walk(r.Func, nil, n, 0)
		}
	}
	for key, i := range k.live {
		if f := k.Funcs[i.spec.Func]; f != nil && f.SystemRate > 0 && i.spec.Kind == instrument.Timer && !i.spec.IsCallSite() {
			k.hit(key, f.SystemRate*dt)
		}
	}
	k.last = now
}

// hit counts n hits of the instrument of spec key: what it costs.
func (k *Kernel) hit(key string, n float64) {
	k.hits[key] += n
	k.allHits += n
}

// cost returns f's costs with this reading's jitter.
func (k *Kernel) cost(f *Func) (on, off float64) {
	j, ok := k.jitter[f.Name]
	if !ok {
		j = 1 + k.Noise*(2*k.rng.Float64()-1)
		k.jitter[f.Name] = j
	}
	return f.OnNs * j, f.OffNs * j
}

// walk runs m calls of fn in the calling context ctx (the timed frames
// above it) and returns one call's inclusive wall and off-CPU time, and
// the part of each that timed frames (fn itself, or its nearest timed
// descendants) account for.
func (k *Kernel) walk(fn string, ctx instrument.Path, m uint64, depth int) (incl, inclOff, timed, timedOff float64) {
	f := k.Funcs[fn]
	if f == nil || depth > 64 {
		return 0, 0, 0, 0
	}
	on, off := k.cost(f)
	probe := 0.0 // what an instrument hit costs
	if k.ProbeEffect {
		probe = k.CostPerHitNs
	}
	timer := k.live[instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer}.String()]
	my := ctx
	around := 0.0 // what f's own timer costs its caller per call
	if timer != nil {
		my = extend(ctx, instrument.Point{Func: fn})
		inside := min(k.InsideNs, probe)
		on += inside
		around = probe - inside
	}
	incl, inclOff = on+off, off
	var below, belowOff float64
	for j, c := range f.Calls {
		n := float64(c.N)
		if c.Site != 0 && k.target(my, f, c, m) {
			incl += n * probe
		}
		site := instrument.Point{Func: fn, Offset: CallOff(j), Callee: c.Func}
		siteKey := instrument.Spec{Point: site, Kind: instrument.Timer}.String()
		cctx := my
		timedSite := c.Site == 0 && k.live[siteKey] != nil
		if timedSite {
			cctx = extend(my, site)
		}
		ci, cio, ct, cto := k.walk(c.Func, cctx, m*c.N, depth+1)
		if timedSite {
			// The call-site timer: a frame around the call, its
			// probes costing what a timer's do.
			inside := min(k.InsideNs, probe)
			fi := ci + inside
			if cm := m * c.N; cm > 0 {
				k.frame(cctx, cm, fi, cio, ct, cto)
				k.hit(siteKey, float64(cm))
			}
			ci, ct, cto = fi+probe-inside, fi, cio
		}
		incl, inclOff = incl+n*ci, inclOff+n*cio
		below, belowOff = below+n*ct, belowOff+n*cto
	}
	for _, b := range f.Blocks {
		key := instrument.Spec{Point: instrument.Point{Func: fn, Offset: b.Off}, Kind: instrument.Count}.String()
		if k.live[key] != nil {
			incl += float64(b.PerCall) * probe
			if m > 0 {
				a := k.acc(extend(my, instrument.Point{Func: fn, Offset: b.Off}), instrument.Count)
				a.calls += m * b.PerCall
				k.hit(key, float64(m*b.PerCall))
			}
		}
	}
	if timer == nil || m == 0 {
		return incl + around, inclOff, below, belowOff
	}
	k.frame(my, m, incl, inclOff, below, belowOff)
	k.hit(instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer}.String(), float64(m))
	return incl + around, inclOff, incl, inclOff
}

// frame accounts m calls of a timed frame at path: each incl ns (inclOff
// off the CPU), of which below (belowOff) in timed frames under it.
func (k *Kernel) frame(path instrument.Path, m uint64, incl, inclOff, below, belowOff float64) {
	a := k.acc(path, instrument.Timer)
	fm := float64(m)
	a.calls += m
	a.incl += fm * incl
	a.excl += fm * (incl - below)
	a.inclOff += fm * inclOff
	a.exclOff += fm * (inclOff - belowOff)
	a.hist[min(bits.Len64(uint64(incl)), instrument.HistBuckets-1)] += m
}

// CallOff is the offset of the j-th call of a simulated function: what
// Callees reports for a direct call and a call-site timer names.
func CallOff(j int) uint64 { return 0x100 + 0x8*uint64(j) }

// target records the calls of an indirect site where a recorder is live,
// and reports whether one is.
func (k *Kernel) target(ctx instrument.Path, f *Func, c Call, m uint64) bool {
	site := instrument.Point{Func: f.Name, Offset: c.Site}
	if k.live[instrument.Spec{Point: site, Kind: instrument.Targets}.String()] == nil {
		return false
	}
	if m == 0 { // timing only (advance)
		return true
	}
	path := extend(ctx, site)
	key := path.String() + ">" + c.Func
	t := k.targets[key]
	if t == nil {
		t = &instrument.TargetReading{Path: path, Target: addrOf(c.Func), Func: c.Func}
		k.targets[key] = t
	}
	t.Calls += m * c.N
	k.hit(instrument.Spec{Point: site, Kind: instrument.Targets}.String(), float64(m*c.N))
	return true
}

func addrOf(fn string) uint64 {
	var h uint64 = 0xffffffff81000000
	for _, c := range fn {
		h = h*31 + uint64(c)
	}
	return h
}

func (k *Kernel) acc(path instrument.Path, kind instrument.Kind) *ctxAcc {
	key := path.String() + ":" + kind.String()
	a := k.ctxs[key]
	if a == nil {
		a = &ctxAcc{path: path, kind: kind}
		k.ctxs[key] = a
	}
	return a
}

func extend(p instrument.Path, pt instrument.Point) instrument.Path {
	q := make(instrument.Path, len(p)+1)
	copy(q, p)
	q[len(p)] = pt
	return q
}

// Callees implements search.Graph.
func (k *Kernel) Callees(fn string) (search.Callees, error) {
	f := k.Funcs[fn]
	if f == nil {
		return search.Callees{}, fmt.Errorf("%s: unknown function", fn)
	}
	var c search.Callees
	if f.JumpsThroughPointer {
		return c, nil
	}
	seen := map[string]bool{}
	sites := map[uint64]bool{}
	for j, call := range f.Calls {
		switch {
		case call.Site != 0 && !sites[call.Site]:
			sites[call.Site] = true
			c.Indirect = append(c.Indirect, call.Site)
		case call.Site == 0:
			c.Sites = append(c.Sites, search.CallSite{Off: CallOff(j), Func: call.Func})
			if !seen[call.Func] {
				seen[call.Func] = true
				c.Funcs = append(c.Funcs, call.Func)
			}
		}
	}
	return c, nil
}

// Blocking implements search.Blocker: the simulated scheduler is
// schedule and __schedule.
func (k *Kernel) Blocking(fn string) bool { return fn == "schedule" || fn == "__schedule" }

// Blocks implements search.Graph.
func (k *Kernel) Blocks(fn string) ([]uint64, error) {
	f := k.Funcs[fn]
	if f == nil {
		return nil, fmt.Errorf("%s: unknown function", fn)
	}
	var offs []uint64
	for _, b := range f.Blocks {
		offs = append(offs, b.Off)
	}
	return offs, nil
}

// Sample implements search.Sampler: after d, it returns the stacks a
// sampler with period SamplePeriod would see in expectation, rounded to
// whole samples.
func (k *Kernel) Sample(ctx context.Context, _ instrument.Target, d time.Duration) ([]search.Stack, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	weights := map[string]*search.Stack{}
	for _, r := range k.Roots {
		ops := r.Rate * k.activeFor(r, time.Now(), d).Seconds()
		k.stacks(r.Func, append([]string(nil), r.Entry...), ops, weights, 0)
	}
	skew := 1 + k.SampleSkew
	if k.samples%2 == 1 {
		skew = 1 - k.SampleSkew
	}
	k.samples++
	var out []search.Stack
	for _, s := range weights {
		s.Count = uint64(math.Round(skew * s.WeightNs / float64(k.SamplePeriod)))
		if s.Count == 0 {
			continue
		}
		s.WeightNs = float64(s.Count) * float64(k.SamplePeriod)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Frames) < fmt.Sprint(out[j].Frames) })
	return out, nil
}

func (k *Kernel) stacks(fn string, frames []string, calls float64, w map[string]*search.Stack, depth int) {
	f := k.Funcs[fn]
	if f == nil || depth > 64 {
		return
	}
	frames = append(frames, fn)
	add := func(fr []string, on bool, ns float64) {
		if ns <= 0 {
			return
		}
		key := fmt.Sprint(on, fr)
		s := w[key]
		if s == nil {
			s = &search.Stack{Frames: append([]string(nil), fr...), OnCPU: on}
			w[key] = s
		}
		s.WeightNs += ns
	}
	add(frames, true, calls*f.OnNs)
	add(append(append([]string(nil), frames...), "schedule"), false, calls*f.OffNs)
	if f.Frameless {
		frames = frames[:len(frames)-1]
	}
	for _, c := range f.Calls {
		k.stacks(c.Func, frames, calls*float64(c.N), w, depth+1)
	}
}

// SelfShare is the share of the target's time spent in fn's own code
// (callees excluded), over all its calling contexts.
func (k *Kernel) SelfShare(fn string) float64 {
	var s float64
	for _, r := range k.Roots {
		s += r.Rate * k.selfNs(r.Func, fn, 1, 0)
	}
	return s / 1e9 / float64(k.TargetThreads)
}

func (k *Kernel) selfNs(at, fn string, m float64, depth int) float64 {
	f := k.Funcs[at]
	if f == nil || depth > 64 {
		return 0
	}
	var s float64
	if at == fn {
		s = m * (f.OnNs + f.OffNs)
	}
	for _, c := range f.Calls {
		s += k.selfNs(c.Func, fn, m*float64(c.N), depth+1)
	}
	return s
}

// InclNs returns one call's inclusive cost of fn.
func (k *Kernel) InclNs(fn string) float64 {
	f := k.Funcs[fn]
	if f == nil {
		return 0
	}
	s := f.OnNs + f.OffNs
	for _, c := range f.Calls {
		s += float64(c.N) * k.InclNs(c.Func)
	}
	return s
}

// Syscalls lists the kernel's syscall entry functions (those of the
// roots and any other __x64_sys_ function).
func (k *Kernel) Syscalls() []string {
	var out []string
	for name := range k.Funcs {
		if instrument.IsSyscall(name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Reachable counts the functions reachable from the first root.
func (k *Kernel) Reachable() int {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(fn string) {
		if seen[fn] || k.Funcs[fn] == nil {
			return
		}
		seen[fn] = true
		if k.Funcs[fn].JumpsThroughPointer {
			return // what it jumps to, no graph sees
		}
		for _, c := range k.Funcs[fn].Calls {
			visit(c.Func)
		}
	}
	visit(k.Roots[0].Func)
	return len(seen)
}
