package callgraph

import (
	"regexp"
	"slices"
	"strings"
)

// Reach says how the static graph reaches a function's code: by calls to
// the function itself, through the copies the compiler made of it
// (foo.part.0, foo.constprop.0, foo.isra.0), or where it was inlined.
// A function inlined wherever it is called has no caller (its out-of-line
// copy stays for a caller through a pointer, an export, or none); so has a
// function called only through pointers.
type Reach struct {
	Func string
	// Callers counts the call sites (direct, tail and static calls) that
	// reach the function, from other functions.
	Callers int
	// Copies are the compiler's copies of the function, each with the call
	// sites that reach it.
	Copies []Copy
	// InlinedInto are, where no copy is called, the functions that call
	// neither it nor a copy of it but make its body's direct calls, in
	// its order, one after the other (at least minCalls of them): the
	// likely places its code was inlined into, those whose names share
	// most with its own first (at most maxInlinedInto). Where it has
	// callers, only those whose names are its own but for the prefixes of
	// the syscall layers (see sameLayerName) are kept: __x64_sys_pread64 for
	// ksys_pread64.
	InlinedInto []string
}

// Copy is one compiler copy of a function and its callers.
type Copy struct {
	Name    string
	Callers int
}

// maxInlinedInto bounds Reach.InlinedInto; minCalls is the fewest direct
// calls a body must make for the run of them to say where it was
// inlined: one call is made from everywhere.
const (
	maxInlinedInto = 5
	minCalls       = 2
)

// layerPrefixes are the prefixes of the layers a syscall goes through
// (__x64_sys_pread64, __se_sys_pread64, __do_sys_pread64, ksys_pread64)
// and of helpers named after their caller (do_, __).
var layerPrefixes = []string{"_", "x64_", "ia32_", "x32_", "compat_", "se_", "do_", "sys_", "ksys_"}

// sameLayerName reports whether two functions are names for one syscall
// or helper at different layers: the same coreName, and both compat
// versions or neither (__do_compat_sys_sysinfo is not __do_sys_sysinfo).
func sameLayerName(a, b string) bool {
	return coreName(a) == coreName(b) && strings.Contains(a, "compat") == strings.Contains(b, "compat")
}

// coreName is a function's name without its layerPrefixes: "pread64"
// for ksys_pread64 and __x64_sys_pread64 alike.
func coreName(name string) string {
	for {
		trimmed := name
		for _, p := range layerPrefixes {
			trimmed = strings.TrimPrefix(trimmed, p)
		}
		if trimmed == name {
			return name
		}
		name = trimmed
	}
}

// copySuffix matches the suffixes GCC gives the copies of a function it
// partially inlined (.part), specialised for constant arguments
// (.constprop) or with arguments scalarised (.isra).
var copySuffix = regexp.MustCompile(`^\.(part|constprop|isra)\.\d+$`)

// Reach returns how the function spec names is reached. The first call
// builds the callers index (see Callers).
func (g *Graph) Reach(spec string) (Reach, error) {
	sym, err := g.syms.Lookup(spec)
	if err != nil {
		return Reach{}, err
	}
	r := Reach{Func: sym.Name}
	callsIt := map[string]bool{} // the functions that call it or a copy
	if r.Callers, err = g.callersFrom(sym, sym.Name, callsIt); err != nil {
		return r, err
	}
	for _, c := range g.syms.Match(regexp.MustCompile(`^` + regexp.QuoteMeta(sym.Name) + `\.`)) {
		if c.Module != sym.Module || !copySuffix.MatchString(strings.TrimPrefix(c.Name, sym.Name)) {
			continue
		}
		n, err := g.callersFrom(c, sym.Name, callsIt)
		if err != nil {
			return r, err
		}
		r.Copies = append(r.Copies, Copy{Name: c.Name, Callers: n})
	}
	for _, c := range r.Copies {
		if c.Callers > 0 { // its code runs there
			return r, nil
		}
	}
	in, err := g.inlinedInto(sym, callsIt)
	for _, name := range in {
		if r.Callers == 0 || sameLayerName(name, sym.Name) {
			r.InlinedInto = append(r.InlinedInto, name)
		}
	}
	r.InlinedInto = r.InlinedInto[:min(len(r.InlinedInto), maxInlinedInto)]
	return r, err
}

// callersFrom counts the sites that reach sym from functions other than
// base and its parts, and adds those functions to from.
func (g *Graph) callersFrom(sym Symbol, base string, from map[string]bool) (int, error) {
	edges, err := g.Callers(sym.Name)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range edges {
		if !sameFunc(e.From, base) {
			n++
			from[funcName(e.From)] = true
		}
	}
	return n, nil
}

// sameFunc reports whether from is base, one of its .cold parts or one of
// its copies.
func sameFunc(from Symbol, base string) bool {
	name := funcName(from)
	return name == base || strings.HasPrefix(name, base+".") && copySuffix.MatchString(strings.TrimPrefix(name, base))
}

// inlinedInto returns the functions other than sym that make sym's body's
// direct calls as a run of their own (see Reach.InlinedInto) and are not
// in callsIt (those that call sym or a copy of it), the most alike in name
// first.
func (g *Graph) inlinedInto(sym Symbol, callsIt map[string]bool) ([]string, error) {
	calls, err := g.bodyCalls(sym)
	if err != nil || len(calls) < minCalls {
		return nil, err
	}
	var common map[string]bool
	for _, callee := range calls {
		callers, err := g.Callers(callee)
		if err != nil {
			return nil, err
		}
		these := map[string]bool{}
		for _, c := range callers {
			name := funcName(c.From)
			if !sameFunc(c.From, sym.Name) && !callsIt[name] && (common == nil || common[name]) {
				these[name] = true
			}
		}
		common = these
	}
	var out []string
	for name := range common {
		host, ok := g.syms.Symbol(name)
		if !ok {
			continue
		}
		if theirs, err := g.bodyCalls(host); err == nil && containsRun(theirs, calls) {
			out = append(out, name)
		}
	}
	// Those whose names share most with sym's come first
	// (__x64_sys_pread64 for ksys_pread64).
	slices.SortFunc(out, func(a, b string) int {
		if d := commonRun(b, sym.Name) - commonRun(a, sym.Name); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return out, nil
}

// bodyCalls lists the functions the body of sym (not its .cold parts)
// calls directly, in the order of the call sites, repeats in a row
// merged.
func (g *Graph) bodyCalls(sym Symbol) ([]string, error) {
	f, err := g.FunctionOf(sym)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range f.Sites {
		if s.Kind == Indirect || s.Target == "" || s.TargetOff != 0 {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != s.Target {
			out = append(out, s.Target)
		}
	}
	return out, nil
}

// containsRun reports whether run appears in s as consecutive elements.
func containsRun(s, run []string) bool {
	for i := 0; i+len(run) <= len(s); i++ {
		if slices.Equal(s[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// funcName names the function a symbol is part of: a .cold part's parent.
func funcName(s Symbol) string {
	if s.Parent != "" {
		return s.Parent
	}
	return s.Name
}

// commonRun is the length of the longest substring a and b share.
func commonRun(a, b string) int {
	best := 0
	for i := range a {
		for j := range b {
			k := 0
			for i+k < len(a) && j+k < len(b) && a[i+k] == b[j+k] {
				k++
			}
			best = max(best, k)
		}
	}
	return best
}
