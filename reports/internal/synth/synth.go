// Package synth simulates hunts: it builds a search.Run from a described
// calling-context tree, with per-round noise, so that reports and diffs
// can be tested on realistic data without a kernel.
//
// Each round draws, for every node, its calls from the node's calls per
// target operation and its exclusive time per call from a log-normal
// around the node's mean; inclusive time is exclusive time plus the
// children's inclusive time of the same round, exactly as the instruments
// define it. Latency histograms spread each round's calls over the log2
// buckets of a log-normal around the round's inclusive time per call.
package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// Node describes one calling context of the simulated tree.
type Node struct {
	Point      string  // "vfs_read", "ext4:ext4_file_read_iter", "filemap_read+0x1a6"
	Parent     int     // index in Spec.Nodes of the caller, -1 for a root
	CallsPerOp float64 // calls per target operation
	ExclNs     float64 // mean exclusive wall time per call (0 for block counters)
	OffCPU     float64 // fraction of the exclusive time spent off-CPU
	// WithdrawAt, if not 0, is the round from which the node is no longer
	// measured: its time then counts in its caller's exclusive time, and
	// the last window of the run starts there.
	WithdrawAt int
}

// Spec describes a simulated hunt.
type Spec struct {
	Name        string // workload name, used as the command
	Kernel      string
	Seed        uint64
	Rounds      int
	Round       time.Duration
	OpsPerRound float64 // mean target operations per round
	// Noise is the coefficient of variation of a node's exclusive time
	// per call from round to round.
	Noise float64
	// RunEffect is the coefficient of variation of a per-run, per-node
	// factor on exclusive time: the between-run variation (cache layout,
	// frequency) that two runs of the same workload still show.
	RunEffect float64
	// Elsewhere is the fraction of the target's time outside the roots
	// (user space, untraced kernel entries).
	Elsewhere float64
	Nodes     []Node
}

// Generate simulates the hunt that s describes. The same Spec gives the
// same Run.
func Generate(s Spec) *search.Run {
	rng := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	g := &gen{s: s, rng: rng, nodes: make([]search.Node, len(s.Nodes))}
	g.initNodes()
	effect := make([]float64, len(s.Nodes))
	for i := range effect {
		effect[i] = lognormal(rng, 1, s.RunEffect)
	}
	for _, n := range s.Nodes {
		g.window = max(g.window, n.WithdrawAt)
	}
	var ops, targetNs, windowNs uint64
	for r := 0; r < s.Rounds; r++ {
		o, t := g.round(r, effect)
		ops += o
		targetNs += t
		if r >= g.window {
			windowNs += t
		}
	}
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	run := &search.Run{
		Meta: search.Meta{
			Command:      []string{s.Name},
			Target:       "pid 4242",
			Backend:      "fentry",
			Kernel:       s.Kernel,
			Host:         "vm",
			Start:        start,
			End:          start.Add(time.Duration(s.Rounds) * s.Round),
			Round:        s.Round,
			Rounds:       s.Rounds,
			BudgetPct:    2,
			Threshold:    1,
			Confidence:   0.95,
			StopReason:   "nothing left to refine",
			TargetOps:    ops,
			TargetOpsBy:  "syscalls of pid 4242",
			TargetNs:     targetNs,
			WindowStart:  g.window,
			WindowRounds: s.Rounds - g.window,
			WindowNs:     windowNs,
		},
		Nodes:       g.nodes,
		Limitations: []string{"no basic-block counters below depth 8: the kprobe backend is not available in this simulation"},
	}
	g.finish(run)
	return run
}

type gen struct {
	s      Spec
	rng    *rand.Rand
	nodes  []search.Node
	window int // first round of the last window
}

// live reports whether node i is measured in round r.
func (g *gen) live(i, r int) bool {
	w := g.s.Nodes[i].WithdrawAt
	return w == 0 || r < w
}

func (g *gen) initNodes() {
	for i, n := range g.s.Nodes {
		pt, err := instrument.ParsePoint(n.Point)
		if err != nil {
			panic(err)
		}
		kind := search.NodeFunction
		switch {
		case n.Parent < 0:
			kind = search.NodeRoot
		case pt.Offset != 0:
			kind = search.NodeBlock
		}
		var path []string
		if n.Parent >= 0 {
			path = append(path, g.nodes[n.Parent].Path...)
		}
		g.nodes[i] = search.Node{ID: i, Parent: n.Parent, Point: pt, Kind: kind, Backend: "fentry",
			Path: append(path, pt.String()), State: "live", InWindow: n.WithdrawAt == 0}
		if n.WithdrawAt != 0 {
			g.nodes[i].State = "withdrawn"
		}
		if kind == search.NodeRoot {
			g.nodes[i].Backend = "tracepoint"
		}
		if kind == search.NodeBlock {
			g.nodes[i].Backend = "kprobe"
		}
		if n.Parent >= 0 && g.nodes[n.Parent].State != "withdrawn" {
			g.nodes[n.Parent].State = "refined"
		}
	}
}

