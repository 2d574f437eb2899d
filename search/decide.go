package search

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/autoprof/autoprof/internal/instrument"
)

// decide applies the decision rules after a round and reports whether it
// changed the instruments. Let θ be the threshold (a fraction), and
// I(n), X(n) the Student's t intervals (NewInterval, level
// Config.Confidence) of node n's per-round inclusive and exclusive
// shares: I over every round n was measured in, X over the rounds since
// its set of instrumented children last changed (its epoch). No rule
// looks at a node measured in fewer than Config.MinRounds rounds.
//
//   - Withdraw: I(n).High < θ, so n is significantly below the
//     threshold. n and its subtree are withdrawn; an instrument goes when
//     no node it measures is left.
//   - Refine: I(n).Low > θ, so n is significantly above the threshold,
//     and n was not refined: each callee the Graph gives (direct, tail and
//     static calls) gets a timer, and each indirect call site a target
//     recorder; targets observed later get timers (insertTargets).
//   - Refine to blocks: n was refined, X(n).Low > θ (its own code, or
//     callees that cannot be instrumented, holds a significant share) and
//     no callee of n is left to instrument: each basic block of n gets a
//     counter, where the backend allows offsets.
//   - Budget: see enforceBudget and admit.
//
// Candidates for refinement are taken in decreasing order of value
// (I(n).Mean for callees, X(n).Mean for blocks) as long as the budget
// allows.
func (h *hunter) decide() bool {
	h.updateIntervals()
	changed := h.lateRoots()
	h.scheduleWatch(changed)
	if h.withdrawCold() {
		changed = true
	}
	if h.withdrawCounted() {
		changed = true
	}
	if h.convertShared() {
		changed = true
	}
	if h.enforceBudget() {
		changed = true
	}
	if h.refine() {
		changed = true
	}
	if changed {
		h.lastChange = h.round
		h.newWindow()
	}
	return changed
}

// updateIntervals recomputes every measured node's intervals.
func (h *hunter) updateIntervals() {
	for _, n := range h.nodes {
		if len(n.rounds) == 0 {
			continue
		}
		incl := make([]float64, len(n.rounds))
		var excl []float64
		for i, r := range n.rounds {
			incl[i] = r.InclShare
			if r.Round >= n.epoch {
				excl = append(excl, r.ExclShare)
			}
		}
		n.incl = NewInterval(incl, h.cfg.Confidence)
		n.excl = NewInterval(excl, h.cfg.Confidence)
		if n.excl.N >= 2 {
			n.lastExcl = n.excl.Mean
		}
	}
}

// decidable reports whether n is a timed node the rules may act on.
func (h *hunter) decidable(n *node) bool {
	switch n.kind {
	case NodeRoot, NodeFunction, NodeTarget:
	default:
		return false
	}
	return n.state != StateWithdrawn && n.state != StateSampled && len(n.rounds) >= h.cfg.MinRounds
}

// withdrawCounted withdraws the block counters of a function once they
// counted MinRounds whole rounds: their counts per operation name the hot
// block, and they cost a kprobe hit per execution of the block (an int3
// until the kprobe optimizer makes it a jump, so what they add to the
// function's time differs from hunt to hunt); the window that follows
// measures the function without them. Their nodes keep their counts.
func (h *hunter) withdrawCounted() bool {
	changed := false
	for _, in := range h.sortedSpecs() {
		if in.live == nil || in.spec.Kind != instrument.Count || in.spec.Offset == 0 || h.round-in.since+1 < h.cfg.MinRounds {
			continue
		}
		for _, n := range in.nodes {
			n.state, n.why = StateWithdrawn, whyCounted
		}
		h.close(in, fmt.Sprintf("block counted over %d rounds", h.round-in.since+1))
		changed = true
	}
	return changed
}

