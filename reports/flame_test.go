package reports

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/headless"
	"github.com/autoprof/autoprof/search"
)

// flameState is what the flame graph's box says it draws.
type flameState struct {
	View, Root, Sandwich string
	Total, Matched       float64
	Boxes, Matches       int
	Names                []string // of the matching boxes
	Width, First         float64  // of the svg, of its widest box
	FirstName            string
}

const flameStateJS = `(function(){const b=document.getElementById('flamegraph'); const svgs=b.querySelectorAll('svg');
	const svg=svgs[svgs.length-1]; let first=null;
	for (const g of svg.querySelectorAll('g')) { const w=+g.querySelector('rect').getAttribute('width'); if(!first||w>first.w) first={w:w,name:g.dataset.name}; }
	return {View:b.dataset.view, Root:b.dataset.root, Sandwich:b.dataset.sandwich, Total:+b.dataset.total, Matched:+(b.dataset.matched||0),
		Boxes:b.querySelectorAll('g').length, Matches:b.querySelectorAll('g.match').length,
		Names:Array.from(b.querySelectorAll('g.match')).map(g=>g.dataset.name),
		Width:+svg.getAttribute('width'), First:first?first.w:0, FirstName:first?first.name:''};})()`

// TestFlameInChromium drives report.html's flame graph of the fsync
// golden run in headless Chromium and checks what it draws against the
// same sums made here from the page's data: the call tree's total is its
// roots' values; searching a function highlights exactly the boxes of
// that name and says their share (their outermost boxes' values over the
// total); clicking a box zooms on it (it becomes the root, full width, the
// total its value) and clicking it again zooms out; bottom up, the
// functions' own values add up to the total less what children
// measured beyond their parents; the sandwich of a function has its
// outermost calls' total; the withdrawn node is drawn hatched and its
// tooltip says so; a refused instrument marks its node and its tooltip
// says why; and in the run known only from samples every box below the
// root is drawn as an estimate with a tooltip that says so.
func TestFlameInChromium(t *testing.T) {
	b, ctx := startChromium(t)
	run := fixture(t, "fsync-6.1")
	// Its withdrawn node took 0.04% of the time, too little to see: make
	// it a fifth of its parent's.
	for i, n := range run.Nodes {
		if n.State == search.StateWithdrawn {
			run.Nodes[i].InclNs = run.Nodes[n.Parent].InclNs / 5
			run.Trace = append(run.Trace, search.Event{Round: 9, Action: "withdraw", Node: n.ID, Reason: "a test's withdrawal"})
		}
	}
	nodes := flameNodes(run)
	var fn *flameNode // the timed function with the largest exclusive time
	for i := range nodes {
		n := &nodes[i]
		if n.Parent >= 0 && n.Value > 0 && n.Kind == "function" && (fn == nil || n.Excl > fn.Excl) {
			fn = n
		}
	}
	run.Trace = append(run.Trace, search.Event{Round: 3, Action: "refuse", Node: fn.ID, Spec: "fn:entry", Reason: "a test's refusal"})
	open := func(run *search.Run) {
		t.Helper()
		dir := t.TempDir()
		if err := Write(dir, run); err != nil {
			t.Fatal(err)
		}
		if err := b.Navigate(ctx, "file://"+filepath.Join(dir, HTMLFile)); err != nil {
			t.Fatal(err)
		}
		if errs := b.Errors(); len(errs) > 0 {
			t.Fatalf("page errors %q", errs)
		}
	}
	state := func(do string) flameState {
		t.Helper()
		if do != "" {
			if err := b.Eval(ctx, "(function(){"+do+"; return 1})()", new(int)); err != nil {
				t.Fatalf("%s: %v", do, err)
			}
		}
		var s flameState
		if err := b.Eval(ctx, flameStateJS, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	open(run)

	var total, below float64 // roots' values; of the outermost boxes named fn
	children := make([]float64, len(nodes))
	for _, n := range nodes {
		if n.Parent < 0 {
			total += float64(n.Value)
		} else {
			children[n.Parent] += float64(n.Value)
		}
	}
	var own float64
	for i, n := range nodes {
		own += math.Max(0, float64(n.Value)-children[i])
		if n.Name == fn.Name && !hasAncestor(nodes, i, fn.Name) {
			below += float64(n.Value)
		}
	}
	s := state("")
	if s.View != "tree" || !near(s.Total, total) || s.Root != "" {
		t.Errorf("call tree: %+v, want total %v", s, total)
	}
	full := s.Width

	s = state(`flame.search(` + jsString("^"+regexp.QuoteMeta(fn.Name)+"$") + `)`)
	if s.Matches == 0 || !near(s.Matched, below/total) {
		t.Errorf("search %s: %d boxes, matched %v, want %v", fn.Name, s.Matches, s.Matched, below/total)
	}
	for _, n := range s.Names {
		if n != fn.Name {
			t.Errorf("search %s highlights %s", fn.Name, n)
		}
	}
	var shown string
	b.Eval(ctx, `document.querySelector('#flamegraph .flame-status').textContent`, &shown)
	if want := fmt.Sprintf("matched: %.1f%%", 100*below/total); !strings.Contains(shown, want) {
		t.Errorf("status %q, want %q", shown, want)
	}
	state(`flame.search('')`)

	click := `document.querySelector('#flamegraph g[data-id="` + fmt.Sprint(fn.ID) + `"]').dispatchEvent(new MouseEvent('click', {bubbles: true}))`
	s = state(click)
	if s.Root != fn.Name || !near(s.Total, float64(fn.Value)) || s.FirstName != fn.Name || s.First < full-1 {
		t.Errorf("zoom on %s: %+v, want it as root, full width %v, total %v", fn.Name, s, full, fn.Value)
	}
	s = state(click)
	if s.Root != "" || !near(s.Total, total) {
		t.Errorf("zoom out: %+v", s)
	}

	s = state(`flame.view('bottomup')`)
	if s.View != "bottomup" || !near(s.Total, own) {
		t.Errorf("bottom up: %+v, want total %v", s, own)
	}
	s = state(`flame.sandwich(` + jsString(fn.Name) + `)`)
	if s.View != "sandwich" || s.Sandwich != fn.Name || !near(s.Total, below) || s.FirstName != fn.Name {
		t.Errorf("sandwich of %s: %+v, want total %v", fn.Name, s, below)
	}
	state(`flame.view('tree')`)

	tooltip := func(sel string) string {
		t.Helper()
		var text string
		err := b.Eval(ctx, `(function(){const g=document.querySelector('#flamegraph `+sel+`'); if(!g) return '';
			g.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: 10, clientY: 10}));
			return document.querySelector('.flame-tip').textContent;})()`, &text)
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	if tip := tooltip(`g[data-kind="withdrawn"]`); !strings.Contains(tip, "WITHDRAWN") || !strings.Contains(tip, "round 9: a test's withdrawal") {
		t.Errorf("withdrawn node's tooltip: %q", tip)
	}
	var hatched int
	b.Eval(ctx, `document.querySelectorAll('#flamegraph g[data-kind="withdrawn"] rect[fill^="url"]').length`, &hatched)
	if hatched == 0 {
		t.Errorf("no hatched withdrawn box")
	}
	if tip := tooltip(`g[data-id="` + fmt.Sprint(fn.ID) + `"]`); !strings.Contains(tip, "EXACT") || !strings.Contains(tip, "REFUSED here, round 3: fn:entry — a test's refusal") {
		t.Errorf("refused node's tooltip: %q", tip)
	}
	screenshot(t, b, ctx, "report-flame", `flame.search('ext4'); document.getElementById('flame').scrollIntoView()`)
	screenshot(t, b, ctx, "report-sandwich", `flame.search(''); flame.sandwich(`+jsString(fn.Name)+`); document.getElementById('flame').scrollIntoView()`)

	open(fixture(t, "sampled-host"))
	var kinds struct{ Estimated, Other int }
	b.Eval(ctx, `({Estimated: document.querySelectorAll('#flamegraph g[data-kind="estimated"]').length,
		Other: document.querySelectorAll('#flamegraph g:not([data-kind="estimated"])').length})`, &kinds)
	if kinds.Estimated == 0 || kinds.Other > 1 {
		t.Errorf("sampled run: %d estimated boxes, %d others (want the root at most)", kinds.Estimated, kinds.Other)
	}
	if tip := tooltip(`g[data-kind="estimated"]`); !strings.Contains(tip, "ESTIMATED from") {
		t.Errorf("estimated node's tooltip: %q", tip)
	}
}

// hasAncestor reports whether a node above nodes[i] is named name.
func hasAncestor(nodes []flameNode, i int, name string) bool {
	for p := nodes[i].Parent; p >= 0; p = nodes[p].Parent {
		if nodes[p].Name == name {
			return true
		}
	}
	return false
}

// screenshot runs do in the page and saves a screenshot as
// docs/ui/NAME.png with AUTOPROF_UI_SCREENSHOTS=1 or -update, as the UI's
// tests do.
func screenshot(t *testing.T, b *headless.Browser, ctx context.Context, name, do string) {
	t.Helper()
	if os.Getenv("AUTOPROF_UI_SCREENSHOTS") == "" && !*update {
		return
	}
	if err := b.Eval(ctx, "(function(){"+do+"; return 1})()", new(int)); err != nil {
		t.Fatal(err)
	}
	shot, err := b.Screenshot(ctx)
	if err == nil {
		err = os.WriteFile(filepath.Join("..", "docs", "ui", name+".png"), shot, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
