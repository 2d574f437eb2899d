package search

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// maxFindings bounds the findings of a run.
const maxFindings = 10

// finish turns the hunt's state into the Run.
func (h *hunter) finish() *Run {
	h.withdrawAll()
	h.sampleQuietly()
	h.samplesOnly = h.onlySamples()
	h.markTailCallDuplicates()
	h.addSampledChildren()
	r := h.run
	m := &r.Meta
	m.End = time.Now()
	m.Rounds = h.round
	m.StopReason = h.stop
	m.TargetOpsBy = h.opsBy()
	w := h.reportWindow()
	m.WindowStart, m.WindowRounds, m.WindowNs = w.start, w.rounds(), uint64(w.ns)
	h.updateIntervals()
	r.Nodes = make([]Node, len(h.nodes))
	for i, n := range h.nodes {
		r.Nodes[i] = h.export(n)
	}
	h.scaleSampled(r)
	h.consistent(r)
	h.overhead(r)
	h.instrumentCost(r)
	r.Findings = h.findings(r)
	if h.rootsOver > 0 {
		r.Overhead.OverBudget = fmt.Sprintf("the roots' instruments and the overhead no instrument explains cost up to %.3g%% of CPU, over the --budget of %.3g%%, in %d of %d rounds: they were kept (without them nothing is timed exactly) and nothing more was refined while they cost that; a larger --budget, or a narrower target, lets the hunt go deeper",
			h.rootsOver, h.cfg.BudgetPct, h.saturatedRounds, h.round)
		h.limit("%s", r.Overhead.OverBudget)
	}
	h.fallbackLimits()
	h.noFuncTimersLimit()
	h.unexplained(r)
	h.listings(r)
	return r
}

// onlySamples reports whether the hunt's estimates must all come from
// its stack samples: the target exited before any instrument counted one
// of its calls (before the first round opened, or in it), so that the
// rounds measured nothing of it and Deep Start's samples are all that saw
// it.
func (h *hunter) onlySamples() bool {
	if h.sampledNs <= 0 || h.stop != stopExited {
		return false
	}
	for _, n := range h.nodes {
		if n.all.calls > 0 {
			return false
		}
	}
	return true
}

// opsBy says what an operation of the target is.
func (h *hunter) opsBy() string {
	var names []string
	for _, n := range h.rootNodes() {
		names = append(names, n.point().Func)
	}
	sort.Strings(names)
	return "calls of the roots (" + strings.Join(names, ", ") + ") by " + h.cfg.Target.String()
}

// reportWindow is the window the Run reports: the last one, or, when the
// hunt ended in the round that held a change (the target exited then, or
// the deadline came), the one before it, the last in which the
// instruments were the same throughout.
func (h *hunter) reportWindow() window {
	if w := (window{h.windowStart, h.round, h.windowNs}); w.rounds() > 0 || h.prevWindow.rounds() == 0 {
		return w
	}
	for _, n := range h.nodes {
		n.win = n.prev
	}
	h.reported = true
	return h.prevWindow
}

// reportedWindow is the window reportWindow chose.
func (h *hunter) reportedWindow() window {
	if h.reported {
		return h.prevWindow
	}
	return window{h.windowStart, h.round, h.windowNs}
}

// inWindow reports whether n's reported totals cover the reported window:
// it was live (or sampled) all through it.
func (h *hunter) inWindow(n *node) bool {
	if h.reported {
		return n.win.rounds > 0
	}
	return n.state != StateWithdrawn && n.win.rounds > 0
}

