package search

import (
	"math"
	"slices"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestFitOlder: a window node's children measured in other windows fit
// in what the window left the node: scaled down, with their subtrees,
// where they add up to more; left as they are where they fit. (The 6.12
// truth benchmark's gt4: a burst of 20% from the first round, beside a
// child measured in the window at all of its parent's time; the tree
// added up to 205%.)
func TestFitOlder(t *testing.T) {
	iv := func(m float64) Interval { return Interval{Mean: m, Low: m, High: m, N: 4} }
	for _, c := range []struct {
		name                      string
		parent, windowKid, burst  float64
		wantBurst, wantGrandchild float64
	}{
		{"over", 1.0, 0.9, 0.4, 0.1, 0.05},
		{"fits", 1.0, 0.5, 0.4, 0.4, 0.2},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &node{path: instrument.Path{{Func: "p"}}}
			w := &node{path: instrument.Path{{Func: "p"}, {Func: "w"}}, parent: p}
			b := &node{path: instrument.Path{{Func: "p"}, {Func: "b"}}, parent: p}
			g := &node{path: instrument.Path{{Func: "p"}, {Func: "b"}, {Func: "g"}}, parent: b}
			p.children, b.children = []*node{w, b}, []*node{g}
			all := map[*node]*est{
				p: {source: SourceWindow, incl: iv(c.parent), excl: iv(c.parent - c.windowKid)},
				w: {source: SourceWindow, incl: iv(c.windowKid), excl: iv(c.windowKid)},
				b: {source: SourceBurst, incl: iv(c.burst), excl: iv(c.burst / 2)},
				g: {source: SourceBurst, incl: iv(c.burst / 2), excl: iv(c.burst / 2)},
			}
			fitOlder(p, all[p], all)
			if got := all[b].incl.Mean; math.Abs(got-c.wantBurst) > 1e-9 {
				t.Errorf("burst child %.3f, want %.3f", got, c.wantBurst)
			}
			if got := all[g].incl.Mean; math.Abs(got-c.wantGrandchild) > 1e-9 {
				t.Errorf("its child %.3f, want %.3f", got, c.wantGrandchild)
			}
			if got := all[w].incl.Mean; got != c.windowKid {
				t.Errorf("window child %.3f, want it as measured, %.3f", got, c.windowKid)
			}
		})
	}
}

// TestSteadyRounds: a withdrawn node's estimate leaves out the rounds in
// which instruments went in or out and the target took more than
// disturbedRatio times its median time per operation.
// The rounds are the 6.12 truth benchmark's gt19_f17 (a 3 ms sleep, 38% of
// a write), rounds 1 to 7: in round 5 the target took 28.5 ms per write
// against 8.5, a stall charged to the CPU loop beside it, and the sleep's
// share fell to 12%; with it, the sleep's estimate (33.9%) came second to
// the loop's (36.7%).
func TestSteadyRounds(t *testing.T) {
	ms := func(x float64) float64 { return x * 1e6 }
	rs := []RoundSample{
		{Round: 1, TargetOps: 18, TargetNs: ms(212), InclShare: 0.291},
		{Round: 2, TargetOps: 77, TargetNs: ms(642), InclShare: 0.41},
		{Round: 3, TargetOps: 31, TargetNs: ms(252), InclShare: 0.43},
		{Round: 4, TargetOps: 145, TargetNs: ms(1581), InclShare: 0.334},
		{Round: 5, TargetOps: 32, TargetNs: ms(912), InclShare: 0.124},
		{Round: 6, TargetOps: 45, TargetNs: ms(390), InclShare: 0.388},
		{Round: 7, TargetOps: 39, TargetNs: ms(339), InclShare: 0.398},
	}
	changed := map[int]bool{4: true, 5: true} // instruments went in at the end of round 3
	var got []int
	for _, r := range steadyRounds(rs, changed) {
		got = append(got, r.Round)
	}
	// Round 4, 1.25 times the median per write, its sleep's share 33%
	// against 39 to 43% in the steady ones, is left out too.
	if want := []int{1, 2, 3, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("steady rounds %v, want %v", got, want)
	}
	// The same slow round with the text unchanged is the workload's own.
	if kept := steadyRounds(rs, map[int]bool{2: true}); len(kept) != len(rs) {
		t.Errorf("a slow round with no change of the text left out: %d of %d kept", len(kept), len(rs))
	}
	h := &hunter{cfg: Config{Settings: Settings{Confidence: DefaultConfidence, MinRounds: DefaultMinRounds}}, textChanged: changed}
	n := &node{path: instrument.Path{{Func: "gt19_f17"}}, state: StateWithdrawn, why: whyBudget, rounds: rs}
	if e := h.inclusive(n); e.incl.Mean <= 0.367 || e.incl.N != 5 {
		t.Errorf("estimate %.3f over %d rounds, want above the loop's 0.367 over the 5 steady rounds", e.incl.Mean, e.incl.N)
	}
	few := rs[3:5] // two rounds: no median to tell by
	if got := steadyRounds(few, changed); len(got) != 2 {
		t.Errorf("%d of 2 rounds kept, want both", len(got))
	}
}