// coldNodes returns the nodes the withdrawal rule takes: those the rules
// may act on (decidable) whose inclusive interval lies wholly below θ,
// roots aside. A root stays however cold, as it stays over the budget:
// its calls are the target's operations that every share and count per
// operation is taken over (a cold fsync root withdrawn after three
// rounds of 161 left the fsync workload's run with 7,121 of its 566,572
// fsyncs).
func coldNodes(nodes []*node, theta float64, decidable func(*node) bool) []*node {
	var out []*node
	for _, n := range nodes {
		if n.kind != NodeRoot && decidable(n) && n.incl.Below(theta) {
			out = append(out, n)
		}
	}
	return out
}

// withdrawCold withdraws every node significantly below the threshold.
func (h *hunter) withdrawCold() bool {
	changed := false
	for _, n := range coldNodes(h.nodes, h.theta(), h.decidable) {
		iv := n.incl
		reason := fmt.Sprintf("inclusive share %s significantly below the threshold %.3g%%: high %.3g%% < %.3g%%",
			pct(iv.Mean), h.cfg.ThresholdPct, 100*iv.High, h.cfg.ThresholdPct)
		if h.withdrawNode(n, "withdraw", &iv, reason) {
			changed = true
		}
	}
	return changed
}

// withdrawNode withdraws n's subtree and every instrument left without a
// node to measure; it reports whether an instrument went.
func (h *hunter) withdrawNode(n *node, action string, stat *Interval, reason string) bool {
	if n.state == StateWithdrawn {
		return false
	}
	h.event(action, n, h.specFor(n).String(), stat, reason)
	changed := false
	n.subtree(func(m *node) {
		if m.state == StateWithdrawn {
			return
		}
		m.state = StateWithdrawn
		for _, in := range h.instrumentsOf(m) {
			if in.live != nil && !in.wanted() {
				h.close(in, "no node left to measure")
				changed = true
			}
		}
	})
	if n.parent != nil {
		n.parent.epoch = h.nextFull()
	}
	return changed
}

// instrumentsOf returns the instruments that exist for m: its own spec and
// the target recorders of its function's indirect sites.
func (h *hunter) instrumentsOf(m *node) []*inserted {
	var out []*inserted
	if in := h.specs[h.specFor(m).String()]; in != nil {
		out = append(out, in)
	}
	return append(out, m.recorders...)
}

// candidate is a refinement the rules ask for.
type candidate struct {
	n      *node
	blocks bool
	value  float64
}

// refine plans and admits refinements, most valuable first; nothing
// while the budget is saturated (see saturate).
func (h *hunter) refine() bool {
	if h.saturated {
		return false
	}
	changed := false
	for _, c := range refineCandidates(h.nodes, h.theta(), h.cfg.MinRounds, h.cfg.NoBlocks, h.decidable) {
		if h.admit(c) {
			changed = true
		}
	}
	if h.insertTargets() {
		changed = true
	}
	return changed
}

// refineCandidates returns the refinements the rules ask for, most
// valuable first: a node the rules may act on (decidable) whose inclusive
// interval lies wholly above θ and that was not refined (its callees,
// value I(n).Mean); a refined node with callees the budget deferred (the
// rest of them); a refined node with no callee left to instrument whose
// exclusive interval over MinRounds rounds or more lies wholly above θ
// (its basic blocks, value X(n).Mean), unless noBlocks.
func refineCandidates(nodes []*node, theta float64, minRounds int, noBlocks bool, decidable func(*node) bool) []candidate {
	var cands []candidate
	for _, n := range nodes {
		if !decidable(n) {
			continue
		}
		switch {
		case !n.refined && n.incl.Above(theta):
			cands = append(cands, candidate{n: n, value: n.incl.Mean})
		case n.refined && len(n.deferred) > 0:
			cands = append(cands, candidate{n: n, value: n.incl.Mean})
		case n.refined && !n.blocked && !noBlocks && n.excl.N >= minRounds && n.excl.Above(theta):
			cands = append(cands, candidate{n: n, blocks: true, value: n.excl.Mean})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].value > cands[j].value })
	return cands
}

// plan is the instruments a refinement would insert and the nodes it
// would create.
type plan struct {
	specs    []instrument.Spec
	children []instrument.Path
	kinds    []NodeKind
	rate     float64 // estimated hits per second of each new instrument
}

