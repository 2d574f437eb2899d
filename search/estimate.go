package search

import (
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// The consistent tree. A hunt measures nodes in different windows: a node
// live at the end in the last one, a node withdrawn (cold, or too costly
// for the budget) in the rounds it was live, a node known from stack
// samples in the rounds it was sampled. Each node keeps its best estimate,
// and a node's exclusive share is its inclusive share less its children's,
// measured or estimated: so that the time of a withdrawn child is its own
// and not its parent's, and exclusive shares over the tree add up to the
// roots' inclusive shares, at most the whole.

// Where a node's estimate comes from (Node.Source).
const (
	// SourceWindow: timed exactly over the last window, together with
	// every node live at the end.
	SourceWindow = "window"
	// SourceRounds: timed exactly over the rounds it was live, then
	// withdrawn.
	SourceRounds = "rounds"
	// SourceBurst: timed for a few rounds only, its instrument costing
	// more than the budget; its own instrument's cost is taken out.
	SourceBurst = "burst"
	// SourceSamples: estimated from stack samples, with a SamplesZ
	// interval.
	SourceSamples = "samples"
)

// SamplesZ is the normal quantile of the intervals of estimates from stack
// samples (95%, two-sided): each sample falls in a context with the
// context's share as its probability, and the interval is the normal
// approximation of that binomial, Mean ± SamplesZ·√(p(1−p)/samples).
const SamplesZ = 1.96

// est is a node's best estimate: shares of the target's time with their
// intervals, off-CPU shares, and the rounds they come from.
type est struct {
	incl, excl       Interval
	inclOff, exclOff float64
	source           string
	from, to         int
	samples          uint64 // the stack samples behind a SourceSamples estimate
	// fromChildren is what the node's exclusive share lost to children
	// that were not measured with it (withdrawn, estimated): the time it
	// measured as its own that is theirs.
	fromChildren float64
}

// has reports whether the estimate holds a measurement.
func (e *est) has() bool { return e != nil && e.incl.N > 0 }

// estimates computes every node's best estimate (see the file comment).
// Blocks have none: their counts live under their function.
func (h *hunter) estimates() map[*node]*est {
	out := map[*node]*est{}
	for _, n := range h.nodes {
		if n.kind == NodeBlock || h.supersededPath(n) {
			continue
		}
		if e := h.inclusive(n); e.has() {
			out[n] = e
		}
	}
	h.dropDuplicates(out)
	h.dropSampleAliases(out)
	// Children before parents (a node's id is larger than its
	// parent's): a node's inclusive share is at least its children's,
	// however they were measured (a timer that lost its returns, or two
	// estimates from different windows, can say less), and its exclusive
	// share takes out its children's inclusive shares.
	for i := len(h.nodes) - 1; i >= 0; i-- {
		n := h.nodes[i]
		e := out[n]
		if e == nil {
			continue
		}
		fitOlder(n, e, out)
		h.atLeastChildren(n, e, out)
		h.exclusive(n, e, out)
	}
	return out
}

// fitOlder fits the estimates of a window node's children measured
// elsewhere (withdrawn earlier, bursts, samples) into the time the node
// measured in the window that its children timed with it there did not
// take: they are parts of it. Where they add up to more (a burst taken
// while other instruments were going in, a context whose calls moved
// under a function timed later), each of their subtrees is scaled down to
// fit; the window's measurements stand.
func fitOlder(n *node, e *est, all map[*node]*est) {
	if e.source != SourceWindow {
		return
	}
	var older, window float64
	for _, c := range n.children {
		ce := all[c]
		switch {
		case ce == nil || c.kind == NodeBlock:
		case ce.source == SourceWindow:
			window += ce.incl.Mean
		default:
			older += ce.incl.Mean
		}
	}
	room := max(e.incl.Mean-window, 0)
	if older <= room {
		return
	}
	f := room / older
	for _, c := range n.children {
		if ce := all[c]; ce == nil || c.kind == NodeBlock || ce.source == SourceWindow {
			continue
		}
		c.subtree(func(m *node) {
			if me := all[m]; me != nil && me.source != SourceWindow {
				me.scale(f)
			}
		})
	}
}

// scale multiplies every share of e by f.
func (e *est) scale(f float64) {
	for _, iv := range []*Interval{&e.incl, &e.excl} {
		iv.Mean, iv.Low, iv.High = f*iv.Mean, f*iv.Low, f*iv.High
	}
	e.inclOff, e.exclOff, e.fromChildren = f*e.inclOff, f*e.exclOff, f*e.fromChildren
}

// atLeastChildren raises e's inclusive share to the sum of n's children's
// inclusive shares where it is below it.
func (h *hunter) atLeastChildren(n *node, e *est, all map[*node]*est) {
	var sum float64
	for _, c := range n.children {
		if ce := all[c]; ce != nil && c.kind != NodeBlock {
			sum += ce.incl.Mean
		}
	}
	if sum > e.incl.Mean {
		d := sum - e.incl.Mean
		e.incl.Mean, e.incl.Low, e.incl.High = sum, e.incl.Low+d, e.incl.High+d
	}
}

// dropDuplicates keeps one measurement of each callee of each node: a
// function timed at its entry in one window and at its call sites in
// another measured the same calls twice. Per callee, the call-site nodes
// (one per call site: distinct sites measure distinct calls) stand
// against the entry node; the side live at the end wins, else the side
// measured last (then the longest); a point inserted again keeps its best
// node. The others leave the tree with their subtrees.
func (h *hunter) dropDuplicates(all map[*node]*est) {
	drop := func(c *node) { c.subtree(func(m *node) { delete(all, m) }) }
	for _, n := range h.nodes {
		byPoint := map[string]*node{} // the best node of each point
		for _, c := range n.children {
			if all[c] == nil || c.kind == NodeBlock {
				continue
			}
			key := c.point().String()
			if b := byPoint[key]; b == nil || better(all[c], all[b]) {
				if b != nil {
					drop(b)
				}
				byPoint[key] = c
			} else {
				drop(c)
			}
		}
		entry, sites := map[string]*node{}, map[string][]*node{}
		for _, c := range byPoint {
			if c.point().IsCallSite() {
				sites[c.fn()] = append(sites[c.fn()], c)
			} else {
				entry[c.fn()] = c
			}
		}
		for fn, e := range entry {
			ss := sites[fn]
			if len(ss) == 0 {
				continue
			}
			best := ss[0]
			for _, c := range ss[1:] {
				if better(all[c], all[best]) {
					best = c
				}
			}
			if better(all[e], all[best]) {
				for _, c := range ss {
					drop(c)
				}
			} else {
				drop(e)
			}
		}
	}
}

// better reports whether estimate a is to be preferred to b for the same
// calls (see dropDuplicates).
func better(a, b *est) bool {
	if (a.source == SourceWindow) != (b.source == SourceWindow) {
		return a.source == SourceWindow
	}
	if a.to != b.to {
		return a.to > b.to
	}
	return a.incl.N > b.incl.N
}

// supersededPath reports whether n or an ancestor was superseded by
// call-site timers (see convertShared).
func (h *hunter) supersededPath(n *node) bool {
	for ; n != nil; n = n.parent {
		if n.superseded {
			return true
		}
	}
	return false
}

// inclusive is a node's inclusive estimate, and its measured exclusive
// one where the node was live at the end.
func (h *hunter) inclusive(n *node) *est {
	switch {
	case n.fromSamples != nil:
		return n.fromSamples
	case n.sampled():
		return h.sampledEstimate(n)
	case h.samplesOnly:
		return h.sampledUnder(n)
	case h.inWindow(n):
		w := h.reportedWindow()
		e := &est{source: SourceWindow, from: w.start, to: w.end}
		e.incl = h.windowInterval(n, func(r RoundSample) float64 { return r.InclShare })
		e.excl = h.windowInterval(n, func(r RoundSample) float64 { return r.ExclShare })
		e.inclOff, e.exclOff = offShare(n.win.inclOff, n.win.targetNs), offShare(n.win.exclOff, n.win.targetNs)
		return e
	case len(n.rounds) == 0:
		// Never measured (withdrawn in the round it went in, or
		// planned from Deep Start's samples and evicted at once): the
		// samples of its context stand in, where there are enough.
		if s := h.sampledUnder(n); s != nil && s.samples >= minEstimateSamples {
			return s
		}
		return nil
	}
	e := &est{source: SourceRounds, from: n.rounds[0].Round, to: n.rounds[len(n.rounds)-1].Round}
	share := func(r RoundSample) float64 { return r.InclShare }
	if len(n.rounds) < h.cfg.MinRounds && n.why != whyBudget {
		// Timed for a round or two only (withdrawn with an ancestor):
		// the samples of its context are the steadier estimate.
		if s := h.sampledUnder(n); s != nil && s.samples >= minEstimateSamples {
			return s
		}
	}
	if n.why == whyBudget && len(n.rounds) < h.cfg.MinRounds {
		// A burst: a few rounds of an instrument so costly that the
		// samples of its context are the better estimate, where there
		// are enough; else its rounds, its own cost taken out where
		// the readings were not compensated already.
		e.source = SourceBurst
		if s := h.sampledUnder(n); s != nil && s.samples >= minEstimateSamples {
			return s
		}
		if h.cfg.RawCosts {
			share = h.burstShare(n)
		}
	}
	rs := steadyRounds(n.rounds, h.textChanged)
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = share(r)
	}
	e.incl = NewInterval(xs, h.cfg.Confidence)
	// Off the CPU: the part of its time the node spent off the CPU over
	// all its rounds, of the share of the steady ones. (Its off-CPU
	// share over all of them is of a target time that holds the stalls
	// steadyRounds left out, where the thread ran: a sleep withdrawn
	// after such a round read a tenth of its time as on-CPU, and that as
	// the instruments' cost.)
	if n.all.inclNs > 0 {
		e.inclOff = e.incl.Mean * min(float64(n.all.inclOff)/float64(n.all.inclNs), 1)
	}
	return e
}

