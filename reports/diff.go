package reports

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/autoprof/autoprof/search"
)

// ErrNothingInCommon is matched by errors.Is when two runs share no
// calling context, even after renames and inlining are allowed for: they
// are not runs of comparable workloads.
var ErrNothingInCommon = errors.New("no calling context in common")

// DiffOptions set the level of the comparison's tests and the smallest
// change it calls significant. The zero value means the defaults.
type DiffOptions struct {
	// Alpha is the false discovery rate of the Benjamini–Hochberg
	// procedure over all tests of all matched nodes (default 0.05).
	Alpha float64 `json:"alpha"`
	// Confidence is the level of the intervals (default 1 − Alpha).
	Confidence float64 `json:"confidence"`
	// MinShare is the smallest change of a time per operation worth
	// reporting, as a fraction of the base's target time per operation
	// (default 0.001, 0.1%), and the share of the target's time below
	// which changes of calls per operation and latency do not count.
	MinShare float64 `json:"min_share"`
	// MinRelative is the smallest change worth reporting relative to the
	// base value, for times and calls per operation (default 0.05, 5%),
	// and the smallest shift of a latency distribution, as |A − ½|.
	// Two runs of one workload differ by a few percent from cache layout
	// and frequency alone; this margin keeps those out of the findings.
	MinRelative float64 `json:"min_relative"`
}

func (o DiffOptions) withDefaults() DiffOptions {
	if o.Alpha <= 0 || o.Alpha >= 1 {
		o.Alpha = 0.05
	}
	if o.Confidence <= 0 || o.Confidence >= 1 {
		o.Confidence = 1 - o.Alpha
	}
	if o.MinShare < 0 {
		o.MinShare = 0
	} else if o.MinShare == 0 {
		o.MinShare = 0.001
	}
	if o.MinRelative < 0 {
		o.MinRelative = 0
	} else if o.MinRelative == 0 {
		o.MinRelative = 0.05
	}
	return o
}

// Comparison is the result of Diff: the matched calling contexts with
// their changes, ranked, and those found in only one run.
type Comparison struct {
	Base    RunInfo     `json:"base"`
	New     RunInfo     `json:"new"`
	Options DiffOptions `json:"options"`
	// Nodes are the matched contexts: the significant changes first,
	// ranked by effect size (see Diff), then the others by the size of
	// their change in exclusive time.
	Nodes []NodeDiff `json:"nodes"`
	// Removed are the base's contexts that match none of the new run's,
	// Added the new run's that match none of the base's; each by
	// decreasing inclusive share.
	Removed []Unmatched `json:"removed"`
	Added   []Unmatched `json:"added"`
	// Matched counts the matched contexts, out of BaseNodes and NewNodes.
	Matched   int `json:"matched"`
	BaseNodes int `json:"base_nodes"`
	NewNodes  int `json:"new_nodes"`
	// MatchedShareBase and MatchedShareNew are the fractions of each run's
	// exclusive time (over all nodes) that lies in matched contexts.
	MatchedShareBase float64  `json:"matched_share_base"`
	MatchedShareNew  float64  `json:"matched_share_new"`
	Renamed          int      `json:"renamed"`     // matched through a rename
	Inlined          int      `json:"inlined"`     // matched across an inlined frame
	Replaced         int      `json:"replaced"`    // paired as the only unmatched callees of a matched caller
	Significant      int      `json:"significant"` // matched contexts with a significant change
	Warnings         []string `json:"warnings,omitempty"`
}

// RunInfo identifies one side of a comparison.
type RunInfo struct {
	Source      string   `json:"source"` // where it was loaded from
	Command     []string `json:"command,omitempty"`
	Target      string   `json:"target"`
	Kernel      string   `json:"kernel"`
	Rounds      int      `json:"rounds"`
	TargetOps   uint64   `json:"target_ops"`
	TargetOpsBy string   `json:"target_ops_by"`
	TargetNs    uint64   `json:"target_time_ns"`
}

// Side is one run's exact totals for a matched context.
type Side struct {
	Node       int     `json:"node"` // index in the run's Nodes
	Point      string  `json:"point"`
	Calls      uint64  `json:"calls"`
	CallsPerOp float64 `json:"calls_per_op"`
	MeanNs     float64 `json:"mean_ns"` // inclusive time per call
	P50Ns      float64 `json:"p50_ns"`  // from the log2 histogram
	P99Ns      float64 `json:"p99_ns"`
	InclShare  float64 `json:"incl_share"` // totals over all rounds / target time
	ExclShare  float64 `json:"excl_share"`
	OnCPU      float64 `json:"oncpu_share"`  // exclusive on-CPU time / target time
	OffCPU     float64 `json:"offcpu_share"` // exclusive off-CPU time / target time
	Rounds     int     `json:"rounds"`
}

