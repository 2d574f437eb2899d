package search

import (
	"github.com/autoprof/autoprof/internal/instrument"
)

// Node states, as Node.State reports them.
const (
	StateLive      = "live"      // measured, not (yet) refined
	StateRefined   = "refined"   // its callees were instrumented
	StateWithdrawn = "withdrawn" // judged cold, or given up for the budget
	StateSampled   = "sampled"   // known from stack samples only
	// StateSuperseded: measured, but another node measured the same
	// calls (the function timed at its call site instead of its entry):
	// it is out of the tree and its shares are zero.
	StateSuperseded = "superseded"
)

// node is one calling context of the tree the hunt grows: the path of
// instrumented points from a root, as the instruments report it.
type node struct {
	id       int
	parent   *node
	children []*node
	path     instrument.Path
	key      string
	kind     NodeKind
	state    string

	// refined is set once its callees were planned, exhausted when that
	// found nothing left to instrument, blocked once its basic blocks were.
	refined, exhausted, blocked bool

	// all sums every round the node was measured in; win only the rounds
	// of the current window (see hunter.windowStart).
	all, win totals
	// prev is win of the previous window, kept for a hunt that ends in
	// the round after a change (see hunter.reportWindow).
	prev   totals
	rounds []RoundSample
	epoch  int // first round whose exclusive time is comparable with now's
	incl   Interval
	excl   Interval
	// lastExcl is the mean of the last exclusive interval of two rounds
	// or more: excl restarts whenever the node's children change.
	lastExcl float64

	cur      instrument.ContextReading // this round's activity
	lastRate float64                   // calls per second in the last round measured
	// costIncl and costExcl are what compensate took out of cur's
	// inclusive and exclusive time: the instruments' calibrated cost.
	costIncl, costExcl uint64

	targets map[string]bool // indirect-call targets observed under this context
	// deepStartCalls are a root's calls before the first round (see
	// Node.DeepStartCalls).
	deepStartCalls uint64

	// recorders are the target recorders on the node's indirect call
	// sites; deferred the callees the budget has not allowed yet.
	recorders  []*inserted
	deferred   []instrument.Point
	deferredAt int // the round of the first deferral, 0 for none
	// deferredLast is how many were deferred when the trace last said so.
	deferredLast int

	// why says why the node was withdrawn (whyCold, whyBudget).
	why string
	// fromSamples is the estimate of a node made at the end from the
	// stack samples of its parent's context (see addSampledChildren).
	fromSamples *est
	// superseded is set on a node whose function is now timed at its
	// call site instead (see convertShared): the call-site node measures
	// the same time, so this one and its subtree leave the tree.
	superseded bool
}

// totals are a node's measurements summed over some rounds.
type totals struct {
	rounds                                  int
	calls, inclNs, exclNs, inclOff, exclOff uint64
	hist                                    [instrument.HistBuckets]uint64
	rootCalls                               uint64  // calls of the node's root in the same rounds
	targetNs                                float64 // the target's time in the same rounds
	// Stack samples (sampled nodes): count, and the thread time they
	// stand for, inclusive and exclusive, on and off CPU.
	samples         uint64
	sIncl, sInclOff float64
	sExcl, sExclOff float64
}

// add adds one round's activity.
func (t *totals) add(c *instrument.ContextReading, rootCalls uint64, targetNs float64) {
	t.rounds++
	t.calls += c.Calls
	t.inclNs += c.InclNs
	t.exclNs += c.ExclNs
	t.inclOff += c.InclOffCPUNs
	t.exclOff += c.ExclOffCPUNs
	for i, v := range c.Hist {
		t.hist[i] += v
	}
	t.rootCalls += rootCalls
	t.targetNs += targetNs
}

func (n *node) point() instrument.Point { return n.path[len(n.path)-1] }

// fn is the function whose code n measures: its own, or the callee of
// its call site.
func (n *node) fn() string { return n.point().Function() }

// sampled reports whether n is measured by stack samples only.
func (n *node) sampled() bool { return n.kind == NodeSampled || n.state == StateSampled }

// root returns the outermost node of n's path.
func (n *node) root() *node {
	for n.parent != nil {
		n = n.parent
	}
	return n
}

// subtree calls fn on n and every descendant, parents first.
func (n *node) subtree(fn func(*node)) {
	fn(n)
	for _, c := range n.children {
		c.subtree(fn)
	}
}

// pathStrings returns the path as Node.Path holds it.
func pathStrings(p instrument.Path) []string {
	s := make([]string, len(p))
	for i, pt := range p {
		s[i] = pt.String()
	}
	return s
}

// extend returns a new path: p with pt appended.
func extend(p instrument.Path, pt instrument.Point) instrument.Path {
	q := make(instrument.Path, len(p)+1)
	copy(q, p)
	q[len(p)] = pt
	return q
}

// Why a node was withdrawn (node.why).
const (
	whyCold   = "cold"   // significantly below the threshold
	whyBudget = "budget" // its instrument cost more than the budget allowed
	// whyCounted: a block counter that counted long enough (see
	// withdrawCounted).
	whyCounted = "counted"
)

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