// disturbedRatio is how many times its median time per operation the
// target takes in a round that steadyRounds leaves out.
const disturbedRatio = 1.2

// steadyRounds returns rs without the rounds in which instruments went in
// or out (changed) and the target took more than disturbedRatio times its
// median time per operation over rs (rounds of three operations or more,
// where rs has three such rounds or more): a stall of the hunt's own
// doing (the kernel optimizing the kprobes inserted a round before, under
// QEMU a few hundred ms of text patching and the emulator translating the
// patched code again) is charged to whatever the target was running, and
// one such round in a withdrawn node's few moves its estimate by points
// (the 6.12 truth benchmark's gt19: a round at 28.5 ms per write against
// 8.5, in which the sleeping function's share fell to 12% from 40%, and
// the cheap loop beside it came first). Under TCG the target runs at 0.3
// to 0.9 times its bare speed in a round after twenty changes or more,
// and at 0.9 to 1 in rounds with none (docs/truth.md, stop 28): a round
// of changes 20% slower than the median is the hunt's doing. A slow round
// in which the text did not change is the workload's own, and kept.
func steadyRounds(rs []RoundSample, changed map[int]bool) []RoundSample {
	perOp := func(r RoundSample) (float64, bool) {
		return r.TargetNs / float64(r.TargetOps), r.TargetOps >= 3 && r.TargetNs > 0
	}
	var per []float64
	for _, r := range rs {
		if x, ok := perOp(r); ok {
			per = append(per, x)
		}
	}
	if len(per) < 3 {
		return rs
	}
	sort.Float64s(per)
	median := per[len(per)/2]
	if len(per)%2 == 0 {
		median = (per[len(per)/2-1] + per[len(per)/2]) / 2
	}
	out := make([]RoundSample, 0, len(rs))
	for _, r := range rs {
		if x, ok := perOp(r); ok && changed[r.Round] && x > disturbedRatio*median {
			continue
		}
		out = append(out, r)
	}
	return out
}