// admit plans candidate c and inserts what the budget allows.
func (h *hunter) admit(c candidate) bool {
	n := c.n
	var p plan
	if c.blocks {
		p = h.planBlocks(n)
	} else {
		p = h.planCallees(n)
	}
	inserted := h.insertPlan(n, p)
	switch {
	case c.blocks:
		n.blocked = true
		if inserted > 0 {
			h.event("block-refine", n, "", &n.excl, fmt.Sprintf(
				"exclusive share %s significantly above the threshold with no callee left: low %.3g%% > %.3g%%; %d block counters",
				pct(n.excl.Mean), 100*n.excl.Low, h.cfg.ThresholdPct, inserted))
		}
	case !n.refined:
		n.refined = true
		n.state = StateRefined
		h.event("refine", n, "", &n.incl, fmt.Sprintf(
			"inclusive share %s significantly above the threshold: low %.3g%% > %.3g%%; %d callee instruments, %d deferred",
			pct(n.incl.Mean), 100*n.incl.Low, h.cfg.ThresholdPct, inserted, len(n.deferred)))
	case inserted > 0:
		h.event("refine", n, "", &n.incl, fmt.Sprintf("%d deferred callee instruments inserted, %d still deferred", inserted, len(n.deferred)))
	}
	return inserted > 0
}

// planCallees plans timers on n's callees and target recorders on its
// indirect call sites. Callees the Deep Start samples saw hot come first.
func (h *hunter) planCallees(n *node) plan {
	p := plan{rate: n.lastRate}
	if len(n.deferred) > 0 { // a refinement the budget cut short
		for _, c := range n.deferred {
			p.children = append(p.children, extend(n.path, c))
			p.kinds = append(p.kinds, NodeFunction)
		}
		n.deferred = nil
		return p
	}
	fn := n.fn()
	g := h.graphOf(fn)
	if g.err != nil {
		h.event("refuse", n, fn, nil, fmt.Sprintf("callees of %s: %v", fn, g.err))
		n.exhausted = true
		return p
	}
	hot := h.hotCallees(fn)
	callees := h.throughRefused(n, g.callees.Funcs) // no scheduler function: a wait is its caller's
	callees = append(callees, h.jumpedTo(n, callees)...)
	sort.SliceStable(callees, func(i, j int) bool { return hot[callees[i]] > hot[callees[j]] })
	for _, c := range callees {
		for _, pt := range h.pointsFor(n, c) {
			p.children = append(p.children, extend(n.path, pt))
			p.kinds = append(p.kinds, NodeFunction)
		}
	}
	capture := true
	for _, off := range g.callees.Indirect {
		spec := instrument.Spec{Point: instrument.Point{Func: fn, Offset: off}, Kind: instrument.Targets, Target: h.cfg.Target}
		if errors.Is(h.check(n, spec), instrument.ErrNotSupported) {
			capture = false
			continue
		}
		p.specs = append(p.specs, spec)
	}
	if !capture {
		h.blind[n] = true
		h.targetsFromStacks(n, h.deep)
	}
	return p
}

// maxJumpedTo bounds the callees jumpedTo adds to one refinement.
const maxJumpedTo = 4

// jumpedTo returns the functions n's function may reach by a jump, which
// its static callees do not name (a jump through a pointer: sysfs_kf_write
// to the attribute's store method by ops->store): Deep Start's stacks show
// them right below n's parent, which does not call them itself, and never
// below n (hunter.jumpEdge; until the rounds end, the hunt's samples are
// Deep Start's). The hottest few are timed under n; one n does not reach
// counts no call and is withdrawn as cold.
func (h *hunter) jumpedTo(n *node, callees []string) []string {
	j := h.jumpsOf()
	if n.parent == nil || j == nil {
		return nil
	}
	parent := n.parent.fn()
	pg := h.graphOf(parent)
	if pg.err != nil {
		return nil
	}
	skip := map[string]bool{n.fn(): true, parent: true}
	for _, f := range append(slices.Clone(pg.callees.Funcs), callees...) {
		skip[f] = true
	}
	hot := h.hotCallees(parent)
	var out []string
	for f := range hot {
		if !skip[f] && !h.blocking(f) && h.jumpEdge(j, parent, n.fn(), f) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(a, b int) bool { return hot[out[a]] > hot[out[b]] || hot[out[a]] == hot[out[b]] && out[a] < out[b] })
	return out[:min(len(out), maxJumpedTo)]
}

