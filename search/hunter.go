package search

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// window is a run of rounds [start, end] with the target's time over it.
type window struct {
	start, end int
	ns         float64
}

// rounds returns the window's length.
func (w window) rounds() int { return max(w.end-w.start+1, 0) }

// hunter is the state of one hunt: its calling-context tree and windows
// (tree), the instruments it inserted (specs), what they cost against the
// budget (overheads), the stack samples it took (sampleStore), and what
// the Graph and the Instrumenter said. The decisions (decide.go) and the
// budget's rules (budget.go) are functions of that state; the pure parts
// (evictions, fits, the candidates of refinement and withdrawal) are
// tested alone.
type hunter struct {
	cfg   Config
	ctx   context.Context
	in    instrument.Instrumenter
	meter OverheadMeter
	run   *Run
	start time.Time
	round int    // rounds completed
	stop  string // why the hunt ended
	// progressed counts the trace's events already given to
	// Config.Progress.
	progressed int

	tree
	overheads
	sampleStore

	specs   map[string]*inserted  // every spec inserted, live or withdrawn
	refused map[string]error      // Check's refusals, by spec
	graph   map[string]*graphInfo // Graph answers, by function
	costs   map[string]float64    // cost per hit by backend (see Calibrator)

	lastChange int       // the last round after which instruments changed
	looping    bool      // the rounds have begun
	firstRead  time.Time // the reading that opened the first round
	// censusEnd is the reading that closed Deep Start's last census: the
	// roots' operations from it to the first round's opening reading
	// count with Deep Start's (see countUntilFirstRound).
	censusEnd *instrument.Reading
	lastRead  time.Time // the reading that ended the last
	// fallbacks are the functions served by another backend than the
	// session's, by backend, with the first refusal seen.
	fallbacks   map[instrument.Backend][]string
	fallbackWhy map[instrument.Backend]string
	census      *census // the census whose timers roots may adopt
	// funcTimerRefused is the first refusal of a function's timer as not
	// supported (see noFuncTimersLimit).
	funcTimerRefused error
	limits           map[string]bool
	// textChanged holds the rounds in which instruments went in or out
	// (see textChange): their time per operation may hold the kernel's text
	// patching, which steadyRounds leaves out.
	textChanged map[int]bool
	// blind holds the refined nodes with indirect call sites whose
	// targets the backend cannot capture: samples show them instead.
	blind map[*node]bool
}

// tree is the calling-context tree the hunt grows, and its windows.
type tree struct {
	nodes []*node
	byKey map[string]*node
	roots map[string]bool // root functions

	windowStart int     // first round of the current window
	windowNs    float64 // the target's time in it
	prevWindow  window  // the window before it, if it had rounds
	reported    bool    // the Run reports prevWindow
}

// overheads is what the instruments cost against the budget.
type overheads struct {
	lastPred   float64   // predicted overhead of the last round, percent
	lastMeas   float64   // measured overhead of the last round, percent; -1 if not measured
	spending   allowance // the overhead spent against the budget so far
	predSum    float64
	measSum    float64
	measRounds int
	// lastCtl, ctlSum and ctlRounds are the controller's own CPU
	// (Config.Controller): the last round's, percent, -1 if not measured.
	lastCtl float64
	// roundLen is the next round's length: Config.Round, longer while
	// autoprof's own CPU is over the budget (nextRound); longestRound
	// the longest so far.
	roundLen, longestRound time.Duration
	ctlSum                 float64
	ctlRounds              int
	// steadySum and steadyRounds are ctlSum and ctlRounds over the rounds
	// that began with no instrument put in or taken out.
	steadySum    float64
	steadyRounds int
	rootsOver    float64 // the most the roots alone cost over the budget, percent
	// saturated is set while what no withdrawal can shed exceeds the
	// budget (see saturate), for saturatedRounds rounds in all.
	saturated       bool
	saturatedRounds int
	// compensatedNs is the instruments' own cost taken out of the
	// target's time so far (compensate).
	compensatedNs float64
	// busyUntil is the round before which no insert is tried: the
	// backend said it was busy (see insert).
	busyUntil int
}