// minEstimateSamples is how many stack samples an estimate from samples
// needs to stand in for a burst of exact timing.
const minEstimateSamples = 50

func offShare(ns uint64, target float64) float64 {
	if target <= 0 {
		return 0
	}
	return float64(ns) / target
}

// burstShare returns the inclusive share of a round of a node withdrawn
// for the budget, its own instrument's cost taken out: the part of a
// timer's cost inside its window (calibrated, "BACKEND:inside") from its
// inclusive time, and its whole cost from the target's time, which both
// grew with every one of its calls:
//
//	share = (InclNs − calls·inside) / (D − calls·cost)
//
// A costly instrument is one hit very often, so that what it adds is a
// large part of what it measures.
func (h *hunter) burstShare(n *node) func(RoundSample) float64 {
	spec := h.specFor(n)
	inside, cost := h.insideOf(spec), h.costOfSpec(spec)
	return func(r RoundSample) float64 {
		if r.TargetNs <= 0 {
			return r.InclShare
		}
		calls := float64(r.Calls)
		incl := max(r.InclShare*r.TargetNs-calls*min(inside, cost), 0)
		d := max(r.TargetNs-calls*cost, r.TargetNs/2)
		return incl / d
	}
}

// exclusive sets e's exclusive share: for a node live at the end, its
// measured exclusive share over the window less the inclusive shares of
// its children that were not live in it (their time is in its measured
// exclusive time); for any other node, its inclusive share less all its
// children's. Half-widths add in quadrature (the estimates are
// independent), and a share never goes below zero.
func (h *hunter) exclusive(n *node, e *est, all map[*node]*est) {
	base, baseOff := e.incl, e.inclOff
	if e.source == SourceWindow {
		base, baseOff = e.excl, e.exclOff
	}
	if e.source == SourceSamples && n.kind == NodeSampled {
		base, baseOff = e.excl, e.exclOff // samples measured it directly
	}
	if n.fromSamples != nil {
		// Its own stacks were split among its sampled children: its
		// exclusive share is what none of them took.
		base, baseOff = e.incl, e.inclOff
	}
	mean, half2 := base.Mean, sq(halfWidth(base))
	off := baseOff
	for _, c := range n.children {
		ce := all[c]
		if ce == nil || c.kind == NodeBlock {
			continue
		}
		if e.source == SourceWindow && ce.source == SourceWindow {
			continue // measured together: already out of n's exclusive time
		}
		if e.source == SourceSamples && n.kind == NodeSampled && ce.source == SourceSamples && n.fromSamples == nil {
			continue // sampled together: likewise
		}
		mean -= ce.incl.Mean
		off -= ce.inclOff
		half2 += sq(halfWidth(ce.incl))
		e.fromChildren += ce.incl.Mean
	}
	half := math.Sqrt(half2)
	mean = max(mean, 0)
	e.excl = Interval{Mean: mean, Low: max(mean-half, 0), High: mean + half, N: base.N}
	e.exclOff = min(max(off, 0), mean)
}