// targetsFromStacks stands in for target recorders where the backend has
// none (n is in h.blind): a frame that stacks show directly below n's
// function and that is not among its static callees was reached through
// one of its indirect calls (the unwinder reports real frames, not
// inlined ones), and becomes one of n's observed targets, which
// insertTargets times once n is refined. The stacks are Deep Start's when
// n is refined, then every round's: while some node is blind the hunt
// samples in every round. A target no sample caught stays unseen; the
// limitations say that the backend captures no targets.
func (h *hunter) targetsFromStacks(n *node, stacks []Stack) {
	fn := n.fn()
	known := map[string]bool{fn: true}
	for _, c := range h.graphOf(fn).callees.Funcs {
		known[c] = true
	}
	for _, s := range stacks {
		for i := 0; i+1 < len(s.Frames); i++ {
			c := s.Frames[i+1]
			if s.Frames[i] != fn || known[c] || n.targets[c] {
				continue
			}
			if n.targets == nil {
				n.targets = map[string]bool{}
			}
			n.targets[c] = true
			h.event("target", n, c, nil, "seen below "+fn+" in the stack samples, not a static callee: reached through an indirect call")
		}
	}
}

// pointsFor returns where callee c of n's function is timed: at its call
// sites in n's function where c is shared (see sharedWhy) and the
// backend can time them there, else at its entry.
func (h *hunter) pointsFor(n *node, c string) []instrument.Point {
	why := h.sharedWhy(n, c)
	if why == "" {
		return []instrument.Point{{Func: c}}
	}
	pts := h.callSites(n, c)
	if len(pts) == 0 {
		return []instrument.Point{{Func: c}}
	}
	h.event("call-site", n, c, nil, fmt.Sprintf("%s is timed where %s calls it (%d sites): %s", c, n.fn(), len(pts), why))
	return pts
}

// callSites returns the call-site points of callee c in n's function,
// nil unless the backend accepts every one of them.
func (h *hunter) callSites(n *node, c string) []instrument.Point {
	g := h.graphOf(n.fn())
	var pts []instrument.Point
	for _, s := range g.callees.Sites {
		if s.Func != c {
			continue
		}
		pt := instrument.Point{Func: n.fn(), Offset: s.Off, Callee: c}
		if h.quietCheck(instrument.Spec{Point: pt, Kind: instrument.Timer, Target: h.cfg.Target}) != nil {
			return nil // the callee is timed at its entry instead: no refusal to report
		}
		pts = append(pts, pt)
	}
	return pts
}

// sharedWhy says why callee c of n is better timed at its call sites
// than at its entry, "" where it is not: an entry timer on c, measured
// before, was hit at least twice as often as the contexts the hunt
// measures called it (other tasks and other callers pay for it), or c is
// measured under another caller already. Where n has a child for c
// already (Deep Start timed it), it stays as it is.
func (h *hunter) sharedWhy(n *node, c string) string {
	for _, ch := range n.children {
		if ch.fn() == c && !ch.superseded && ch.state != StateWithdrawn {
			return ""
		}
	}
	entry := h.specs[instrument.Spec{Point: instrument.Point{Func: c}, Kind: instrument.Timer}.String()]
	if entry != nil && entry.live != nil {
		return "" // its entry timer, live, measures this context for nothing more
	}
	if h.graphOf(n.fn()).callees.Elsewhere[c] {
		return "" // n's function reaches it by a tail jump or from a .cold part too: call sites would miss those calls
	}
	if entry != nil && entry.measured {
		if in, target := entry, h.targetRate(entry); in.rate >= 2*target && in.rate > 0 {
			return fmt.Sprintf("its entry timer was hit %.0f times a second, the contexts measured called it %.0f times", in.rate, target)
		}
	}
	contexts := 0
	for _, m := range h.nodes {
		if m.kind != NodeBlock && !m.superseded && m.fn() == c && m.parent != nil && m.parent.fn() != n.fn() {
			contexts++
		}
	}
	if contexts >= 1 {
		return fmt.Sprintf("it is measured in %d other calling context(s) already", contexts)
	}
	return ""
}