// round simulates one round and returns its operations and target time.
func (g *gen) round(r int, effect []float64) (ops, targetNs uint64) {
	ops = uint64(math.Max(1, math.Round(g.s.OpsPerRound*(1+0.03*g.rng.NormFloat64()))))
	type acc struct{ calls, excl, incl, off uint64 }
	a := make([]acc, len(g.s.Nodes))
	for i, n := range g.s.Nodes {
		calls := uint64(math.Round(n.CallsPerOp * float64(ops)))
		per := lognormal(g.rng, n.ExclNs*effect[i], g.s.Noise)
		a[i] = acc{calls: calls, excl: uint64(per * float64(calls))}
		a[i].off = uint64(float64(a[i].excl) * math.Min(1, n.OffCPU*lognormal(g.rng, 1, g.s.Noise/2)))
		a[i].incl = a[i].excl
	}
	for i := len(a) - 1; i >= 0; i-- {
		if p := g.s.Nodes[i].Parent; p >= 0 {
			a[p].incl += a[i].incl
			if !g.live(i, r) { // withdrawn: the caller's exclusive time now holds it
				a[p].excl += a[i].incl
				a[p].off += a[i].off
			}
		}
	}
	var roots uint64
	for i, n := range g.s.Nodes {
		if n.Parent < 0 {
			roots += a[i].incl
		}
	}
	targetNs = uint64(float64(roots) / (1 - g.s.Elsewhere))
	for i := range a {
		if g.live(i, r) {
			g.addRound(i, r, ops, targetNs, a[i].calls, a[i].incl, a[i].excl, a[i].off)
		}
	}
	return ops, targetNs
}

func (g *gen) addRound(i, r int, ops, target, calls, incl, excl, off uint64) {
	n := &g.nodes[i]
	t := float64(target)
	n.Rounds = append(n.Rounds, search.RoundSample{Round: r, Calls: calls, TargetOps: ops, RootCalls: ops,
		InclShare: float64(incl) / t, ExclShare: float64(excl) / t,
		OnCPUShare: float64(excl-off) / t, OffCPU: float64(off) / t, TargetNs: t})
	withdrawn := g.s.Nodes[i].WithdrawAt != 0
	if !withdrawn && r < g.window {
		return // before the last window: in the rounds, not in the totals
	}
	n.RootCalls += ops // every root is called once per operation here
	n.TargetNs += target
	n.Calls += calls
	n.InclNs += incl
	n.ExclNs += excl
	n.ExclOffCPUNs += off
	n.InclOffCPUNs += off
	if calls > 0 && incl > 0 {
		spread(&n.Hist, calls, float64(incl)/float64(calls))
	}
}

// spread adds calls to h following a log-normal (σ = 0.6) whose mean is
// mean ns, rounding to whole calls.
func spread(h *[instrument.HistBuckets]uint64, calls uint64, mean float64) {
	const sigma = 0.6
	mu := math.Log(mean) - sigma*sigma/2
	cdf := func(x float64) float64 {
		if x <= 0 {
			return 0
		}
		return 0.5 * math.Erfc(-(math.Log(x)-mu)/(sigma*math.Sqrt2))
	}
	var given uint64
	best, bestN := 0, uint64(0)
	for i := 1; i < instrument.HistBuckets; i++ {
		lo, hi := math.Ldexp(1, i-1), math.Ldexp(1, i)
		c := uint64(math.Round(float64(calls) * (cdf(hi) - cdf(lo))))
		if given+c > calls {
			c = calls - given
		}
		h[i] += c
		given += c
		if c > bestN {
			best, bestN = i, c
		}
	}
	h[best] += calls - given
}

func lognormal(rng *rand.Rand, mean, cv float64) float64 {
	if cv == 0 {
		return mean
	}
	s := math.Sqrt(math.Log(1 + cv*cv))
	return mean * math.Exp(s*rng.NormFloat64()-s*s/2)
}