// export makes the Node of n with its measured totals: over the last
// window for a node live at the end, in which every one of them was
// measured together, over its own rounds for a withdrawn one. Its shares
// are set by consistent.
func (h *hunter) export(n *node) Node {
	t := n.all
	if h.inWindow(n) {
		t = n.win
	}
	out := Node{
		ID: n.id, Parent: -1, Point: n.point(), Kind: n.kind, Path: pathStrings(n.path),
		Calls: t.calls, InclNs: t.inclNs, ExclNs: t.exclNs, InclOffCPUNs: t.inclOff, ExclOffCPUNs: t.exclOff,
		Hist: t.hist, Samples: t.samples, RootCalls: t.rootCalls, TargetNs: uint64(t.targetNs),
		Rounds: n.rounds, State: n.state, InWindow: h.inWindow(n), Withdrawn: n.why,
		DeepStartCalls: n.deepStartCalls,
	}
	if n.parent != nil {
		out.Parent = n.parent.id
	}
	if n.sampled() {
		out.InclNs = uint64(t.sIncl + t.sInclOff)
		out.InclOffCPUNs = uint64(t.sInclOff)
		out.ExclNs = uint64(t.sExcl + t.sExclOff)
		out.ExclOffCPUNs = uint64(t.sExclOff)
		out.Backend = string(instrument.Sample)
	} else {
		out.Backend = string(h.backendOf(h.specFor(n)))
		if in := h.specs[h.specFor(n).String()]; in != nil {
			out.Fallback = in.fallback
		}
	}
	out.Incl, out.Excl = n.incl, n.excl
	if out.InWindow {
		out.Incl = h.windowInterval(n, func(r RoundSample) float64 { return r.InclShare })
		out.Excl = h.windowInterval(n, func(r RoundSample) float64 { return r.ExclShare })
	}
	return out
}

// consistent sets every node's shares and times from the estimates (see
// estimate.go): Incl and Excl are its best estimates, and ExclNs (on and
// off CPU) is its exclusive share of its TargetNs, so that its share and
// its times tell the same story. A node never measured keeps no share.
func (h *hunter) consistent(r *Run) {
	ests := h.estimates()
	for _, n := range h.nodes {
		e, out := ests[n], &r.Nodes[n.id]
		if e == nil {
			if n.kind != NodeBlock && out.Calls+out.Samples > 0 {
				// Measured, but another node stands for the same
				// calls (see dropDuplicates, convertShared).
				out.State = StateSuperseded
				out.Incl, out.Excl, out.ExclNs, out.ExclOffCPUNs = Interval{}, Interval{}, 0, 0
			}
			continue
		}
		out.Source, out.From, out.To = e.source, e.from, e.to
		if e.source == SourceSamples && out.Samples == 0 {
			out.Samples = e.samples
		}
		out.Incl, out.Excl = e.incl, e.excl
		switch {
		case h.samplesOnly:
			out.TargetNs = uint64(h.sampledNs) // the time the samples covered
		case out.TargetNs == 0 && e.source == SourceSamples && out.Parent >= 0:
			// A context only the samples saw: its share is of the
			// time its parent's is of.
			out.TargetNs = r.Nodes[out.Parent].TargetNs
		}
		if out.TargetNs == 0 {
			continue
		}
		t := float64(out.TargetNs)
		if e.source == SourceBurst || e.source == SourceSamples && (n.kind != NodeSampled || out.InclNs == 0) {
			// The estimate replaces what the node's own rounds
			// measured, which its own instrument inflated; a sampled
			// node made from the quiet samples at the end has no
			// rounds, and its times are its estimate's.
			out.InclNs = uint64(e.incl.Mean * t)
			out.InclOffCPUNs = min(uint64(e.inclOff*t), out.InclNs)
		}
		out.ExclNs = uint64(e.excl.Mean * t)
		out.ExclOffCPUNs = min(uint64(e.exclOff*t), out.ExclNs)
		out.ChildrenShare = e.fromChildren
	}
}

// windowInterval is the interval of a share over the window's rounds, a
// round the node was not seen in counting as zero.
func (h *hunter) windowInterval(n *node, share func(RoundSample) float64) Interval {
	w := h.reportedWindow()
	var xs []float64
	for _, r := range n.rounds {
		if r.Round >= w.start && r.Round <= w.end {
			xs = append(xs, share(r))
		}
	}
	for len(xs) < w.rounds() && !n.sampled() {
		xs = append(xs, 0)
	}
	return NewInterval(xs, h.cfg.Confidence)
}

