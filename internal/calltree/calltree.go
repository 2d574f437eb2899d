// Package calltree generates random kernel call trees with planted costs:
// the ground truth of autoprof's hunts on code they were never tuned for.
//
// A Tree is drawn from a seed. It becomes, without anything typed in by
// hand, a kernel module (Module writes its C: every function noinline, the
// planted costs accounted by the module itself) that user space drives
// through a /proc, debugfs or sysfs file, and a simulated kernel for the
// host tests of package search (searchtest.FromTree). Its Plants say where
// the time is; the module's own accounting says how much.
package calltree

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Entry is how user space reaches a tree: a write to a file of one of the
// kernel's file systems, each with its own path through the VFS.
type Entry string

// Entries, as the kernel dispatches a write(2) to them.
const (
	Proc    Entry = "proc"    // proc_reg_write → pde_write → the tree's proc_write
	Debugfs Entry = "debugfs" // full_proxy_write → the tree's write, through debugfs's proxy
	Sysfs   Entry = "sysfs"   // kernfs_fop_write_iter → sysfs_kf_write → kobj_attr_store → the tree's store
)

// Via says how a caller reaches a callee.
type Via string

// Ways of calling.
const (
	Direct  Via = "direct"  // a call instruction
	Pointer Via = "pointer" // an indirect call through a function pointer read at run time
	Tail    Via = "tail"    // the caller's last act: a jmp, so the caller's frame is gone
)

// Tree is one generated call tree.
type Tree struct {
	Seed   uint64
	Name   string // prefix of every symbol: "gt7"
	Entry  Entry
	Funcs  []*Func // Funcs[0] is the root, which the entry's handler calls once per write
	Plants []Plant // the planted costs, largest share first
}

// Func is one generated function. Its own cost runs before its calls.
type Func struct {
	Name    string
	SpinNs  uint64 // own CPU time per call: a busy-wait on the TSC
	SleepUs uint32 // own off-CPU time per call: usleep_range
	Calls   []Call
	// Recurse > 0 makes the function call itself Recurse levels deep,
	// its own cost and its calls repeated at every level.
	Recurse int
	// Clone passes the function its cost as a constant argument, so that
	// the compiler may specialise it (name.constprop.N).
	Clone bool
	// Helper marks a shared leaf helper called from several functions.
	Helper bool
}

// Call is a call site: N calls of Funcs[To] per call of the caller.
type Call struct {
	To  int
	N   int
	Via Via
	// Site > 0 is the index of the module's accounting of this call site
	// (its callee's inclusive time in this context), 1-based.
	Site int
}

// PlantKind is the kind of a planted cost.
type PlantKind string

// Planted costs.
const (
	CPU   PlantKind = "cpu"   // a function's own busy-wait, or a shared helper it calls in a loop
	Sleep PlantKind = "sleep" // a function that sleeps (off-CPU)
	Many  PlantKind = "many"  // a cheap function called hundreds of times per operation
)

// Plant is one planted cost.
type Plant struct {
	Kind PlantKind
	// Owner is the function a correct finding names: the function that
	// spins or sleeps, the caller of a shared helper it calls in a loop
	// (the helper's time in that context is the owner's), the cheap
	// function of a Many plant.
	Owner string
	// Helper is the shared helper whose calls from Owner hold the cost
	// (CPU plants only); Caller the function that calls a Many plant's
	// function in a loop.
	Helper, Caller string
	// Share is the share of an operation the plant was designed to take;
	// the truth is what the module measures (Stat names its counter).
	Share float64
	// Stat names the module's accounting of the plant: "own FUNC" or
	// "site CALLER CALLEE".
	Stat string
	// Path is the functions from the tree's root to Owner (to Helper for
	// a CPU plant through a helper).
	Path []string
}

// Generate draws the tree of seed. The same seed gives the same tree.
func Generate(seed uint64) *Tree {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 0x61707472)), t: &Tree{Seed: seed, Name: fmt.Sprintf("gt%d", seed)}}
	g.t.Entry = []Entry{Proc, Debugfs, Sysfs}[seed%3]
	g.grow()
	g.plant()
	g.decorate()
	sort.SliceStable(g.t.Plants, func(i, j int) bool { return g.t.Plants[i].Share > g.t.Plants[j].Share })
	return g.t
}

// gen is the state of one generation.
type gen struct {
	rng   *rand.Rand
	t     *Tree
	depth []int // depth of each function, the root at 1
	// parent of each tree function (-1 for the root and helpers).
	parent []int
	sites  int
}

