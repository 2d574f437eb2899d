package reports

import (
	"fmt"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/splice"
)

// KernelMapping is the file name of the core kernel's mapping in profiles,
// the name perf gives it. A module's mapping is named "[MODULE]".
const KernelMapping = "[kernel.kallsyms]"

// The sample types of a profile, in order. Every value is exclusive: the
// node's own calls and the time spent in the node itself, not in an
// instrumented callee. pprof's cumulative (cum) view adds the values of a
// node's descendants, which gives inclusive times (and, for calls, the calls
// of the node and everything below it). cpu + offcpu = wall.
var sampleTypes = []*profile.ValueType{
	{Type: "calls", Unit: "count"},
	{Type: "wall", Unit: "nanoseconds"},
	{Type: "cpu", Unit: "nanoseconds"},
	{Type: "offcpu", Unit: "nanoseconds"},
	{Type: "samples", Unit: "count"}, // stack samples, for contexts known only from sampling
}

// Profile converts a run's calling-context tree to a pprof profile with one
// sample per node of the last window (see Node.InWindow: the nodes whose
// values add up; a withdrawn node's time is in its caller's exclusive
// time, and it has no sample of its own). A sample's stack holds one location per point on the
// node's path (innermost first). Locations are kernel symbols, not
// addresses: a location's function is the point's function, or "func+0xoff"
// for a block-level node, and its mapping is [kernel.kallsyms] or, for a
// point written MODULE:FUNC (the form callgraph.Symbols.Func takes), the
// module's "[MODULE]". Sample labels carry the backend that measured the
// node, its kind, and the confidence interval of its exclusive share; the
// numeric label "rounds" is the number of rounds behind it.
//
// The profile passes CheckValid; a run whose tree is inconsistent (see
// Validate) gives an error. A time that underflowed (see Anomalies) is
// written as 0.
func Profile(run *search.Run) (*profile.Profile, error) {
	if err := Validate(run); err != nil {
		return nil, err
	}
	b := newProfileBuilder(run)
	in := profiled(run)
	for i := range run.Nodes {
		if in[i] {
			b.add(&run.Nodes[i], nil)
		}
	}
	if err := b.p.CheckValid(); err != nil {
		return nil, fmt.Errorf("building profile: %w", err)
	}
	return b.p, nil
}

// profileBuilder interns mappings, functions and locations.
type profileBuilder struct {
	run       *search.Run
	p         *profile.Profile
	mappings  map[string]*profile.Mapping
	locations map[string]*profile.Location
	// stack returns the points of a node's stack, innermost first;
	// overridden by diff profiles, which elide frames.
	stack func(n *search.Node) []splice.Point
	// name maps a point to the function name shown.
	name func(pt splice.Point) string
}

func newProfileBuilder(run *search.Run) *profileBuilder {
	m := run.Meta
	p := &profile.Profile{
		SampleType:        sampleTypes,
		DefaultSampleType: "wall",
		PeriodType:        &profile.ValueType{Type: "wall", Unit: "nanoseconds"},
		Period:            1,
		TimeNanos:         m.Start.UnixNano(),
		DurationNanos:     m.End.Sub(m.Start).Nanoseconds(),
		Comments: []string{
			"autoprof hunt of " + m.Target + " on kernel " + m.Kernel,
			fmt.Sprintf("%d rounds of %v; %d target operations (%s); stop: %s", m.Rounds, m.Round, m.TargetOps, m.TargetOpsBy, m.StopReason),
			"values are exact and exclusive: pprof's cum column is the inclusive value",
		},
	}
	if len(m.Command) > 0 {
		p.Comments = append(p.Comments, "command: "+strings.Join(m.Command, " "))
	}
	b := &profileBuilder{run: run, p: p, mappings: map[string]*profile.Mapping{}, locations: map[string]*profile.Location{}}
	b.mapping("") // the core kernel's mapping first: pprof names the profile after it
	b.stack = b.pathStack
	b.name = func(pt splice.Point) string { _, f := splitModule(pt.Func); return pointName(f, pt.Offset) }
	return b
}