// TestOwnSampledOnlyWhereSeen: a node measured before a function above it
// was timed (its path skips sysfs_kf_write, which a later branch times)
// runs in no stack's context now; the samples give it no own share, where
// they gave it zero and its whole exclusive time was booked as the
// instruments' cost (the 6.1 truth benchmark's gt2: the helper's 25.6%
// under gt2_f17, not a finding). The later branch's node has its own.
func TestOwnSampledOnlyWhereSeen(t *testing.T) {
	h := &hunter{graph: map[string]*graphInfo{}, tree: tree{byKey: map[string]*node{}, roots: map[string]bool{}}}
	h.sampledNs, h.sampledCount = 1e9, 100
	pts := func(fns ...string) instrument.Path {
		var p instrument.Path
		for _, f := range fns {
			p = append(p, instrument.Point{Func: f})
		}
		return p
	}
	oldSite := h.nodeFor(append(pts("ksys_write", "gt2_store", "gt2_f17"), instrument.Point{Func: "gt2_f17", Offset: 0x58, Callee: "gt2_h28"}))
	newF17 := h.nodeFor(pts("ksys_write", "sysfs_kf_write", "gt2_store", "gt2_f17"))
	h.allStacks = []Stack{{Frames: []string{"ksys_write", "sysfs_kf_write", "gt2_store", "gt2_f17", "gt2_h28"}, OnCPU: true, Count: 100, WeightNs: 1e9}}
	h.addSampledChildren()
	if ns, ok := h.ownSampled[oldSite]; ok {
		t.Errorf("the old branch's call site has an own sampled share, %v ns: no stack runs in its context", ns)
	}
	if _, ok := h.ownSampled[newF17]; !ok {
		t.Error("the later branch's gt2_f17 has no sampled share: its stacks run in its context")
	}
}

