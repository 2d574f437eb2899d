package search

import "strings"

// Calls made by a jump. A function that ends in a jump to its callee
// (sysfs_kf_write to a store method through ops->store; a compiler's
// tail call) is on the instruments' shadow stack while the callee runs,
// but in no stack sample taken there. This file tells such calls from
// the samples, so that estimates from samples skip the jumping frame and
// the tree counts the calls that moved under it once (docs/search.md,
// The consistent tree).

// jumps tells, from the stack samples, which calls leave no frame of
// the caller: a function that ends in a jump to its callee (sysfs_kf_write
// to a store method through ops->store; a generated tree's tail call) is
// on the instruments' shadow stack while the callee runs, as its timer's
// return has not come, but in no stack sample taken there. jumps is
// built once per set of samples (see hunter.jumpsOf).
type jumps struct {
	// at holds, for each function, the stacks it appears in: its first
	// and last position in each.
	at   map[string]map[int][2]int
	memo map[[2]string]bool
	// adjacent holds the pairs of frames seen one right below the other.
	adjacent map[[2]string]bool
}

func newJumps(stacks []Stack) *jumps {
	j := &jumps{at: map[string]map[int][2]int{}, memo: map[[2]string]bool{}, adjacent: map[[2]string]bool{}}
	for si, s := range stacks {
		prev := ""
		for i, f := range s.Frames {
			f, _, _ = strings.Cut(f, ".cold")
			if i > 0 {
				j.adjacent[[2]string{prev, f}] = true
			}
			prev = f
			m := j.at[f]
			if m == nil {
				m = map[int][2]int{}
				j.at[f] = m
			}
			if p, ok := m[si]; ok {
				m[si] = [2]int{p[0], i}
			} else {
				m[si] = [2]int{i, i}
			}
		}
	}
	return j
}

// leaves reports whether caller reaches callee by a jump: the samples
// show callee, and never below caller.
func (j *jumps) leaves(caller, callee string) bool {
	if j == nil {
		return false
	}
	k := [2]string{caller, callee}
	if v, ok := j.memo[k]; ok {
		return v
	}
	cs, bs := j.at[callee], j.at[caller]
	v := len(cs) > 0
	for si, c := range cs {
		if b, ok := bs[si]; ok && b[0] < c[1] {
			v = false
			break
		}
	}
	j.memo[k] = v
	return v
}

// jumpEdge reports whether, in a path A;B;C, B reaches C by a jump: the
// samples show C right below A, where B's frame would be, and never below
// B, and the static graph lets B jump to C (see mayJump) (j from jumpsOf;
// false where j is nil).
func (h *hunter) jumpEdge(j *jumps, a, b, c string) bool {
	if j == nil || a == "" || b == c || a == b || !j.adjacent[[2]string{a, c}] || !j.leaves(b, c) {
		return false
	}
	return h.mayJump(a, b, c)
}

// mayJump reports whether the static graph lets b, called by a, reach c
// by a jump: c is a callee b reaches other than by a call (a tail jump, a
// .cold part's), or b has indirect sites (ops->store reached by a jmp
// through a thunk) and a does not call c itself, or the graph knows
// nothing of b (an error, or no callee and no indirect site at all: a
// jump it did not decode). Where b only calls its callees, and c is not
// among them, b does not reach c at all: a context A;B;C then is a shadow
// stack's glitch (B's return lost as its timer was withdrawn mid-call),
// and the samples of A;C are not its. Where b reaches c only, maybe,
// through an indirect site and a calls c directly, the samples of A;C are
// a's own call's: taken for a jump, they gave the glitch A;B;C the share
// of A;C and starved B's real callees (the 6.12 truth benchmark's gt3:
// gt3_f0;gt3_f2;gt3_f1 took 14.9% of gt3_f2's 17.9%, and the CPU plant
// under gt3_f2 read 3.1% for 14.4%).
func (h *hunter) mayJump(a, b, c string) bool {
	g := h.graphOf(b)
	if g.err != nil {
		return true
	}
	for _, s := range g.callees.Sites {
		if s.Func == c {
			return false // a call: it leaves b's frame
		}
	}
	unknown := len(g.callees.Funcs) == 0 && len(g.callees.Sites) == 0 && len(g.callees.Indirect) == 0
	if unknown || g.callees.Elsewhere[c] {
		return true
	}
	return len(g.callees.Indirect) > 0 && !h.callsDirectly(a, c)
}

// callsDirectly reports whether the static graph has a call from a to c.
func (h *hunter) callsDirectly(a, c string) bool {
	g := h.graphOf(a)
	if g.err != nil {
		return false
	}
	for _, s := range g.callees.Sites {
		if s.Func == c {
			return true
		}
	}
	return false
}

// jumpsOf returns the jumps of the hunt's samples; nil where it has none.
func (h *hunter) jumpsOf() *jumps {
	if len(h.allStacks) == 0 {
		return nil
	}
	if h.jumps == nil || h.jumpsFor != len(h.allStacks) {
		h.jumps, h.jumpsFor = newJumps(h.allStacks), len(h.allStacks)
	}
	return h.jumps
}

// visibleFrames returns fns, a node's path, without the functions that
// reach the next one by a jump (jump, see hunter.jumpEdge): the frames a
// stack of the node's context shows. The first and the last stay.
func visibleFrames(fns []string, jump func(a, b, c string) bool) []string {
	out := make([]string, 0, len(fns))
	for i, f := range fns {
		if i == 0 || i == len(fns)-1 || !jump(fns[i-1], f, fns[i+1]) {
			out = append(out, f)
		}
	}
	return out
}

