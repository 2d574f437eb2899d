package reports

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// KernelMapping is the file name of the core kernel's mapping in profiles,
// the name perf gives it. A module's mapping is named "[MODULE]".
const KernelMapping = "[kernel.kallsyms]"

// The sample types of a profile, in order, and the index of each. Exact
// and estimated values are kept apart:
//
//   - wall, cpu, offcpu (ns) are exact: measured by instruments, for the
//     contexts they timed. A timed context's value is its time less the
//     time of the timed contexts below it, so that pprof's cumulative
//     (cum) value of a timed context is its exact inclusive time; cpu +
//     offcpu = wall.
//   - sampled_wall (ns) is an estimate, from stack samples, of the
//     exclusive time of the contexts known only from samples (and of
//     roots that could not be timed); its cum is their estimated
//     inclusive time. It is 0 for timed contexts.
//   - samples (count) are the stack samples that ended in a context known
//     from samples.
//
// Counts are not sample types (pprof would add a context's calls to its
// callers' cum, which means nothing): a timed context's calls are its
// numeric label "calls".
var sampleTypes = []*profile.ValueType{
	{Type: "wall", Unit: "nanoseconds"},
	{Type: "cpu", Unit: "nanoseconds"},
	{Type: "offcpu", Unit: "nanoseconds"},
	{Type: "sampled_wall", Unit: "nanoseconds"},
	{Type: "samples", Unit: "count"},
}

const (
	valWall = iota
	valCPU
	valOffCPU
	valSampledWall
	valSamples
)

// Profile converts a run's calling-context tree to a pprof profile without
// addresses (see ProfileWith).
func Profile(run *search.Run) (*profile.Profile, error) { return ProfileWith(run, nil) }

