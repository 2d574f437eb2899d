package search

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// absorb takes one round's activity: the change from prev to cur.
func (h *hunter) absorb(cur, prev *reading) {
	elapsed := cur.at.Sub(prev.at)
	if elapsed <= 0 {
		elapsed = time.Nanosecond
	}
	d := float64(elapsed) * (cur.threads + prev.threads) / 2 // the target's time, ns
	if d <= 0 {
		d = float64(elapsed)
	}
	delta := cur.Reading.Sub(prev.Reading)
	h.run.Misses = addMisses(h.run.Misses, delta.Misses)
	for _, n := range h.nodes {
		n.cur = instrument.ContextReading{}
		n.costIncl, n.costExcl = 0, 0
	}
	sort.SliceStable(delta.Contexts, func(i, j int) bool { return len(delta.Contexts[i].Path) < len(delta.Contexts[j].Path) })
	for _, c := range delta.Contexts {
		if len(c.Path) == 0 || !h.underRoot(c.Path) {
			continue
		}
		n := h.nodeFor(c.Path)
		n.cur = c
	}
	siteCalls := h.absorbTargets(delta.Targets)
	if !h.cfg.RawCosts {
		measured := -1.0
		if h.meter != nil {
			measured = float64(cur.overhead - prev.overhead)
		}
		d = h.compensate(d, siteCalls, delta.Hits, measured)
	}
	var ops uint64
	for _, r := range h.rootNodes() {
		ops += r.cur.Calls
	}
	for _, n := range h.nodes {
		if h.measurable(n) {
			h.record(n, d, elapsed, ops)
		}
	}
	h.droppedNs = 0 // the rounds' samples find targets and grow sampled trees; estimates come from quiet ones
	h.roundStacks, h.roundNs = cur.stacks, d
	if cur.stacks != nil && h.cfg.SampleTree {
		h.absorbStacks(cur.stacks, d, ops)
	}
	for _, n := range h.nodes { // in id order: the trace is deterministic
		if !h.blind[n] {
			continue
		}
		if n.state == StateWithdrawn {
			delete(h.blind, n)
			continue
		}
		h.targetsFromStacks(n, cur.stacks)
	}
	h.updateRates(elapsed.Seconds(), delta.Hits, siteCalls)
	h.lastPred = h.predictedPct()
	h.lastMeas = -1
	if h.meter != nil {
		h.lastMeas = 100 * float64(cur.overhead-prev.overhead) / (float64(elapsed) * float64(h.cfg.CPUs))
		h.measSum += h.lastMeas
		h.measRounds++
	}
	h.lastCtl = -1
	changed := h.lastChange == h.round-1 // instruments went in or out as the round began
	if h.cfg.Controller != nil {
		h.lastCtl = 100 * float64(cur.ctlCPU-prev.ctlCPU) / (float64(elapsed) * float64(h.cfg.CPUs))
		h.ctlSum += h.lastCtl
		h.ctlRounds++
		if !changed {
			h.steadySum += h.lastCtl
			h.steadyRounds++
		}
		h.roundLen = nextRound(h.roundLen, h.lastCtl, h.cfg)
		h.longestRound = max(h.longestRound, h.roundLen)
	}
	h.spending.add(overBudget(h.lastPred, h.lastMeas), h.cfg.BudgetPct, elapsed.Seconds())
	h.predSum += h.lastPred
	h.run.Overhead.Rounds = append(h.run.Overhead.Rounds, OverheadRound{
		Round: h.round, Live: h.liveCount(), PredictedPct: h.lastPred, MeasuredPct: h.lastMeas, ControllerPct: max(h.lastCtl, 0),
		Sec: elapsed.Seconds(), Changed: changed,
	})
	h.run.Meta.TargetNs += uint64(d)
	h.run.Meta.TargetOps += ops
	h.run.Meta.Rounds = h.round
	if h.inWindowRound() {
		h.windowNs += d
	}
}

// underRoot reports whether a context read from the instruments starts at
// one of the hunt's roots. A backend may time a function where no root's
// frame is below it (the splice module times schedule called on the way
// back to user space, after the syscall's frame ended): that time is in no
// operation of the target, and no node stands for it.
func (h *hunter) underRoot(p instrument.Path) bool {
	r := h.byKey[p[:1].String()]
	return r != nil && r.kind == NodeRoot
}

// inWindowRound reports whether the round being absorbed belongs to the
// current window.
func (h *hunter) inWindowRound() bool { return h.round >= h.windowStart }

