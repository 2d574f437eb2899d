package search

import (
	"math"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestFitOlder: a window node's children measured in other windows fit
// in what the window left the node: scaled down, with their subtrees,
// where they add up to more; left as they are where they fit. (The 6.12
// truth benchmark's gt4: a burst of 20% from the first round, beside a
// child measured in the window at all of its parent's time; the tree
// added up to 205%.)
func TestFitOlder(t *testing.T) {
	iv := func(m float64) Interval { return Interval{Mean: m, Low: m, High: m, N: 4} }
	for _, c := range []struct {
		name                      string
		parent, windowKid, burst  float64
		wantBurst, wantGrandchild float64
	}{
		{"over", 1.0, 0.9, 0.4, 0.1, 0.05},
		{"fits", 1.0, 0.5, 0.4, 0.4, 0.2},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &node{path: instrument.Path{{Func: "p"}}}
			w := &node{path: instrument.Path{{Func: "p"}, {Func: "w"}}, parent: p}
			b := &node{path: instrument.Path{{Func: "p"}, {Func: "b"}}, parent: p}
			g := &node{path: instrument.Path{{Func: "p"}, {Func: "b"}, {Func: "g"}}, parent: b}
			p.children, b.children = []*node{w, b}, []*node{g}
			all := map[*node]*est{
				p: {source: SourceWindow, incl: iv(c.parent), excl: iv(c.parent - c.windowKid)},
				w: {source: SourceWindow, incl: iv(c.windowKid), excl: iv(c.windowKid)},
				b: {source: SourceBurst, incl: iv(c.burst), excl: iv(c.burst / 2)},
				g: {source: SourceBurst, incl: iv(c.burst / 2), excl: iv(c.burst / 2)},
			}
			fitOlder(p, all[p], all)
			if got := all[b].incl.Mean; math.Abs(got-c.wantBurst) > 1e-9 {
				t.Errorf("burst child %.3f, want %.3f", got, c.wantBurst)
			}
			if got := all[g].incl.Mean; math.Abs(got-c.wantGrandchild) > 1e-9 {
				t.Errorf("its child %.3f, want %.3f", got, c.wantGrandchild)
			}
			if got := all[w].incl.Mean; got != c.windowKid {
				t.Errorf("window child %.3f, want it as measured, %.3f", got, c.windowKid)
			}
		})
	}
}