// sampleStore is the stack samples the hunt took.
type sampleStore struct {
	sampling     chan samplingResult // the sampler's answer for the round in progress
	stopSampling func()              // ends that sampling early
	deep         []Stack             // Deep Start's samples
	// allStacks are every stack sampled, over sampledNs of the target's
	// time (sampledCount samples, rounds sampledFrom to sampledTo): what
	// estimates from samples are made of.
	allStacks              []Stack
	sampledNs              float64
	sampledCount           uint64
	sampledFrom, sampledTo int
	waits                  map[string]map[string]float64 // off-CPU: where each frame's waits end
	// droppedNs is the thread time of the round's samples that caught
	// the instruments (splitOwn); sampledFor how long the round's
	// sampler sampled, which the round itself can outlast.
	droppedNs  float64
	sampledFor time.Duration
	// roundStacks are the last round's samples (nil where it took none),
	// over roundNs of the target's time: where lateRoots looks for work
	// outside every root.
	roundStacks []Stack
	roundNs     float64
	// nextWatch is the next round that samples to look for late roots,
	// watchEvery the rounds since the last (scheduleWatch).
	nextWatch, watchEvery int
	// samplesOnly is set by finish where the target exited before any
	// instrument counted a call of it (see onlySamples): every estimate
	// is then made of the samples.
	samplesOnly bool
	// jumps is what the samples say of calls made by jumps, for the
	// allStacks it was built from (jumpsFor of them; see jumpsOf).
	jumps    *jumps
	jumpsFor int
	// ownSampled is, for each timed node, the on-CPU thread time of the
	// samples of its own context that no sampled child took.
	ownSampled map[*node]float64
}

// graphInfo caches what the Graph said about one function.
type graphInfo struct {
	callees Callees
	blocks  []uint64
	err     error
	blkErr  error
	hasBlks bool
}

type samplingResult struct {
	stacks []Stack
	err    error
	took   time.Duration // how long the sampler sampled
}

func newHunter(ctx context.Context, cfg Config) *hunter {
	h := &hunter{
		cfg:         cfg,
		ctx:         ctx,
		overheads:   overheads{lastMeas: -1, lastCtl: -1},
		tree:        tree{windowStart: 1, byKey: map[string]*node{}, roots: map[string]bool{}},
		in:          cfg.Instrumenter,
		start:       time.Now(),
		specs:       map[string]*inserted{},
		refused:     map[string]error{},
		graph:       map[string]*graphInfo{},
		limits:      map[string]bool{},
		textChanged: map[int]bool{},
		blind:       map[*node]bool{},
	}
	h.roundLen, h.longestRound = cfg.Round, cfg.Round
	h.nextWatch, h.watchEvery = rootWatch, rootWatch
	h.meter, _ = cfg.Instrumenter.(OverheadMeter)
	h.run = &Run{Meta: cfg.Meta, Limitations: append([]string(nil), cfg.Limitations...)}
	for _, l := range h.run.Limitations {
		h.limits[l] = true
	}
	m := &h.run.Meta
	m.Target = cfg.Target.String()
	if m.Backend == "" {
		m.Backend = string(cfg.Instrumenter.Backend())
	}
	m.Start = h.start
	m.Round = cfg.Round
	m.BudgetPct = cfg.BudgetPct
	m.Threshold = cfg.ThresholdPct
	m.Confidence = cfg.Confidence
	return h
}

// limit records a limitation of the hunt once.
func (h *hunter) limit(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	if !h.limits[s] {
		h.limits[s] = true
		h.run.Limitations = append(h.run.Limitations, s)
	}
}

// event appends a decision to the trace.
func (h *hunter) event(action string, n *node, spec string, stat *Interval, reason string) {
	e := Event{Round: h.round, Time: time.Now(), Action: action, Spec: spec, Reason: reason}
	if n != nil {
		e.Node = n.id
	}
	if stat != nil {
		s := *stat
		e.Stat = &s
	}
	h.run.Trace = append(h.run.Trace, e)
}

// textChange marks the rounds an instrument going in or out now changes
// the kernel's text in: the round that holds the change, and the next
// (the kernel optimizes a kprobe, or the module quiesces, a few ticks
// later).
func (h *hunter) textChange() {
	nf := h.nextFull()
	h.textChanged[nf-1], h.textChanged[nf] = true, true
}

// nextFull is the first round in which an instrument changed now is
// changed for the whole round. Rounds follow one another without a gap:
// the reading that ends a round opens the next, so that every event lands
// in one round, and the instruments change at the start of the next
// round, which therefore holds the change; the one after it is the first
// to see the new instruments throughout. Before the first round, the
// next is the first full one.
func (h *hunter) nextFull() int {
	if !h.looping {
		return h.round + 1
	}
	return h.round + 2
}

