//go:build linux

package live

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// calibrationSyscall is the syscall whose cost the calibration measures:
// pread64 of a small file, a short path that every kernel has.
const calibrationSyscall = "__x64_sys_pread64"

// Calibrator measures each backend's cost per hit (search.Calibrator):
// it times N preads of a small file by this process with no instrument,
// then with one instrument of each backend (a timer on the pread64
// syscall root for tracepoint; a timer on a function the syscall's entry
// calls for the function backend; a counter at one of that function's
// block offsets, keyed "BACKEND:count", for the counters of the blocks and
// the target recorders that search.compensate takes out). The cost
// per hit is the added time per pread over the hits per pread that the
// instrument itself counted:
//
//	cost = (t_with − t_without) / (calls counted / N)
//
// the median of seven runs alternating with and without the instrument,
// each loop timed after an untimed one (inserting or withdrawing an
// instrument patches text and waits for RCU, and an emulator translates
// the new code: the first loop after a change is slow), so that a burst
// of noise does not make an instrument look cheap or dear.
//
// A syscall timer's "without" is the loop before anything was attached
// (bareLoops): the raw_syscalls links stay attached once the first one
// goes in, and with them every syscall takes the entry code's slow path
// (syscall_trace_enter, syscall_exit_work) and runs the programs, which
// return at once for a syscall no timer wants. Alternating would measure
// only what one more timed syscall adds to that, a fraction of what the
// syscall timers cost a target (docs/overhead.md).
type Calibrator struct {
	Graph *callgraph.Graph
	N     int // preads per run (default 4000)
	// preads, where set, stands in for the timed loop of n preads, and
	// getppids for n getppid calls (tests).
	preads   func(n int) time.Duration
	getppids func(n int)
}

// getppid makes n getppid calls.
func (c Calibrator) getppid(n int) {
	if c.getppids != nil {
		c.getppids(n)
		return
	}
	for range n {
		syscall.Getppid()
	}
}

func (c Calibrator) n() int {
	if c.N == 0 {
		return 4000
	}
	return c.N
}