// pathStack returns the points from n up to its root.
func (b *profileBuilder) pathStack(n *search.Node) []splice.Point {
	var pts []splice.Point
	for i := n.ID; i >= 0; i = b.run.Nodes[i].Parent {
		pts = append(pts, b.run.Nodes[i].Point)
	}
	return pts
}

// add appends n's sample, with its values multiplied by scale where scale
// is not nil.
func (b *profileBuilder) add(n *search.Node, scale func(int64) int64) {
	pts := b.stack(n)
	locs := make([]*profile.Location, len(pts))
	for i, pt := range pts {
		locs[i] = b.location(pt)
	}
	excl, off := n.ExclNs, min(n.ExclOffCPUNs, n.ExclNs)
	if underflow(excl, off) { // listed by Anomalies; pprof cannot show it
		excl, off = 0, 0
	}
	v := []int64{int64(n.Calls), int64(excl), int64(excl - off), int64(off), int64(n.Samples)}
	if scale != nil {
		for i := range v {
			v[i] = scale(v[i])
		}
	}
	backend := n.Backend
	if backend == "" {
		backend = b.run.Meta.Backend
	}
	s := &profile.Sample{
		Location: locs,
		Value:    v,
		Label: map[string][]string{
			"backend":    {backend},
			"kind":       {string(n.Kind)},
			"confidence": {confidenceLabel(n.Excl, b.run.Meta.Confidence)},
		},
		NumLabel: map[string][]int64{"rounds": {int64(n.Excl.N)}},
	}
	b.p.Sample = append(b.p.Sample, s)
}

// confidenceLabel describes an exclusive share's interval:
// "95% CI of exclusive share: 12.31% [11.90%, 12.72%], 40 rounds".
func confidenceLabel(iv search.Interval, conf float64) string {
	if iv.N == 0 {
		return "no rounds measured"
	}
	return fmt.Sprintf("%s CI of exclusive share: %s [%s, %s], %d rounds",
		level(conf), pct(iv.Mean), pct(iv.Low), pct(iv.High), iv.N)
}

func (b *profileBuilder) location(pt splice.Point) *profile.Location {
	module, _ := splitModule(pt.Func)
	name := b.name(pt)
	key := module + "\x00" + name
	if l := b.locations[key]; l != nil {
		return l
	}
	f := &profile.Function{ID: uint64(len(b.p.Function) + 1), Name: name, SystemName: name}
	if module != "" {
		f.Filename = "[" + module + "]"
	}
	b.p.Function = append(b.p.Function, f)
	l := &profile.Location{ID: uint64(len(b.p.Location) + 1), Mapping: b.mapping(module), Line: []profile.Line{{Function: f}}}
	b.p.Location = append(b.p.Location, l)
	b.locations[key] = l
	return l
}

func (b *profileBuilder) mapping(module string) *profile.Mapping {
	file := KernelMapping
	if module != "" {
		file = "[" + module + "]"
	}
	if m := b.mappings[file]; m != nil {
		return m
	}
	m := &profile.Mapping{ID: uint64(len(b.p.Mapping) + 1), File: file, HasFunctions: true}
	b.p.Mapping = append(b.p.Mapping, m)
	b.mappings[file] = m
	return m
}

// splitModule splits a point's function into its module and bare name. It
// accepts MODULE:FUNC (callgraph.Symbols.Func's form) and "FUNC [MODULE]"
// (callgraph.Symbol.String's form); the core kernel's functions have no
// module.
func splitModule(fn string) (module, name string) {
	if m, f, ok := strings.Cut(fn, ":"); ok && m != "" && f != "" {
		return m, f
	}
	if f, rest, ok := strings.Cut(fn, " ["); ok && strings.HasSuffix(rest, "]") {
		return strings.TrimSuffix(rest, "]"), f
	}
	return "", fn
}

// pointName is "func" or, inside a function, "func+0x1a".
func pointName(fn string, off uint64) string {
	return splice.Point{Func: fn, Offset: off}.String()
}