// opUs is the design length of one operation, in µs of the plants and
// the cold functions (the kernel's own path adds to it).
const opUs = 8000

func (g *gen) add(f *Func, parent, depth int) int {
	g.t.Funcs = append(g.t.Funcs, f)
	g.depth = append(g.depth, depth)
	g.parent = append(g.parent, parent)
	return len(g.t.Funcs) - 1
}

func (g *gen) name(kind string, i int) string { return fmt.Sprintf("%s_%s%d", g.t.Name, kind, i) }

// grow draws the shape: depth 4 to 8, fan-out 1 to 4, at most 28
// functions, every level down to the deepest reached.
func (g *gen) grow() {
	maxDepth := 4 + g.rng.IntN(5)
	g.add(&Func{Name: g.name("f", 0)}, -1, 1)
	frontier := []int{0}
	for d := 1; d < maxDepth && len(g.t.Funcs) < 28; d++ {
		var next []int
		for _, p := range frontier {
			k := 1 + g.rng.IntN(4)
			if d > 2 && g.rng.IntN(3) == 0 {
				k = 0 // some branches stop early
			}
			for range k {
				if len(g.t.Funcs) >= 28 {
					break
				}
				c := g.add(&Func{Name: g.name("f", len(g.t.Funcs))}, p, d+1)
				g.t.Funcs[p].Calls = append(g.t.Funcs[p].Calls, Call{To: c, N: 1, Via: Direct})
				next = append(next, c)
			}
		}
		if len(next) == 0 { // keep one branch going
			p := frontier[g.rng.IntN(len(frontier))]
			c := g.add(&Func{Name: g.name("f", len(g.t.Funcs))}, p, d+1)
			g.t.Funcs[p].Calls = append(g.t.Funcs[p].Calls, Call{To: c, N: 1, Via: Direct})
			next = append(next, c)
		}
		frontier = next
	}
	for _, f := range g.t.Funcs {
		f.SpinNs = uint64(3000 + g.rng.IntN(25000)) // cold: 3 to 28 µs
	}
}

// shares draws the n plants' design shares: the largest 38 to 50% of an
// operation, the second 12 points or more below it (so that which is
// largest does not depend on noise), a third 8 points or more below the
// second, none under 10%.
func (g *gen) shares(n int) []float64 {
	between := func(lo, hi float64) float64 { return lo + (hi-lo)*g.rng.Float64() }
	s := []float64{between(0.38, 0.50)}
	if n >= 2 {
		lo := 0.12
		if n == 3 {
			lo = 0.20
		}
		s = append(s, between(lo, s[0]-0.12))
	}
	if n >= 3 {
		s = append(s, between(0.10, s[1]-0.08))
	}
	return s
}

// deepFuncs returns the tree functions at depth >= d, not yet planted.
func (g *gen) deepFuncs(d int, used map[int]bool) []int {
	var out []int
	for i := range g.t.Funcs {
		if g.depth[i] >= d && !used[i] && !g.t.Funcs[i].Helper {
			out = append(out, i)
		}
	}
	return out
}

// pick returns one of xs, preferring the deepest.
func (g *gen) pick(xs []int) int {
	sort.Slice(xs, func(a, b int) bool {
		return g.depth[xs[a]] > g.depth[xs[b]] || g.depth[xs[a]] == g.depth[xs[b]] && xs[a] < xs[b]
	})
	return xs[g.rng.IntN(min(len(xs), 3))]
}

// plant places two or three planted costs: always CPU, then sleep, many
// or both; which one is largest is drawn too.
func (g *gen) plant() {
	kinds := []PlantKind{CPU}
	switch g.rng.IntN(3) {
	case 0:
		kinds = append(kinds, Sleep)
	case 1:
		kinds = append(kinds, Many)
	default:
		kinds = append(kinds, Sleep, Many)
	}
	g.rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	shares := g.shares(len(kinds))
	used := map[int]bool{0: true}
	for i, k := range kinds {
		us := shares[i] * opUs
		switch k {
		case CPU:
			g.plantCPU(us, shares[i], used)
		case Sleep:
			g.plantSleep(us, shares[i], used)
		case Many:
			g.plantMany(us, shares[i], used)
		}
	}
}

