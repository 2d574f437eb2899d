package search

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// The overhead budget (Paradyn's cost model). Every instrument costs its
// hits per second times its backend's calibrated cost per hit; the hits
// are every run of its programs, other tasks' included, where the backend
// counts them (instrument.Reading.Hits), else the target's calls. The
// functions here are pure: they take the numbers and say what to do.

// costItem is one live instrument as the budget sees it.
type costItem struct {
	key string
	// pct is what it costs, percent of all CPUs.
	pct float64
	// value is the share of the target's time it can still resolve (see
	// hunter.value); protected instruments time the path to the best
	// candidate.
	value     float64
	protected bool
	// probation is set while the instrument has not yet been measured
	// MinRounds rounds: evicting it would throw away what it was
	// inserted to learn.
	probation bool
}

// evictions returns the instruments to withdraw, in order, to bring the
// overhead within the budget, and whether that suffices. over is the
// round's overhead (the larger of the predicted and the measured, percent
// of all CPUs), budget the bound. The rule:
//
//   - the costliest per unit of value go first: cost/value, largest
//     first (ties: costlier first, then by key, so that the order is
//     deterministic);
//   - instruments on the path to the best candidate go last;
//   - an instrument on probation (measured fewer than MinRounds rounds)
//     that costs no more than the budget is spared while the hunt's
//     average overhead is within the budget (surplus), if instruments
//     worth less than it can pay the excess: it is measured for a few
//     rounds (a burst) before its cost decides;
//   - eviction stops as soon as over less what was evicted is within the
//     budget, and an instrument evicted on the way that the later
//     evictions made unnecessary is kept after all (the most valuable
//     first).
//
// Withdrawing an instrument removes what the model predicted for it; the
// part of a measured overhead that no instrument explains (the raw
// syscall tracepoints running for other tasks) stays.
func evictions(items []costItem, over, budget float64, surplus bool) (out []string, enough bool) {
	if over <= budget {
		return nil, true
	}
	c := append([]costItem(nil), items...)
	sort.SliceStable(c, func(i, j int) bool {
		a, b := c[i], c[j]
		if a.protected != b.protected {
			return b.protected
		}
		da, db := a.pct/max(a.value, 1e-4), b.pct/max(b.value, 1e-4)
		if da != db {
			return da > db
		}
		if a.pct != b.pct {
			return a.pct > b.pct
		}
		return a.key < b.key
	})
	spare := map[string]bool{}
	if surplus {
		for _, it := range c {
			if !it.probation || it.protected || it.pct > budget {
				continue
			}
			var cheaper float64
			for _, o := range c {
				if !o.protected && !o.probation && o.value < it.value {
					cheaper += o.pct
				}
			}
			spare[it.key] = cheaper >= over-budget
		}
	}
	var evicted []costItem
	for _, pass := range []bool{false, true} {
		for _, it := range c {
			if over <= budget {
				break
			}
			if spare[it.key] != pass {
				continue
			}
			evicted = append(evicted, it)
			over -= it.pct
		}
	}
	keep := map[string]bool{}
	if over <= budget {
		for i := len(evicted) - 1; i >= 0; i-- {
			if it := evicted[i]; over+it.pct <= budget {
				keep[it.key] = true
				over += it.pct
			}
		}
	} else {
		// Not even all of them bring the overhead within the budget
		// (the roots and what no instrument explains exceed it): only
		// those that make a difference go, a tenth of the budget or
		// more; the cheap ones keep measuring.
		for _, it := range evicted {
			if it.pct < budget/10 {
				keep[it.key] = true
				over += it.pct
			}
		}
	}
	evicted = slices.DeleteFunc(evicted, func(it costItem) bool { return keep[it.key] })
	for _, it := range evicted {
		out = append(out, it.key)
	}
	return out, over <= budget
}

// fits reports whether adding an instrument that costs addPct keeps the
// overhead within the budget: now + add <= budget, with now the larger of
// the predicted and the measured overhead of the last round. The model is
// additive: what a new instrument costs is its own hits times its cost
// per hit (calibrated on this kernel), whatever the others cost.
func fits(now, addPct, budget float64) bool { return now+addPct <= budget }

// pctOf is what rate hits per second of a backend costing costNs a hit
// take of cpus CPUs, in percent:
//
//	P = 100 · rate · cost / (CPUs · 1e9 ns/s)
func pctOf(rate, costNs float64, cpus int) float64 {
	return 100 * rate * costNs / (float64(cpus) * 1e9)
}