// Calibrate implements search.Calibrator.
func (c Calibrator) Calibrate(ctx context.Context, in instrument.Instrumenter) (map[string]float64, error) {
	n := c.n()
	f, err := os.CreateTemp("", "autoprof-calibrate-*")
	if err != nil {
		return nil, fmt.Errorf("calibrating: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 64)); err != nil {
		return nil, fmt.Errorf("calibrating: %w", err)
	}
	self := instrument.Target{PIDs: []int{os.Getpid()}}
	probes := c.probes(in, self)
	if len(probes) == 0 {
		return nil, fmt.Errorf("calibrating: no instrument on %s or below it could be placed", calibrationSyscall)
	}
	loop := func() time.Duration {
		if c.preads != nil {
			return c.preads(n)
		}
		buf := make([]byte, 16)
		start := time.Now()
		for i := 0; i < n; i++ {
			f.ReadAt(buf, 0)
		}
		return time.Since(start)
	}
	var bare time.Duration // a syscall timer's "without" (see above); only then timed
	if slices.ContainsFunc(probes, func(p probe) bool { return p.backend == string(instrument.Tracepoint) }) {
		bare = bareLoops(loop)
	}
	costs := map[string]float64{}
	var unmeasured []string
	for _, p := range probes {
		key := p.backend // a timer's cost
		if p.spec.Kind == instrument.Count {
			key += ":count"
		}
		if _, done := costs[key]; done {
			continue
		}
		base := time.Duration(0) // alternate
		if p.backend == string(instrument.Tracepoint) {
			base = bare
		}
		if c, bpf, ok := c.cost(ctx, in, p, loop, base); ok {
			if c <= 0 {
				// The loop was no slower with the instrument than without
				// it in most runs: noise larger than the cost. The
				// kernel's own measure of the programs' run time per hit
				// stands in, where there is one; else the default.
				assumed := "default assumed"
				if bpf > 0 {
					assumed = fmt.Sprintf("its programs' run time per hit assumed (%.0f ns)", bpf)
				}
				unmeasured = append(unmeasured, fmt.Sprintf("%s: %s added no measurable time to %d preads (median of %d runs), %s", key, p.spec, n, calibrationRuns, assumed))
				if bpf <= 0 {
					continue
				}
				c = bpf
			}
			costs[key] = c
			if bpf > 0 {
				costs[search.BPFCostKey(key)] = bpf
			}
			if _, ok := costs[p.backend]; !ok {
				costs[p.backend] = c // where the backend serves counters only (kprobe beside fentry)
				if bpf > 0 {
					costs[search.BPFCostKey(p.backend)] = bpf
				}
			}
		}
	}
	if len(costs) == 0 {
		return nil, fmt.Errorf("calibrating: no instrument counted the preads")
	}
	unmeasured = append(unmeasured, timerFloors(costs)...)
	unmeasured = append(unmeasured, c.insides(ctx, in, self, costs)...)
	if len(unmeasured) > 0 {
		return costs, fmt.Errorf("calibrating: %s", strings.Join(unmeasured, "; "))
	}
	return costs, nil
}

// timerFloors raises each backend's timer cost that was calibrated below
// its counters' to theirs, and says so: a timer does a counter's work at
// its entry and more at its exit, so less is the loop's noise (the 6.1
// test VM once timed a kprobe call-site timer at 121 ns a call beside
// 4,691 for a kprobe counter, and a hunt that took it so withdrew the
// CPU plant's helper as costing nothing).
func timerFloors(costs map[string]float64) []string {
	var said []string
	for _, b := range []instrument.Backend{instrument.Tracepoint, instrument.Fentry, instrument.Kprobe, instrument.Splice} {
		t, ok1 := costs[string(b)]
		n, ok2 := costs[string(b)+":count"]
		if ok1 && ok2 && t < n {
			costs[string(b)] = n
			said = append(said, fmt.Sprintf("%s: a timer measured %.0f ns a hit, less than a counter's %.0f ns: the counter's taken", b, t, n))
		}
	}
	return said
}

// insideSyscall is the syscall whose short path measures the part of a
// timer's cost inside its own window: getppid(2) does next to nothing.
const insideSyscall = "__x64_sys_getppid"

// insides adds, for each backend whose timer was calibrated, the part of
// its cost that falls between the timer's own two clock reads
// ("BACKEND:inside", used by search.compensate): what a timer measures of
// a function that does next to nothing, the syscall getppid for the
// tracepoint backend and the first function it calls for a function
// backend. It is an upper bound, by that function's own time (tens of ns
// on hardware). Where none can be placed the key is left out (then no
// part is taken as inside). The part is part of the timer's cost: a cost
// calibrated below it is the loop's noise (the 6.12 VM once timed fentry
// at 956 ns a hit and its inside part higher), and is raised to it, which
// the returned lines say.
func (c Calibrator) insides(ctx context.Context, in instrument.Instrumenter, self instrument.Target, costs map[string]float64) []string {
	var said []string
	fns := []string{insideSyscall}
	if c.Graph != nil {
		fns = append(fns, c.reach(insideSyscall, 1)...)
	}
	pts := make([]instrument.Point, 0, len(fns))
	for _, fn := range fns {
		pts = append(pts, instrument.Point{Func: fn})
	}
	if c.Graph != nil {
		// A call-site timer's inside part, where call-site timers are
		// another backend's (kprobe beside fentry): around a call to a
		// function that does next to nothing.
		pts = append(pts, c.callSites(fns)...)
	}
	for _, pt := range pts {
		spec := instrument.Spec{Point: pt, Kind: instrument.Timer, Target: self}
		if in.Check(spec) != nil {
			continue
		}
		b := string(backendOf(in, spec))
		total, ok := costs[b]
		if _, done := costs[b+":inside"]; done || !ok {
			continue
		}
		if m, ok := c.timedMean(ctx, in, spec); ok {
			if m > total {
				costs[b] = m
				said = append(said, fmt.Sprintf("%s: a timer measured %.0f ns a hit, less than the %.0f ns it times of a call to %s: the latter taken", b, total, m, pt))
			}
			costs[b+":inside"] = m
		}
	}
	return said
}

// timedMean returns the mean time a timer on spec measures per call over
// n getppid calls, after n untimed ones.
func (c Calibrator) timedMean(ctx context.Context, in instrument.Instrumenter, spec instrument.Spec) (float64, bool) {
	live, err := in.Insert(ctx, spec)
	if err != nil {
		return 0, false
	}
	defer live.Close()
	c.getppid(c.n())
	before, err := in.Read()
	if err != nil {
		return 0, false
	}
	c.getppid(c.n())
	after, err := in.Read()
	if err != nil {
		return 0, false
	}
	var calls, ns uint64
	for _, r := range []*instrument.Reading{after, before} {
		for _, x := range r.Contexts {
			if x.Path[len(x.Path)-1] == spec.Point && x.Kind == instrument.Timer {
				if r == after {
					calls, ns = calls+x.Calls, ns+x.InclNs
				} else {
					calls, ns = calls-min(x.Calls, calls), ns-min(x.InclNs, ns)
				}
			}
		}
	}
	if calls < uint64(c.n()) {
		return 0, false // not on getppid's path every time
	}
	return float64(ns) / float64(calls), true
}

// calibrationRuns is how many times each instrument is timed.
const calibrationRuns = 7

// cost times the loop without and with the instrument, alternating, and
// returns the median added time over the hits counted (0 or less where
// noise hid it: Calibrate then says so), and the median of
// the kernel's measure of the programs' run time over the same hits (0
// where the kernel does not measure it). (That run time is no floor for
// the cost: with its clock reads it can exceed what the instruments add
// to the loop, many times over under an emulator. It is the yardstick
// by which the hunt scales the costs to the machine's speed in each
// round: see search.BPFCostKey.)
func (c Calibrator) cost(ctx context.Context, in instrument.Instrumenter, p probe, loop func() time.Duration, bare time.Duration) (cost, bpf float64, ok bool) {
	if _, h, _, err := c.measure(ctx, in, p, loop); err != nil || h < uint64(c.n()) {
		return 0, 0, false // not on the path of every pread: try the next
	}
	var diffs, runs []float64
	for i := 0; i < calibrationRuns; i++ {
		base := bare
		if base == 0 {
			loop() // warm: the instrument's withdrawal is done with
			base = loop()
		}
		t, h, run, err := c.measure(ctx, in, p, loop)
		if err != nil || h == 0 {
			return 0, 0, false
		}
		diffs = append(diffs, float64(t-base)/float64(h))
		runs = append(runs, float64(run)/float64(h))
	}
	sort.Float64s(diffs)
	sort.Float64s(runs)
	return diffs[len(diffs)/2], runs[len(runs)/2], true
}

// bareLoops times the loop before any instrument is in: the median of
// calibrationRuns runs, each after an untimed one.
func bareLoops(loop func() time.Duration) time.Duration {
	ts := make([]time.Duration, calibrationRuns)
	for i := range ts {
		loop()
		ts[i] = loop()
	}
	slices.Sort(ts)
	return ts[len(ts)/2]
}

// runTimer is an instrumenter that measures its programs' run time
// (search.OverheadMeter).
type runTimer interface {
	Overhead() (time.Duration, error)
}

// probe is one instrument to calibrate.
type probe struct {
	backend string // the key of its cost: the backend's name
	spec    instrument.Spec
}

// backendOf names the backend that serves spec: the session's own
// routing (search.Router) where it has one.
func backendOf(in instrument.Instrumenter, spec instrument.Spec) instrument.Backend {
	if r, ok := in.(search.Router); ok {
		return r.BackendOf(spec)
	}
	return in.Backend()
}

// probes lists the instruments to calibrate with, by backend in order of
// preference: a timer on the pread64 syscall root (tracepoint); timers on
// the functions the syscall's entry reaches in one or two direct or tail
// calls (the function backend: which of them a kernel keeps out of line
// varies); and counters at block offsets of those (kprobe, beside fentry
// or as the function backend; splice). Calibrate takes, per backend and
// kind, the first that counts the preads: a counter's cost is keyed
// "BACKEND:count", and is the backend's own where it has no timer.
func (c Calibrator) probes(in instrument.Instrumenter, self instrument.Target) []probe {
	var out []probe
	try := func(spec instrument.Spec) bool {
		if in.Check(spec) != nil {
			return false
		}
		out = append(out, probe{string(backendOf(in, spec)), spec})
		return true
	}
	try(instrument.Spec{Point: instrument.Point{Func: calibrationSyscall}, Kind: instrument.Timer, Target: self})
	if c.Graph == nil {
		return out
	}
	funcs := c.reach(calibrationSyscall, 2)
	for _, fn := range funcs {
		try(instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer, Target: self})
	}
	// Call-site timers are the kprobe backend's beside fentry (the hunt
	// times a shared callee where its caller calls it, and a function
	// fentry refuses with a kprobe on its entry and return): two probes
	// a call, twice a counter's cost and more (the 6.1 VM's module
	// functions, all timed so, read 2 to 3 µs a call high before).
	for _, pt := range c.callSites(append([]string{calibrationSyscall}, funcs...)) {
		try(instrument.Spec{Point: pt, Kind: instrument.Timer, Target: self})
	}
	for _, fn := range funcs {
		blocks, err := (Graph{c.Graph}).Blocks(fn)
		if err != nil {
			continue
		}
		for _, off := range blocks[:min(len(blocks), 2)] {
			try(instrument.Spec{Point: instrument.Point{Func: fn, Offset: off}, Kind: instrument.Count, Target: self})
		}
	}
	return out
}