// plantCPU makes a function at depth 3 or more CPU-bound: by its own
// busy-wait, or (half the time) through a shared helper it calls 50 to
// 250 times, which two to five other functions call once to three times.
func (g *gen) plantCPU(us, share float64, used map[int]bool) {
	x := g.pick(g.deepFuncs(3, used))
	used[x] = true
	f := g.t.Funcs[x]
	p := Plant{Kind: CPU, Owner: f.Name, Share: share, Path: g.pathTo(x)}
	if g.rng.IntN(2) == 0 {
		f.SpinNs = uint64(us * 1000)
		p.Stat = "own " + f.Name
		g.t.Plants = append(g.t.Plants, p)
		return
	}
	n := 50 + g.rng.IntN(201)
	h := g.add(&Func{Name: g.name("h", len(g.t.Funcs)), Helper: true, SpinNs: uint64(us * 1000 / float64(n))}, -1, g.depth[x]+1)
	g.sites++
	f.Calls = append(f.Calls, Call{To: h, N: n, Via: Direct, Site: g.sites})
	others := g.deepFuncs(1, used) // once per operation each, not the other plants
	g.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	for _, o := range others[:min(len(others), 2+g.rng.IntN(4))] {
		g.t.Funcs[o].Calls = append(g.t.Funcs[o].Calls, Call{To: h, N: 1 + g.rng.IntN(3), Via: Direct})
	}
	p.Helper = g.t.Funcs[h].Name
	p.Stat = "site " + f.Name + " " + p.Helper
	p.Path = append(p.Path, p.Helper)
	g.t.Plants = append(g.t.Plants, p)
}

// plantSleep makes a function at depth 2 or more sleep.
func (g *gen) plantSleep(us, share float64, used map[int]bool) {
	s := g.pick(g.deepFuncs(2, used))
	used[s] = true
	f := g.t.Funcs[s]
	f.SleepUs = uint32(us)
	f.SpinNs = 2000
	g.t.Plants = append(g.t.Plants, Plant{Kind: Sleep, Owner: f.Name, Share: share, Stat: "own " + f.Name, Path: g.pathTo(s)})
}

// plantMany adds a cheap leaf that a function at depth 2 or more calls
// 300 to 1,200 times per call.
func (g *gen) plantMany(us, share float64, used map[int]bool) {
	p := g.pick(g.deepFuncs(2, used))
	used[p] = true
	n := 300 + g.rng.IntN(901)
	m := g.add(&Func{Name: g.name("m", len(g.t.Funcs)), SpinNs: uint64(us * 1000 / float64(n))}, p, g.depth[p]+1)
	used[m] = true
	g.sites++
	g.t.Funcs[p].Calls = append(g.t.Funcs[p].Calls, Call{To: m, N: n, Via: Direct, Site: g.sites})
	mf, pf := g.t.Funcs[m], g.t.Funcs[p]
	g.t.Plants = append(g.t.Plants, Plant{Kind: Many, Owner: mf.Name, Caller: pf.Name, Share: share,
		Stat: "site " + pf.Name + " " + mf.Name, Path: g.pathTo(m)})
}

// decorate draws the ways of calling: function pointers (a quarter of the
// calls), tail calls (a fifth of the last calls of functions that account
// nothing after them), one recursive function in a third of the trees, and
// constant arguments the compiler may specialise.
func (g *gen) decorate() {
	for i, f := range g.t.Funcs {
		for j := range f.Calls {
			c := &f.Calls[j]
			switch {
			case g.rng.IntN(4) == 0:
				c.Via = Pointer
			case j == len(f.Calls)-1 && c.Site == 0 && c.N == 1 && g.t.Funcs[c.To].Recurse == 0 && g.rng.IntN(5) == 0:
				c.Via = Tail
			}
		}
		if i > 0 && !f.Helper && g.rng.IntN(4) == 0 {
			f.Clone = true
		}
	}
	if g.rng.IntN(3) == 0 {
		var cands []int
		for i, f := range g.t.Funcs {
			if i > 0 && !f.Helper && f.SleepUs == 0 && !g.onPlantPath(f.Name) && len(f.Calls) <= 2 {
				cands = append(cands, i)
			}
		}
		if len(cands) > 0 {
			f := g.t.Funcs[cands[g.rng.IntN(len(cands))]]
			f.Recurse = 2 + g.rng.IntN(3)
			f.Clone = false
		}
	}
	// A call reaching a recursive function is not a tail call: its
	// argument is the depth.
	for _, f := range g.t.Funcs {
		for j := range f.Calls {
			if f.Calls[j].Via == Tail && g.t.Funcs[f.Calls[j].To].Recurse > 0 {
				f.Calls[j].Via = Direct
			}
		}
	}
}