func halfWidth(iv Interval) float64 {
	if iv.N < 2 || math.IsInf(iv.High, 0) || math.IsInf(iv.Low, 0) {
		return 0
	}
	return (iv.High - iv.Low) / 2
}

func sq(x float64) float64 { return x * x }

// sampledEstimate is a sampled node's estimate: its shares over its
// sampled rounds, as scaleSampled leaves them.
func (h *hunter) sampledEstimate(n *node) *est {
	if n.incl.N == 0 && n.all.samples == 0 {
		return nil
	}
	e := &est{source: SourceSamples, incl: n.incl, excl: n.excl, samples: n.all.samples}
	if len(n.rounds) > 0 {
		e.from, e.to = n.rounds[0].Round, n.rounds[len(n.rounds)-1].Round
	}
	if n.all.targetNs > 0 {
		e.inclOff = n.all.sInclOff / n.all.targetNs
		e.exclOff = n.all.sExclOff / n.all.targetNs
	}
	return e
}

// sampledUnder estimates a timed node's inclusive share from the stack
// samples the hunt took (Deep Start's and any since): the weight of the
// stacks in which the functions of its path appear in order, over the
// target's time in the sampling periods. Nil where the hunt has no
// samples, or its path's functions do not all appear in stacks (inlined,
// or left by a tail call).
func (h *hunter) sampledUnder(n *node) *est {
	if h.sampledNs <= 0 {
		return nil
	}
	fns := stackFuncs(n.path)
	known := h.nodeFuncs()
	fns = visibleFrames(fns, h.jumpFunc())
	var w, off float64
	var count uint64
	for _, s := range h.allStacks {
		if inContext(s.Frames, fns, known) {
			w += s.WeightNs
			count += s.Count
			if !s.OnCPU {
				off += s.WeightNs
			}
		}
	}
	if count == 0 {
		return nil
	}
	p := min(w/h.sampledNs, 1)
	// Each sample falls in the context with probability p: the normal
	// approximation of the binomial, over the samples taken.
	half := SamplesZ * math.Sqrt(p*(1-p)/float64(max(h.sampledCount, count)))
	return &est{source: SourceSamples, incl: Interval{Mean: p, Low: max(p-half, 0), High: p + half, N: 2}, inclOff: off / h.sampledNs,
		samples: count, from: h.sampledFrom, to: h.sampledTo}
}