// overBudget is the round's overhead that the budget is held to: the
// predicted, or the measured where it is larger (it sees costs the model
// does not: programs running for other tasks' syscalls). measured < 0
// means not measured.
func overBudget(predicted, measured float64) float64 { return max(predicted, measured) }

// allowance tracks the hunt's spending against its budget over time: the
// budget is a bound on the average overhead, so a hunt that spent less
// than it could may measure a costly instrument for a few rounds (a
// burst) before it knows its cost and withdraws it.
type allowance struct {
	spent, allowed float64 // percent·seconds
}

// add books one round: its overhead (percent) over its length.
func (a *allowance) add(pct, budget, seconds float64) {
	a.spent += pct * seconds
	a.allowed += budget * seconds
}

// surplus reports whether the hunt has spent less than the budget allows
// on average so far.
func (a *allowance) surplus() bool { return a.spent < a.allowed }

// predictedPct is the cost model's overhead of the live instruments, in
// percent of all CPUs: P = Σ_i pctOf(rate_i, cost_i), with rate_i the
// instrument's hits per second in the last round (every task's where
// counted; its estimate until measured).
func (h *hunter) predictedPct() float64 {
	var p float64
	for _, in := range h.specs {
		if in.live != nil {
			p += h.costPct(in)
		}
	}
	return p
}

// costPct is what one instrument costs at its rate.
func (h *hunter) costPct(in *inserted) float64 {
	return pctOf(in.rate, h.costOfSpec(in.spec), h.cfg.CPUs)
}

// now is the overhead new instruments are added to: the model's for the
// instruments live now, plus what the last round measured beyond the
// model's prediction for it (costs the model does not see, which do not
// go with the instruments withdrawn since).
func (h *hunter) now() float64 {
	p := h.predictedPct()
	if h.lastMeas < 0 {
		return p
	}
	return p + max(0, h.lastMeas-h.lastPred)
}

// makeRoom withdraws live instruments worth a quarter or less of value
// (the share a refinement would resolve) until addPct more fits the
// budget, costliest per value first; roots and the path to the best
// candidate stay. It reports whether the room was made; where it cannot
// be, nothing is withdrawn.
func (h *hunter) makeRoom(addPct, value float64, why string) bool {
	if fits(h.now(), addPct, h.cfg.BudgetPct) {
		return true
	}
	best := h.bestPath()
	var items []costItem
	for _, in := range h.sortedSpecs() {
		if in.live == nil || in.root || best[in.key] {
			continue
		}
		if v := h.value(in); v <= value/4 {
			items = append(items, costItem{key: in.key, pct: h.costPct(in), value: v})
		}
	}
	keys, enough := evictions(items, h.now()+addPct, h.cfg.BudgetPct, false)
	if !enough {
		return false
	}
	for _, k := range keys {
		h.withdrawForBudget(h.specs[k], why)
	}
	return true
}

// affordable reports whether one more instrument for spec, hit rate times
// a second, fits the budget and the cap on live instruments (see fits).
// A spec measured before is judged by the rate it had then, where that
// is larger: a costly instrument withdrawn for the budget does not come
// back on an estimate.
func (h *hunter) affordable(rate float64, spec instrument.Spec) bool {
	if h.liveCount() >= h.cfg.MaxLive {
		return false
	}
	return fits(h.now(), h.addPct(rate, spec), h.cfg.BudgetPct)
}

// addPct is what one more instrument for spec would cost at rate hits per
// second, or at the rate it had when it was last measured, where larger.
func (h *hunter) addPct(rate float64, spec instrument.Spec) float64 {
	if in := h.specs[spec.String()]; in != nil && in.measured {
		rate = max(rate, in.rate)
	}
	return pctOf(rate, h.costOfSpec(spec), h.cfg.CPUs)
}

