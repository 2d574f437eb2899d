package reports

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/autoprof/autoprof/search"
)

// HotTreeMin is the smallest inclusive share of the target's time that a
// node needs to appear in the hot tree of report.txt and report.html.
const HotTreeMin = 0.01

// WriteText writes report.txt: the findings first (verdict, path, calls,
// calls per operation, latency, on/off-CPU split and confidence interval),
// then the hot part of the calling-context tree, the overhead predicted and
// measured, and the limitations of the hunt.
func WriteText(w io.Writer, run *search.Run) error {
	bw := bufio.NewWriter(w)
	textHeader(bw, run)
	textFindings(bw, run)
	textTree(bw, run)
	textOverhead(bw, run.Overhead)
	textLimitations(bw, append(append([]string(nil), run.Limitations...), Anomalies(run)...))
	return bw.Flush()
}

func textHeader(w io.Writer, run *search.Run) {
	m := run.Meta
	what := m.Target
	if len(m.Command) > 0 {
		what = strings.Join(m.Command, " ") + " (" + m.Target + ")"
	}
	fmt.Fprintf(w, "autoprof hunt: %s on kernel %s, backend %s\n", what, m.Kernel, orDash(m.Backend))
	fmt.Fprintf(w, "%d rounds of %v from %s (%v); stopped: %s\n", m.Rounds, m.Round,
		m.Start.UTC().Format("2006-01-02 15:04:05 UTC"), m.End.Sub(m.Start).Round(time.Millisecond), orDash(m.StopReason))
	fmt.Fprintf(w, "target: %s operations (%s), %s of target time; intervals at %s confidence\n",
		count(m.TargetOps), orDash(m.TargetOpsBy), dur(float64(m.TargetNs)), level(m.Confidence))
	if m.DeepStartOps > 0 {
		fmt.Fprintf(w, "        and %s operations before the first round, during Deep Start's census (not in the shares)\n", count(m.DeepStartOps))
	}
	if m.Compare != "" {
		fmt.Fprintf(w, "compared with %s: its findings were roots of this hunt (autoprof diff %s NEW to compare)\n", m.Compare, m.Compare)
	}
	if run.Overhead.OverBudget != "" {
		fmt.Fprintf(w, "BUDGET NOT KEPT: %s\n", run.Overhead.OverBudget)
	}
	if o := run.Overhead; o.BaseOpsPerSec > 0 && o.HuntOpsPerSec > 0 {
		fmt.Fprintf(w, "the workload ran %.0f operations/s under the hunt, %.0f/s with its syscalls timed only (Deep Start): %.1f%% slower",
			o.HuntOpsPerSec, o.BaseOpsPerSec, o.SlowdownPct)
		if o.BareOpsPerSec > 0 {
			fmt.Fprintf(w, "; about %.0f/s with no instrument in (the syscall timers' calibrated cost taken out): %.1f%% slower", o.BareOpsPerSec, o.BareSlowdownPct)
		}
		fmt.Fprintln(w)
	}
}

func textFindings(w io.Writer, run *search.Run) {
	fmt.Fprintf(w, "\nFINDINGS\n")
	if len(run.Findings) == 0 {
		fmt.Fprintf(w, "  none: no node's exclusive share was significantly above the %.1f%% threshold\n", run.Meta.Threshold)
	}
	for i, f := range run.Findings {
		fmt.Fprintf(w, "%2d. %s\n", i+1, f.Verdict)
		fmt.Fprintf(w, "    path     %s\n", strings.Join(f.Path, " → "))
		if n := &run.Nodes[f.Node]; f.Calls == 0 && n.Samples > 0 {
			fmt.Fprintf(w, "    calls    not counted: seen in %s stack samples (no function instrument here)\n", count(n.Samples))
		} else {
			fmt.Fprintf(w, "    calls    %s (%s per operation)\n", count(f.Calls), ratio(f.CallsPerOp))
			fmt.Fprintf(w, "    latency  mean %s  p50 %s  p99 %s\n", dur(f.MeanNs), dur(f.P50Ns), dur(f.P99Ns))
		}
		what := "exclusive"
		if n := &run.Nodes[f.Node]; n.Source == search.SourceBurst {
			what = "estimated from a few rounds' timing: exclusive"
		} else if estimated(n) {
			what = "estimated from stack samples: exclusive"
		}
		fmt.Fprintf(w, "    time     %s %s of the target's time %s; on-CPU %s, off-CPU %s\n",
			what, pct(f.ExclShare.Mean), ciText(f.ExclShare, run.Meta.Confidence), pct(f.OnCPUShare), pct(f.OffCPUShare))
		if s := sourceText(f); s != "" {
			fmt.Fprintf(w, "    from     %s\n", s)
		}
	}
}

