package search

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/autoprof/autoprof/splice"
)

// instrument is one spec the hunt inserted, live or withdrawn.
type instrument struct {
	spec    splice.Spec
	key     string
	live    splice.Instrument // nil once withdrawn
	backend string
	nodes   []*node // nodes whose own point it measures
	owner   *node   // for a target recorder: the node whose site it watches
	root    bool
	// rate is the target's hits per second in the last round, estimated
	// until the instrument has been measured.
	rate float64
	// since is the first round the instrument was live for all of.
	since int
}

// wanted reports whether a node the instrument serves is still wanted.
func (in *instrument) wanted() bool {
	if in.owner != nil {
		return in.owner.state != StateWithdrawn
	}
	for _, n := range in.nodes {
		if n.state != StateWithdrawn {
			return true
		}
	}
	return false
}

var errLiveCap = errors.New("live instrument cap reached")

// insert makes spec live for node n (the node that asked for it).
func (h *hunter) insert(n *node, spec splice.Spec, rate float64) (*instrument, error) {
	key := spec.String()
	if h.liveCount() >= h.cfg.MaxLive {
		h.event("budget", n, key, nil, fmt.Sprintf("not inserted: %d instruments live, the cap", h.cfg.MaxLive))
		return nil, errLiveCap
	}
	li, err := h.in.Insert(h.ctx, spec)
	if err != nil {
		h.refused[key] = err
		h.event("refuse", n, key, nil, "inserting: "+err.Error())
		return nil, err
	}
	in := h.specs[key]
	if in == nil {
		in = &instrument{spec: spec, key: key}
		h.specs[key] = in
	}
	in.live, in.rate, in.since = li, rate, h.nextFull()
	in.backend = h.backendOf(spec)
	h.run.Overhead.Inserted++
	h.run.Overhead.MaxLive = max(h.run.Overhead.MaxLive, h.liveCount())
	reason := "root"
	if n != nil {
		reason = "refining " + n.key
	}
	h.event("insert", n, key, nil, reason)
	return in, nil
}

// close withdraws one instrument.
func (h *hunter) close(in *instrument, reason string) {
	if in.live == nil {
		return
	}
	if err := in.live.Close(); err != nil && !errors.Is(err, splice.ErrClosed) {
		h.limit("withdrawing %s: %v", in.key, err)
	}
	in.live = nil
	h.event("withdraw", in.owner, in.key, nil, "instrument removed: "+reason)
}

// withdrawAll withdraws every live instrument (the end of the hunt).
func (h *hunter) withdrawAll() {
	for _, in := range h.sortedSpecs() {
		if in.live != nil {
			if err := in.live.Close(); err != nil && !errors.Is(err, splice.ErrClosed) {
				h.limit("withdrawing %s: %v", in.key, err)
			}
			in.live = nil
		}
	}
}