// scaleSampled fits sampled nodes to the exact times of their roots: a
// sampled node's times are scaled by the ratio of its root's measured
// inclusive time to the sampled time under that root, and the root's
// exclusive time becomes what its sampled children leave, so that the
// tree adds up. A root with no instrument data keeps the sampled times.
//
// The shares are scaled with the times, so that a node's share and its
// nanoseconds tell the same story: a sampled node's intervals by the same
// factor f. (The per-round root share, what the round's samples leave of
// the root's time clamped at zero, is biased upward where a long wait's
// samples and its syscall's exit fall in different rounds; the totals are
// not.)
func (h *hunter) scaleSampled(r *Run) {
	under := map[int]float64{} // root id → sampled time of its direct sampled children
	for _, n := range r.Nodes {
		if n.Kind == NodeSampled && n.Parent >= 0 && r.Nodes[n.Parent].Kind == NodeRoot && r.Nodes[n.Parent].State != StateSampled {
			under[n.Parent] += float64(n.InclNs)
		}
	}
	for root, sampled := range under {
		rn := &r.Nodes[root]
		if sampled == 0 || rn.InclNs == 0 {
			continue
		}
		f := float64(rn.InclNs) / sampled
		if f > 1 {
			f = 1 // samples that cover less than the root leave the rest exclusive
		}
		for i := range r.Nodes {
			n := &r.Nodes[i]
			if n.Kind == NodeSampled && len(n.Path) > 0 && n.Path[0] == rn.Path[0] {
				n.InclNs = uint64(float64(n.InclNs) * f)
				n.ExclNs = uint64(float64(n.ExclNs) * f)
				n.InclOffCPUNs = uint64(float64(n.InclOffCPUNs) * f)
				n.ExclOffCPUNs = uint64(float64(n.ExclOffCPUNs) * f)
				n.Incl, n.Excl = n.Incl.scaled(f), n.Excl.scaled(f)
				h.nodes[i].incl, h.nodes[i].excl = n.Incl, n.Excl
				h.nodes[i].all.sIncl *= f
				h.nodes[i].all.sInclOff *= f
				h.nodes[i].all.sExcl *= f
				h.nodes[i].all.sExclOff *= f
			}
		}
	}
}

// findings picks the nodes of largest exclusive share in the consistent
// tree, net of what the instruments themselves cost there
// (Node.InstrumentNs), and explains each. A finding needs at least 1% of
// the target's time net of that cost, except the first, which is always
// given where any node was measured: the hunt's own cost is never the
// target's bottleneck, and the limitations name the nodes whose time was
// mostly the instruments'.
func (h *hunter) findings(r *Run) []Finding {
	var ids []int
	for i, n := range r.Nodes {
		if n.Kind == NodeBlock || (n.Calls == 0 && n.Samples == 0) || n.Source == "" {
			continue
		}
		if net := netShare(&n); n.Excl.Mean >= 0.01 && net < 0.01 {
			h.limit("%s: %s of the target's time, of which %s is the instruments' own cost there (calibrated cost per hit × hits): not a finding",
				strings.Join(n.Path, ";"), pct(n.Excl.Mean), pct(n.Excl.Mean-net))
			continue
		}
		ids = append(ids, i)
	}
	sort.SliceStable(ids, func(a, b int) bool { return netShare(&r.Nodes[ids[a]]) > netShare(&r.Nodes[ids[b]]) })
	var out []Finding
	for _, id := range ids {
		n := &r.Nodes[id]
		if len(out) >= maxFindings || (len(out) > 0 && netShare(n) < 0.01) {
			break
		}
		out = append(out, h.finding(r, n))
	}
	return out
}

