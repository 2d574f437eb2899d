package reports

// Statistics of one matched calling context (see Diff).

import (
	"maps"
	"math"
	"sort"
	"strings"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// side is run's exact totals for node i.
func side(run *search.Run, i int) Side {
	n := run.Nodes[i]
	s := Side{Node: i, Point: n.Point.String(), Calls: n.Calls, CallsPerOp: perOp(run, &n, n.Calls),
		MeanNs: math.NaN(), P50Ns: instrument.HistQuantile(&n.Hist, 0.5), P99Ns: instrument.HistQuantile(&n.Hist, 0.99),
		InclShare: share(run, &n, n.InclNs), ExclShare: share(run, &n, n.ExclNs),
		OnCPU: share(run, &n, n.ExclNs-min(n.ExclOffCPUNs, n.ExclNs)), OffCPU: share(run, &n, n.ExclOffCPUNs), Rounds: len(n.Rounds)}
	if n.Calls > 0 && n.InclNs > 0 {
		s.MeanNs = float64(n.InclNs) / float64(n.Calls)
	}
	return s
}

func perRound(rounds []search.RoundSample, v func(search.RoundSample) (float64, bool)) []float64 {
	out := make([]float64, 0, len(rounds))
	for _, r := range rounds {
		if x, ok := v(r); ok {
			out = append(out, x)
		}
	}
	return out
}

// metrics are the per-round values compared: four times, which compare
// per operation of the node's root over each run's last window (see
// compareNode), and calls per operation, which do not depend on what was
// instrumented and use every round the node was measured in.
var metrics = []struct {
	name  string
	time  bool
	value func(search.RoundSample) (float64, bool)
	field func(*NodeDiff) *Change
}{
	{"excl", true, func(r search.RoundSample) (float64, bool) { return r.ExclShare, true }, func(d *NodeDiff) *Change { return &d.Excl }},
	{"incl", true, func(r search.RoundSample) (float64, bool) { return r.InclShare, true }, func(d *NodeDiff) *Change { return &d.Incl }},
	{"oncpu", true, func(r search.RoundSample) (float64, bool) { return r.OnCPUShare, true }, func(d *NodeDiff) *Change { return &d.OnCPU }},
	{"offcpu", true, func(r search.RoundSample) (float64, bool) { return r.OffCPU, true }, func(d *NodeDiff) *Change { return &d.OffCPU }},
	{"calls/op", false, func(r search.RoundSample) (float64, bool) {
		ops := roundOps(r)
		return float64(r.Calls) / float64(ops), ops > 0
	}, func(d *NodeDiff) *Change { return &d.PerOp }},
}

// roundOps is the operations a round sample counts per: its root's calls,
// or the target's operations.
func roundOps(r search.RoundSample) uint64 {
	if r.RootCalls > 0 {
		return r.RootCalls
	}
	return r.TargetOps
}

// UnitNsPerOp is the unit of a Change of time: nanoseconds per operation.
const UnitNsPerOp = "ns/op"

// nsPerOp turns a per-round share into the round's nanoseconds per
// operation.
func nsPerOp(share float64, r search.RoundSample) (float64, bool) {
	ops := roundOps(r)
	if ops == 0 || r.TargetNs <= 0 {
		return 0, false
	}
	return share * r.TargetNs / float64(ops), true
}

// sideEstimate is one side's time per operation for a time metric: the
// mean of its per-round values x where it has two or more (fromRounds),
// else node i's estimate from stack samples; ok is false where it has
// neither.
func sideEstimate(run *search.Run, i int, metric string, x []float64) (e Estimate, fromRounds, ok bool) {
	if e, ok := meanEstimate(x); ok {
		return e, true, true
	}
	e, ok = samplesEstimate(run, i, metric)
	return e, false, ok
}

// samplesEstimate is node i's time per operation for a time metric
// ("excl", "incl", "oncpu", "offcpu") where it is an estimate from stack
// samples (search.SourceSamples: a context no instrument measured round by
// round), with the standard error its interval gives; false for a node
// measured otherwise, or a run that counted no operation. The operation
// is the run's: its target time over its operations.
func samplesEstimate(run *search.Run, i int, metric string) (Estimate, bool) {
	n := &run.Nodes[i]
	if n.Source != search.SourceSamples || run.Meta.TargetOps == 0 {
		return Estimate{}, false
	}
	opNs := float64(run.Meta.TargetNs) / float64(run.Meta.TargetOps)
	iv, frac := n.Excl, 1.0
	switch metric {
	case "incl":
		iv = n.Incl
	case "oncpu", "offcpu":
		off := 0.0
		if n.ExclNs > 0 {
			off = min(float64(n.ExclOffCPUNs)/float64(n.ExclNs), 1)
		}
		frac = 1 - off
		if metric == "offcpu" {
			frac = off
		}
	}
	se := (iv.High - iv.Mean) / search.SamplesZ
	return Estimate{Mean: iv.Mean * frac * opNs, SE: se * frac * opNs}, true
}

// instrumentedBelow returns the paths, relative to node i and with
// canonical names, of the nodes below it that run measured to the end
// (profiled): what was instrumented under it.
func instrumentedBelow(run *search.Run, i int, in []bool) map[string]bool {
	kids := map[int][]int{}
	for k, n := range run.Nodes {
		if n.Parent >= 0 && in[k] && n.Kind != search.NodeSampled {
			kids[n.Parent] = append(kids[n.Parent], k)
		}
	}
	out := map[string]bool{}
	var walk func(at int, prefix string)
	walk = func(at int, prefix string) {
		for _, k := range kids[at] {
			p := prefix + ";" + CanonicalName(run.Nodes[k].Point.String())
			out[p] = true
			walk(k, p)
		}
	}
	walk(i, "")
	return out
}

// directly keeps the paths of instrumentedBelow that are one level down:
// the children right below the node.
func directly(below map[string]bool) map[string]bool {
	out := map[string]bool{}
	for p := range below {
		if strings.Count(p, ";") == 1 {
			out[p] = true
		}
	}
	return out
}

// instrumentCost is what one instrument below a context costs it per
// operation of its root, ns: sub lies in the context's inclusive time,
// excl in its exclusive time. block marks a block counter (a kprobe at
// func+off), whose cost per hit is not the same from run to run.
type instrumentCost struct {
	sub, excl float64
	block     bool
}

// costBelow is what each instrument below node i costs per operation of
// its root, by each run's calibration bounded by its measurements
// (hitCost; the default where the run has none), by path relative to i
// (as instrumentedBelow), for each node below it measured to the end:
// every instrument below i lies whole in i's inclusive time; the part of
// a direct child's instrument outside its own window (a timer's cost less
// its "BACKEND:inside" part, a block counter's whole cost) lies in i's
// exclusive time.
func costBelow(run *search.Run, i int, in []bool, bounds costBounds) map[string]instrumentCost {
	kids := map[int][]int{}
	for k, n := range run.Nodes {
		if n.Parent >= 0 && in[k] && n.Kind != search.NodeSampled {
			kids[n.Parent] = append(kids[n.Parent], k)
		}
	}
	out := map[string]instrumentCost{}
	var walk func(at int, prefix string)
	walk = func(at int, prefix string) {
		for _, k := range kids[at] {
			n := run.Nodes[k]
			p := prefix + ";" + CanonicalName(n.Point.String())
			if n.RootCalls > 0 {
				perOp := float64(n.Calls) / float64(n.RootCalls)
				hit, inside := bounds.hitCost(run, n)
				c := instrumentCost{sub: perOp * hit, block: n.Kind == search.NodeBlock}
				if at == i {
					c.excl = perOp * max(hit-inside, 0)
				}
				out[p] = c
			}
			walk(k, p)
		}
	}
	walk(i, "")
	return out
}

// explainingCost is, for a context measured with other instruments below
// it in the two runs, the most that instruments can have added to one
// run's time per operation with nothing changed in the kernel: those
// only that run has, and its block counters. A block counter is a
// kprobe, an int3 until the kprobe optimizer turns it into a jump, and
// it runs late (after an RCU-tasks grace period, re-armed by every
// probe registered meanwhile) and not where another probe lies within
// the jump's five bytes: the same counter can cost one run an int3 and
// the other a jump (docs/reports.md, "Statistics"). Timers of one
// backend cost both runs alike. sub is for inclusive time, excl for
// exclusive time.
func explainingCost(this, other map[string]instrumentCost) instrumentCost {
	var d instrumentCost
	for p, c := range this {
		if _, ok := other[p]; !ok || c.block {
			d.sub, d.excl = d.sub+c.sub, d.excl+c.excl
		}
	}
	return d
}

// costBounds are upper bounds on what instruments cost per hit, ns, from
// the runs' own measurements: a timer measures at least the part of its
// own cost inside its window on every call, so none costs more inside it
// than the shortest mean on-CPU time per call that any timer of its
// backend measured (over minTimedCalls calls) in runs of one kernel on
// one host; and a function's block counters together cost it no more
// than its exclusive on-CPU time per operation in that run. A calibration
// can exceed them: it measures the backend apart from the workload (a
// kprobe counter before the optimizer turns it into a jump); see
// docs/reports.md, "Statistics", for what was measured.
type costBounds struct {
	inside map[string]float64              // backend → bound on a timer's inside part
	count  map[*search.Run]map[int]float64 // run → function node → bound on each of its block counters
	// countCal is, by backend, the largest calibration of a block
	// counter among the runs of one kernel on one host: calibrations of
	// one probe scatter from hunt to hunt, and the margin wants the most
	// one can cost.
	countCal map[string]float64
	sameHost map[*search.Run]bool // runs of the first run's kernel and host
}

// minTimedCalls is how many calls a timed context needs before its mean
// time per call bounds its instrument's cost.
const minTimedCalls = 100

// boundCosts derives costBounds from runs; runs of other kernels or hosts
// than the first bound no timer.
func boundCosts(runs ...*search.Run) costBounds {
	b := costBounds{inside: map[string]float64{}, count: map[*search.Run]map[int]float64{}, countCal: map[string]float64{}, sameHost: map[*search.Run]bool{}}
	for _, run := range runs {
		sameKernel := run.Meta.Kernel == runs[0].Meta.Kernel && run.Meta.Host == runs[0].Meta.Host
		b.sameHost[run] = sameKernel
		blocks := map[int]float64{} // function node → its block counters' hits per operation
		for _, n := range run.Nodes {
			if n.Kind == search.NodeBlock && n.Parent >= 0 && n.RootCalls > 0 {
				blocks[n.Parent] += float64(n.Calls) / float64(n.RootCalls)
			}
			if sameKernel && n.Kind == search.NodeBlock {
				if c, ok := blockCalibration(run, n.Backend); ok && c > b.countCal[n.Backend] {
					b.countCal[n.Backend] = c
				}
			}
			if sameKernel && (n.Kind == search.NodeFunction || n.Kind == search.NodeRoot) && n.Calls >= minTimedCalls {
				v := float64(n.InclNs-min(n.InclOffCPUNs, n.InclNs)) / float64(n.Calls)
				if old, ok := b.inside[n.Backend]; !ok || v < old {
					b.inside[n.Backend] = v
				}
			}
		}
		bounds := map[int]float64{}
		for i, hits := range blocks {
			f := run.Nodes[i]
			if f.RootCalls > 0 && f.Calls >= minTimedCalls && hits > 0 {
				bounds[i] = float64(f.ExclNs-min(f.ExclOffCPUNs, f.ExclNs)) / float64(f.RootCalls) / hits
			}
		}
		b.count[run] = bounds
	}
	return b
}

// hitCost is the cost per hit of the instrument measuring n, and the part
// of it inside its window: its backend's calibration in run (the default
// where the run has none), scaled down to the bounds.
func (b costBounds) hitCost(run *search.Run, n search.Node) (hit, inside float64) {
	costs := run.Overhead.CostPerHitNs
	if n.Kind == search.NodeBlock {
		c, ok := blockCalibration(run, n.Backend)
		if !ok {
			c = search.DefaultCostNs[n.Backend]
		}
		if same, ok := b.countCal[n.Backend]; ok && b.sameHost[run] {
			c = max(c, same)
		}
		if bound, ok := b.count[run][n.Parent]; ok {
			c = min(c, bound)
		}
		return c, 0
	}
	hit, ok := costs[n.Backend]
	if !ok {
		return search.DefaultCostNs[n.Backend], 0
	}
	inside = costs[n.Backend+":inside"]
	if bound, ok := b.inside[n.Backend]; ok && inside > bound {
		hit, inside = hit*bound/inside, bound
	}
	return hit, inside
}

// blockCalibration is run's calibrated cost of a block counter of
// backend.
func blockCalibration(run *search.Run, backend string) (float64, bool) {
	c, ok := run.Overhead.CostPerHitNs[backend+":count"]
	if !ok {
		c, ok = run.Overhead.CostPerHitNs[backend]
	}
	return c, ok
}

// windowRounds returns the round numbers of the window run's in-window
// nodes report (Meta.WindowStart and WindowRounds) that any node
// reported, in order (every round, in a well-formed run: the roots report
// each one).
func windowRounds(run *search.Run) []int {
	if run.Meta.WindowRounds <= 0 {
		return nil
	}
	start, end := run.Meta.WindowStart, run.Meta.WindowStart+run.Meta.WindowRounds-1
	if start <= 0 {
		// Runs saved before Meta.WindowStart existed: the last rounds.
		end = -1
		for _, m := range run.Nodes {
			for _, r := range m.Rounds {
				end = max(end, r.Round)
			}
		}
		start = end - run.Meta.WindowRounds + 1
	}
	seen := map[int]bool{}
	for _, m := range run.Nodes {
		for _, r := range m.Rounds {
			if r.Round >= start && r.Round <= end {
				seen[r.Round] = true
			}
		}
	}
	out := make([]int, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Ints(out)
	return out
}

// minWindow is the fewest rounds a last window needs for exclusive shares
// to be compared over it alone; with fewer, they use every round.
const minWindow = 3

// allRounds returns every round node i was measured in, with the window's
// rounds it was not seen in as zeros.
func allRounds(run *search.Run, i int, window []int) []search.RoundSample {
	n := run.Nodes[i]
	out := append([]search.RoundSample(nil), n.Rounds...)
	if !n.InWindow || n.Kind == search.NodeSampled {
		return out
	}
	seen := map[int]bool{}
	for _, r := range n.Rounds {
		seen[r.Round] = true
	}
	for _, r := range window {
		if !seen[r] {
			out = append(out, search.RoundSample{Round: r})
		}
	}
	return out
}

// roundsOf returns the per-round samples behind the statistics of node i:
// for a node in the last window (whose rounds are window, from
// windowRounds), the window's rounds, a round it was not seen in counting
// as zero (as the controller's intervals do: before the window a withdrawn
// child's time was not yet in its exclusive time); otherwise all the
// rounds it was measured in.
func roundsOf(run *search.Run, i int, window []int) []search.RoundSample {
	n := run.Nodes[i]
	if !n.InWindow || len(window) < minWindow {
		return n.Rounds
	}
	seen := map[int]bool{}
	var out []search.RoundSample
	for _, r := range n.Rounds {
		if r.Round >= window[0] && r.Round <= window[len(window)-1] {
			out = append(out, r)
			seen[r.Round] = true
		}
	}
	if n.Kind == search.NodeSampled {
		return out
	}
	for _, r := range window {
		if !seen[r] {
			out = append(out, search.RoundSample{Round: r})
		}
	}
	return out
}

// comparer is what compareNode needs of the two runs as a whole, derived
// once per comparison.
type comparer struct {
	base, new *search.Run
	wb, wn    []int  // each run's last window (windowRounds)
	inB, inN  []bool // the nodes each run measured to the end (profiled)
	bounds    costBounds
	opts      DiffOptions
}

func newComparer(base, new *search.Run, opts DiffOptions) *comparer {
	return &comparer{base: base, new: new, wb: windowRounds(base), wn: windowRounds(new),
		inB: profiled(base), inN: profiled(new), bounds: boundCosts(base, new), opts: opts}
}

// compareNode compares the matched pair (b, n). Its times (inclusive,
// exclusive, on-CPU, off-CPU) compare per operation over each run's last
// window, where the instruments were the same throughout: shares would
// move with every instrument anywhere. An instrument costs time where it
// is hit, so a context's time holds the cost of every instrument below it,
// and two hunts that refined differently would disagree about it with
// nothing changed in the kernel. So where the two runs measured a context
// with other instruments below it (not alike), a change of its times is
// significant only beyond what instruments can have added to the slower
// run (explainingCost: for inclusive time every instrument only it has
// below the context, and its block counters; for exclusive and on-CPU time
// the part of a direct child's instrument outside its window; none for
// off-CPU time), by the run's calibration within the bounds the runs' own
// timings set (costBounds). Calibrations are too uncertain to subtract, so
// the cost widens the margin instead:
//
//	margin = max(MinRelative·|base mean|, MinShare·base time per op,
//	             cost(slower run's instruments))   (unlike pairs)
//
// Alike pairs pay for the same instruments, but each run took out its own
// calibration of them (search.RoundSample's InclCost, ExclCost), and two
// calibrations of one machine differ: the difference of what the two
// runs took out per operation widens the margin likewise.
//
// Latency histograms compare only alike pairs.
func (c *comparer) compareNode(b, n int) NodeDiff {
	base, new, o := c.base, c.new, c.opts
	nb, nn := base.Nodes[b], new.Nodes[n]
	d := NodeDiff{Path: nn.Path, BasePath: nb.Path, Base: side(base, b), New: side(new, n)}
	// Alike: measured with the same instruments below, so that an
	// instrument's own cost is the same in both and their times compare.
	// Where the two runs timed different children right below, a child
	// timed in one run only has its time in this context's exclusive
	// time there and in its own in the other: the exclusive times do not
	// compare, whatever the instruments cost (the inclusive one does).
	xb, xn := instrumentedBelow(base, b, c.inB), instrumentedBelow(new, n, c.inN)
	like := maps.Equal(xb, xn) // sets: every value true
	d.Alike = like
	kidsDiffer := !like && !maps.Equal(directly(xb), directly(xn))
	cb, cn := costBelow(base, b, c.inB, c.bounds), costBelow(new, n, c.inN, c.bounds)
	up, down := explainingCost(cn, cb), explainingCost(cb, cn) // what can make new slower, and base
	rb, rn := roundsOf(base, b, c.wb), roundsOf(new, n, c.wn)
	ab, an := allRounds(base, b, c.wb), allRounds(new, n, c.wn)
	opNs := float64(base.Meta.TargetNs) / float64(max(base.Meta.TargetOps, 1)) // the base's time per operation
	for _, m := range metrics {
		if !m.time { // calls per operation: what instruments cost does not change them
			xb, xn := perRound(ab, m.value), perRound(an, m.value)
			var mean float64
			if len(xb) > 0 {
				mean = math.Abs(sum(xb) / float64(len(xb)))
			}
			w := WelchTest(xb, xn, o.Confidence, o.MinRelative*mean)
			*m.field(&d) = Change{Base: w.Base, New: w.New, Diff: w.Diff, Low: w.Low, High: w.High, Margin: o.MinRelative * mean, P: w.P, Q: math.NaN()}
			continue
		}
		v := func(r search.RoundSample) (float64, bool) {
			s, _ := m.value(r)
			return nsPerOp(s, r)
		}
		xb, xn := perRound(rb, v), perRound(rn, v)
		// A side with no per-round times (a context of stack samples)
		// stands as its estimate from samples.
		eb, roundsB, okB := sideEstimate(base, b, m.name, xb)
		en, roundsN, okN := sideEstimate(new, n, m.name, xn)
		if kidsDiffer && m.name != "incl" && roundsB && roundsN {
			nan := math.NaN()
			*m.field(&d) = Change{Base: eb.Mean, New: en.Mean, Diff: en.Mean - eb.Mean, Low: nan, High: nan, P: nan, Q: nan, Unit: UnitNsPerOp}
			continue
		}
		var mean float64
		switch {
		case okB && !roundsB:
			mean = math.Abs(eb.Mean)
		case len(xb) > 0:
			mean = math.Abs(sum(xb) / float64(len(xb)))
		}
		margin := math.Max(o.MinRelative*mean, o.MinShare*opNs)
		var cost float64
		// Estimates from samples are made of quiet samples, taken with
		// no instrument in: no instrument's cost is in them.
		if !like && (roundsB || roundsN) {
			slower := up
			if len(xn) > 0 && sum(xn)/float64(len(xn)) < sum(xb)/float64(max(len(xb), 1)) {
				slower = down
			}
			switch m.name {
			case "incl":
				cost = slower.sub
			case "excl", "oncpu":
				cost = slower.excl
			}
			margin = math.Max(margin, cost)
		}
		if like && roundsB && roundsN {
			// Measured alike, the instruments cost the same on both
			// sides, but each run took out its own calibration of that
			// cost: where the calibrations differ, so do the times,
			// with no change in the kernel.
			cost = math.Abs(meanCost(rb, m.name) - meanCost(rn, m.name))
			margin = math.Max(margin, cost)
		}
		w := WelchTest(xb, xn, o.Confidence, margin)
		if okB && okN && !(roundsB && roundsN) {
			w = EstimateTest(eb, en, o.Confidence, margin)
		}
		*m.field(&d) = Change{Base: w.Base, New: w.New, Diff: w.Diff, Low: w.Low, High: w.High,
			Margin: margin, InstrumentCost: cost, P: w.P, Q: math.NaN(), Unit: UnitNsPerOp}
	}
	d.Latency = LatencyChange{A: math.NaN(), P: math.NaN(), Q: math.NaN()}
	if like {
		r := HistRankTest(nb.Hist[:], nn.Hist[:], len(rb), len(rn), o.MinRelative)
		d.Latency = LatencyChange{A: r.A, P: r.P, Q: math.NaN()}
	}
	return d
}

// meanCost is the mean over rounds of the instruments' calibrated cost
// that the hunt took out of a time metric (search.RoundSample's InclCost,
// ExclCost: paid on the CPU, so none of the off-CPU time), per operation.
func meanCost(rounds []search.RoundSample, metric string) float64 {
	var s float64
	var n int
	for _, r := range rounds {
		c := 0.0
		switch metric {
		case "incl":
			c = r.InclCost
		case "excl", "oncpu":
			c = r.ExclCost
		}
		if x, ok := nsPerOp(c, r); ok {
			s += x
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return s / float64(n)
}

// absOr0 is |x|, or 0 for NaN, for sorting.
func absOr0(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return math.Abs(x)
}

func sum(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s
}

// adjust applies Benjamini–Hochberg to every p-value of every node and
// marks the significant changes.
func adjust(nodes []NodeDiff, alpha float64) {
	var ps []float64
	for i := range nodes {
		for _, m := range metrics {
			ps = append(ps, m.field(&nodes[i]).P)
		}
		ps = append(ps, nodes[i].Latency.P)
	}
	qs := BenjaminiHochberg(ps)
	k := 0
	for i := range nodes {
		d := &nodes[i]
		for _, m := range metrics {
			c := m.field(d)
			c.Q = qs[k]
			c.Significant = c.Q <= alpha
			d.Significant = d.Significant || c.Significant
			k++
		}
		d.Latency.Q = qs[k]
		d.Latency.Significant = d.Latency.Q <= alpha
		d.Significant = d.Significant || d.Latency.Significant
		k++
	}
}

// negligible withdraws the significance of changes in calls per operation
// and latency of contexts that hold less than minShare of the target's
// time in both runs: real, perhaps, but not worth a reader's attention.
func negligible(nodes []NodeDiff, minShare float64) {
	for i := range nodes {
		d := &nodes[i]
		if math.Max(orZero(d.Base.InclShare), orZero(d.New.InclShare)) >= minShare {
			continue
		}
		d.PerOp.Significant, d.Latency.Significant = false, false
		d.Significant = d.Excl.Significant || d.Incl.Significant || d.OnCPU.Significant || d.OffCPU.Significant
	}
}

func orZero(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return x
}

// effect is the ranking key of a node (see Diff).
func effect(d *NodeDiff) [4]float64 {
	sig := func(c Change, v float64) float64 {
		if c.Significant && !math.IsNaN(v) {
			return math.Abs(v)
		}
		return 0
	}
	rel := 0.0
	if d.PerOp.Base > 0 {
		rel = d.PerOp.Diff / d.PerOp.Base
	}
	lat := 0.0
	if d.Latency.Significant {
		lat = math.Abs(d.Latency.A - 0.5)
	}
	return [4]float64{sig(d.Excl, d.Excl.Diff), sig(d.Incl, d.Incl.Diff), sig(d.PerOp, rel), lat}
}

func rank(nodes []NodeDiff) {
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := &nodes[i], &nodes[j]
		if a.Significant != b.Significant {
			return a.Significant
		}
		if a.Significant {
			ea, eb := effect(a), effect(b)
			for k := range ea {
				if ea[k] != eb[k] {
					return ea[k] > eb[k]
				}
			}
		}
		da, db := absOr0(a.Excl.Diff), absOr0(b.Excl.Diff)
		if da != db {
			return da > db
		}
		return strings.Join(a.Path, ";") < strings.Join(b.Path, ";")
	})
}

// unmatched lists the nodes of run that no pair holds (pair index which),
// and the fraction of the run's exclusive time that the paired nodes hold.
func unmatched(run *search.Run, pairs [][2]int, which int, other *search.Run) ([]Unmatched, float64) {
	paired := map[int]bool{}
	for _, p := range pairs {
		paired[p[which]] = true
	}
	var out []Unmatched
	var matched, total uint64
	sameKernel := run.Meta.Kernel == other.Meta.Kernel
	for i, n := range run.Nodes {
		total += n.ExclNs
		if paired[i] {
			matched += n.ExclNs
			continue
		}
		u := Unmatched{Path: n.Path, Node: i, Kind: string(n.Kind), Calls: n.Calls, CallsPerOp: perOp(run, &n, n.Calls),
			InclShare: share(run, &n, n.InclNs), ExclShare: share(run, &n, n.ExclNs)}
		if !sameKernel && (n.Kind == search.NodeBlock || n.Point.Offset != 0) {
			u.Why = "block offsets are specific to a kernel build"
		} else if n.Parent >= 0 && !paired[n.Parent] {
			u.Why = "its caller is unmatched"
		}
		out = append(out, u)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].InclShare > out[j].InclShare })
	if total == 0 {
		return out, math.NaN()
	}
	return out, float64(matched) / float64(total)
}
