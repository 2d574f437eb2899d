package reports

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/autoprof/autoprof/internal/flame"
	"github.com/autoprof/autoprof/search"
)

// The page's template, style sheet and script are embedded, and inlined in
// every page: a report is one file that needs no network.
//
//go:embed html
var htmlFS embed.FS

var pageFuncs = template.FuncMap{
	"inc":   func(i int) int { return i + 1 },
	"join":  strings.Join,
	"count": count,
	"ratio": ratio,
	"dur":   dur,
	"pct":   pct,
	"hex":   func(a uint64) string { return fmt.Sprintf("%#x", a) },
	// width is a fraction as a CSS percentage for bars.
	"width": func(f float64) template.CSS {
		if math.IsNaN(f) {
			f = 0
		}
		return template.CSS(fmt.Sprintf("%.1f%%", 100*math.Max(0, math.Min(1, f))))
	},
	"signed": signedPct,
	// low is an interval's lower bound, never below 0 for a share.
	"low": func(iv search.Interval) float64 { return clampShare(iv).Low },
}

var reportTmpl = template.Must(template.New("report.html.tmpl").Funcs(pageFuncs).ParseFS(htmlFS, "html/report.html.tmpl"))

// pageAssets returns the embedded style sheet and script.
func pageAssets() (template.CSS, template.JS) {
	css, err := htmlFS.ReadFile("html/report.css")
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	js, err := htmlFS.ReadFile("html/report.js")
	if err != nil {
		panic(err)
	}
	return template.CSS(css), template.JS(flame.JS + "\n" + string(js))
}

// flameNode is a node as the page's script reads it.
type flameNode struct {
	ID        int         `json:"id"`
	Parent    int         `json:"parent"`
	Name      string      `json:"name"`
	Path      []string    `json:"path"`
	Kind      string      `json:"kind"`
	State     string      `json:"state,omitempty"`     // live, refined, withdrawn, sampled…
	Withdrawn string      `json:"withdrawn,omitempty"` // why a withdrawn node was: cold or budget
	Source    string      `json:"source,omitempty"`    // where its shares come from (search.Node.Source)
	Backend   string      `json:"backend,omitempty"`
	Calls     uint64      `json:"calls"`
	Incl      uint64      `json:"incl"`
	Excl      uint64      `json:"excl"`
	OffCPU    uint64      `json:"offcpu"`
	Samples   uint64      `json:"samples,omitempty"`
	Estimated bool        `json:"estimated,omitempty"` // values from stack samples, not measured by an instrument
	Value     uint64      `json:"value"`               // the box's width: see flameNodes
	PerOp     jsonFloat   `json:"per_op"`
	InclShare jsonFloat   `json:"incl_share"`
	ExclShare jsonFloat   `json:"excl_share"`
	CI        []jsonFloat `json:"ci,omitempty"` // exclusive share's interval
	// Diff pages only.
	Sig      bool      `json:"sig,omitempty"`
	Change   jsonFloat `json:"change,omitempty"`
	BaseIncl jsonFloat `json:"base_incl,omitempty"`
	BaseExcl jsonFloat `json:"base_excl,omitempty"`
	Note     string    `json:"note,omitempty"`
	Added    bool      `json:"added,omitempty"` // only in the new run
}

// jsonFloat marshals NaN and infinities as null, which JSON cannot hold
// otherwise.
type jsonFloat float64

// MarshalJSON implements json.Marshaler.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return []byte(fmt.Sprintf("%g", v)), nil
}

type pageData struct {
	Mode      string      `json:"mode"` // "report" or "diff"
	Meta      pageMeta    `json:"meta"`
	Nodes     []flameNode `json:"nodes"`
	Trace     []traceMark `json:"trace"`
	BySamples bool        `json:"by_samples"` // no timed node: widths are stack samples
}

type pageMeta struct {
	Rounds int `json:"rounds"`
}

type traceMark struct {
	Round  int         `json:"round"`
	Action string      `json:"action"`
	Node   int         `json:"node"`
	Spec   string      `json:"spec,omitempty"`
	Reason string      `json:"reason"`
	Stat   []jsonFloat `json:"stat,omitempty"` // mean, low, high
}