// Change is one metric of a matched context compared: the means of its
// per-round values, the difference with its confidence interval (Welch),
// the margin below which a change is not of interest, the raw p-value and
// the Benjamini–Hochberg adjusted one.
type Change struct {
	Base   float64 `json:"base"`
	New    float64 `json:"new"`
	Diff   float64 `json:"diff"`
	Low    float64 `json:"low"`
	High   float64 `json:"high"`
	Margin float64 `json:"margin"`
	// InstrumentCost is, for contexts instrumented differently below in
	// the two runs, the most that instruments can have added to this time
	// per operation of the slower run with nothing changed in the kernel;
	// for contexts instrumented alike, how much more of the instruments'
	// calibrated cost one run took out of it than the other. The change
	// is significant only beyond it (see compareNode).
	InstrumentCost float64 `json:"instrument_cost,omitempty"`
	P              float64 `json:"p"`
	Q              float64 `json:"q"`
	Significant    bool    `json:"significant"`
	// Unit is UnitNsPerOp for a time, "" for calls per operation.
	Unit string `json:"unit,omitempty"`
}

// LatencyChange compares two latency histograms (HistRankTest).
type LatencyChange struct {
	A           float64 `json:"a"` // P(new call slower than base call), ties half
	P           float64 `json:"p"`
	Q           float64 `json:"q"`
	Significant bool    `json:"significant"`
}

// Match says how two contexts were paired.
type Match string

// Kinds of match.
const (
	MatchExact   Match = "exact"   // the same symbol path
	MatchRenamed Match = "renamed" // the same path once compiler suffixes are dropped
	MatchInlined Match = "inlined" // the same path once frames absent from the other run are dropped
	// MatchReplaced pairs the only unmatched callee of a matched caller
	// in one run with the only unmatched callee of its partner in the
	// other: a function renamed between builds
	// (copy_user_enhanced_fast_string → rep_movs_alternative).
	MatchReplaced Match = "replaced"
)

// NodeDiff is one matched calling context.
type NodeDiff struct {
	Path     []string      `json:"path"` // the new run's path
	BasePath []string      `json:"base_path"`
	Match    Match         `json:"match"`
	Note     string        `json:"note,omitempty"` // what was renamed or inlined
	Base     Side          `json:"base"`
	New      Side          `json:"new"`
	Excl     Change        `json:"excl"`
	Incl     Change        `json:"incl"`
	OnCPU    Change        `json:"oncpu"`
	OffCPU   Change        `json:"offcpu"`
	PerOp    Change        `json:"calls_per_op"`
	Latency  LatencyChange `json:"latency"`
	// Alike says that both runs measured the context with the same
	// instruments below it, so that its times were tested with the plain
	// margins (see compareNode).
	Alike bool `json:"alike,omitempty"`
	// Significant is true when any of the changes is.
	Significant bool `json:"significant"`
}

// Unmatched is a context found in one run only.
type Unmatched struct {
	Path       []string `json:"path"`
	Node       int      `json:"node"`
	Kind       string   `json:"kind"`
	Calls      uint64   `json:"calls"`
	CallsPerOp float64  `json:"calls_per_op"`
	InclShare  float64  `json:"incl_share"`
	ExclShare  float64  `json:"excl_share"`
	Why        string   `json:"why,omitempty"` // why it could not be matched, where known
}

// Diff compares two runs context by context.
//
// Matching is by symbol path, never by address, so that runs on two kernel
// builds compare. It takes three passes, each pairing only contexts left
// unpaired by the earlier ones and only where the key is unique on both
// sides: (1) the exact path of points; (2) the path with compiler clone
// suffixes dropped from every name (".isra.0", ".constprop.3", ".part.1",
// ".cold", ".llvm.NNN", ...), shown as renamed; (3) that path with the
// frames whose function appears nowhere in the other run dropped, shown as
// inlined (a function the compiler inlined in one build vanishes from
// that build's paths). Block-level points (func+0xoff) are matched only
// between runs of the same kernel release: offsets are specific to a
// build. Contexts left unpaired are listed as removed (base only) or added
// (new only) with their shares. A last pass pairs, top down, the only
// unmatched callee of a matched caller with the only unmatched callee of
// its partner, shown as replaced (a function renamed between builds).
// A matched context whose callee exists in one run only is noted: if that
// callee was inlined in the other run, its time is in the caller there.
//
// For each matched context, Welch's t-test (WelchTest) compares the
// per-round values of its exclusive, inclusive, on-CPU and off-CPU times
// per operation of its root, over each run's last window (the rounds in
// which the instruments did not change, when it has at least minWindow
// rounds), with the margin max(MinRelative·|base|, MinShare·the base's
// time per operation), widened for contexts measured with other
// instruments below them by what those can cost (see compareNode); and
// its calls per operation over every round, with the margin
// MinRelative·|base|. HistRankTest compares the latency histograms of
// contexts measured alike, with margin MinRelative. All p-values of all
// contexts are adjusted together by BenjaminiHochberg; a change is
// significant when its q ≤ Alpha. Changes of calls per operation and of
// latency do not count for contexts holding less than MinShare of the
// target's time in both runs. Significant contexts are ranked by effect
// size: the absolute change of exclusive time where that change is
// significant, then of inclusive time, then the relative change of calls
// per operation, then the latency shift |A − ½|.
//
// Diff fails with ErrNothingInCommon when no context matches.
func Diff(base, new *search.Run, opts DiffOptions) (*Comparison, error) {
	for _, r := range []*search.Run{base, new} {
		if err := Validate(r); err != nil {
			return nil, err
		}
	}
	opts = opts.withDefaults()
	c := &Comparison{Base: runInfo(base), New: runInfo(new), Options: opts,
		BaseNodes: len(base.Nodes), NewNodes: len(new.Nodes)}
	pairs, notes := matchNodes(base, new)
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%w: base roots %s, new roots %s", ErrNothingInCommon, rootNames(base), rootNames(new))
	}
	c.Warnings = warnings(base, new)
	cmp := newComparer(base, new, opts)
	for _, p := range pairs {
		d := cmp.compareNode(p[0], p[1])
		d.Match, d.Note = notes[p].match, notes[p].note
		c.Nodes = append(c.Nodes, d)
		switch d.Match {
		case MatchRenamed:
			c.Renamed++
		case MatchInlined:
			c.Inlined++
		case MatchReplaced:
			c.Replaced++
		}
	}
	c.Matched = len(pairs)
	absorbed(c.Nodes, base, new)
	adjust(c.Nodes, opts.Alpha)
	negligible(c.Nodes, opts.MinShare)
	rank(c.Nodes)
	c.Removed, c.MatchedShareBase = unmatched(base, pairs, 0, new)
	c.Added, c.MatchedShareNew = unmatched(new, pairs, 1, base)
	for _, d := range c.Nodes {
		if d.Significant {
			c.Significant++
		}
	}
	return c, nil
}