// netShare is a node's exclusive share less the instruments' own cost in
// it.
func netShare(n *Node) float64 {
	if n.ExclNs == 0 || n.InstrumentNs == 0 {
		return n.Excl.Mean
	}
	return n.Excl.Mean * (1 - float64(n.InstrumentNs)/float64(n.ExclNs))
}

// finding explains one node.
func (h *hunter) finding(r *Run, n *Node) Finding {
	f := Finding{Node: n.ID, Path: n.Path, Calls: n.Calls, ExclShare: n.Excl, Source: n.Source, FromRound: n.From, ToRound: n.To}
	if n.RootCalls > 0 {
		f.CallsPerOp = float64(n.Calls) / float64(n.RootCalls)
	}
	f.P50Ns = instrument.HistQuantile(&n.Hist, 0.5)
	f.P99Ns = instrument.HistQuantile(&n.Hist, 0.99)
	if n.Calls > 0 {
		f.MeanNs = float64(n.InclNs) / float64(n.Calls)
	}
	if n.ExclNs > 0 {
		f.OffCPUShare = float64(n.ExclOffCPUNs) / float64(n.ExclNs)
		f.OnCPUShare = 1 - f.OffCPUShare
	}
	f.InstrumentShare = n.Excl.Mean - netShare(n)
	if n.Parent >= 0 && h.shared(n.Point.Function()) {
		f.Owner = owner(r, n)
		f.OverallShare = h.overallShare(r, n.Point.Function())
	}
	f.Verdict = h.verdict(r, n, &f)
	return f
}

// owner is the function that calls a helper's node: the caller of its
// call site, else its nearest ancestor of another function.
func owner(r *Run, n *Node) string {
	if n.Point.IsCallSite() {
		return n.Point.Func
	}
	for p := n.Parent; p >= 0; p = r.Nodes[p].Parent {
		if f := r.Nodes[p].Point.Function(); f != n.Point.Function() {
			return f
		}
	}
	return ""
}

// shared reports whether fn was measured in more than one calling
// context (or at a call site): a helper whose time belongs to whoever
// calls it.
func (h *hunter) shared(fn string) bool {
	seen := 0
	for _, m := range h.nodes {
		if m.kind != NodeBlock && m.point().Function() == fn {
			if m.point().IsCallSite() {
				return true
			}
			seen++
		}
	}
	return seen > 1
}

// overallShare is fn's exclusive share summed over every context.
func (h *hunter) overallShare(r *Run, fn string) float64 {
	var s float64
	for _, n := range r.Nodes {
		if n.Kind != NodeBlock && n.Point.Function() == fn {
			s += n.Excl.Mean
		}
	}
	return s
}

