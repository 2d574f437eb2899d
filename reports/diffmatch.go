package reports

// Matching of calling contexts between two runs, by symbol path (see Diff).

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/autoprof/autoprof/search"
)

// matchNote says how a pair of contexts was matched.
type matchNote struct {
	match Match
	note  string
}

// cloneSuffix matches one compiler clone suffix at the end of a name.
var cloneSuffix = regexp.MustCompile(`\.(isra|constprop|part|cold|lto_priv|llvm|localalias|specialized)(\.[0-9]+)?$`)

// CanonicalName returns a function name without its module and without the
// clone suffixes compilers add (foo.constprop.0.isra.0 → foo), keeping a
// block offset (foo.isra.0+0x1a → foo+0x1a): the name by which Diff
// matches renamed functions.
func CanonicalName(point string) string {
	fn, off, hasOff := strings.Cut(point, "+")
	_, fn = splitModule(fn)
	for {
		s := cloneSuffix.ReplaceAllString(fn, "")
		if s == fn {
			break
		}
		fn = s
	}
	if hasOff {
		return fn + "+" + off
	}
	return fn
}

// matchNodes pairs nodes of the two runs (see Diff).
func matchNodes(base, new *search.Run) ([][2]int, map[[2]int]matchNote) {
	pairs := map[[2]int]matchNote{}
	usedB, usedN := map[int]bool{}, map[int]bool{}
	sameKernel := base.Meta.Kernel == new.Meta.Kernel
	eligible := func(n search.Node) bool { return sameKernel || n.Kind != search.NodeBlock && n.Point.Offset == 0 }
	funcsB, funcsN := funcSet(base), funcSet(new)
	passes := []struct {
		match Match
		key   func(run *search.Run, n search.Node, other map[string]bool) (string, string)
	}{
		{MatchExact, func(_ *search.Run, n search.Node, _ map[string]bool) (string, string) {
			return strings.Join(n.Path, ";"), ""
		}},
		{MatchRenamed, func(_ *search.Run, n search.Node, _ map[string]bool) (string, string) {
			return strings.Join(canonicalPath(n.Path), ";"), ""
		}},
		{MatchInlined, func(_ *search.Run, n search.Node, other map[string]bool) (string, string) {
			var kept, dropped []string
			cp := canonicalPath(n.Path)
			for i, f := range cp {
				if i == len(cp)-1 || other[f] {
					kept = append(kept, f)
				} else {
					dropped = append(dropped, n.Path[i])
				}
			}
			return strings.Join(kept, ";"), strings.Join(dropped, ",")
		}},
	}
	for _, pass := range passes {
		kb := uniqueKeys(base, usedB, eligible, func(n search.Node) (string, string) { return pass.key(base, n, funcsN) })
		kn := uniqueKeys(new, usedN, eligible, func(n search.Node) (string, string) { return pass.key(new, n, funcsB) })
		for key, b := range kb {
			n, ok := kn[key]
			if !ok {
				continue
			}
			usedB[b.node], usedN[n.node] = true, true
			note := ""
			switch pass.match {
			case MatchRenamed:
				note = renames(base.Nodes[b.node].Path, new.Nodes[n.node].Path)
			case MatchInlined:
				note = inlinedNote(b.dropped, n.dropped)
				if bp, np := base.Nodes[b.node].Point.String(), new.Nodes[n.node].Point.String(); bp != np {
					note += "; renamed: " + bp + " → " + np
				}
			}
			pairs[[2]int{b.node, n.node}] = matchNote{pass.match, note}
		}
	}
	replaced(base, new, pairs, usedB, usedN, eligible)
	list := make([][2]int, 0, len(pairs))
	for p := range pairs {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return list[i][1] < list[j][1] })
	return list, pairs
}

// replaced pairs, top down, the sole unmatched eligible child of a matched
// base node with the sole unmatched eligible child of its partner.
func replaced(base, new *search.Run, pairs map[[2]int]matchNote, usedB, usedN map[int]bool, eligible func(search.Node) bool) {
	partner := map[int]int{}
	for p := range pairs {
		partner[p[0]] = p[1]
	}
	loose := func(run *search.Run, used map[int]bool) map[int][]int {
		out := map[int][]int{}
		for i, n := range run.Nodes {
			if !used[i] && n.Parent >= 0 && eligible(n) {
				out[n.Parent] = append(out[n.Parent], i)
			}
		}
		return out
	}
	for changed := true; changed; {
		changed = false
		lb, ln := loose(base, usedB), loose(new, usedN)
		for pb, kids := range lb {
			pn, ok := partner[pb]
			if !ok || len(kids) != 1 || len(ln[pn]) != 1 {
				continue
			}
			b, n := kids[0], ln[pn][0]
			usedB[b], usedN[n], partner[b] = true, true, n
			pairs[[2]int{b, n}] = matchNote{MatchReplaced, fmt.Sprintf("replaced: %s → %s (the only unmatched callee of the same caller in both runs)",
				base.Nodes[b].Point, new.Nodes[n].Point)}
			changed = true
		}
	}
}

type keyed struct {
	node    int
	dropped string
}

// uniqueKeys maps each key that exactly one unused, eligible node has to
// that node.
func uniqueKeys(run *search.Run, used map[int]bool, eligible func(search.Node) bool, key func(search.Node) (string, string)) map[string]keyed {
	out := map[string]keyed{}
	dup := map[string]bool{}
	for i, n := range run.Nodes {
		if used[i] || !eligible(n) {
			continue
		}
		k, dropped := key(n)
		if _, seen := out[k]; seen {
			dup[k] = true
		}
		out[k] = keyed{i, dropped}
	}
	for k := range dup {
		delete(out, k)
	}
	return out
}

func canonicalPath(path []string) []string {
	out := make([]string, len(path))
	for i, p := range path {
		out[i] = CanonicalName(p)
	}
	return out
}

// funcSet returns the canonical names of every point of a run.
func funcSet(run *search.Run) map[string]bool {
	s := map[string]bool{}
	for _, n := range run.Nodes {
		s[CanonicalName(n.Point.String())] = true
	}
	return s
}

func renames(a, b []string) string {
	var parts []string
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			parts = append(parts, a[i]+" → "+b[i])
		}
	}
	return "renamed: " + strings.Join(parts, ", ")
}

func inlinedNote(base, new string) string {
	var parts []string
	if base != "" {
		parts = append(parts, base+" only in base")
	}
	if new != "" {
		parts = append(parts, new+" only in new")
	}
	return strings.Join(parts, "; ") + " (inlined or absent there)"
}