// enforceBudget withdraws instruments when the last round's overhead
// exceeded the budget, in the order evictions gives. Roots never go: when
// they alone exceed the budget, refinement stops (nothing else can be
// afforded) and the run says so.
func (h *hunter) enforceBudget() bool {
	over := overBudget(h.lastPred, h.lastMeas)
	if over <= h.cfg.BudgetPct {
		h.saturated = false
		return false
	}
	best := h.bestPath()
	var items []costItem
	unknown := false // an instrument's cost not measured yet
	for _, in := range h.sortedSpecs() {
		if in.live == nil || in.root {
			continue
		}
		if !in.measured {
			unknown = true
		}
		items = append(items, costItem{
			key: in.key, pct: h.costPct(in), value: h.value(in),
			protected: best[in.key], probation: h.round-in.since+1 < h.cfg.MinRounds,
		})
	}
	keys, enough := evictions(items, over, h.cfg.BudgetPct, h.spending.surplus())
	reason := fmt.Sprintf("overhead %.3g%% of CPU over the budget %.3g%%", over, h.cfg.BudgetPct)
	for _, k := range keys {
		h.withdrawForBudget(h.specs[k], reason)
	}
	h.saturate(!enough && !unknown, over-sumPct(items), reason)
	return len(keys) > 0
}

// saturate records whether what no withdrawal can shed (the roots'
// instruments, and the overhead the model does not explain: programs
// running for other tasks) exceeded the budget in the last round: while
// it does, nothing more is refined, and the run says so.
func (h *hunter) saturate(over bool, base float64, reason string) {
	if over && base > h.cfg.BudgetPct {
		if !h.saturated {
			h.event("budget", nil, "", nil, fmt.Sprintf("%s; the roots and the overhead no instrument explains cost %.3g%%: nothing more is refined while they do", reason, base))
		}
		h.saturated = true
		h.saturatedRounds++
		h.rootsOver = max(h.rootsOver, base)
		return
	}
	h.saturated = false
}

func sumPct(items []costItem) float64 {
	var s float64
	for _, it := range items {
		s += it.pct
	}
	return s
}

// withdrawForBudget withdraws an instrument and the nodes it serves; they
// keep what they measured (their estimate, see estimate.go).
func (h *hunter) withdrawForBudget(in *inserted, reason string) {
	in.evictions++
	in.evictedValue = h.value(in)
	if in.owner != nil {
		h.close(in, reason)
		return
	}
	for _, n := range in.nodes {
		n.why = whyBudget
		h.withdrawNode(n, "budget", &n.incl, reason)
	}
	h.close(in, reason)
}

// value is what an instrument is worth to the search: the largest share
// of the target's time among the nodes it serves, each node's inclusive
// share (what timing it splits), its parent's for a node not yet
// measured, half its parent's exclusive share for a block counter; for a
// target recorder, its owner's inclusive share. Roots are worth
// everything.
func (h *hunter) value(in *inserted) float64 {
	if in.root {
		return math.Inf(1)
	}
	if in.owner != nil {
		return in.owner.incl.Mean
	}
	v := 0.0
	for _, n := range in.nodes {
		if n.state == StateWithdrawn {
			continue
		}
		switch {
		case n.kind == NodeBlock && n.parent != nil:
			v = max(v, n.parent.lastExcl/2)
		case n.incl.N >= 1:
			v = max(v, n.incl.Mean)
		case n.parent != nil:
			v = max(v, n.parent.incl.Mean)
		}
	}
	return v
}

// bestPath returns the keys of the instruments that time the path from
// a root to the best candidate (the measured node of largest exclusive
// share).
func (h *hunter) bestPath() map[string]bool {
	out := map[string]bool{}
	best := h.best(1)
	if len(best) == 0 {
		return out
	}
	for n := best[0]; n != nil; n = n.parent {
		if in := h.specs[h.specFor(n).String()]; in != nil {
			out[in.key] = true
		}
	}
	return out
}

// nextRound returns the length of the round after one of length cur in
// which autoprof's own CPU was ctlPct of all CPUs (negative: not
// measured). That CPU is mostly a fixed cost per round (reading every
// instrument, the statistics, the decisions), so its share falls as the
// round grows: over the budget, the round grows to where the share would
// meet it, at most doubling at a time and up to cfg.MaxRound; under half
// the budget it shrinks back the same way, to cfg.Round. The workload
// then pays the budget for autoprof as it does for the instruments, and
// the hunt has fewer, longer rounds.
func nextRound(cur time.Duration, ctlPct float64, cfg Config) time.Duration {
	if ctlPct < 0 || cfg.BudgetPct <= 0 {
		return cur
	}
	want := time.Duration(float64(cur) * ctlPct / cfg.BudgetPct)
	switch {
	case ctlPct > cfg.BudgetPct:
		return min(want, 2*cur, cfg.MaxRound)
	case ctlPct < cfg.BudgetPct/2:
		return max(want, cur/2, cfg.Round)
	}
	return cur
}