// sampleQuietly samples the target once more after the last round, with
// every instrument withdrawn (for as long as Deep Start did), where the
// hunt ended with the target still running: estimates from samples are
// made of quiet samples only (Deep Start's and these), as the samples of
// instrumented rounds are distorted where the instruments are (a kprobe's
// out-of-line step and return trampoline land in the caller's frame).
func (h *hunter) sampleQuietly() {
	if h.cfg.Sampler == nil || h.cfg.SampleTree || h.cfg.DeepStart <= 0 || h.round == 0 {
		return
	}
	if !strings.HasPrefix(h.stop, "converged") && !strings.HasPrefix(h.stop, "deadline") {
		return // interrupted, or the target exited
	}
	select {
	case <-h.cfg.Done:
		return
	default:
	}
	began := time.Now()
	stacks, err := h.cfg.Sampler.Sample(h.ctx, h.cfg.Target, h.cfg.DeepStart)
	if err != nil {
		return
	}
	stacks, dropped := splitOwn(stacks)
	h.keepStacks(stacks, h.sampleTargetNs(time.Since(began))-dropped, h.round+1, h.round+1)
}

// keepStacks keeps a sampling period's stacks for the estimates: stacks
// over targetNs of the target's time, taken in rounds from to to (0 for
// Deep Start).
func (h *hunter) keepStacks(stacks []Stack, targetNs float64, from, to int) {
	if len(stacks) == 0 {
		return
	}
	if h.sampledNs == 0 {
		h.sampledFrom = from
	}
	h.sampledTo = to
	h.allStacks = append(h.allStacks, stacks...)
	h.sampledNs += targetNs
	for _, s := range stacks {
		h.sampledCount += s.Count
	}
}

// nodeFuncs is the set of functions the hunt's timed nodes stand for:
// the contexts of the instruments' shadow stacks are made of them.
func (h *hunter) nodeFuncs() map[string]bool {
	out := map[string]bool{}
	for _, n := range h.nodes {
		if n.kind != NodeBlock && !n.sampled() {
			out[n.point().Function()] = true
		}
	}
	return out
}

// inContext reports whether a stack runs in the calling context fns (the
// functions of a node's path, outermost first): they appear in its frames
// in order, and between two of them only functions no node stands for
// (not timed, so that a context skips them), as the shadow stacks of the
// instruments see it.
func inContext(frames, fns []string, known map[string]bool) bool {
	i := 0
	for _, f := range frames {
		if i == len(fns) {
			break
		}
		switch {
		case f == fns[i] || strings.HasPrefix(f, fns[i]+"."):
			i++
		case i > 0 && known[f]:
			return false // a node's function between two of the path's
		}
	}
	return i == len(fns)
}

// instrumentCost sets every timed node's InstrumentNs (see Node): per
// call of each instrument over the node's rounds, the calibrated cost per
// hit where the node's exclusive time pays it.
//
//	own(n) = calls(n)·inside(n) + Σ calls(c)·(cost(c) − inside(c)) over n's timed children c
//	         + Σ calls(b)·cost(b) over n's block counters b
func (h *hunter) instrumentCost(r *Run) {
	h.sampledCost(r)
	if !h.cfg.RawCosts {
		return // taken out of every reading already
	}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if n.Kind == NodeSampled || n.Source == "" || n.Source == SourceBurst || n.Source == SourceSamples {
			continue
		}
		spec := h.specFor(h.nodes[i])
		own := float64(n.Calls) * min(h.insideOf(spec), h.costOfSpec(spec))
		for _, c := range h.nodes[i].children {
			cn := &r.Nodes[c.id]
			together := cn.InWindow == n.InWindow && (cn.InWindow || cn.Kind == NodeBlock || cn.Source == n.Source)
			if !together || cn.Kind == NodeSampled {
				continue // not measured with it: its cost is not in n's exclusive time
			}
			cs := h.specFor(c)
			cost := h.costOfSpec(cs)
			if cn.Kind == NodeBlock {
				own += float64(cn.Calls) * cost
				continue
			}
			own += float64(cn.Calls) * max(cost-h.insideOf(cs), 0)
		}
		n.InstrumentNs = max(n.InstrumentNs, min(uint64(own), n.ExclNs))
	}
}