// callSites returns the direct call sites in fns, the functions' order
// kept: the points of call-site timers.
func (c Calibrator) callSites(fns []string) []instrument.Point {
	var out []instrument.Point
	for _, fn := range fns {
		edges, err := c.Graph.Callees(fn)
		if err != nil {
			continue
		}
		for _, e := range edges {
			if e.Kind == callgraph.Direct && !e.Jump && e.Target != "" && e.TargetOff == 0 && e.From.Name == fn {
				out = append(out, instrument.Point{Func: fn, Offset: uint64(e.Off), Callee: e.Target})
			}
		}
	}
	return out
}

// reach returns the functions fn reaches through direct and tail calls in
// at most depth steps, nearest first.
func (c Calibrator) reach(fn string, depth int) []string {
	seen := map[string]bool{fn: true}
	var out []string
	frontier := []string{fn}
	for d := 0; d < depth; d++ {
		var next []string
		for _, f := range frontier {
			edges, err := c.Graph.Callees(f)
			if err != nil {
				continue
			}
			for _, e := range edges {
				if e.Target == "" || e.TargetOff != 0 || (e.Kind != callgraph.Direct && e.Kind != callgraph.Tail) || seen[e.Target] {
					continue
				}
				seen[e.Target] = true
				next = append(next, e.Target)
			}
		}
		out = append(out, next...)
		frontier = next
	}
	return out
}