// theta is the threshold as a fraction.
func (h *hunter) theta() float64 { return h.cfg.ThresholdPct / 100 }

// calibrate measures the backends' cost per hit.
func (h *hunter) calibrate(ctx context.Context) {
	h.costs = map[string]float64{}
	for b, c := range DefaultCostNs {
		h.costs[b] = c
	}
	if h.cfg.Calibrator == nil {
		h.limit("cost per hit not calibrated: assumed %s", costString(h.costs))
		return
	}
	costs, err := h.cfg.Calibrator.Calibrate(ctx, h.in)
	for b, c := range costs {
		h.costs[b] = c
	}
	if err != nil {
		h.limit("%v; costs per hit used: %s", err, costString(h.costs))
	}
}

func costString(costs map[string]float64) string {
	names := make([]string, 0, len(costs))
	for b := range costs {
		names = append(names, b)
	}
	sort.Strings(names)
	s := ""
	for i, b := range names {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %.0f ns", b, costs[b])
	}
	return s
}

// graphOf returns, cached, what the Graph says about fn.
func (h *hunter) graphOf(fn string) *graphInfo {
	g := h.graph[fn]
	if g != nil {
		return g
	}
	g = &graphInfo{}
	h.graph[fn] = g
	if h.cfg.Graph == nil {
		g.err = errors.New("no call graph")
		return g
	}
	g.callees, g.err = h.cfg.Graph.Callees(fn)
	return g
}

// blocksOf returns, cached, fn's basic blocks.
func (h *hunter) blocksOf(fn string) ([]uint64, error) {
	g := h.graphOf(fn)
	if !g.hasBlks && h.cfg.Graph != nil {
		g.blocks, g.blkErr = h.cfg.Graph.Blocks(fn)
		g.hasBlks = true
	}
	return g.blocks, g.blkErr
}

// nodeFor returns the node of path, creating it and its missing ancestors.
func (h *hunter) nodeFor(path instrument.Path) *node {
	key := path.String()
	if n := h.byKey[key]; n != nil {
		return n
	}
	var parent *node
	if len(path) > 1 {
		parent = h.nodeFor(path[:len(path)-1])
	}
	n := &node{id: len(h.nodes), parent: parent, path: path, key: key, state: StateLive, epoch: h.round}
	n.kind = h.kindOf(path)
	if parent != nil {
		parent.children = append(parent.children, n)
		parent.epoch = h.round // its exclusive time now excludes n's
		if parent.state == StateWithdrawn {
			n.state = StateWithdrawn
		}
	}
	h.nodes = append(h.nodes, n)
	h.byKey[key] = n
	if in := h.specs[h.specFor(n).String()]; in != nil {
		in.nodes = append(in.nodes, n)
	}
	return n
}

// kindOf classifies the node of path.
func (h *hunter) kindOf(path instrument.Path) NodeKind {
	pt := path[len(path)-1]
	switch {
	case pt.Offset != 0 && !pt.IsCallSite():
		return NodeBlock
	case len(path) == 1 && h.roots[pt.Func]:
		return NodeRoot
	}
	if len(path) > 1 {
		if parent := h.byKey[path[:len(path)-1].String()]; parent != nil && parent.targets[pt.Func] {
			return NodeTarget
		}
	}
	return NodeFunction
}

// specFor returns the spec that measures n's own point.
func (h *hunter) specFor(n *node) instrument.Spec {
	kind := instrument.Timer
	if n.kind == NodeBlock {
		kind = instrument.Count
	}
	return instrument.Spec{Point: n.point(), Kind: kind, Target: h.cfg.Target}
}

// measurable reports whether every instrument on n's path was live for
// the whole round, so that a reading with no activity for n means that n
// did nothing.
func (h *hunter) measurable(n *node) bool {
	for m := n; m != nil; m = m.parent {
		if m.kind == NodeSampled {
			return false
		}
		in := h.specs[h.specFor(m).String()]
		if in == nil || in.live == nil || in.since > h.round {
			return false
		}
	}
	return true
}

// rootNodes returns the nodes of the hunt's roots.
func (h *hunter) rootNodes() []*node {
	var roots []*node
	for _, n := range h.nodes {
		if n.kind == NodeRoot {
			roots = append(roots, n)
		}
	}
	return roots
}