// TestRoundsEstimateOffCPU: a sleep withdrawn after a round in which the
// text changed and the target took two and a half times its time per
// operation (the 6.1 truth benchmark's gt6_f18, rounds 1 to 4) keeps the
// off-CPU part of its time from all its rounds, applied to the share of
// the steady ones: on the CPU 5% of its share (as over all its rounds),
// where its off-CPU share over all rounds left 36% of it on the CPU, and
// the samples then booked that as the instruments' cost.
func TestRoundsEstimateOffCPU(t *testing.T) {
	h := &hunter{textChanged: map[int]bool{4: true}}
	h.cfg.Confidence, h.cfg.MinRounds = 0.95, 3
	n := &node{kind: NodeFunction, state: StateWithdrawn, path: instrument.Path{{Func: "gt6_f18"}}}
	for i, r := range []struct {
		ops          uint64
		msPerOp      float64
		excl, offcpu float64
	}{{30, 8.62, 0.355, 0.344}, {37, 8.99, 0.349, 0.337}, {51, 8.40, 0.375, 0.362}, {69, 21.63, 0.160, 0.147}} {
		tn := float64(r.ops) * r.msPerOp * 1e6
		n.rounds = append(n.rounds, RoundSample{Round: i + 1, Calls: r.ops, TargetOps: r.ops, InclShare: r.excl, ExclShare: r.excl, OffCPU: r.offcpu, TargetNs: tn})
		c := instrument.ContextReading{Calls: r.ops, InclNs: uint64(r.excl * tn), ExclNs: uint64(r.excl * tn), InclOffCPUNs: uint64(r.offcpu * tn), ExclOffCPUNs: uint64(r.offcpu * tn)}
		n.all.add(&c, r.ops, tn)
	}
	e := h.inclusive(n)
	if e.source != SourceRounds || math.Abs(e.incl.Mean-0.36) > 0.002 {
		t.Fatalf("estimate %s %.3f, want the steady rounds' 36%%", e.source, e.incl.Mean)
	}
	if on := e.incl.Mean - e.inclOff; on < 0 || on > 0.08*e.incl.Mean {
		t.Errorf("on the CPU %.1f%% of the target's time of %.1f%%, want at most 8%% of it", 100*on, 100*e.incl.Mean)
	}
}

// TestSampledCostInclusive: a helper timed at its call site, 59% of the
// target's time, whose samples ran in the clock read under it (a child
// timed too) has an own sampled share of nothing, yet its context holds
// all the samples its time says: that is no instruments' cost (the 6.1
// truth benchmark's gt1: the plant, all booked as the instruments' cost,
// was no finding). A syscall root whose timed share holds twice what the
// samples put in and under it keeps the difference as the instruments'
// cost.
func TestSampledCostInclusive(t *testing.T) {
	h := &hunter{graph: map[string]*graphInfo{}, tree: tree{byKey: map[string]*node{}, roots: map[string]bool{}}}
	h.sampledNs, h.sampledCount = 1e9, 1000
	pts := func(fns ...string) instrument.Path {
		var p instrument.Path
		for _, f := range fns {
			p = append(p, instrument.Point{Func: f})
		}
		return p
	}
	site := h.nodeFor(append(pts("__x64_sys_write", "gt1_f18"), instrument.Point{Func: "gt1_f18", Offset: 0x58, Callee: "gt1_h28"}))
	clock := h.nodeFor(append(site.path, instrument.Point{Func: "ktime_get"}))
	read := h.nodeFor(pts("__x64_sys_read"))
	h.allStacks = []Stack{
		{Frames: []string{"__x64_sys_write", "gt1_f18", "gt1_h28", "ktime_get"}, OnCPU: true, Count: 590, WeightNs: 0.59e9},
		{Frames: []string{"__x64_sys_read", "vfs_read"}, OnCPU: true, Count: 150, WeightNs: 0.15e9},
		{Frames: []string{"__x64_sys_write"}, OnCPU: true, Count: 260, WeightNs: 0.26e9},
	}
	h.addSampledChildren()
	r := &Run{Nodes: make([]Node, len(h.nodes))}
	const target = 1e9
	set := func(n *node, excl, incl float64) {
		r.Nodes[n.id] = Node{Kind: NodeFunction, Source: SourceWindow, TargetNs: target,
			Excl: Interval{Mean: excl, N: 5}, Incl: Interval{Mean: incl, N: 5}, ExclNs: uint64(excl * target), InclNs: uint64(incl * target)}
	}
	set(h.nodes[0], 0.26, 0.85)
	set(site, 0.58, 0.59)
	set(clock, 0.01, 0.01)
	set(read, 0.30, 0.30)
	h.sampledCost(r)
	if got := r.Nodes[site.id].InstrumentNs; got != 0 {
		t.Errorf("the call site's time: %.1f%% booked as the instruments' cost, want none", 100*float64(got)/target)
	}
	if got := float64(r.Nodes[read.id].InstrumentNs) / target; got < 0.1 || got > 0.15 {
		t.Errorf("the read root's instruments' cost %.1f%%, want about 15%% less the samples' interval", 100*got)
	}
}