// targetRate is how often the target called an instrument's point in
// the contexts the hunt measures, per second, in the last round.
func (h *hunter) targetRate(in *inserted) float64 {
	var r float64
	for _, n := range in.nodes {
		r += n.lastRate
	}
	return r
}

// convertShared replaces a live entry timer that other tasks and callers
// hit far more often than the target's measured contexts call it (twice
// or more, and costing a tenth of the budget or more) by timers at the
// call sites of its hot contexts: each context of at least half the
// threshold gets its parent function's call sites, and its node is
// superseded; colder contexts are withdrawn with their estimates.
func (h *hunter) convertShared() bool {
	changed := false
	for _, in := range h.sortedSpecs() {
		if in.live == nil || in.root || in.owner != nil || in.spec.Kind != instrument.Timer || in.spec.IsCallSite() || !in.measured {
			continue
		}
		target := h.targetRate(in)
		if in.rate < 2*target || h.costPct(in) < h.cfg.BudgetPct/10 {
			continue
		}
		for _, n := range in.nodes {
			if n.state == StateWithdrawn || n.parent == nil || len(n.rounds) == 0 {
				continue
			}
			if n.incl.Mean < h.theta()/2 {
				if h.decidable(n) {
					h.withdrawNode(n, "withdraw", &n.incl, "its function is shared and this context is cold")
				}
				continue
			}
			pts := h.callSites(n.parent, n.fn())
			if len(pts) == 0 {
				continue
			}
			p := plan{rate: n.lastRate}
			for _, pt := range pts {
				p.children = append(p.children, extend(n.parent.path, pt))
				p.kinds = append(p.kinds, NodeFunction)
			}
			h.event("call-site", n, in.key, &n.incl, fmt.Sprintf("hit %.0f times a second, %.0f of them in the contexts measured: timed where %s calls it instead", in.rate, target, n.parent.fn()))
			if h.insertPlan(n.parent, p) > 0 {
				changed = true
			}
			if h.allLive(pts) {
				n.superseded = true
				h.withdrawNode(n, "withdraw", &n.incl, "superseded by its call-site timers")
				changed = true
			}
		}
		if !in.wanted() {
			h.close(in, "timed at its call sites instead")
			changed = true
		}
	}
	return changed
}

// allLive reports whether every point has a live timer.
func (h *hunter) allLive(pts []instrument.Point) bool {
	for _, pt := range pts {
		if in := h.specs[instrument.Spec{Point: pt, Kind: instrument.Timer}.String()]; in == nil || in.live == nil {
			return false
		}
	}
	return true
}

// maxThrough bounds the callees planned through refused functions, and
// throughDepth how deep it looks.
const (
	maxThrough   = 64
	throughDepth = 3
)

// throughRefused replaces each callee that a placement rule refuses
// (ErrUnsafe: notrace, blacklisted, ...) by its own callees, down to
// throughDepth levels, so that the search goes around a function it may
// not instrument; the paths then skip it, as they skip every function
// without an instrument. A backend that cannot time functions at all
// (ErrNotSupported) is not gone around.
func (h *hunter) throughRefused(n *node, callees []string) []string {
	var out []string
	seen := map[string]bool{n.fn(): true}
	var walk func(fns []string, depth int)
	walk = func(fns []string, depth int) {
		for _, c := range fns {
			if seen[c] || len(out) >= maxThrough || h.blocking(c) {
				continue
			}
			seen[c] = true
			err := h.check(n, instrument.Spec{Point: instrument.Point{Func: c}, Kind: instrument.Timer, Target: h.cfg.Target})
			switch {
			case err == nil:
				out = append(out, c)
			case errors.Is(err, instrument.ErrUnsafe) && depth < throughDepth:
				if g := h.graphOf(c); g.err == nil {
					walk(g.callees.Funcs, depth+1)
				}
			}
		}
	}
	walk(callees, 0)
	return out
}

