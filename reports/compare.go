package reports

import (
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// CompareRoots returns the extra roots of `autoprof hunt --compare BASE`:
// the function of each of the base run's findings, in the findings' order,
// each once, so that what was hot before is measured again exactly. A
// block-level finding gives its function (offsets are build-specific).
// Names are as the base run recorded them, a module's functions as
// MODULE:FUNC (the form callgraph.Symbols.Func resolves); on another kernel
// build a name may be missing or carry another clone suffix: resolve it by
// CanonicalName before giving it up.
func CompareRoots(base *search.Run) []instrument.Point {
	var out []instrument.Point
	seen := map[string]bool{}
	for _, f := range base.Findings {
		if f.Node < 0 || f.Node >= len(base.Nodes) {
			continue
		}
		pt := instrument.Point{Func: base.Nodes[f.Node].Point.Func}
		if !seen[pt.Func] {
			seen[pt.Func] = true
			out = append(out, pt)
		}
	}
	return out
}

// ComparePaths returns the calling contexts of the base run's findings,
// outermost point first, for a hunt that instruments a finding's whole path
// at once rather than its function alone.
func ComparePaths(base *search.Run) []instrument.Path {
	var out []instrument.Path
	for _, f := range base.Findings {
		if f.Node < 0 || f.Node >= len(base.Nodes) {
			continue
		}
		var path instrument.Path
		for i := f.Node; i >= 0; i = base.Nodes[i].Parent {
			path = append(instrument.Path{base.Nodes[i].Point}, path...)
		}
		out = append(out, path)
	}
	return out
}