// minCostSamples is how many stack samples a hunt needs before its
// samples judge the instruments' cost in a node.
const minCostSamples = 300

// sampledCost sets InstrumentNs of the timed nodes whose exclusive share
// the stack samples of their own context contradict: the samples that
// caught the instruments were left out (splitOwn), so a node's own
// sampled share is its time without them, and what its timed exclusive
// share holds beyond it (and beyond the samples' interval, and a point)
// is the instruments' cost that the calibration did not take out — a
// syscall root's tracepoints, a kprobe's int3 before the optimizer made
// it a jump. The node's inclusive share must hold that excess as well:
// samples of its context that went to a child's context (a clock read
// the child times, taken after the node's own time was) are not the
// instruments' (the 6.1 truth benchmark's gt1: a helper's 59.4% at its
// call site, its samples mostly in ktime_get under it, all booked as the
// instruments' cost, and the plant was no finding).
func (h *hunter) sampledCost(r *Run) {
	if h.sampledCount < minCostSamples || h.sampledNs <= 0 {
		return
	}
	for _, n := range h.nodes {
		own, ok := h.ownSampled[n]
		out := &r.Nodes[n.id]
		if !ok || out.Kind == NodeSampled || out.Source == SourceSamples || out.TargetNs == 0 {
			continue
		}
		// On the CPU only: the instruments cost CPU time, and a wait is
		// sampled less steadily than a run.
		excess := onCPUExcess(out.Excl.Mean, out.ExclOffCPUNs, out.ExclNs, own/h.sampledNs, h.sampledCount)
		if under := h.sampledUnder(n); under != nil {
			excess = min(excess, onCPUExcess(out.Incl.Mean, out.InclOffCPUNs, out.InclNs, under.incl.Mean-under.inclOff, h.sampledCount))
		}
		if excess > 0.01 {
			out.InstrumentNs = max(out.InstrumentNs, min(uint64(excess*float64(out.TargetNs)), out.ExclNs))
		}
	}
}

// onCPUExcess is what a timed share (its on-CPU part: share less the
// off-CPU part of ns) holds beyond a share p from count samples and its
// interval.
func onCPUExcess(share float64, offNs, ns uint64, p float64, count uint64) float64 {
	p = max(p, 0)
	half := SamplesZ * math.Sqrt(p*(1-p)/float64(count))
	return share*(1-float64(offNs)/float64(max(ns, 1))) - p - half
}

// unexplained adds to the limitations what stays in a node's exclusive
// share for want of a measurement: callees every backend refused,
// callees the budget never allowed, children withdrawn before a round
// measured them, each with the node's exclusive share (the most they can
// hold) and, where stack samples saw them, their own.
func (h *hunter) unexplained(r *Run) {
	refusedBy := map[int][]string{}
	for _, e := range r.Trace {
		if e.Action == "refuse" && e.Spec != "" && e.Node >= 0 && e.Node < len(r.Nodes) && r.Nodes[e.Node].State == StateRefined {
			refusedBy[e.Node] = append(refusedBy[e.Node], e.Spec+" ("+firstClause(e.Reason)+")")
		}
	}
	for _, n := range h.nodes {
		out := &r.Nodes[n.id]
		if out.Excl.Mean < 0.005 || out.Kind == NodeBlock {
			continue
		}
		var missing []string
		missing = append(missing, refusedBy[n.id]...)
		for _, c := range n.deferred {
			missing = append(missing, c.String()+" (deferred: the budget never allowed it)")
		}
		for _, c := range n.children {
			if c.kind != NodeBlock && r.Nodes[c.id].Source == "" && c.state == StateWithdrawn {
				missing = append(missing, c.point().String()+" (withdrawn before a round measured it)")
			}
		}
		if len(missing) == 0 {
			continue
		}
		sort.Strings(missing)
		h.limit("%s: %s of the target's time is its own or that of callees not timed: %s", strings.Join(out.Path, ";"), pct(out.Excl.Mean), strings.Join(dedupe(missing), ", "))
	}
}