// jumpFunc is hunter.jumpEdge over the hunt's samples, for visibleFrames.
func (h *hunter) jumpFunc() func(a, b, c string) bool {
	j := h.jumpsOf()
	return func(a, b, c string) bool { return h.jumpEdge(j, a, b, c) }
}

// markTailCallDuplicates marks superseded the contexts that measured the
// same calls as another through a function that jumps to its callee. With
// A timed, the calls of C that B, A's callee, makes by a jump are counted
// at A;C until B is timed, and at A;B;C from then on; the stack samples
// show A;C for both. So, where A;C and A;B;C were live in the same rounds,
// the one that counted no call there while the other counted some is a
// duplicate (had B called C with a frame, A;C would be empty anyway);
// where they never were, and B jumps to C, the one measured earlier is.
// (Where both counted calls, A calls C itself as well: both stand.) The
// duplicate leaves the tree with its subtree, and its estimates with it.
func (h *hunter) markTailCallDuplicates() {
	j := h.jumpsOf()
	timed := func(n *node) bool { return n.kind != NodeBlock && !n.sampled() && !n.superseded }
	for _, a := range h.nodes {
		if !timed(a) {
			continue
		}
		for _, b := range a.children {
			if !timed(b) || b.point().IsCallSite() {
				// A call site's node and its callee's under it are
				// one call: the callee's entry node beside it measured
				// the same calls, and dropDuplicates keeps one.
				continue
			}
			for _, y := range b.children {
				if !timed(y) {
					continue
				}
				for _, x := range a.children {
					if x != b && timed(x) && x.point() == y.point() {
						if d := tailCallDuplicate(x, y, b, h.jumpEdge(j, a.fn(), b.fn(), y.fn())); d != nil {
							d.superseded = true
						}
					}
				}
			}
		}
	}
}

// tailCallDuplicate returns which of x (A;C) and y (A;B;C) is the
// duplicate, nil for neither (see markTailCallDuplicates); jump is
// whether B reaches C by a jump. The rounds that compare are those in
// which all three were measured: while B is not timed, C's calls are at
// A;C whether B jumps to C or not.
func tailCallDuplicate(x, y, b *node, jump bool) *node {
	timedB := map[int]bool{}
	for _, r := range b.rounds {
		timedB[r.Round] = true
	}
	calls := map[int]uint64{}
	for _, r := range x.rounds {
		if timedB[r.Round] {
			calls[r.Round] = r.Calls
		}
	}
	var xc, yc uint64
	common := false
	for _, r := range y.rounds {
		if c, ok := calls[r.Round]; ok {
			common = true
			xc += c
			yc += r.Calls
		}
	}
	switch {
	case common && xc == 0 && yc > 0:
		return x
	case common && yc == 0 && xc > 0:
		return y
	case common && (xc > 0 || yc > 0) || !jump || len(x.rounds) == 0 || len(y.rounds) == 0:
		return nil // (neither counted: the calls went further, A;B1;B2;C)
	case x.rounds[len(x.rounds)-1].Round < y.rounds[len(y.rounds)-1].Round:
		return x
	}
	return y
}

// dropSampleAliases keeps one estimate of each context the stack samples
// tell apart. Contexts that differ only by frames the samples never show
// (a function that reaches the next by a jump: sysfs_kf_write to a store
// method, a tail call) are one context to the samples: estimated from
// them, each took every sample of it (the 6.12 truth benchmark's gt17:
// three such nodes of one 61.6% sleep, and the tree added up to 283%).
// Where one of them was measured otherwise (timed), the estimates from
// samples are its duplicates; else the one with the most of the tree
// under it stays (then the longest path, then the first). The others
// leave with their subtrees.
func (h *hunter) dropSampleAliases(all map[*node]*est) {
	jump := h.jumpFunc()
	groups := map[string][]*node{}
	var keys []string // in the order of their first nodes' ids: one outcome per tree
	for _, n := range h.nodes {
		if e := all[n]; e == nil || n.kind == NodeBlock {
			continue
		}
		key := strings.Join(visibleFrames(stackFuncs(n.path), jump), ";")
		if groups[key] == nil {
			keys = append(keys, key)
		}
		groups[key] = append(groups[key], n)
	}
	size := func(n *node) int {
		k := 0
		n.subtree(func(m *node) {
			if all[m] != nil {
				k++
			}
		})
		return k
	}
	for _, key := range keys {
		var g []*node // those an earlier group's drop left
		timed := false
		for _, n := range groups[key] {
			if e := all[n]; e != nil {
				g = append(g, n)
				timed = timed || e.source != SourceSamples
			}
		}
		if len(g) < 2 {
			continue
		}
		var keep *node
		if !timed {
			for _, n := range g {
				if keep == nil || size(n) > size(keep) || size(n) == size(keep) && len(n.path) > len(keep.path) {
					keep = n
				}
			}
		}
		for _, n := range g {
			if n == keep || all[n] == nil || all[n].source != SourceSamples || holdsAny(n, g) {
				continue
			}
			n.subtree(func(m *node) { delete(all, m) })
		}
	}
}

// holdsAny reports whether another node of g is in n's subtree (a
// recursion's aliases: dropping n would drop it too).
func holdsAny(n *node, g []*node) bool {
	for _, m := range g {
		for p := m.parent; m != n && p != nil; p = p.parent {
			if p == n {
				return true
			}
		}
	}
	return false
}