// verdict says in plain words what a finding is (see the rules inline).
func (h *hunter) verdict(r *Run, n *Node, f *Finding) string {
	fn := n.Point.Function()
	if f.Owner != "" {
		fn = f.Owner + " → " + fn
	}
	op := opName(n.Path[0])
	share := pct(n.Excl.Mean)
	var v string
	switch {
	case f.OffCPUShare >= 0.5: // mostly blocked
		v = fmt.Sprintf("blocked in %s: %s of the target's time off-CPU", fn, pct(n.Excl.Mean*f.OffCPUShare))
		if w := h.waitsUnder(n.Path); w != "" {
			v += ", waiting in " + w
		}
	case f.CallsPerOp >= 10: // cheap but called very often
		v = fmt.Sprintf("%s called %.0f times per %s: %s of the target's time", fn, f.CallsPerOp, op, share)
	case f.OnCPUShare > 0:
		v = fmt.Sprintf("CPU-bound in %s: %s of the target's time on CPU", fn, pct(n.Excl.Mean*f.OnCPUShare))
	default: // a share with no exclusive time behind it to split
		v = fmt.Sprintf("%s: %s of the target's time", fn, share)
	}
	if f.Owner != "" && f.OverallShare > n.Excl.Mean*1.001 {
		v += fmt.Sprintf(", of %s's %s overall", n.Point.Function(), pct(f.OverallShare))
	}
	if f.Calls > 0 {
		v += fmt.Sprintf(" (%.3g per %s, mean %s per call)", f.CallsPerOp, op, fmtNs(f.MeanNs))
	}
	if f.InstrumentShare >= 0.1*n.Excl.Mean && f.InstrumentShare >= 0.005 {
		v += fmt.Sprintf(" (of which %s is the instruments' own cost)", pct(f.InstrumentShare))
	}
	switch {
	case n.State == StateSampled || n.Source == SourceSamples && n.Kind == NodeSampled:
		v += fmt.Sprintf(" (estimated from %d stack samples)", n.Samples)
	case h.samplesOnly:
		v += fmt.Sprintf(" (estimated from %d stack samples: the target exited before any instrument counted a call)", n.Samples)
	case n.Source == SourceSamples:
		v += fmt.Sprintf(" (share estimated from %d stack samples: timing it exactly cost more than the budget; calls counted exactly)", n.Samples)
	case n.Source == SourceBurst:
		v += fmt.Sprintf(" (share estimated from %d rounds of exact timing, its instrument's cost taken out: timing it for longer cost more than the budget)", len(n.Rounds))
	}
	if b := h.hottestBlock(r, n); b != "" {
		v += "; " + b
	}
	return v
}

// waitsUnder names the frame where the off-CPU samples most often saw the
// thread blocked under the innermost function of path they pass through.
// A scheduler function timed right under a syscall root (schedule under
// __x64_sys_read, the frames between them untimed) is in no off-CPU
// stack, which the kernel takes from the first frame out of the
// scheduler: its caller's samples say where the thread waited
// (pipe_read).
func (h *hunter) waitsUnder(path []string) string {
	for i := len(path) - 1; i >= 0; i-- {
		pt, err := instrument.ParsePoint(path[i])
		if err != nil {
			continue
		}
		if w := h.waitsIn(pt.Function()); w != "" {
			return w
		}
	}
	return ""
}

// waitsIn names the frame where off-CPU samples under fn most often saw
// the thread blocked.
func (h *hunter) waitsIn(fn string) string {
	best, w := "", 0.0
	for f, x := range h.waits[fn] {
		if x > w || (x == w && f < best) {
			best, w = f, x
		}
	}
	return best
}

// hottestBlock describes the most executed block counter under n.
func (h *hunter) hottestBlock(r *Run, n *Node) string {
	var best *Node
	for i := range r.Nodes {
		b := &r.Nodes[i]
		if b.Kind == NodeBlock && b.Parent == n.ID && (best == nil || b.Calls > best.Calls) {
			best = b
		}
	}
	if best == nil || best.Calls == 0 || best.RootCalls == 0 {
		return ""
	}
	return fmt.Sprintf("hottest block %s runs %.3g times per %s", best.Point, float64(best.Calls)/float64(best.RootCalls), opName(n.Path[0]))
}

// opName names the operation a root stands for: "write()" for a syscall
// entry, "call of F" otherwise.
func opName(root string) string {
	if name, _, ok := instrument.Syscall(root); ok {
		return name + "()"
	}
	return "call of " + root
}

// fmtNs formats a duration in ns.
func fmtNs(ns float64) string {
	return time.Duration(ns).Round(time.Duration(max(1, math.Pow(10, math.Floor(math.Log10(max(ns, 1)))-2)))).String()
}