// measure times the loop with one instrument, after one untimed loop, and
// returns the time, the hits the instrument counted and the kernel's
// measure of its programs' run time over the loop (0 where unmeasured).
func (c Calibrator) measure(ctx context.Context, in instrument.Instrumenter, p probe, loop func() time.Duration) (time.Duration, uint64, time.Duration, error) {
	live, err := in.Insert(ctx, p.spec)
	if err != nil {
		return 0, 0, 0, err
	}
	defer live.Close()
	// Warm: the kernel finishes the insertion (text patching, RCU) and
	// an emulator translates the new code before the timed loop.
	loop()
	rt, _ := in.(runTimer)
	var run0, run1 time.Duration
	if rt != nil {
		if run0, err = rt.Overhead(); err != nil {
			rt = nil
		}
	}
	before, err := in.Read()
	if err != nil {
		return 0, 0, 0, err
	}
	t := loop()
	after, err := in.Read()
	if err != nil {
		return 0, 0, 0, err
	}
	if rt != nil {
		if run1, err = rt.Overhead(); err != nil || run1 < run0 {
			run1 = run0
		}
	}
	hits := calls(after, p.spec) - min(calls(before, p.spec), calls(after, p.spec))
	return t, hits, run1 - run0, nil
}

// calls sums the calls of every context of a reading whose point and kind
// are spec's (an instrument inserted again reads as a context of its own).
func calls(r *instrument.Reading, spec instrument.Spec) uint64 {
	var n uint64
	for _, c := range r.Contexts {
		if c.Path[len(c.Path)-1] == spec.Point && c.Kind == spec.Kind {
			n += c.Calls
		}
	}
	return n
}