// onPlantPath reports whether a plant runs below the function: a
// recursive one would multiply it.
func (g *gen) onPlantPath(name string) bool {
	for _, p := range g.t.Plants {
		if slices.Contains(p.Path, name) || p.Caller == name {
			return true
		}
	}
	return false
}

// pathTo returns the names from the root to function i.
func (g *gen) pathTo(i int) []string {
	var rev []string
	for ; i >= 0; i = g.parent[i] {
		rev = append(rev, g.t.Funcs[i].Name)
	}
	slices.Reverse(rev)
	return rev
}

// Func returns the function named name, nil if none.
func (t *Tree) Func(name string) *Func {
	for _, f := range t.Funcs {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Handler is the name of the entry's write handler, which calls the root.
func (t *Tree) Handler() string {
	if t.Entry == Sysfs {
		return t.Name + "_store"
	}
	return t.Name + "_write"
}

// CallsPerOp returns how many times each function runs per operation (a
// recursive function once per level).
func (t *Tree) CallsPerOp() map[string]float64 {
	out := map[string]float64{}
	var walk func(i int, m float64, depth int)
	walk = func(i int, m float64, depth int) {
		if depth > 64 {
			return
		}
		f := t.Funcs[i]
		levels := float64(1 + f.Recurse)
		out[f.Name] += m * levels
		for _, c := range f.Calls {
			walk(c.To, m*levels*float64(c.N), depth+1)
		}
	}
	walk(0, 1, 0)
	return out
}

// BaseName strips the suffixes the compiler gives the copies it makes of
// a function (.constprop.N, .isra.N, .part.N, .cold), so that a symbol
// names the function of the source.
func BaseName(sym string) string {
	if i := strings.IndexByte(sym, '.'); i > 0 {
		return sym[:i]
	}
	return sym
}

// ParseSeeds parses "N", "N-M" and comma-separated lists of both.
func ParseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q: not a number", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
				return nil, fmt.Errorf("seed range %q: want N-M with N <= M", part)
			}
		}
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
	}
	return out, nil
}

// Names a finding's path may hold: a function (its compiler copies
// included), or a call site "CALLEE@CALLER+OFF", which names the callee
// timed where CALLER calls it.

// pointNames returns the functions a path element names: the function,
// or for a call site the callee and its caller.
func pointNames(elem string) (fn, caller string) {
	if callee, site, ok := strings.Cut(elem, "@"); ok {
		c, _, _ := strings.Cut(site, "+")
		return BaseName(callee), BaseName(c)
	}
	f, _, _ := strings.Cut(elem, "+")
	return BaseName(f), ""
}

// Matches reports whether a finding with the given path (points from the
// root, as search.Finding.Path holds them) names plant p:
//
//   - a CPU plant in its owner's own code: the path ends in the owner;
//   - a CPU plant in a shared helper: the path ends in the owner (the
//     helper's time in the owner's context is the owner's), or in the
//     helper called from the owner (owner;helper, helper@owner+OFF, or
//     helper@owner+OFF;helper, the helper's node under its call site);
//   - a sleep: the path holds the owner and, below it, only functions
//     that are not the tree's (the kernel's sleeping functions);
//   - a Many plant: the path ends in its cheap function.
func (t *Tree) Matches(p Plant, path []string) bool {
	if len(path) == 0 {
		return false
	}
	last, caller := pointNames(path[len(path)-1])
	prev := ""
	if len(path) >= 2 {
		var site string
		prev, site = pointNames(path[len(path)-2])
		if caller == "" && site != "" && prev == last {
			caller = site // helper@owner+OFF;helper: the helper's own node under its call site
		}
	}
	switch {
	case p.Kind == Many:
		return last == p.Owner
	case p.Kind == Sleep:
		for i, e := range path {
			if f, _ := pointNames(e); f == p.Owner {
				for _, below := range path[i+1:] {
					if f, _ := pointNames(below); t.Func(f) != nil {
						return false
					}
				}
				return true
			}
		}
		return false
	case p.Helper != "":
		return last == p.Owner || last == p.Helper && (caller == p.Owner || caller == "" && prev == p.Owner)
	}
	return last == p.Owner
}