// record appends node n's round sample and adds the round to its totals.
func (h *hunter) record(n *node, d float64, elapsed time.Duration, ops uint64) {
	c := &n.cur
	rootCalls := n.root().cur.Calls
	n.rounds = append(n.rounds, RoundSample{
		Round:      h.round,
		Calls:      c.Calls,
		TargetOps:  ops,
		RootCalls:  rootCalls,
		InclShare:  float64(c.InclNs) / d,
		ExclShare:  float64(c.ExclNs) / d,
		OnCPUShare: float64(c.ExclNs-min(c.ExclOffCPUNs, c.ExclNs)) / d,
		OffCPU:     float64(c.ExclOffCPUNs) / d,
		TargetNs:   d,
		InclCost:   float64(n.costIncl) / d,
		ExclCost:   float64(n.costExcl) / d,
	})
	n.all.add(c, rootCalls, d)
	if h.inWindowRound() {
		n.win.add(c, rootCalls, d)
	}
	n.lastRate = float64(c.Calls) / elapsed.Seconds()
}

// absorbTargets records the indirect-call targets seen under each context
// and returns the calls each target recorder saw. A target is a callee of
// the site's own function: a reading whose context does not end in that
// function (its timer withdrawn in the round, the recorder still live)
// names no callee of the context's node (the 6.12 truth benchmark's
// gt20: vfs_write's target kernfs_fop_write_iter was planned under
// ksys_write, and the tree measured the same calls twice, on two paths).
func (h *hunter) absorbTargets(ts []instrument.TargetReading) map[string]uint64 {
	calls := map[string]uint64{}
	for _, t := range ts {
		if len(t.Path) < 2 {
			continue
		}
		site := t.Path[len(t.Path)-1]
		calls[instrument.Spec{Point: site, Kind: instrument.Targets}.String()] += t.Calls
		n := h.byKey[t.Path[:len(t.Path)-1].String()]
		if n == nil || t.Func == "" || n.fn() != site.Func {
			continue
		}
		if n.targets == nil {
			n.targets = map[string]bool{}
		}
		n.targets[t.Func] = true
	}
	return calls
}

func addMisses(a, b instrument.Misses) instrument.Misses {
	return instrument.Misses{
		Recursion:  a.Recursion + b.Recursion,
		StackDepth: a.StackDepth + b.StackDepth,
		MapFull:    a.MapFull + b.MapFull,
		Unmatched:  a.Unmatched + b.Unmatched,
		Kernel:     a.Kernel + b.Kernel,
	}
}

// report calls Config.Progress.
func (h *hunter) report() {
	if h.cfg.Progress == nil {
		return
	}
	p := Progress{
		Round:         h.round,
		Elapsed:       time.Since(h.start),
		Live:          h.liveCount(),
		PredictedPct:  h.lastPred,
		MeasuredPct:   h.lastMeas,
		ControllerPct: h.lastCtl,
	}
	h.updateIntervals()
	for _, n := range h.best(3) {
		p.Best = append(p.Best, Candidate{Path: n.key, Excl: n.excl})
	}
	if h.cfg.ProgressTree {
		p.Nodes = make([]Node, len(h.nodes))
		for i, n := range h.nodes {
			p.Nodes[i] = h.export(n)
			p.Nodes[i].Rounds = nil
		}
		p.Events = slices.Clone(h.run.Trace[h.progressed:])
		h.progressed = len(h.run.Trace)
	}
	h.cfg.Progress(p)
}

// best returns the k measured nodes of largest exclusive share (the last
// one measured over two rounds or more, where the current one is
// younger).
func (h *hunter) best(k int) []*node {
	var ns []*node
	for _, n := range h.nodes {
		if n.kind != NodeBlock && (n.excl.N > 0 || n.lastExcl > 0) && n.state != StateWithdrawn {
			ns = append(ns, n)
		}
	}
	sort.SliceStable(ns, func(i, j int) bool { return bestExcl(ns[i]) > bestExcl(ns[j]) })
	return ns[:min(k, len(ns))]
}

func bestExcl(n *node) float64 {
	if n.excl.N >= 2 {
		return n.excl.Mean
	}
	return max(n.excl.Mean, n.lastExcl)
}

// startSampling samples the target for d in the background; read collects
// the stacks, and stopSampling cuts the sampling short.
func (h *hunter) startSampling(ctx context.Context, d time.Duration) {
	ch := make(chan samplingResult, 1)
	ctx, cancel := context.WithCancel(ctx)
	h.sampling, h.stopSampling = ch, cancel
	go func() {
		start := time.Now()
		stacks, err := h.cfg.Sampler.Sample(ctx, h.cfg.Target, d)
		ch <- samplingResult{stacks, err, time.Since(start)}
	}()
}