// ProfileWith converts a run's calling-context tree to a pprof profile
// with one sample per node of the last window (see Node.InWindow: the
// nodes whose values add up; a withdrawn node's time is in its caller's
// exclusive time, and it has no sample of its own), its values as
// sampleTypes says. A sample's stack holds one location per point on the
// node's path (innermost first). A location's function is the point's
// function, or "func+0xoff" for a block-level node, and its mapping is
// [kernel.kallsyms] or, for a point written MODULE:FUNC (the form
// callgraph.Symbols.Func takes), the module's "[MODULE]". Where addrs
// knows them, locations carry the point's address and mappings their
// text's range and the kernel's build ID (go tool pprof -addresses; with
// the kernel image, -disasm). Sample labels carry the backend that
// measured the node, its kind, whether its values are exact or estimated,
// and the confidence interval of its exclusive share; the numeric labels
// are "rounds", the rounds behind it, and "calls" for a timed node.
// DurationNanos is the last window's length, which the values cover.
//
// The profile passes CheckValid; a run whose tree is inconsistent (see
// Validate) gives an error. A time that underflowed (see Anomalies) is
// written as 0.
func ProfileWith(run *search.Run, addrs *Addresses) (*profile.Profile, error) {
	if err := Validate(run); err != nil {
		return nil, err
	}
	b := newProfileBuilder(run, addrs)
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

// estimated reports whether a node's values are estimates from stack
// samples: a context known only from samples, a root that could not be
// timed, or a node whose share the hunt estimated (from samples, or from a
// few rounds' timing with its instrument's cost taken out).
func estimated(n *search.Node) bool {
	return n.Kind == search.NodeSampled || n.State == search.StateSampled ||
		n.Source == search.SourceSamples || n.Source == search.SourceBurst
}

// profileBuilder interns mappings, functions and locations.
type profileBuilder struct {
	run       *search.Run
	addrs     *Addresses
	p         *profile.Profile
	mappings  map[string]*profile.Mapping
	locations map[string]*profile.Location
	inlined   map[[2]string]*profile.Function // functions known only from the lines, by name and file
	// below are, for a timed node with a node known from samples under
	// it, the inclusive times of the nearest timed nodes under it (see
	// exactValues); ok marks those nodes.
	below       []struct{ incl, off uint64 }
	mixed       []bool
	exclSamples []uint64
	stack       func(n *search.Node) []instrument.Point
	name        func(pt instrument.Point) string
}

// window is the wall time the profiled values cover: the last window's
// rounds, or the whole hunt where none is recorded.
func window(m search.Meta) time.Duration {
	if m.WindowRounds > 0 && m.Round > 0 {
		return time.Duration(m.WindowRounds) * m.Round
	}
	return m.End.Sub(m.Start)
}

func newProfileBuilder(run *search.Run, addrs *Addresses) *profileBuilder {
	m := run.Meta
	d := window(m)
	p := &profile.Profile{
		SampleType:        sampleTypes,
		DefaultSampleType: defaultSampleType(run),
		PeriodType:        &profile.ValueType{Type: "wall", Unit: "nanoseconds"},
		Period:            1,
		TimeNanos:         m.End.Add(-d).UnixNano(),
		DurationNanos:     d.Nanoseconds(),
		Comments: []string{
			"autoprof hunt of " + m.Target + " on kernel " + m.Kernel,
			fmt.Sprintf("%d rounds of %v; %d target operations (%s); stop: %s", m.Rounds, m.Round, m.TargetOps, m.TargetOpsBy, m.StopReason),
			fmt.Sprintf("values over the last window of %d rounds (%v)", m.WindowRounds, d),
			"wall, cpu, offcpu: exact times measured by instruments, exclusive of the timed contexts below (cum: exact inclusive); sampled_wall, samples: estimates from stack samples, for contexts no instrument timed; calls: numeric label",
		},
	}
	if len(m.Command) > 0 {
		p.Comments = append(p.Comments, "command: "+strings.Join(m.Command, " "))
	}
	b := &profileBuilder{run: run, addrs: addrs, p: p, mappings: map[string]*profile.Mapping{}, locations: map[string]*profile.Location{}}
	b.mapping("") // the core kernel's mapping first: pprof names the profile after it
	b.stack = b.pathStack
	b.name = func(pt instrument.Point) string { _, f := splitModule(pt.Func); return pointName(f, pt.Offset) }
	b.splitValues()
	return b
}

// defaultSampleType is wall, unless no context below the roots was timed
// and some were sampled: then the estimates are what there is to see.
func defaultSampleType(run *search.Run) string {
	in := profiled(run)
	sampled := false
	for i := range run.Nodes {
		n := &run.Nodes[i]
		if !in[i] || n.Parent < 0 {
			continue
		}
		if !estimated(n) {
			return "wall"
		}
		sampled = true
	}
	if sampled {
		return "sampled_wall"
	}
	return "wall"
}

// splitValues works out what exactValues and add need: for each timed
// node, the time of the nearest timed nodes below it where a node known
// from samples lies between or beside them, and each node's exclusive
// samples.
func (b *profileBuilder) splitValues() {
	nodes := b.run.Nodes
	in := profiled(b.run)
	b.below = make([]struct{ incl, off uint64 }, len(nodes))
	b.mixed = make([]bool, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		if !in[i] || n.Parent < 0 {
			continue
		}
		if estimated(n) {
			if p := &nodes[n.Parent]; !estimated(p) {
				b.mixed[p.ID] = true
			}
			continue
		}
		a := n.Parent
		for a >= 0 && estimated(&nodes[a]) {
			a = nodes[a].Parent
		}
		if a >= 0 {
			b.below[a].incl += n.InclNs
			b.below[a].off += n.InclOffCPUNs
		}
	}
	incl := inclusiveSamples(b.run)
	b.exclSamples = make([]uint64, len(nodes))
	for i := range nodes { // parents come before their children
		b.exclSamples[i] = incl[i]
		if p := nodes[i].Parent; p >= 0 {
			b.exclSamples[p] -= min(b.exclSamples[p], incl[i])
		}
	}
}

// exactValues returns a timed node's exact wall and off-CPU time less
// those of the timed nodes below it: its exclusive times where everything
// below it was timed, its inclusive times less its nearest timed
// descendants' where some context below was only sampled.
func (b *profileBuilder) exactValues(n *search.Node) (wall, off uint64) {
	if !b.mixed[n.ID] {
		return n.ExclNs, min(n.ExclOffCPUNs, n.ExclNs)
	}
	bl := b.below[n.ID]
	if bl.incl > n.InclNs || bl.off > n.InclOffCPUNs {
		return 0, 0 // underflow: listed by Anomalies
	}
	wall, off = n.InclNs-bl.incl, n.InclOffCPUNs-bl.off
	return wall, min(off, wall)
}

// pathStack returns the points from n up to its root.
func (b *profileBuilder) pathStack(n *search.Node) []instrument.Point {
	var pts []instrument.Point
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
	v := make([]int64, len(sampleTypes))
	kind := "exact"
	if estimated(n) {
		kind = fmt.Sprintf("estimated from %d stack samples", n.Samples)
		if n.ExclNs <= n.InclNs {
			v[valSampledWall] = int64(n.ExclNs)
		}
		v[valSamples] = int64(b.exclSamples[n.ID])
	} else {
		wall, off := b.exactValues(n)
		if underflow(wall, off) { // listed by Anomalies; pprof cannot show it
			wall, off = 0, 0
		}
		v[valWall], v[valCPU], v[valOffCPU] = int64(wall), int64(wall-off), int64(off)
	}
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
			"values":     {kind},
			"confidence": {confidenceLabel(n.Excl, b.run.Meta.Confidence)},
		},
		NumLabel: map[string][]int64{"rounds": {int64(n.Excl.N)}},
		NumUnit:  map[string][]string{"rounds": {"count"}},
	}
	if !estimated(n) {
		c := int64(n.Calls)
		if scale != nil {
			c = scale(c)
		}
		s.NumLabel["calls"], s.NumUnit["calls"] = []int64{c}, []string{"count"}
	}
	b.p.Sample = append(b.p.Sample, s)
}