// planBlocks plans counters on n's basic blocks.
func (h *hunter) planBlocks(n *node) plan {
	p := plan{rate: n.lastRate}
	fn := n.fn()
	blocks, err := h.blocksOf(fn)
	if err != nil {
		h.event("refuse", n, fn, nil, fmt.Sprintf("basic blocks of %s: %v", fn, err))
		return p
	}
	for _, off := range blocks[:min(len(blocks), maxBlocks)] {
		p.children = append(p.children, extend(n.path, instrument.Point{Func: fn, Offset: off}))
		p.kinds = append(p.kinds, NodeBlock)
	}
	return p
}

// maxBlocks bounds the block counters of one function.
const maxBlocks = 64

// insertPlan checks and inserts a plan's instruments within the budget,
// creates the nodes they will measure, and returns how many went in.
// Children whose instrument the budget does not allow yet are kept in
// n.deferred for a later round.
func (h *hunter) insertPlan(n *node, p plan) int {
	inserted := 0
	for i := 0; i < len(p.children); i++ {
		path := p.children[i]
		spec := instrument.Spec{Point: path[len(path)-1], Kind: instrument.Timer, Target: h.cfg.Target}
		if p.kinds[i] == NodeBlock {
			spec.Kind = instrument.Count
		}
		in := h.specs[spec.String()]
		if in == nil || in.live == nil {
			if err := h.check(n, spec); err != nil {
				if p.kinds[i] == NodeBlock && errors.Is(err, instrument.ErrNotSupported) {
					h.limit("no basic-block counters: %v", err)
					break
				}
				continue
			}
			if !h.affordable(p.rate, spec) && !h.makeRoom(h.addPct(p.rate, spec), n.incl.Mean, "making room for the callees of "+n.key) {
				if n.deferredAt == 0 {
					n.deferredAt = h.round
				}
				n.deferred = append(n.deferred, spec.Point)
				continue
			}
			var err error
			if in, err = h.insert(n, spec, p.rate); err != nil {
				if errors.Is(err, instrument.ErrBusy) {
					if p.kinds[i] == NodeFunction { // tried again with the deferred
						if n.deferredAt == 0 {
							n.deferredAt = h.round
						}
						n.deferred = append(n.deferred, spec.Point)
					}
					continue
				}
				if spec.IsCallSite() && !errors.Is(err, errLiveCap) && !errors.Is(err, errHysteresis) {
					// The kernel refused the call site (a static call or
					// jump label there): time the callee at its entry.
					entry := instrument.Point{Func: spec.Callee}
					p.children = append(p.children, extend(n.path, entry))
					p.kinds = append(p.kinds, NodeFunction)
				}
				continue
			}
			inserted++
		}
		child := h.nodeFor(path)
		child.kind = p.kinds[i]
		if child.state == StateWithdrawn && n.state != StateWithdrawn {
			child.state, child.why = StateLive, "" // planned again: measure it anew
		}
		if !containsNode(in.nodes, child) {
			in.nodes = append(in.nodes, child)
		}
	}
	for _, spec := range p.specs {
		if in := h.specs[spec.String()]; in != nil && in.live != nil {
			continue
		}
		if h.check(n, spec) != nil || !h.affordable(p.rate, spec) {
			continue
		}
		if in, err := h.insert(n, spec, p.rate); err == nil {
			n.recorders = append(n.recorders, in)
			in.owner = n
			inserted++
		}
	}
	if inserted > 0 {
		n.epoch = h.nextFull()
	}
	if inserted == 0 && len(n.deferred) == 0 && !h.hasLiveChild(n) {
		n.exhausted = true
	}
	if len(n.deferred) > 0 && len(n.deferred) != n.deferredLast {
		h.event("budget", n, "", nil, fmt.Sprintf("%d instruments deferred: overhead %.3g%% of CPU now, budget %.3g%%",
			len(n.deferred), h.now(), h.cfg.BudgetPct))
	}
	n.deferredLast = len(n.deferred)
	return inserted
}