// sourceText says where a finding's share comes from (search.Node.Source).
func sourceText(f search.Finding) string {
	rounds := func() string {
		if f.FromRound == 0 && f.ToRound == 0 {
			return "Deep Start's samples"
		}
		return fmt.Sprintf("rounds %d-%d", f.FromRound, f.ToRound)
	}
	switch f.Source {
	case search.SourceWindow:
		return fmt.Sprintf("exact timing over the last window (%s), with every instrument live at the end", rounds())
	case search.SourceRounds:
		return fmt.Sprintf("exact timing over %s, before its instrument was withdrawn", rounds())
	case search.SourceBurst:
		return fmt.Sprintf("exact timing over %s only (its instrument cost more than the budget), its instrument's own cost taken out: an estimate", rounds())
	case search.SourceSamples:
		return fmt.Sprintf("stack samples (%s): an estimate; counts, where given, are exact", rounds())
	}
	return ""
}

// ciText is "[11.9%, 12.7%] (95% CI, 40 rounds)", the lower bound never
// below 0.
func ciText(iv search.Interval, conf float64) string {
	if iv.N < 2 {
		return fmt.Sprintf("(%d round, no interval)", iv.N)
	}
	iv = clampShare(iv)
	return fmt.Sprintf("[%s, %s] (%s CI, %d rounds)", pct(iv.Low), pct(iv.High), level(conf), iv.N)
}

// treeRow is one line of the hot tree: a node, or (node nil) a note that
// more children were left out.
type treeRow struct {
	node  *search.Node
	depth int
	more  int // for a note: children below HotTreeMin, left out
}

// hotTree returns the nodes whose inclusive share is at least HotTreeMin
// (for contexts known only from stack samples: whose share of the samples
// is), with the block counters of the nodes shown, depth first, children by
// decreasing inclusive time. After a node's children comes a note row for
// the children left out.
func hotTree(run *search.Run) []treeRow {
	children := childLists(run)
	samples := inclusiveSamples(run)
	var total uint64
	for _, r := range children[-1] {
		total += samples[r]
	}
	hot := func(i int) bool {
		n := run.Nodes[i]
		if estimated(&n) && n.Parent >= 0 {
			return total > 0 && float64(samples[i]) >= HotTreeMin*float64(total)
		}
		return run.Meta.TargetNs == 0 || n.Kind == search.NodeBlock || share(run, &n, n.InclNs) >= HotTreeMin
	}
	var rows []treeRow
	var walk func(i, depth int)
	walk = func(i, depth int) {
		rows = append(rows, treeRow{node: &run.Nodes[i], depth: depth})
		more := 0
		for _, c := range children[i] {
			if hot(c) {
				walk(c, depth+1)
			} else {
				more++
			}
		}
		if more > 0 {
			rows = append(rows, treeRow{depth: depth + 1, more: more})
		}
	}
	for _, r := range children[-1] {
		if hot(r) {
			walk(r, 0)
		}
	}
	return rows
}