// flameNodes returns the nodes for the page's script. A node's value, the
// width of its box, is its inclusive time, or its inclusive count of stack
// samples where the run has no timed contexts (see bySamples).
func flameNodes(run *search.Run) []flameNode {
	out := make([]flameNode, len(run.Nodes))
	samples := bySamples(run)
	inclSamples := inclusiveSamples(run)
	in := profiled(run)
	for i, n := range run.Nodes {
		out[i] = flameNode{ID: n.ID, Parent: n.Parent, Name: n.Point.String(), Path: n.Path, Kind: string(n.Kind),
			State: n.State, Withdrawn: n.Withdrawn, Source: n.Source,
			Backend: n.Backend, Calls: n.Calls, Incl: n.InclNs, Excl: n.ExclNs, OffCPU: n.ExclOffCPUNs, Samples: inclSamples[i],
			Estimated: estimated(&n),
			PerOp:     jsonFloat(perOp(run, &n, n.Calls)), InclShare: jsonFloat(share(run, &n, n.InclNs)), ExclShare: jsonFloat(share(run, &n, n.ExclNs))}
		out[i].Value = n.InclNs
		if samples {
			out[i].Value = inclSamples[i]
		}
		if !in[i] {
			out[i].Value = 0 // withdrawn: its time is in its caller's box
		}
		if n.Excl.N >= 2 {
			iv := clampShare(n.Excl)
			out[i].CI = []jsonFloat{jsonFloat(iv.Low), jsonFloat(iv.High)}
		}
	}
	return out
}

func traceMarks(events []search.Event) []traceMark {
	out := make([]traceMark, len(events))
	for i, e := range events {
		out[i] = traceMark{Round: e.Round, Action: e.Action, Node: e.Node, Spec: e.Spec, Reason: e.Reason}
		if e.Stat != nil {
			out[i].Stat = []jsonFloat{jsonFloat(e.Stat.Mean), jsonFloat(e.Stat.Low), jsonFloat(e.Stat.High)}
		}
	}
	return out
}

// bySamples reports whether the flame graph must be drawn from stack
// samples: no context below a root was timed, and some were sampled.
func bySamples(run *search.Run) bool {
	sampled := false
	for i := range run.Nodes {
		n := &run.Nodes[i]
		if n.Parent >= 0 && !estimated(n) && n.InclNs > 0 {
			return false
		}
		sampled = sampled || estimated(n)
	}
	return sampled
}

// mixed reports whether the tree holds both contexts timed by instruments
// and contexts estimated from stack samples.
func mixed(run *search.Run) bool {
	var exact, est bool
	for i := range run.Nodes {
		if estimated(&run.Nodes[i]) {
			est = true
		} else {
			exact = true
		}
	}
	return exact && est
}

// htmlRow is a row of the hot tree table: exact columns, then estimated
// ones.
type htmlRow struct {
	Incl, Excl, Calls, PerOp, Mean, Name, Backend string
	Samples, EstIncl, EstExcl                     string
	Indent                                        int
}

func htmlTree(run *search.Run) []htmlRow {
	var rows []htmlRow
	inclSamples := inclusiveSamples(run)
	for _, r := range hotTree(run) {
		n := r.node
		if n == nil {
			rows = append(rows, htmlRow{Name: fmt.Sprintf("… %d more below %s", r.more, pct(HotTreeMin)), Indent: 8 + 14*r.depth})
			continue
		}
		name := n.Point.String()
		if n.Kind == search.NodeBlock {
			name += " (block)"
		}
		if n.State == "withdrawn" {
			name += " (withdrawn)"
		}
		c := treeCells(run, n, inclSamples[n.ID])
		rows = append(rows, htmlRow{Incl: c.incl, Excl: c.excl, Calls: c.calls, PerOp: c.perOp, Mean: c.mean,
			Samples: c.samples, EstIncl: c.estIncl, EstExcl: c.estExcl, Name: name, Backend: n.Backend, Indent: 8 + 14*r.depth})
	}
	return rows
}