func (h *hunter) sortedSpecs() []*instrument {
	out := make([]*instrument, 0, len(h.specs))
	for _, in := range h.specs {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

func (h *hunter) liveCount() int {
	n := 0
	for _, in := range h.specs {
		if in.live != nil {
			n++
		}
	}
	return n
}

// backendOf names the backend that serves spec.
func (h *hunter) backendOf(spec splice.Spec) string {
	if r, ok := h.in.(Router); ok {
		return r.BackendOf(spec)
	}
	return h.in.Backend()
}

// costOf returns a backend's cost per hit in ns.
func (h *hunter) costOf(backend string) float64 {
	if c, ok := h.costs[backend]; ok {
		return c
	}
	return DefaultCostNs["kprobe"]
}

// costOfSpec returns the cost per hit of spec's instrument in ns: a
// counter's or a target recorder's where its backend's counters were
// calibrated apart ("BACKEND:count"), else its backend's.
func (h *hunter) costOfSpec(spec splice.Spec) float64 {
	b := h.backendOf(spec)
	if spec.Kind != splice.Timer {
		if c, ok := h.costs[b+":count"]; ok {
			return c
		}
	}
	return h.costOf(b)
}

// insideOf returns the part of a timer's cost per hit that falls inside
// its own window ("BACKEND:inside"), 0 where not calibrated.
func (h *hunter) insideOf(spec splice.Spec) float64 {
	return h.costs[h.backendOf(spec)+":inside"]
}

// predictedPct is the cost model's overhead of the live instruments, in
// percent of all CPUs:
//
//	P = 100 · Σ_i rate_i · cost(backend_i) / (CPUs · 1e9 ns/s)
//
// where rate_i is instrument i's hits per second in the last round (its
// estimate until measured) and cost the calibrated cost per hit. Hits are
// the target's: an instrument also costs, less, on the calls of other
// tasks that its filter rejects, which the measured overhead includes.
func (h *hunter) predictedPct() float64 {
	var p float64
	for _, in := range h.specs {
		if in.live != nil {
			p += h.pctOf(in.rate, in.backend)
		}
	}
	return p
}

func (h *hunter) pctOf(rate float64, backend string) float64 {
	return 100 * rate * h.costOf(backend) / (float64(h.cfg.CPUs) * 1e9)
}

// affordable reports whether one more instrument with the given estimated
// rate fits the budget B (percent):
//
//	(P + 100 · rate · cost / (CPUs · 1e9)) · ρ ≤ B  and  live < MaxLive
//
// where ρ ≥ 1 is the ratio of measured to predicted overhead, smoothed
// over rounds (1 where nothing is measured), which corrects the model for
// costs it does not see. ρ never goes below 1: the kernel's measure (BPF
// run time) leaves out the trampoline or trap around each program, so a
// measurement under the prediction does not make instruments cheaper.
func (h *hunter) affordable(rate float64, spec splice.Spec) bool {
	if h.liveCount() >= h.cfg.MaxLive {
		return false
	}
	add := h.pctOf(rate, h.backendOf(spec))
	return (h.predictedPct()+add)*h.rho() <= h.cfg.BudgetPct
}

// rho is ρ of affordable.
func (h *hunter) rho() float64 { return max(h.ratio, 1) }

// enforceBudget withdraws instruments when the overhead of the last round,
// the larger of the predicted and the measured one, exceeded the budget: the lowest-value instruments go first (value: the
// largest inclusive share among the nodes an instrument serves; the share
// of the parent for nodes not yet measured; half the parent's exclusive
// share for block counters), the costlier first among equals, until the
// corrected prediction P·ρ is within the budget. Roots never go for the
// budget; when they alone exceed it, the trace says so.
func (h *hunter) enforceBudget() bool {
	over := max(h.lastPred, h.lastMeas)
	if over <= h.cfg.BudgetPct {
		return false
	}
	var cands []*instrument
	for _, in := range h.specs {
		if in.live != nil && !in.root {
			cands = append(cands, in)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		vi, vj := h.value(cands[i]), h.value(cands[j])
		if vi != vj {
			return vi < vj
		}
		ci, cj := h.pctOf(cands[i].rate, cands[i].backend), h.pctOf(cands[j].rate, cands[j].backend)
		if ci != cj {
			return ci > cj
		}
		return cands[i].key < cands[j].key
	})
	changed := false
	reason := fmt.Sprintf("overhead %.3g%% of CPU over the budget %.3g%%", over, h.cfg.BudgetPct)
	for _, in := range cands {
		if h.predictedPct()*h.rho() <= h.cfg.BudgetPct && changed {
			break
		}
		if in.live == nil {
			continue
		}
		h.withdrawForBudget(in, reason)
		changed = true
	}
	roots := h.predictedPct() * h.rho()
	if !changed {
		roots = over // only roots are live: the round's overhead is theirs
	}
	if roots > h.cfg.BudgetPct {
		h.event("budget", nil, "", nil, reason+"; the roots alone exceed it")
		h.rootsOver = max(h.rootsOver, roots)
	}
	return changed
}

// withdrawForBudget withdraws an instrument and the nodes it serves.
func (h *hunter) withdrawForBudget(in *instrument, reason string) {
	if in.owner != nil {
		h.close(in, reason)
		return
	}
	for _, n := range in.nodes {
		h.withdrawNode(n, "budget", &n.incl, reason)
	}
	h.close(in, reason)
}

// value is what an instrument is worth to the search (see enforceBudget).
func (h *hunter) value(in *instrument) float64 {
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
			v = max(v, n.parent.excl.Mean/2)
		case n.incl.N >= 2:
			v = max(v, n.incl.Mean)
		case n.parent != nil:
			v = max(v, n.parent.incl.Mean)
		}
	}
	return v
}

// newWindow starts a new window after the instruments changed: the totals
// a node reports at the end cover the full rounds since the last change,
// in which every live node was measured together.
func (h *hunter) newWindow() {
	if h.round >= h.windowStart {
		h.prevWindow = window{h.windowStart, h.round, h.windowNs}
		for _, n := range h.nodes {
			n.prev = n.win
		}
	}
	h.windowStart = h.nextFull()
	h.windowNs = 0
	for _, n := range h.nodes {
		n.win = totals{}
	}
}