// inclusiveSamples returns the stack samples through each node: a node
// known from samples counts every sample whose stack passes through it
// (Node.Samples, as the hunt counts them); a timed node, which samples do
// not count, has those of the nodes below it.
func inclusiveSamples(run *search.Run) []uint64 {
	out := make([]uint64, len(run.Nodes))
	below := make([]uint64, len(run.Nodes))
	for i := len(run.Nodes) - 1; i >= 0; i-- { // children come after their parents
		n := &run.Nodes[i]
		out[i] = below[i]
		if n.Samples > 0 || estimated(n) {
			out[i] = n.Samples
		}
		if n.Parent >= 0 {
			below[n.Parent] += out[i]
		}
	}
	return out
}

// hasSamples reports whether any node was seen by stack sampling.
func hasSamples(run *search.Run) bool {
	for i := range run.Nodes {
		if run.Nodes[i].Samples > 0 || estimated(&run.Nodes[i]) {
			return true
		}
	}
	return false
}

// childLists maps each node (and −1, for the roots) to its children,
// by decreasing inclusive time, then by name.
func childLists(run *search.Run) map[int][]int {
	children := map[int][]int{}
	for i, n := range run.Nodes {
		children[n.Parent] = append(children[n.Parent], i)
	}
	for _, c := range children {
		sort.SliceStable(c, func(a, b int) bool {
			na, nb := run.Nodes[c[a]], run.Nodes[c[b]]
			if na.InclNs != nb.InclNs {
				return na.InclNs > nb.InclNs
			}
			return na.Calls > nb.Calls
		})
	}
	return children
}

func textTree(w io.Writer, run *search.Run) {
	fmt.Fprintf(w, "\nHOT TREE (inclusive share at least %s)\n", pct(HotTreeMin))
	fmt.Fprintf(w, "  exact columns: measured by instruments over the last window of rounds (a withdrawn node's over the rounds it was measured, its time counted in its caller's EXCL)\n")
	withSamples := hasSamples(run)
	samples := inclusiveSamples(run)
	head := ""
	if withSamples {
		fmt.Fprintf(w, "  estimated columns: from stack samples, for contexts no instrument timed (SAMPLES: those through the context)\n")
		head = fmt.Sprintf(" | %9s %8s %8s", "SAMPLES", "EST.INCL", "EST.EXCL")
	}
	fmt.Fprintf(w, "  %7s %7s %12s %9s %9s%s  %s\n", "INCL", "EXCL", "CALLS", "CALLS/OP", "MEAN", head, "FUNCTION")
	for _, r := range hotTree(run) {
		n := r.node
		if n == nil {
			fmt.Fprintf(w, "  %*s  %s… %d more below %s\n", 48+len(head), "", strings.Repeat("  ", r.depth), r.more, pct(HotTreeMin))
			continue
		}
		name := strings.Repeat("  ", r.depth) + n.Point.String()
		switch {
		case n.Kind == search.NodeBlock:
			name += " (block)"
		case estimated(n):
			name += " (sampled)"
		}
		if n.State == "withdrawn" {
			name += " (withdrawn)"
		}
		c := treeCells(run, n, samples[n.ID])
		est := ""
		if withSamples {
			est = fmt.Sprintf(" | %9s %8s %8s", c.samples, c.estIncl, c.estExcl)
		}
		fmt.Fprintf(w, "  %7s %7s %12s %9s %9s%s  %s\n", c.incl, c.excl, c.calls, c.perOp, c.mean, est, name)
	}
}

// cells are a hot tree row's values as text: the exact ones of a timed
// node, the estimated ones of a node known from stack samples, "—" for
// the others.
type cells struct{ incl, excl, calls, perOp, mean, samples, estIncl, estExcl string }

