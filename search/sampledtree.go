package search

import (
	"fmt"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// The sampled tree: the frames that stack samples put time in below the
// roots, the hot paths among them planned for timers, and the time of
// the frames no instrument times estimated from the samples.

// sampledTree is the tree of sampled frames below one frame.
type sampledTree struct {
	weight   float64
	children map[string]*sampledTree
}

func (t *sampledTree) child(f string) *sampledTree {
	if t.children == nil {
		t.children = map[string]*sampledTree{}
	}
	c := t.children[f]
	if c == nil {
		c = &sampledTree{}
		t.children[f] = c
	}
	return c
}

// planHotPaths times the frames of the hot sampled paths below each root.
func (h *hunter) planHotPaths(d time.Duration) {
	trees := map[string]*sampledTree{}
	for _, s := range h.deep {
		i := h.rootIndex(s.Frames)
		if i < 0 || !h.roots[s.Frames[i]] {
			continue
		}
		t := trees[s.Frames[i]]
		if t == nil {
			t = &sampledTree{}
			trees[s.Frames[i]] = t
		}
		for _, f := range s.Frames[i+1:] {
			if h.blocking(f) {
				// The scheduler's frames: a wait is its caller's, and
				// a timer there would time every wait that passes
				// (sampled children name the CPU spent in them).
				break
			}
			t = t.child(f)
			t.weight += s.WeightNs
		}
	}
	total := h.sampleTargetNs(d)
	for _, r := range h.rootNodes() {
		if t := trees[r.point().Func]; t != nil {
			h.planHot(r, t, total, 0)
		}
	}
}

// planHot times the hot frames below parent (see deepStart).
func (h *hunter) planHot(parent *node, t *sampledTree, total float64, depth int) {
	if depth > 32 {
		return
	}
	names := make([]string, 0, len(t.children))
	for f := range t.children {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		c := t.children[f]
		share := c.weight / total
		if share < h.theta() {
			continue
		}
		next := parent
		spec := instrument.Spec{Point: instrument.Point{Func: f}, Kind: instrument.Timer, Target: h.cfg.Target}
		if h.check(parent, spec) == nil {
			path := extend(parent.path, spec.Point)
			if in := h.specs[spec.String()]; in == nil || in.live == nil {
				if _, err := h.insert(parent, spec, parent.lastRate); err != nil {
					continue
				}
				h.event("deep-start", parent, spec.String(), nil, fmt.Sprintf("samples put %s of the target's time under it", pct(share)))
			}
			next = h.nodeFor(path)
			in := h.specs[spec.String()]
			if !containsNode(in.nodes, next) {
				in.nodes = append(in.nodes, next)
			}
		}
		h.planHot(next, c, total, depth+1)
	}
}

// hotCallees returns, for a function, the share of Deep Start's sampled
// time under each function it was seen calling.
func (h *hunter) hotCallees(fn string) map[string]float64 {
	hot := map[string]float64{}
	for _, s := range h.deep {
		for i := 0; i+1 < len(s.Frames); i++ {
			if s.Frames[i] == fn {
				hot[s.Frames[i+1]] += s.WeightNs
			}
		}
	}
	return hot
}

// absorbStacks grows sampled nodes below the roots from one round's
// stacks: for a stack whose root frame is a root of the hunt, every frame
// below it gets a node of kind NodeSampled whose inclusive time is the
// weight of the stacks through it and whose exclusive time is the weight
// of the stacks that end in it; a sampled root is measured the same way.
// ops is the round's operations of the target (its timed roots' calls).
func (h *hunter) absorbStacks(stacks []Stack, d float64, ops uint64) {
	round := h.sampledRound(stacks)
	under := map[*node]*stackAcc{} // root → what its sampled children take
	for _, n := range h.nodes {
		if !n.sampled() {
			continue
		}
		a := round[n]
		if a == nil {
			a = &stackAcc{}
		}
		h.recordSampled(n, a, d, ops)
		if p := n.parent; p != nil && p.kind == NodeRoot && !p.sampled() {
			u := under[p]
			if u == nil {
				u = &stackAcc{}
				under[p] = u
			}
			u.incl += a.incl
			u.inclOff += a.inclOff
		}
	}
	h.leaveToRoots(under, d)
}

// stackAcc is the sampled time of one node in one round, ns: on and off
// the CPU, inclusive and exclusive.
type stackAcc struct{ incl, inclOff, excl, exclOff float64 }

// sampledRound sums one round's stacks into the sampled nodes along them,
// creating the nodes it needs.
func (h *hunter) sampledRound(stacks []Stack) map[*node]*stackAcc {
	round := map[*node]*stackAcc{}
	for _, s := range stacks {
		h.keepWaits(s)
		i := h.rootIndex(s.Frames)
		if i < 0 || !h.roots[s.Frames[i]] {
			continue
		}
		var path instrument.Path
		for j := i; j < len(s.Frames); j++ {
			path = extend(path, instrument.Point{Func: s.Frames[j]})
			n := h.nodeFor(path)
			if j > i && n.kind != NodeSampled && len(n.rounds) == 0 {
				n.kind, n.state = NodeSampled, StateSampled
			}
			if !n.sampled() {
				continue
			}
			a := round[n]
			if a == nil {
				a = &stackAcc{}
				round[n] = a
			}
			n.all.samples += s.Count
			if h.inWindowRound() {
				n.win.samples += s.Count
			}
			a.add(s, j == len(s.Frames)-1)
		}
	}
	return round
}

// add adds one stack through the node; last says it ends there.
func (a *stackAcc) add(s Stack, last bool) {
	switch {
	case s.OnCPU:
		a.incl += s.WeightNs
		if last {
			a.excl += s.WeightNs
		}
	default:
		a.inclOff += s.WeightNs
		if last {
			a.exclOff += s.WeightNs
		}
	}
}

// recordSampled adds a sampled node's round (a, of the target's d ns) to
// its totals and its rounds, with the round's operations (ops, and its
// root's calls where the root is timed), so that its times per operation
// compare across runs as a timed node's do.
func (h *hunter) recordSampled(n *node, a *stackAcc, d float64, ops uint64) {
	var rootCalls uint64
	if r := n.root(); !r.sampled() {
		rootCalls = r.cur.Calls
	}
	tots := []*totals{&n.all}
	if h.inWindowRound() {
		tots = append(tots, &n.win)
	}
	for _, t := range tots {
		t.rounds++
		t.targetNs += d
		t.sIncl += a.incl
		t.sInclOff += a.inclOff
		t.sExcl += a.excl
		t.sExclOff += a.exclOff
	}
	n.rounds = append(n.rounds, RoundSample{
		Round:      h.round,
		TargetOps:  ops,
		RootCalls:  rootCalls,
		InclShare:  (a.incl + a.inclOff) / d,
		ExclShare:  (a.excl + a.exclOff) / d,
		OnCPUShare: a.excl / d,
		OffCPU:     a.exclOff / d,
		TargetNs:   d,
	})
}

// leaveToRoots makes each timed root's exclusive share of the round what
// its sampled children (under) leave of its measured time.
func (h *hunter) leaveToRoots(under map[*node]*stackAcc, d float64) {
	for r, u := range under {
		if len(r.rounds) == 0 || r.rounds[len(r.rounds)-1].Round != h.round {
			continue
		}
		rs := &r.rounds[len(r.rounds)-1]
		rs.ExclShare = max(rs.ExclShare-(u.incl+u.inclOff)/d, 0)
		rs.OnCPUShare = max(rs.OnCPUShare-u.incl/d, 0)
		rs.OffCPU = max(rs.OffCPU-u.inclOff/d, 0)
	}
}

// keepWaits remembers, for off-CPU stacks, the innermost frame (what the
// thread waited in) under each frame of the stack.
func (h *hunter) keepWaits(s Stack) {
	if s.OnCPU || len(s.Frames) == 0 {
		return
	}
	if h.waits == nil {
		h.waits = map[string]map[string]float64{}
	}
	last := s.Frames[len(s.Frames)-1]
	for _, f := range s.Frames[:len(s.Frames)-1] {
		m := h.waits[f]
		if m == nil {
			m = map[string]float64{}
			h.waits[f] = m
		}
		m[last] += s.WeightNs
	}
}