// finish fills in what the controller would have derived: intervals,
// findings, the trace, the overhead and the listings.
func (g *gen) finish(run *search.Run) {
	for i := range run.Nodes {
		n := &run.Nodes[i]
		rounds := n.Rounds
		if n.InWindow {
			rounds = nil
			for _, r := range n.Rounds {
				if r.Round >= g.window {
					rounds = append(rounds, r)
				}
			}
		}
		n.Excl = ci(rounds, run.Meta.Confidence, func(s search.RoundSample) float64 { return s.ExclShare })
		n.Incl = ci(rounds, run.Meta.Confidence, func(s search.RoundSample) float64 { return s.InclShare })
	}
	run.Findings = findings(run)
	run.Trace = trace(run)
	var hits uint64
	for _, n := range run.Nodes {
		hits += n.Calls
	}
	secs := run.Meta.End.Sub(run.Meta.Start).Seconds()
	run.Overhead = search.Overhead{
		CostPerHitNs: map[string]float64{"fentry": 48, "kprobe": 410, "tracepoint": 35},
		PredictedPct: 100 * float64(hits) * 48e-9 / secs / 2,
		MeasuredPct:  100 * float64(hits) * 55e-9 / secs / 2,
		MaxLive:      len(run.Nodes),
		Inserted:     len(run.Nodes) + 3,
		WholeSubtree: 40 * len(run.Nodes),
		MeasuredBy:   "BPF run time (kernel.bpf_stats_enabled)",
	}
	for _, f := range run.Findings {
		run.Listings = append(run.Listings, listing(run, f.Node))
	}
}

func ci(rs []search.RoundSample, conf float64, v func(search.RoundSample) float64) search.Interval {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = v(r)
	}
	return search.NewInterval(xs, conf)
}

func findings(run *search.Run) []search.Finding {
	idx := make([]int, 0, len(run.Nodes))
	for i, n := range run.Nodes {
		if n.Kind != search.NodeBlock && n.ExclNs > 0 && n.InWindow {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return run.Nodes[idx[a]].ExclNs > run.Nodes[idx[b]].ExclNs })
	var out []search.Finding
	for _, i := range idx[:min(3, len(idx))] {
		n := run.Nodes[i]
		f := search.Finding{Node: i, Path: n.Path, Calls: n.Calls,
			CallsPerOp: float64(n.Calls) / float64(n.RootCalls),
			MeanNs:     float64(n.InclNs) / float64(n.Calls),
			P50Ns:      instrument.HistQuantile(&n.Hist, 0.5), P99Ns: instrument.HistQuantile(&n.Hist, 0.99),
			ExclShare:   n.Excl,
			OffCPUShare: float64(n.ExclOffCPUNs) / float64(n.ExclNs)}
		f.OnCPUShare = 1 - f.OffCPUShare
		switch {
		case f.OffCPUShare > 0.5:
			f.Verdict = fmt.Sprintf("blocked in %s waiting on I/O", n.Point)
		case f.CallsPerOp >= 8:
			f.Verdict = fmt.Sprintf("%s is called %.0f times per syscall", n.Point, f.CallsPerOp)
		default:
			f.Verdict = fmt.Sprintf("CPU-bound in %s", n.Point)
		}
		out = append(out, f)
	}
	return out
}

// trace writes the decisions the search would have made: roots inserted
// in round 0, each node's children inserted when it was refined, two
// rounds per level.
func trace(run *search.Run) []search.Event {
	start := run.Meta.Start
	at := func(r int) time.Time { return start.Add(time.Duration(r) * run.Meta.Round) }
	depth := func(n search.Node) int { return len(n.Path) - 1 }
	var ev []search.Event
	for i, n := range run.Nodes {
		r := 2 * depth(n)
		if n.Parent >= 0 {
			p := run.Nodes[n.Parent]
			iv := p.Incl
			if len(ev) == 0 || ev[len(ev)-1].Node != n.Parent || ev[len(ev)-1].Action != "insert" {
				ev = append(ev, search.Event{Round: r, Time: at(r), Action: "refine", Node: n.Parent, Stat: &iv,
					Reason: fmt.Sprintf("inclusive share %.1f%% is above the %.0f%% threshold", 100*iv.Low, run.Meta.Threshold)})
			}
		}
		ev = append(ev, search.Event{Round: r, Time: at(r), Action: "insert", Node: i,
			Spec: n.Point.String() + " timer", Reason: "callee of a refined node"})
	}
	sort.SliceStable(ev, func(a, b int) bool { return ev[a].Round < ev[b].Round })
	last := run.Meta.Rounds
	ev = append(ev, search.Event{Round: last, Time: at(last), Action: "stop", Reason: run.Meta.StopReason})
	return ev
}