// takeStacks waits for the background sampling, if any, and returns its
// stacks (non-nil when sampling ran).
func (h *hunter) takeStacks() []Stack {
	if h.sampling == nil {
		return nil
	}
	r := <-h.sampling
	h.stopSampling()
	h.sampling, h.stopSampling = nil, nil
	h.sampledFor = r.took
	if r.err != nil {
		h.limit("stack sampling failed: %v", r.err)
		return []Stack{}
	}
	if r.stacks == nil {
		return []Stack{}
	}
	stacks, dropped := splitOwn(r.stacks)
	h.droppedNs += dropped
	return stacks
}

// merged returns r with the contexts that share a path and a kind (an
// instrument withdrawn and inserted again reads as two) summed into one,
// and likewise the targets, so that differences between readings are
// taken path by path.
func merged(r *instrument.Reading) *instrument.Reading {
	out := &instrument.Reading{At: r.At, Misses: r.Misses, Hits: r.Hits}
	at := map[string]int{}
	for _, c := range r.Contexts {
		key := c.Path.String() + ":" + c.Kind.String()
		i, ok := at[key]
		if !ok {
			at[key] = len(out.Contexts)
			out.Contexts = append(out.Contexts, c)
			continue
		}
		m := &out.Contexts[i]
		m.Calls += c.Calls
		m.InclNs += c.InclNs
		m.ExclNs += c.ExclNs
		m.InclOffCPUNs += c.InclOffCPUNs
		m.ExclOffCPUNs += c.ExclOffCPUNs
		for j, v := range c.Hist {
			m.Hist[j] += v
		}
	}
	tat := map[string]int{}
	for _, t := range r.Targets {
		key := t.Path.String() + ">" + t.Func + ">" + fmt.Sprint(t.Target)
		if i, ok := tat[key]; ok {
			out.Targets[i].Calls += t.Calls
			continue
		}
		tat[key] = len(out.Targets)
		out.Targets = append(out.Targets, t)
	}
	return out
}

// maxCostScale bounds costScale's factor either way: a round's run time
// that strays further from the calibration's prediction is taken for a
// fault of the reading, not the machine's speed.
const maxCostScale = 50

// costScale is the factor by which the calibrated costs per hit are to be
// scaled in a round: the programs' run time the kernel measured in the
// round over the sum, over the live instruments, of their hits (every
// task's: a program runs for each) times their calibrated run time per
// hit (BPFCostKey). ok is false where that cannot be known: no
// measurement, an instrument whose run time per hit was not calibrated,
// or no hit.
func (h *hunter) costScale(hits map[string]uint64, measuredNs float64) (f float64, ok bool) {
	if measuredNs <= 0 || hits == nil {
		return 1, false
	}
	var predicted float64
	for _, in := range h.specs {
		n, counted := hits[in.key]
		if !counted || n == 0 {
			continue
		}
		per, ok := h.bpfOfSpec(in.spec)
		if !ok {
			return 1, false
		}
		predicted += float64(n) * per
	}
	if predicted <= 0 {
		return 1, false
	}
	return min(max(measuredNs/predicted, 1.0/maxCostScale), maxCostScale), true
}