// WriteHTML writes report.html: one self-contained page (style, script and
// data inline, no network) with the findings first, then a flame graph of
// the calling-context tree drawn from inclusive times (exact where an
// instrument timed the context, estimates from stack samples, drawn pale,
// where none did), the hot tree with exact and estimated columns apart,
// the search trace as a timeline, the disassembly of the findings'
// functions with the instrumented blocks highlighted, the overhead and the
// limitations. The tables are plain HTML; the flame graph and the timeline
// are drawn by the embedded script from the embedded JSON.
func WriteHTML(w io.Writer, run *search.Run) error {
	css, js := pageAssets()
	m := run.Meta
	title := m.Target
	if len(m.Command) > 0 {
		title = strings.Join(m.Command, " ") + " (" + m.Target + ")"
	}
	view := map[string]any{
		"Title": title, "Meta": m, "Ops": count(m.TargetOps), "TargetTime": dur(float64(m.TargetNs)),
		"Conf": level(m.Confidence), "Start": m.Start.UTC().Format("2006-01-02 15:04:05 UTC"),
		"Findings": run.Findings, "Tree": htmlTree(run), "HotMin": pct(HotTreeMin), "Trace": run.Trace,
		"Listings": run.Listings, "Overhead": run.Overhead, "Limitations": append(append([]string(nil), run.Limitations...), Anomalies(run)...),
		"BySamples": bySamples(run), "Mixed": mixed(run), "WithSamples": hasSamples(run), "CSS": css, "JS": js,
		"Data": pageData{Mode: "report", Meta: pageMeta{Rounds: m.Rounds}, Nodes: flameNodes(run),
			Trace: traceMarks(run.Trace), BySamples: bySamples(run)},
	}
	return reportTmpl.Execute(w, view)
}

// FlameJSON returns the flame graph's data for run as internal/flame's
// script reads it, the JSON that report.html embeds: autoprof ui draws a
// hunt's tree with it, round by round, from a run made of a
// search.Progress snapshot.
func FlameJSON(run *search.Run) ([]byte, error) {
	return json.Marshal(pageData{Mode: "report", Meta: pageMeta{Rounds: run.Meta.Rounds}, Nodes: flameNodes(run),
		Trace: traceMarks(run.Trace), BySamples: bySamples(run)})
}

// signedPct formats a change of a fraction in percentage points: "+1.2 pp".
func signedPct(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "—"
	}
	return fmt.Sprintf("%+.2f pp", 100*f)
}

var diffTmpl = template.Must(template.New("diff.html.tmpl").Funcs(pageFuncs).Funcs(template.FuncMap{
	"pval": pval,
	"val":  value,  // a time per operation of a Change
	"chg":  change, // a difference of times per operation, signed
	// dir is the CSS class of a change: up, down, or ns (not significant).
	"dir": func(c Change) string {
		switch {
		case !c.Significant:
			return "ns"
		case c.Diff > 0:
			return "up"
		}
		return "down"
	},
}).ParseFS(htmlFS, "html/diff.html.tmpl"))

// WriteDiffHTML writes diff.html: one self-contained page with the
// significant changes first, then a flame graph of the new run coloured by
// the change of each context's exclusive share, the matched contexts
// without a significant change, and the contexts found in one run only.
// new must be the run c's new side was computed from.
func WriteDiffHTML(w io.Writer, c *Comparison, new *search.Run) error {
	css, js := pageAssets()
	nodes := flameNodes(new)
	for i := range nodes {
		nodes[i].Added = true
	}
	opNs := float64(c.Base.TargetNs) / float64(max(c.Base.TargetOps, 1))
	for _, d := range c.Nodes {
		n := &nodes[d.New.Node]
		// The flame graph colours by a share: the change per operation
		// as a share of the base's time per operation.
		n.Added, n.Sig, n.Change, n.Note = false, d.Excl.Significant, jsonFloat(d.Excl.Diff/opNs), d.Note
		n.BaseIncl, n.BaseExcl = jsonFloat(d.Base.InclShare), jsonFloat(d.Base.ExclShare)
		n.InclShare, n.ExclShare = jsonFloat(d.New.InclShare), jsonFloat(d.New.ExclShare)
	}
	view := map[string]any{
		"C": c, "BaseLine": runLine(c.Base), "NewLine": runLine(c.New),
		"Alpha": level(c.Options.Alpha), "Conf": level(c.Options.Confidence),
		"MinShare": level(c.Options.MinShare), "MinRel": level(c.Options.MinRelative),
		"Sig": c.Nodes[:c.Significant], "Rest": c.Nodes[c.Significant:], "CSS": css, "JS": js,
		"Data": pageData{Mode: "diff", Meta: pageMeta{Rounds: new.Meta.Rounds}, Nodes: nodes, BySamples: bySamples(new)},
	}
	return diffTmpl.Execute(w, view)
}
