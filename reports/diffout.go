package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// The files WriteDiff puts in its output directory.
const (
	DiffTextFile = "diff.txt"
	DiffHTMLFile = "diff.html"
	DiffJSONFile = "diff.json"
	// DiffBaseProfile and DiffNewProfile are the two runs' profiles made
	// comparable for `go tool pprof -diff_base DiffBaseProfile
	// DiffNewProfile` (see DiffProfiles).
	DiffBaseProfile = "base.pb.gz"
	DiffNewProfile  = "new.pb.gz"
)

// WriteDiff renders c (from Diff(base, new, ...)) into dir: diff.txt,
// diff.html, diff.json, base.pb.gz and new.pb.gz, all rendered in memory
// first and then each written atomically, as Write does.
func WriteDiff(dir string, c *Comparison, base, new *search.Run) error {
	files, err := RenderDiff(c, base, new)
	if err != nil {
		return err
	}
	return writeFiles(dir, files)
}

// RenderDiff renders every output of WriteDiff in memory.
func RenderDiff(c *Comparison, base, new *search.Run) ([]File, error) {
	pb, pn, err := DiffProfiles(base, new)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, r := range []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{DiffTextFile, func(b *bytes.Buffer) error { return WriteDiffText(b, c) }},
		{DiffHTMLFile, func(b *bytes.Buffer) error { return WriteDiffHTML(b, c, new) }},
		{DiffJSONFile, func(b *bytes.Buffer) error { return WriteDiffJSON(b, c) }},
		{DiffBaseProfile, func(b *bytes.Buffer) error { return pb.Write(b) }},
		{DiffNewProfile, func(b *bytes.Buffer) error { return pn.Write(b) }},
	} {
		var b bytes.Buffer
		if err := r.render(&b); err != nil {
			return nil, fmt.Errorf("rendering %s: %w", r.name, err)
		}
		files = append(files, File{r.name, b.Bytes()})
	}
	return files, nil
}