// listing makes up a disassembly of a finding's function: a prologue,
// a loop and a return, with the entry and any block counters of the run
// marked as instrumented.
func listing(run *search.Run, node int) search.Listing {
	fn := run.Nodes[node].Point.Func
	counted := map[uint64]uint64{0: run.Nodes[node].Calls}
	for _, n := range run.Nodes {
		if n.Parent == node && n.Kind == search.NodeBlock {
			counted[n.Point.Offset] = n.Calls
		}
	}
	lines := []search.ListingLine{{Offset: 0, Text: "nopl 0x0(%rax,%rax,1)", BlockStart: true}}
	off := uint64(5)
	body := []string{"push %rbp", "mov %rsp,%rbp", "push %r12", "mov %rdi,%r12", "test %rsi,%rsi", "je .Lout",
		"mov (%r12),%rax", "add $0x1000,%rax", "cmp %rax,%rsi", "jb .Lloop", "pop %r12", "pop %rbp", "ret"}
	for i, t := range body {
		l := search.ListingLine{Offset: off, Text: t, BlockStart: i == 6 || i == 10}
		lines = append(lines, l)
		off += uint64(3 + i%4)
	}
	for off, c := range counted {
		placed := false
		for i := range lines {
			if lines[i].Offset == off {
				lines[i].Instrumented, lines[i].Calls, lines[i].BlockStart, placed = true, c, true, true
			}
		}
		if !placed {
			lines = append(lines, search.ListingLine{Offset: off, Text: "mov %eax,%eax", BlockStart: true, Instrumented: true, Calls: c})
		}
	}
	sort.Slice(lines, func(a, b int) bool { return lines[a].Offset < lines[b].Offset })
	name := fn
	if _, bare, ok := strings.Cut(fn, ":"); ok {
		name = bare
	}
	return search.Listing{Func: fn, Addr: 0xffffffff81000000 + uint64(len(name))*0x1340, Lines: lines}
}

// OnlySampled turns run into what a hunt gets where no function instrument
// works (the development hosts: no kprobes, no fentry): the roots are
// still timed by syscall tracepoints, but everything below them is known
// only from stack samples at 4 kHz of on-CPU time, with no calls or
// rounds, and times estimated from the samples (250 µs each); a root's
// exclusive time is what the estimates below it leave. There are no
// findings and no listings.
func OnlySampled(run *search.Run) {
	// A node's samples are those whose stack passes through it, as the
	// hunt counts them: its own and its descendants'.
	samples := make([]uint64, len(run.Nodes))
	for i := len(run.Nodes) - 1; i >= 0; i-- {
		n := run.Nodes[i]
		samples[i] += (n.ExclNs - n.ExclOffCPUNs) / 250000
		if n.Parent >= 0 {
			samples[n.Parent] += samples[i]
		}
	}
	const perSample = 250000 // ns
	own := make([]uint64, len(run.Nodes))
	for i, n := range run.Nodes {
		own[i] = (n.ExclNs - n.ExclOffCPUNs) / perSample
	}
	for i := range run.Nodes {
		if r := &run.Nodes[i]; r.Parent < 0 {
			r.ExclNs, r.ExclOffCPUNs = r.InclNs, r.InclOffCPUNs
		}
	}
	for i := range run.Nodes {
		n := &run.Nodes[i]
		if n.Parent < 0 {
			continue
		}
		*n = search.Node{ID: n.ID, Parent: n.Parent, Point: n.Point, Kind: search.NodeSampled, Backend: "sample",
			Path: n.Path, Samples: samples[i], State: "sampled", InWindow: true, TargetNs: n.TargetNs,
			InclNs: samples[i] * perSample, ExclNs: own[i] * perSample}
		if p := &run.Nodes[n.Parent]; p.Parent < 0 {
			p.ExclNs -= min(p.ExclNs, n.InclNs)
			p.ExclOffCPUNs = min(p.ExclOffCPUNs, p.ExclNs)
		}
	}
	run.Meta.Backend = "sample"
	run.Findings, run.Listings = nil, nil
	run.Overhead = search.Overhead{CostPerHitNs: map[string]float64{"tracepoint": 35}, PredictedPct: 0.4, MeasuredPct: 0.5,
		MaxLive: 1, Inserted: 1, MeasuredBy: "BPF run time (kernel.bpf_stats_enabled)"}
	run.Limitations = []string{
		"no function instruments: fentry unavailable: BPF tracing programs are refused under lockdown (integrity)",
		"no function instruments: kprobe unavailable: CONFIG_KPROBES is not set",
		"below the syscall roots, contexts come from stack samples (cpu-clock, 4 kHz): estimates, not exact counts",
	}
	var trace []search.Event
	for _, e := range run.Trace {
		if e.Node == 0 || e.Action == "stop" {
			trace = append(trace, e)
		}
	}
	run.Trace = trace
}