// overhead fills Run.Overhead.
func (h *hunter) overhead(r *Run) {
	o := &r.Overhead
	o.CostPerHitNs = h.costs
	if t := float64(h.run.Meta.TargetNs) + h.compensatedNs; t > 0 {
		o.CompensatedPct = 100 * h.compensatedNs / t
	}
	if h.round > 0 {
		o.PredictedPct = h.predSum / float64(h.round)
	}
	if h.measRounds > 0 {
		o.MeasuredPct = h.measSum / float64(h.measRounds)
		o.MeasuredBy = "the instrumenter's kernel-measured run time, over all CPUs"
	} else {
		o.MeasuredBy = "not measured: the instrumenter reports no run time"
	}
	if h.ctlRounds > 0 {
		o.ControllerPct = h.ctlSum / float64(h.ctlRounds)
	}
	if h.steadyRounds > 0 {
		o.SteadyControllerPct = h.steadySum / float64(h.steadyRounds)
	}
	if h.longestRound > h.cfg.Round {
		h.limit("autoprof's own CPU was over the --budget of %.3g%%: rounds grew from %v to as long as %v (at most %v) to hold it down, so fewer decisions a second",
			h.cfg.BudgetPct, h.cfg.Round, h.longestRound.Round(time.Millisecond), h.cfg.MaxRound)
	}
	o.WholeSubtree = h.wholeSubtree()
	if secs := h.lastRead.Sub(h.firstRead).Seconds(); h.run.Meta.TargetOps > 0 && secs > 0 {
		o.HuntOpsPerSec = float64(h.run.Meta.TargetOps) / secs
		if o.BaseOpsPerSec > 0 {
			o.SlowdownPct = max(0, 100*(1-o.HuntOpsPerSec/o.BaseOpsPerSec))
		}
		if o.BareOpsPerSec > 0 {
			o.BareSlowdownPct = max(0, 100*(1-o.HuntOpsPerSec/o.BareOpsPerSec))
		}
	}
}

// wholeSubtree counts the functions a full instrumentation of the roots'
// subtrees would time: those reachable from the roots through the Graph's
// callees and the indirect targets observed, found breadth first and
// counted up to Config.SubtreeCap (a lower bound when it stops there).
func (h *hunter) wholeSubtree() int {
	if h.cfg.Graph == nil {
		return 0
	}
	seen := map[string]bool{}
	var queue []string
	for _, n := range h.rootNodes() {
		f := n.point().Func
		if !seen[f] {
			seen[f] = true
			queue = append(queue, f)
		}
	}
	observed := map[string][]string{}
	for _, n := range h.nodes {
		for t := range n.targets {
			observed[n.point().Func] = append(observed[n.point().Func], t)
		}
	}
	for len(queue) > 0 && len(seen) < h.cfg.SubtreeCap {
		f := queue[0]
		queue = queue[1:]
		g := h.graphOf(f)
		for _, c := range append(append([]string(nil), g.callees.Funcs...), observed[f]...) {
			if !seen[c] && len(seen) < h.cfg.SubtreeCap {
				seen[c] = true
				queue = append(queue, c)
			}
		}
	}
	return len(seen)
}

// listings disassembles the findings' functions where the Graph can.
func (h *hunter) listings(r *Run) {
	l, ok := h.cfg.Graph.(Lister)
	if !ok {
		return
	}
	seen := map[string]bool{}
	for _, f := range r.Findings {
		n := r.Nodes[f.Node]
		fn := n.Point.Func
		if seen[fn] || n.Kind == NodeSampled {
			continue
		}
		seen[fn] = true
		lst, err := l.Listing(fn)
		if err != nil {
			continue
		}
		markInstrumented(&lst, r, fn)
		r.Listings = append(r.Listings, lst)
	}
}

// markInstrumented marks the listing lines where the hunt placed
// instruments, with what they counted.
func markInstrumented(l *Listing, r *Run, fn string) {
	counts := map[uint64]uint64{}
	for _, n := range r.Nodes {
		if n.Point.Func == fn {
			counts[n.Point.Offset] += n.Calls
		}
	}
	for i := range l.Lines {
		if c, ok := counts[l.Lines[i].Offset]; ok {
			l.Lines[i].Instrumented = true
			l.Lines[i].Calls = c
		}
	}
}