func containsNode(ns []*node, n *node) bool {
	for _, m := range ns {
		if m == n {
			return true
		}
	}
	return false
}

func (h *hunter) hasLiveChild(n *node) bool {
	for _, c := range n.children {
		if c.state != StateWithdrawn && c.kind != NodeBlock {
			return true
		}
	}
	return false
}

// quietCheck is check without the trace: for a place tried before a
// fallback (a call site, where the entry can serve instead).
func (h *hunter) quietCheck(spec instrument.Spec) error {
	key := spec.String()
	if err, ok := h.refused[key]; ok {
		return err
	}
	err := h.in.Check(spec)
	h.refused[key] = err
	return err
}

// check asks the Instrumenter whether spec could go in, remembering
// refusals; the first refusal of a spec is traced.
func (h *hunter) check(n *node, spec instrument.Spec) error {
	key := spec.String()
	if err, ok := h.refused[key]; ok {
		return err
	}
	err := h.in.Check(spec)
	h.refused[key] = err
	if err != nil {
		h.event("refuse", n, key, nil, err.Error())
		if errors.Is(err, instrument.ErrNotSupported) && isFuncTimer(spec) && h.funcTimerRefused == nil {
			h.funcTimerRefused = err
		}
	}
	return err
}

// isFuncTimer reports whether spec times a function other than a syscall
// at its entry.
func isFuncTimer(spec instrument.Spec) bool {
	return spec.Kind == instrument.Timer && !spec.IsCallSite() && spec.Offset == 0 && !instrument.IsSyscall(spec.Func)
}

// noFuncTimersLimit says, where the backend refused a function's timer as
// not supported and never timed any function but syscalls, that the tree
// below the roots is made of stack samples. (A backend that times some
// functions and not others says so per function, in the refusals.) It
// is the one place that says so: the refusal carries the backend's
// reason (for the tracepoint backend, why fentry and kprobe do not work).
func (h *hunter) noFuncTimersLimit() {
	if h.funcTimerRefused == nil {
		return
	}
	for _, in := range h.specs {
		if isFuncTimer(in.spec) {
			return
		}
	}
	h.limit("no function instruments with backend %s: the tree below the roots comes from stack samples, where a sampler works (%v)", h.in.Backend(), h.funcTimerRefused)
}

// insertTargets puts timers on indirect-call targets observed under
// refined nodes.
func (h *hunter) insertTargets() bool {
	changed := false
	for _, n := range h.nodes {
		if n.state != StateRefined || len(n.targets) == 0 {
			continue
		}
		var names []string
		for f := range n.targets {
			if h.byKey[extend(n.path, instrument.Point{Func: f}).String()] == nil {
				names = append(names, f)
			}
		}
		sort.Strings(names)
		for _, f := range names {
			path := extend(n.path, instrument.Point{Func: f})
			p := plan{children: []instrument.Path{path}, kinds: []NodeKind{NodeTarget}, rate: n.lastRate}
			if h.insertPlan(n, p) > 0 {
				changed = true
			}
		}
	}
	return changed
}

// converged reports whether the search has nothing left to do: the
// instruments have not changed for FinalRounds rounds (the last window,
// over which the findings are reported), and every timed node still live
// is refined, or was measured long enough (4·MinRounds rounds) to be left
// as inconclusive.
func (h *hunter) converged() bool {
	if h.round-h.windowStart+1 < h.cfg.FinalRounds {
		return false
	}
	settle := 4 * h.cfg.MinRounds
	if h.cfg.SampleTree && h.round < 2*settle {
		return false // give the samples time to fill the tree
	}
	for _, n := range h.nodes {
		if !h.decidable(n) {
			continue
		}
		if !n.refined && len(n.rounds) < settle {
			return false
		}
		if len(n.deferred) > 0 && h.round-n.deferredAt < settle {
			return false
		}
	}
	return true
}

// pct formats a share as a percentage.
func pct(x float64) string {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return "?"
	}
	return fmt.Sprintf("%.3g%%", 100*x)
}