func treeCells(run *search.Run, n *search.Node, inclSamples uint64) cells {
	c := cells{incl: "—", excl: "—", calls: "—", perOp: "—", mean: "—", samples: "—", estIncl: "—", estExcl: "—"}
	if inclSamples > 0 {
		c.samples = count(inclSamples)
	}
	if estimated(n) {
		c.estIncl, c.estExcl = pct(share(run, n, n.InclNs)), pct(share(run, n, n.ExclNs))
		return c
	}
	mean := math.NaN()
	if n.Calls > 0 && n.InclNs > 0 {
		mean = float64(n.InclNs) / float64(n.Calls)
	}
	c.incl, c.excl, c.calls, c.perOp, c.mean = pct(share(run, n, n.InclNs)), pct(share(run, n, n.ExclNs)), count(n.Calls), ratio(perOp(run, n, n.Calls)), dur(mean)
	return c
}

// Controller says what autoprof itself cost: its CPU per round and its
// start-up; "" where the run did not measure it.
func Controller(o search.Overhead) string {
	if o.ControllerPct <= 0 {
		return ""
	}
	s := fmt.Sprintf("autoprof itself: %.2f%% of CPU over the rounds", o.ControllerPct)
	if o.SteadyControllerPct > 0 {
		s += fmt.Sprintf(", %.2f%% over those that began with no instrument going in or out", o.SteadyControllerPct)
	}
	if l := o.Loop; l != nil && l.Rounds > 0 {
		per := func(sec float64) string { return dur(1e9 * sec / float64(l.Rounds)) }
		s += fmt.Sprintf(" (a round's own work: reading %s, statistics %s, progress %s, decisions %s)",
			per(l.ReadSec), per(l.StatisticsSec), per(l.ProgressSec), per(l.DecisionsSec))
	}
	if o.StartupWallSec > 0 {
		s += fmt.Sprintf("; start-up to the first round %.1fs (%.1fs of CPU)", o.StartupWallSec, o.StartupCPUSec)
	}
	return s
}

func textOverhead(w io.Writer, o search.Overhead) {
	fmt.Fprintf(w, "\nOVERHEAD\n")
	fmt.Fprintf(w, "  predicted %.2f%% of CPU, measured %.2f%% (%s)\n", o.PredictedPct, o.MeasuredPct, orDash(o.MeasuredBy))
	if o.CompensatedPct > 0 {
		fmt.Fprintf(w, "  compensated: %.2f%% of the target's time was the instruments' own cost (calibrated per hit), taken out of every share and time\n", o.CompensatedPct)
	}
	if c := Controller(o); c != "" {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintf(w, "  instruments: %d inserted, at most %d live", o.Inserted, o.MaxLive)
	if o.WholeSubtree > 0 {
		fmt.Fprintf(w, "; instrumenting the whole reachable subtree would take %d (this hunt used %s of that)",
			o.WholeSubtree, pct(float64(o.Inserted)/float64(o.WholeSubtree)))
	}
	fmt.Fprintln(w)
	if len(o.CostPerHitNs) > 0 {
		var parts []string
		for _, b := range sortedKeys(o.CostPerHitNs) {
			parts = append(parts, fmt.Sprintf("%s %s", b, dur(o.CostPerHitNs[b])))
		}
		fmt.Fprintf(w, "  calibrated cost per hit: %s\n", strings.Join(parts, ", "))
	}
}

// maxAnomalies bounds the anomalies Anomalies lists.
const maxAnomalies = 5

// Anomalies returns, in plain words, the inconsistencies of run's numbers
// that a reader should know before trusting them: a node whose exclusive
// time exceeds its inclusive time or whose off-CPU time exceeds its
// exclusive time (an underflow in the measurement, most often), at most
// maxAnomalies of them and a count of the rest. Reports list them with the
// limitations; they do not stop a run from being written.
func Anomalies(run *search.Run) []string {
	var out []string
	more := 0
	note := func(format string, a ...any) {
		if len(out) < maxAnomalies {
			out = append(out, "inconsistent data: "+fmt.Sprintf(format, a...))
		} else {
			more++
		}
	}
	for _, n := range run.Nodes {
		switch {
		case underflow(n.InclNs, n.ExclNs, n.InclOffCPUNs, n.ExclOffCPUNs):
			note("%s: a time is negative as a signed number (%d, %d ns): an underflow in the measurement", strings.Join(n.Path, " → "), int64(n.InclNs), int64(n.ExclNs))
		case n.ExclNs > n.InclNs:
			note("%s: exclusive time %dns exceeds inclusive time %dns", strings.Join(n.Path, " → "), n.ExclNs, n.InclNs)
		case n.ExclOffCPUNs > n.ExclNs:
			note("%s: off-CPU time %dns exceeds exclusive time %dns", strings.Join(n.Path, " → "), n.ExclOffCPUNs, n.ExclNs)
		}
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("inconsistent data: %d more nodes", more))
	}
	return out
}