// absorbed notes, on each matched context, the callees whose function
// exists in one run only: their exclusive time is counted in the caller in
// the other run if the compiler inlined them there.
func absorbed(nodes []NodeDiff, base, new *search.Run) {
	pairedB, pairedN := map[int]bool{}, map[int]bool{}
	for _, d := range nodes {
		pairedB[d.Base.Node], pairedN[d.New.Node] = true, true
	}
	gone := func(run *search.Run, parent int, other map[string]bool, paired map[int]bool) []string {
		var out []string
		more := 0
		for i, n := range run.Nodes {
			if n.Parent != parent || paired[i] || n.Point.Offset != 0 || other[CanonicalName(n.Point.String())] {
				continue
			}
			if len(out) < 4 {
				out = append(out, n.Point.String())
			} else {
				more++
			}
		}
		if more > 0 {
			out = append(out, fmt.Sprintf("%d more", more))
		}
		return out
	}
	fb, fn := funcSet(base), funcSet(new)
	for i := range nodes {
		d := &nodes[i]
		var parts []string
		if g := gone(base, d.Base.Node, fn, pairedB); len(g) > 0 {
			parts = append(parts, "calls "+strings.Join(g, ",")+" in base only (inlined here in new?)")
		}
		if g := gone(new, d.New.Node, fb, pairedN); len(g) > 0 {
			parts = append(parts, "calls "+strings.Join(g, ",")+" in new only (inlined here in base?)")
		}
		if len(parts) > 0 {
			d.Note = strings.TrimPrefix(d.Note+"; "+strings.Join(parts, "; "), "; ")
		}
	}
}

func runInfo(r *search.Run) RunInfo {
	m := r.Meta
	return RunInfo{Command: m.Command, Target: m.Target, Kernel: m.Kernel, Rounds: m.Rounds,
		TargetOps: m.TargetOps, TargetOpsBy: m.TargetOpsBy, TargetNs: m.TargetNs}
}

func rootNames(r *search.Run) string {
	var names []string
	for _, n := range r.Nodes {
		if n.Parent < 0 && len(names) < 5 {
			names = append(names, n.Point.String())
		}
	}
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ",")
}

func warnings(base, new *search.Run) []string {
	var w []string
	b, n := base.Meta, new.Meta
	if b.Kernel != n.Kernel {
		w = append(w, fmt.Sprintf("kernels differ (%s, %s): block-level contexts are not matched, their offsets are build-specific", b.Kernel, n.Kernel))
	}
	if withoutPIDs(b.TargetOpsBy) != withoutPIDs(n.TargetOpsBy) {
		w = append(w, fmt.Sprintf("operations are counted differently (%q, %q): calls per operation may not compare", b.TargetOpsBy, n.TargetOpsBy))
	}
	if b.Round != n.Round {
		w = append(w, fmt.Sprintf("round lengths differ (%v, %v): per-round variances are not alike", b.Round, n.Round))
	}
	for _, r := range []struct {
		name string
		m    search.Meta
	}{{"base", b}, {"new", n}} {
		if r.m.Rounds < 5 {
			w = append(w, fmt.Sprintf("the %s run has %d rounds: its tests have little power", r.name, r.m.Rounds))
		}
		if r.m.TargetNs == 0 {
			w = append(w, fmt.Sprintf("the %s run has no target time: shares are undefined", r.name))
		}
	}
	return w
}

var pidNumber = regexp.MustCompile(`\bpid [0-9,]+`)

// withoutPIDs drops process ids from a description of operations, which
// differ from run to run of one workload.
func withoutPIDs(s string) string { return pidNumber.ReplaceAllString(s, "pid") }