// compensate takes the instruments' own cost out of one round's readings
// (Paradyn's instrumentation cost accounting) and returns the target's
// time without it. Every hit of an instrument costs its backend's
// calibrated cost per hit c(i) (search.Calibrator; a counter's and a
// target recorder's apart where calibrated). Where that cost is paid: a
// counter or a target recorder inside the function that holds it; a
// timer partly inside its own window, between its two clock reads (the
// calibrated "BACKEND:inside" part, in(i)), and the rest around the
// window, in its caller. So, with calls(i) the round's hits of the
// instrument measuring node i:
//
//	inside(n) = calls(n)·in(n)                      (n a timed node)
//	around(n) = calls(n)·(c(n) − in(n))
//	own(n)    = inside(n) + Σ around(k) over n's timed children k
//	            + Σ calls(b)·c(b) over n's block counters and target recorders b
//	below(n)  = own(n) + Σ below(k) over n's timed children k
//
// (below(n) is every instrument cost paid within n's window); then
//
//	excl'(n) = max(excl(n) − own(n), excl off-CPU(n))
//	incl'(n) = max(incl(n) − below(n), incl off-CPU(n))
//	d'       = d − Σ calls(i)·c(i) over every instrument the target hit
//
// (the cost is on-CPU time, so off-CPU time is left as measured), which
// keeps excl' = incl' − Σ incl' of the timed children. in(i) is measured
// on a function that does next to nothing, an upper bound. The costs
// follow the machine's speed: where the calibration measured the
// programs' run time per hit too (BPFCostKey), every cost is scaled by
// the programs' run time the kernel measured in the round over what the
// calibration predicts for the round's hits (see costScale); elsewhere a
// calibration that overstates the costs is bounded by twice that run
// time. And d loses only what was taken out of the roots (every hit of
// the target's falls in a root's window) and the roots' own cost outside
// their windows.
func (h *hunter) compensate(d float64, siteCalls, hits map[string]uint64, measuredNs float64) float64 {
	own := map[*node]float64{}   // cost paid in n's exclusive time
	below := map[*node]float64{} // cost paid within n's window
	var total float64
	for _, n := range h.nodes {
		if n.sampled() || n.cur.Calls == 0 {
			continue
		}
		spec := h.specFor(n)
		c := float64(n.cur.Calls) * h.costOfSpec(spec)
		total += c
		in := 0.0
		if spec.Kind == instrument.Timer {
			in = min(float64(n.cur.Calls)*h.insideOf(spec), c)
		}
		own[n] += in
		below[n] += in
		if n.parent != nil {
			own[n.parent] += c - in
			below[n.parent] += c - in
		}
	}
	for _, in := range h.specs {
		if in.owner != nil && in.spec.Kind == instrument.Targets && siteCalls[in.key] > 0 {
			c := float64(siteCalls[in.key]) * h.costOfSpec(in.spec)
			total += c
			own[in.owner] += c
			below[in.owner] += c
		}
	}
	if total == 0 {
		return d
	}
	// A calibration taken while the machine was busy can overstate the
	// cost per hit several times over, or understate it as much when the
	// machine is busier now; the kernel's own measure of the
	// instruments' run time in the round scales it (costScale), or,
	// without a calibrated run time per hit, bounds it (twice that, for
	// the trampolines and traps around the programs that it leaves out).
	f, scaled := h.costScale(hits, measuredNs)
	if !scaled && measuredNs > 0 && total > 2*measuredNs {
		f = 2 * measuredNs / total
	}
	if f != 1 {
		for n := range own {
			own[n] *= f
		}
		for n := range below {
			below[n] *= f
		}
		total *= f
	}
	byDepth := append([]*node(nil), h.nodes...)
	sort.SliceStable(byDepth, func(i, j int) bool { return len(byDepth[i].path) > len(byDepth[j].path) })
	for _, n := range byDepth { // children before their parents
		if n.parent != nil {
			below[n.parent] += below[n]
		}
	}
	// Each node loses its costs, clamped at what it measured off the CPU
	// and on it by itself; then, children before parents, a node keeps
	// at least its own time and its timed children's (a calibration that
	// overstates the costs would otherwise take out of a parent what its
	// children kept). The target's time loses what was taken out of its
	// roots' windows (every hit of the target's falls in one) and the
	// part of the roots' own cost outside them.
	before, beforeExcl := map[*node]uint64{}, map[*node]uint64{}
	for _, n := range h.nodes {
		c := &n.cur
		before[n], beforeExcl[n] = c.InclNs, c.ExclNs
		if x := own[n]; x > 0 {
			c.ExclNs = max(c.ExclNs-min(uint64(x), c.ExclNs), c.ExclOffCPUNs)
		}
		if x := below[n]; x > 0 {
			c.InclNs = max(c.InclNs-min(uint64(x), c.InclNs), c.InclOffCPUNs, c.ExclNs)
		}
	}
	kids := map[*node]uint64{}
	for _, n := range byDepth { // children before their parents
		c := &n.cur
		c.InclNs = min(max(c.InclNs, c.ExclNs+kids[n]), before[n])
		if n.parent != nil && !n.sampled() {
			kids[n.parent] += c.InclNs
		}
		n.costIncl, n.costExcl = before[n]-c.InclNs, beforeExcl[n]-min(c.ExclNs, beforeExcl[n])
	}
	var taken, roots float64
	for _, n := range h.nodes {
		if n.parent != nil || n.cur.Calls == 0 || n.sampled() {
			continue
		}
		spec := h.specFor(n)
		taken += float64(before[n]-n.cur.InclNs) + f*float64(n.cur.Calls)*max(h.costOfSpec(spec)-h.insideOf(spec), 0)
		roots += float64(n.cur.InclNs)
	}
	// The roots' windows, less what was taken out of them, still fit in
	// what is left of the target's time: a calibration that overstates
	// the cost outside them (the costScale scales the programs' run time,
	// not the traps around them) cannot leave the roots more time than
	// the target had.
	taken = min(taken, total, 0.95*d, max(d-roots, 0))
	h.compensatedNs += taken
	return d - taken
}