// confidenceLabel describes an exclusive share's interval:
// "95% CI of exclusive share: 12.31% [11.90%, 12.72%], 40 rounds". A
// share is never negative: a lower bound below 0 is written 0.
func confidenceLabel(iv search.Interval, conf float64) string {
	switch iv.N {
	case 0:
		return "no rounds measured"
	case 1:
		return fmt.Sprintf("exclusive share: %s, 1 round: no interval", pct(iv.Mean))
	}
	iv = clampShare(iv)
	return fmt.Sprintf("%s CI of exclusive share: %s [%s, %s], %d rounds",
		level(conf), pct(iv.Mean), pct(iv.Low), pct(iv.High), iv.N)
}

// clampShare bounds an interval of a share below at 0: Student's t over
// few rounds of a small share reaches below it, which no share can.
func clampShare(iv search.Interval) search.Interval {
	iv.Low = max(iv.Low, 0)
	return iv
}

func (b *profileBuilder) location(pt instrument.Point) *profile.Location {
	module := b.addrs.ModuleOf(pt.Func)
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
	if a := b.addrs.Addr(pt.Func, pt.Offset); a != 0 && a >= l.Mapping.Start && a < l.Mapping.Limit {
		l.Address = a
		if src := b.addrs.lines(pt.Func, pt.Offset); len(src) > 0 {
			b.addLines(l, f, src)
		}
	}
	b.p.Location = append(b.p.Location, l)
	b.locations[key] = l
	return l
}

// addLines gives location l, of function f, its source lines, the
// innermost first: f takes the outermost (the function the point is in,
// under the name the run gives it), the functions inlined into it are
// named as in the source.
func (b *profileBuilder) addLines(l *profile.Location, f *profile.Function, src []SourceLine) {
	out := src[len(src)-1]
	f.Filename, f.StartLine = out.File, int64(out.FuncLine)
	l.Line = make([]profile.Line, 0, len(src))
	for _, s := range src[:len(src)-1] {
		l.Line = append(l.Line, profile.Line{Function: b.inlinedFunc(s), Line: int64(s.Line)})
	}
	l.Line = append(l.Line, profile.Line{Function: f, Line: int64(out.Line)})
	l.Mapping.HasFilenames, l.Mapping.HasLineNumbers, l.Mapping.HasInlineFrames = true, true, true
}

// inlinedFunc returns the function of an inlined frame.
func (b *profileBuilder) inlinedFunc(s SourceLine) *profile.Function {
	k := [2]string{s.Func, s.File}
	if f := b.inlined[k]; f != nil {
		return f
	}
	if b.inlined == nil {
		b.inlined = map[[2]string]*profile.Function{}
	}
	f := &profile.Function{ID: uint64(len(b.p.Function) + 1), Name: s.Func, SystemName: s.Func, Filename: s.File, StartLine: int64(s.FuncLine)}
	b.p.Function = append(b.p.Function, f)
	b.inlined[k] = f
	return f
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
	if r, ok := b.addrs.mappingOf(module); ok {
		m.Start, m.Limit = uint64(r.Start), uint64(r.End)
		m.BuildID = b.addrs.BuildID
		if module != "" {
			m.BuildID = b.addrs.ModuleBuildIDs[module]
		}
	}
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
	return instrument.Point{Func: fn, Offset: off}.String()
}