func dedupe(xs []string) []string {
	out := xs[:0:0]
	for i, x := range xs {
		if i == 0 || x != xs[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// ContextOf returns the node of r's consistent tree whose calling context
// a kernel stack (function names, outermost first) runs in, as the hunt
// attributed its own samples (see addSampledChildren): the deepest timed
// node whose path's functions appear in the frames in order with no other
// timed node's function between them (see inContext), then down its
// sampled children by the frames that follow; -1 for none. A profile of
// stacks taken without instruments, attributed so, is the ground truth of
// each node's exclusive share.
func (r *Run) ContextOf(frames []string) int {
	known := map[string]bool{}
	sampledKids := map[int]map[string]int{}
	for _, n := range r.Nodes {
		switch {
		case n.Kind == NodeBlock || n.Source == "":
		case n.Kind == NodeSampled && n.Parent >= 0:
			if sampledKids[n.Parent] == nil {
				sampledKids[n.Parent] = map[string]int{}
			}
			sampledKids[n.Parent][n.Point.Function()] = n.ID
		case n.Kind != NodeSampled:
			known[n.Point.Function()] = true
		}
	}
	best, depth := -1, -1
	for i, n := range r.Nodes {
		if n.Kind == NodeBlock || n.Kind == NodeSampled || n.Source == "" || len(n.Path) <= depth {
			continue
		}
		if inContext(frames, r.pathFuncs(i), known) {
			best, depth = i, len(n.Path)
		}
	}
	for best >= 0 {
		next, ok := sampledKids[best][frameAfter(frames, r.Nodes[best].Point.Function())]
		if !ok {
			break
		}
		best = next
	}
	return best
}

// pathFuncs returns the frames of node i's context (see stackFuncs).
func (r *Run) pathFuncs(i int) []string {
	var pts instrument.Path
	for m := &r.Nodes[i]; ; m = &r.Nodes[m.Parent] {
		pts = append(pts, m.Point)
		if m.Parent < 0 {
			break
		}
	}
	slices.Reverse(pts)
	return stackFuncs(pts)
}

// minSampledShare is the smallest share of the target's time a callee the
// samples see below a timed node needs to become a sampled node of its
// own, and minSampledCount the fewest samples.
const (
	minSampledShare = 0.01
	minSampledCount = 20
)

// addSampledChildren splits what each timed node's own context holds in
// the stack samples (Deep Start's, and those of the rounds that sampled)
// among the callees the samples show there, where no instrument timed
// them: refused, deferred, withdrawn unmeasured, or never planned while
// the budget was saturated. Each stack is attributed to the deepest timed
// node whose context it runs in (with the timed nodes' functions as they
// are, before any sampled node joins them); the stacks of a node's own
// context are grouped by the frame after the node's function, and each
// group of at least minSampledShare and minSampledCount samples becomes a
// sampled child, whose own stacks are grouped the same way below it.
// The consistent tree then takes their estimates out of the node's
// exclusive share.
func (h *hunter) addSampledChildren() {
	if h.sampledNs <= 0 || h.cfg.SampleTree {
		return
	}
	known := map[string]bool{}
	var timed []*node
	for _, n := range h.nodes {
		if n.kind != NodeBlock && !n.sampled() && !h.supersededPath(n) {
			known[n.fn()] = true
			timed = append(timed, n)
		}
	}
	own := map[*node][]Stack{}
	jump := h.jumpFunc()
	visible := map[*node][]string{}
	for _, n := range timed {
		visible[n] = visibleFrames(stackFuncs(n.path), jump)
	}
	seen := map[*node]bool{} // nodes whose context some stack runs in
	for _, s := range h.allStacks {
		var best *node
		for _, n := range timed {
			if !inContext(s.Frames, visible[n], known) {
				continue
			}
			seen[n] = true
			if best == nil || len(n.path) > len(best.path) {
				best = n
			}
		}
		if best != nil {
			own[best] = append(own[best], s)
		}
	}
	// Only where the samples saw a node's context can they judge its own
	// time: a context no stack runs in (one measured before a function
	// above it was timed, whose path now skips a function the samples
	// show) has no sampled share, not a share of zero.
	h.ownSampled = map[*node]float64{}
	for _, n := range timed {
		if seen[n] {
			h.ownSampled[n] = h.sampledBelow(n, own[n], 0)
		}
	}
}

// stackFuncs returns the functions a kernel stack of path's context shows,
// outermost first: each point's function, where a call site stands for
// its callee's frame, and a call site followed by its callee's own node
// (the callee timed at its entry under the call site's timer) is that one
// frame, not two.
func stackFuncs(path instrument.Path) []string {
	out := make([]string, 0, len(path))
	for i, pt := range path {
		if pt.IsCallSite() && i+1 < len(path) && !path[i+1].IsCallSite() && path[i+1].Function() == pt.Callee {
			continue
		}
		out = append(out, pt.Function())
	}
	return out
}

// sampledBelow makes sampled children of n from the stacks of n's own
// context (see addSampledChildren), and returns the on-CPU thread time of
// those stacks that stay n's own (for sampledCost).
func (h *hunter) sampledBelow(n *node, stacks []Stack, depth int) float64 {
	var left float64
	for _, s := range stacks {
		if s.OnCPU {
			left += s.WeightNs
		}
	}
	if depth > 16 || len(stacks) == 0 {
		return left
	}
	groups := map[string][]Stack{}
	for _, s := range stacks {
		if c := frameAfter(s.Frames, n.fn()); c != "" && !h.blocking(c) { // the scheduler's frames are the caller's, on the CPU too (Blocker)
			groups[c] = append(groups[c], s)
		}
	}
	names := make([]string, 0, len(groups))
	for c := range groups {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		e := h.stacksEstimate(groups[c], c)
		if e.samples < minSampledCount || e.incl.Mean < minSampledShare {
			continue
		}
		path := extend(n.path, instrument.Point{Func: c})
		if m := h.byKey[path.String()]; m != nil && !m.sampled() {
			continue // a timed node of that path exists: its stacks went to it
		}
		m := h.nodeFor(path)
		m.kind, m.state, m.fromSamples = NodeSampled, StateSampled, e
		m.all.samples = e.samples
		h.sampledBelow(m, groups[c], depth+1)
		for _, s := range groups[c] {
			if s.OnCPU {
				left -= s.WeightNs
			}
		}
	}
	return left
}

// blocking reports whether fn is a scheduler function (see Blocker).
func (h *hunter) blocking(fn string) bool {
	b, ok := h.cfg.Graph.(Blocker)
	return ok && b.Blocking(fn)
}

// frameAfter returns the frame after the last occurrence of fn in frames
// ("" where fn is last or absent).
func frameAfter(frames []string, fn string) string {
	for i := len(frames) - 2; i >= 0; i-- {
		if frames[i] == fn || strings.HasPrefix(frames[i], fn+".") {
			return frames[i+1]
		}
	}
	return ""
}

// stacksEstimate is the estimate of a context from the stacks that run in
// it: its inclusive share is their weight over the target's sampled time
// (binomial interval), its exclusive share the weight of those that end
// in fn.
func (h *hunter) stacksEstimate(stacks []Stack, fn string) *est {
	var w, off, ew, eoff float64
	var count uint64
	for _, s := range stacks {
		w += s.WeightNs
		count += s.Count
		last := s.Frames[len(s.Frames)-1]
		ends := last == fn || strings.HasPrefix(last, fn+".")
		if !s.OnCPU {
			off += s.WeightNs
			if ends {
				eoff += s.WeightNs
			}
		}
		if ends {
			ew += s.WeightNs
		}
	}
	iv := func(x float64) Interval {
		p := min(x/h.sampledNs, 1)
		half := SamplesZ * math.Sqrt(p*(1-p)/float64(max(h.sampledCount, 1)))
		return Interval{Mean: p, Low: max(p-half, 0), High: p + half, N: 2}
	}
	return &est{source: SourceSamples, incl: iv(w), excl: iv(ew), inclOff: off / h.sampledNs, exclOff: eoff / h.sampledNs,
		samples: count, from: h.sampledFrom, to: h.sampledTo}
}