// underflow reports whether any value is at least 2^63: a difference that
// went below zero in unsigned arithmetic.
func underflow(vs ...uint64) bool {
	for _, v := range vs {
		if v >= 1<<63 {
			return true
		}
	}
	return false
}

func textLimitations(w io.Writer, lim []string) {
	fmt.Fprintf(w, "\nLIMITATIONS\n")
	if len(lim) == 0 {
		fmt.Fprintf(w, "  none reported\n")
	}
	for _, l := range lim {
		fmt.Fprintf(w, "  - %s\n", l)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// share is v, a time of node n, as a fraction of the target's time over
// the rounds n's totals cover (Node.TargetNs; Meta.TargetNs for a run that
// does not say); NaN without target time.
func share(run *search.Run, n *search.Node, v uint64) float64 {
	t := n.TargetNs
	if t == 0 {
		t = run.Meta.TargetNs
	}
	if t == 0 {
		return math.NaN()
	}
	return float64(v) / float64(t)
}

// perOp is node n's calls per operation: per call of its root over the
// same rounds (Node.RootCalls), or per target operation for a run that
// does not say; NaN without operations.
func perOp(run *search.Run, n *search.Node, calls uint64) float64 {
	ops := n.RootCalls
	if ops == 0 {
		ops = run.Meta.TargetOps
	}
	if ops == 0 {
		return math.NaN()
	}
	return float64(calls) / float64(ops)
}

// profiled says which nodes make up the profile and the flame graph: those
// whose totals cover the last window (Node.InWindow), which add up (a
// node's inclusive time is its exclusive time plus its in-window
// children's inclusive times; a withdrawn node's time is already in its
// caller's exclusive time). A run that marks no node in the window (one
// without withdrawals written before windows existed) has all nodes.
func profiled(run *search.Run) []bool {
	in := make([]bool, len(run.Nodes))
	any := false
	for i, n := range run.Nodes {
		in[i] = n.InWindow
		any = any || n.InWindow
	}
	if !any {
		for i := range in {
			in[i] = true
		}
	}
	return in
}

// pct formats a fraction as a percentage: "12.3%", "0.04%", "—" for NaN.
func pct(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "—"
	case f != 0 && math.Abs(f) < 0.001:
		return strconv.FormatFloat(100*f, 'f', 3, 64) + "%"
	}
	return strconv.FormatFloat(100*f, 'f', 1, 64) + "%"
}

// level formats a confidence level: "95%", "99.9%".
func level(f float64) string { return strconv.FormatFloat(100*f, 'g', 4, 64) + "%" }

// dur formats nanoseconds: "850ns", "1.23µs", "45.6ms", "2.5s".
func dur(ns float64) string {
	if math.IsNaN(ns) || math.IsInf(ns, 0) {
		return "—"
	}
	units := []struct {
		div  float64
		name string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}}
	for _, u := range units {
		if math.Abs(ns) >= u.div {
			return strconv.FormatFloat(ns/u.div, 'g', 3, 64) + u.name
		}
	}
	return strconv.FormatFloat(ns, 'f', 0, 64) + "ns"
}

// ratio formats a count per operation with three significant digits.
func ratio(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "—"
	}
	if f >= 1000 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}

// count formats an integer with thousands separators: 1,234,567.
func count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