// WriteDiffJSON writes c as indented JSON; NaN values (no test possible,
// no operations to divide by) are written as null.
func WriteDiffJSON(w io.Writer, c *Comparison) error {
	data, err := json.MarshalIndent(jsonValue(reflect.ValueOf(c)), "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

var marshaler = reflect.TypeFor[json.Marshaler]()

// jsonValue converts v to maps, slices and scalars that encoding/json can
// write, following json struct tags, with NaN and infinities as nil
// (null). Keys of structs come out sorted.
func jsonValue(v reflect.Value) any {
	if v.IsValid() && v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface && v.Type().Implements(marshaler) {
		return v.Interface() // time.Time and the like
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return jsonValue(v.Elem())
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return f
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return []any{}
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonValue(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := map[string]any{}
		for it := v.MapRange(); it.Next(); {
			out[fmt.Sprint(it.Key().Interface())] = jsonValue(it.Value())
		}
		return out
	case reflect.Struct:
		out := map[string]any{}
		t := v.Type()
		// An embedded struct without a tag has its fields flattened
		// into the outer object, as encoding/json does; the outer
		// struct's own fields win.
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Tag.Get("json") == "" && f.Type.Kind() == reflect.Struct {
				if m, ok := jsonValue(v.Field(i)).(map[string]any); ok {
					maps.Copy(out, m)
				}
			}
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Tag.Get("json") == "" && f.Type.Kind() == reflect.Struct {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if opts == "omitempty" && v.Field(i).IsZero() {
				continue
			}
			out[name] = jsonValue(v.Field(i))
		}
		return out
	}
	return v.Interface()
}

// DiffProfiles returns the two runs' profiles made comparable for
// `go tool pprof -diff_base base.pb.gz new.pb.gz`: function names are
// canonical (CanonicalName: clone suffixes dropped, so that foo.isra.0 and
// foo line up), frames whose function appears nowhere in the other run
// (inlined there) are left out of the stacks, and the base's values are
// scaled by TargetNs_new/TargetNs_base, so that the differences pprof shows
// are differences of shares of the target's time, expressed in the new
// run's nanoseconds (the same normalisation as diff.txt's shares).
func DiffProfiles(base, new *search.Run) (*profile.Profile, *profile.Profile, error) {
	scale := 1.0
	if base.Meta.TargetNs > 0 && new.Meta.TargetNs > 0 {
		scale = float64(new.Meta.TargetNs) / float64(base.Meta.TargetNs)
	}
	pb, err := diffProfile(base, funcSet(new), func(v int64) int64 { return int64(math.Round(float64(v) * scale)) })
	if err != nil {
		return nil, nil, err
	}
	pn, err := diffProfile(new, funcSet(base), nil)
	if err != nil {
		return nil, nil, err
	}
	return pb, pn, nil
}

func diffProfile(run *search.Run, other map[string]bool, scale func(int64) int64) (*profile.Profile, error) {
	if err := Validate(run); err != nil {
		return nil, err
	}
	b := newProfileBuilder(run, nil)
	b.name = func(pt instrument.Point) string { return CanonicalName(pt.String()) }
	b.stack = func(n *search.Node) []instrument.Point {
		var pts []instrument.Point
		for i := n.ID; i >= 0; i = run.Nodes[i].Parent {
			pt := run.Nodes[i].Point
			if i == n.ID || other[CanonicalName(pt.String())] {
				pts = append(pts, pt)
			}
		}
		return pts
	}
	in := profiled(run)
	for i := range run.Nodes {
		if in[i] {
			b.add(&run.Nodes[i], scale)
		}
	}
	if err := b.p.CheckValid(); err != nil {
		return nil, fmt.Errorf("building diff profile: %w", err)
	}
	return b.p, nil
}

// DiffTextNotSignificant is how many matched contexts without a
// significant change diff.txt lists (by size of change); diff.json and
// diff.html list them all.
const DiffTextNotSignificant = 15

// WriteDiffText writes diff.txt: the two runs, how well they matched, the
// significant changes ranked by effect size (each with both runs' values
// side by side, the change with its confidence interval and the adjusted
// p-value), the largest changes that are not significant, and the contexts
// found in one run only.
func WriteDiffText(w io.Writer, c *Comparison) error {
	bw := bufio.NewWriter(w)
	diffHeader(bw, c)
	fmt.Fprintf(bw, "\nSIGNIFICANT CHANGES (%d, ranked by change of exclusive %s)\n", c.Significant, "time per operation")
	if c.Significant == 0 {
		fmt.Fprintf(bw, "  none at a false discovery rate of %s\n", level(c.Options.Alpha))
	}
	for i := range c.Nodes[:c.Significant] {
		diffNodeText(bw, i+1, &c.Nodes[i])
	}
	rest := c.Nodes[c.Significant:]
	if len(rest) > 0 {
		fmt.Fprintf(bw, "\nNOT SIGNIFICANT (%d matched contexts; the largest changes of exclusive %s)\n", len(rest), "time per operation")
		fmt.Fprintf(bw, "  %8s %8s %10s %10s  %s\n", "EXCL", "→ EXCL", "Δ", "q", "FUNCTION")
		for _, d := range rest[:min(len(rest), DiffTextNotSignificant)] {
			fmt.Fprintf(bw, "  %8s %8s %10s %10s  %s%s\n", value(d.Excl.Base), value(d.Excl.New), change(d.Excl.Diff), pval(d.Excl.Q), nodeLabel(&d), untested(&d))
		}
		if len(rest) > DiffTextNotSignificant {
			fmt.Fprintf(bw, "  … %d more in diff.json and diff.html\n", len(rest)-DiffTextNotSignificant)
		}
	}
	unmatchedText(bw, "ONLY IN BASE (removed)", c.Removed)
	unmatchedText(bw, "ONLY IN NEW (added)", c.Added)
	if len(c.Warnings) > 0 {
		fmt.Fprintf(bw, "\nWARNINGS\n")
		for _, s := range c.Warnings {
			fmt.Fprintf(bw, "  - %s\n", s)
		}
	}
	return bw.Flush()
}

func runLine(r RunInfo) string {
	what := r.Target
	if len(r.Command) > 0 {
		what = strings.Join(r.Command, " ")
	}
	return fmt.Sprintf("%s on %s: %d rounds, %s operations, %s of target time", what, r.Kernel, r.Rounds, count(r.TargetOps), dur(float64(r.TargetNs)))
}

func diffHeader(w io.Writer, c *Comparison) {
	fmt.Fprintf(w, "autoprof diff\n  base  %s\n  new   %s\n", runLine(c.Base), runLine(c.New))
	fmt.Fprintf(w, "matched %d contexts: %d of %d in base (%s of its exclusive time), %d of %d in new (%s); %d renamed, %d across inlined frames, %d replaced\n",
		c.Matched, c.Matched, c.BaseNodes, pct(c.MatchedShareBase), c.Matched, c.NewNodes, pct(c.MatchedShareNew), c.Renamed, c.Inlined, c.Replaced)
	o := c.Options
	fmt.Fprintf(w, "tests: Welch's t on per-round times per operation (over each run's last window, only for contexts measured with the same\n")
	fmt.Fprintf(w, "  instruments below them: an instrument's cost is in every time above it) and calls per operation, a normal test on estimates from\n")
	fmt.Fprintf(w, "  stack samples where a context has no per-round times, Mann–Whitney on latency histograms;\n")
	fmt.Fprintf(w, "  Benjamini–Hochberg at a false discovery rate of %s; %s intervals; changes within max(%s of the base's time per operation, %s of base) are not called significant\n",
		level(o.Alpha), level(o.Confidence), level(o.MinShare), level(o.MinRelative))
}

// value formats a time per operation.
func value(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return dur(v)
}

// change formats a difference of times per operation, with its sign.
func change(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v < 0:
		return "-" + dur(-v)
	}
	return "+" + dur(v)
}

// untested marks a context whose times were not tested with the plain
// margins.
func untested(d *NodeDiff) string {
	if !d.Alike {
		return "  (instrumented differently below: times tested beyond what those instruments cost)"
	}
	return ""
}

func pval(q float64) string {
	switch {
	case math.IsNaN(q):
		return "—"
	case q == 0:
		return "0"
	case q < 1e-4:
		return fmt.Sprintf("%.0e", q)
	}
	return fmt.Sprintf("%.4f", q)
}

func nodeLabel(d *NodeDiff) string {
	s := strings.Join(d.Path, " → ")
	if d.Note != "" {
		s += "  [" + d.Note + "]"
	}
	return s
}

func diffNodeText(w io.Writer, i int, d *NodeDiff) {
	fmt.Fprintf(w, "%2d. %s\n", i, d.New.Point)
	fmt.Fprintf(w, "    path      %s%s\n", nodeLabel(d), untested(d))
	timeLine := func(name string, c Change) {
		mark := ""
		if c.Significant {
			mark = "  *"
		}
		fmt.Fprintf(w, "    %-9s %7s → %-7s %10s [%s, %s]  q=%s%s\n", name, value(c.Base), value(c.New), change(c.Diff),
			change(c.Low), change(c.High), pval(c.Q), mark)
	}
	timeLine("excl", d.Excl)
	timeLine("incl", d.Incl)
	timeLine("on-CPU", d.OnCPU)
	timeLine("off-CPU", d.OffCPU)
	mark := ""
	if d.PerOp.Significant {
		mark = "  *"
	}
	fmt.Fprintf(w, "    %-9s %7s → %-7s %10s [%s, %s]  q=%s%s\n", "calls/op", ratio(d.PerOp.Base), ratio(d.PerOp.New),
		relative(d.PerOp.Diff, d.PerOp.Base), signed(d.PerOp.Low), signed(d.PerOp.High), pval(d.PerOp.Q), mark)
	mark = ""
	if d.Latency.Significant {
		mark = "  *"
	}
	fmt.Fprintf(w, "    latency   mean %s → %s, p50 %s → %s, p99 %s → %s; P(new slower) %s  q=%s%s\n",
		dur(d.Base.MeanNs), dur(d.New.MeanNs), dur(d.Base.P50Ns), dur(d.New.P50Ns), dur(d.Base.P99Ns), dur(d.New.P99Ns),
		ratio(d.Latency.A), pval(d.Latency.Q), mark)
	fmt.Fprintf(w, "    calls     %s → %s\n", count(d.Base.Calls), count(d.New.Calls))
}

// signed formats a change of a count with its sign: "+15", "-0.25".
func signed(f float64) string {
	if math.IsNaN(f) {
		return "—"
	}
	return fmt.Sprintf("%+.3g", f)
}

// relative formats a change relative to its base: "+1500%".
func relative(diff, base float64) string {
	if base == 0 || math.IsNaN(diff) {
		return "—"
	}
	return fmt.Sprintf("%+.0f%%", 100*diff/base)
}

func unmatchedText(w io.Writer, title string, us []Unmatched) {
	fmt.Fprintf(w, "\n%s: %d contexts\n", title, len(us))
	if len(us) == 0 {
		return
	}
	fmt.Fprintf(w, "  %7s %7s %9s  %s\n", "INCL", "EXCL", "CALLS/OP", "PATH")
	for _, u := range us {
		why := ""
		if u.Why != "" {
			why = "  (" + u.Why + ")"
		}
		fmt.Fprintf(w, "  %7s %7s %9s  %s%s\n", pct(u.InclShare), pct(u.ExclShare), ratio(u.CallsPerOp), strings.Join(u.Path, " → "), why)
	}
}
