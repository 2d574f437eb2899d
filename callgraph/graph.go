package callgraph

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"

	"github.com/autoprof/autoprof/internal/boot"
)

// Graph is the static call graph of a kernel: its symbols, a reader of its
// text and a cache of decoded functions. It is safe for concurrent use.
type Graph struct {
	syms *Symbols
	text Text
	live bool

	mu    sync.Mutex
	cache map[uint64]*cached // by function address

	coreOnce sync.Once
	core     []byte // the core kernel's text, read once for whole-text passes; nil if it cannot be read whole

	trampolines sync.Map // address -> trampoline

	callersOnce sync.Once
	callers     map[uint64][]Edge // by callee address
	callersErr  error
}

type cached struct {
	once sync.Once
	fn   *Function
	err  error
}

// Edge is one call site of the static call graph.
type Edge struct {
	// From is the function holding the site; for a ".cold" part,
	// From.Parent names the function it belongs to.
	From Symbol
	Site
}

// NewGraph makes a graph of the kernel that syms describes, read through
// text. live says whether text is the running kernel's: only then are
// static calls resolved from their trampolines.
func NewGraph(syms *Symbols, text Text, live bool) *Graph {
	return &Graph{syms: syms, text: text, live: live, cache: map[uint64]*cached{}}
}

// LiveSymbols parses /proc/kallsyms, or reads the table this boot's first
// reader kept on disk (boot.Cache). The table is kept for the next call
// while /proc/modules reads the same (the same modules at the same
// addresses): a hunt reads it when it checks its input, when it opens the
// graph and when it writes the profile, and parsing it takes seconds under
// emulation. A kernel without modules has no /proc/modules, and its table
// does not change. (Symbols of BPF programs and trampolines, which come
// and go without a module, are not functions the graph or a profile use.)
func LiveSymbols() (*Symbols, error) {
	mods, modsErr := boot.Modules()
	liveSyms.mu.Lock()
	defer liveSyms.mu.Unlock()
	if modsErr == nil && liveSyms.syms != nil && string(mods) == liveSyms.modules {
		return liveSyms.syms, nil
	}
	cache := boot.OpenCache(symbolCacheName)
	var syms *Symbols
	if modsErr == nil {
		syms, _ = loadSymbols(cache, mods)
	}
	if syms == nil {
		var err error
		if syms, err = parseLiveSymbols(); err != nil {
			return nil, err
		}
		if modsErr == nil {
			storeSymbols(cache, mods, syms) // a hunt without the cache only starts slower
		}
	}
	liveSyms.syms, liveSyms.modules = nil, ""
	if modsErr == nil {
		liveSyms.syms, liveSyms.modules = syms, string(mods)
	}
	return syms, nil
}

// liveSyms is LiveSymbols' last table, with the /proc/modules it was
// read under.
var liveSyms struct {
	mu      sync.Mutex
	syms    *Symbols
	modules string
}

func parseLiveSymbols() (*Symbols, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("reading the kernel's symbols: %w", err)
	}
	defer f.Close()
	syms, err := ParseKallsyms(f)
	if err != nil {
		return nil, fmt.Errorf("reading the kernel's symbols from /proc/kallsyms: %w", err)
	}
	return syms, nil
}

// OpenOffline opens the graph of a kernel image as built (see
// OpenOfflineText): a vmlinuz or vmlinux with its System.map, or with the
// symbol table compiled into it when systemMap is "".
func OpenOffline(vmlinuz, systemMap string) (*Graph, error) {
	im, syms, err := OpenOfflineText(vmlinuz, systemMap)
	if err != nil {
		return nil, err
	}
	return NewGraph(syms, im, false), nil
}

// Symbols returns the graph's symbol table.
func (g *Graph) Symbols() *Symbols { return g.syms }

// Live reports whether the graph reads the running kernel.
func (g *Graph) Live() bool { return g.live }

// Text returns the graph's text reader.
func (g *Graph) Text() Text { return g.text }

// Close closes the text reader.
func (g *Graph) Close() error { return g.text.Close() }

// Function decodes the function spec names (see Symbols.Lookup), reads its
// jump tables and, on a live graph, resolves its static calls. Results are
// cached.
func (g *Graph) Function(spec string) (*Function, error) {
	sym, err := g.syms.Lookup(spec)
	if err != nil {
		return nil, err
	}
	return g.FunctionOf(sym)
}

// FunctionOf is Function for a symbol of the graph's table.
func (g *Graph) FunctionOf(sym Symbol) (*Function, error) {
	g.mu.Lock()
	c := g.cache[sym.Addr]
	if c == nil {
		c = &cached{}
		g.cache[sym.Addr] = c
	}
	g.mu.Unlock()
	c.once.Do(func() {
		code, err := g.read(sym)
		if err != nil {
			c.err = err
			return
		}
		c.fn, c.err = g.decode(sym, code)
	})
	return c.fn, c.err
}

// read returns a function's bytes, from the core text when it was read
// whole already.
func (g *Graph) read(sym Symbol) ([]byte, error) {
	if sym.Size == 0 {
		return nil, fmt.Errorf("function %s at %#x: %w", sym.Name, sym.Addr, ErrNotText)
	}
	if sym.Size > 1<<24 {
		return nil, fmt.Errorf("function %s: extent of %d bytes is not a function's", sym.Name, sym.Size)
	}
	code := make([]byte, sym.Size)
	if err := g.text.ReadAt(code, sym.Addr); err != nil {
		return nil, fmt.Errorf("reading %s: %w", sym.Name, err)
	}
	return code, nil
}

// decode decodes code and completes what needs kernel memory.
func (g *Graph) decode(sym Symbol, code []byte) (*Function, error) {
	f, err := Decode(sym, code, g.syms)
	if err != nil {
		return nil, err
	}
	g.readJumpTables(f)
	if g.live {
		g.resolveStaticCalls(f)
	}
	return f, nil
}

// maxJumpTable bounds the entries read from one table.
const maxJumpTable = 1024

// readJumpTables reads each table's absolute addresses until one falls
// outside the function, and adds the entries as branch targets.
func (g *Graph) readJumpTables(f *Function) {
	if len(f.JumpTables) == 0 {
		return
	}
	buf := make([]byte, 8)
	for i := range f.JumpTables {
		jt := &f.JumpTables[i]
		for n := 0; n < maxJumpTable; n++ {
			if g.text.ReadAt(buf, jt.Table+uint64(8*n)) != nil {
				break
			}
			t := binary.LittleEndian.Uint64(buf)
			if t < f.Sym.Addr || t >= f.Sym.Addr+uint64(len(f.Code)) || !f.IsBoundary(uint32(t-f.Sym.Addr)) {
				break
			}
			jt.Entries = append(jt.Entries, uint32(t-f.Sym.Addr))
		}
		f.Targets = append(f.Targets, jt.Entries...)
	}
	f.Targets = sortedUnique(f.Targets)
	f.buildBlocks()
}

// resolveStaticCalls reads each static-call trampoline the function uses:
// "jmp TARGET" gives the current target; a ret (or a jmp to a return thunk)
// means a NULL static call.
func (g *Graph) resolveStaticCalls(f *Function) {
	for i := range f.Sites {
		s := &f.Sites[i]
		if s.Kind != StaticCall {
			continue
		}
		tramp, ok := g.syms.Symbol(s.Via)
		if !ok {
			continue
		}
		r, _ := g.trampolines.Load(tramp.Addr)
		if r == nil {
			r, _ = g.trampolines.LoadOrStore(tramp.Addr, g.trampolineTarget(tramp.Addr))
		}
		t := r.(trampoline)
		s.Target, s.TargetAddr, s.Resolved = t.target, t.addr, t.resolved
	}
}

// trampoline is what a static-call trampoline's live text says.
type trampoline struct {
	target   string
	addr     uint64
	resolved bool
}

// trampolineTarget decodes a static-call trampoline.
func (g *Graph) trampolineTarget(addr uint64) trampoline {
	buf := make([]byte, 8)
	if g.text.ReadAt(buf, addr) != nil {
		return trampoline{}
	}
	d, err := decodeOne(buf)
	switch {
	case err != nil:
		return trampoline{}
	case d.kind == KindRet:
		return trampoline{resolved: true}
	case d.kind == KindJump && d.direct:
		t := addr + uint64(int64(d.length)+d.rel)
		if g.syms.specialAt(t).kind == specReturnThunk {
			return trampoline{resolved: true}
		}
		if sym, off, err := g.syms.FuncAt(t); err == nil && off == 0 {
			return trampoline{sym.Name, t, true}
		}
	}
	return trampoline{}
}

// Callees returns the call sites of the function spec names and of its
// .cold parts: direct calls, tail calls, indirect sites and static calls.
func (g *Graph) Callees(spec string) ([]Edge, error) {
	sym, err := g.syms.Lookup(spec)
	if err != nil {
		return nil, err
	}
	return g.calleesOf(sym)
}

func (g *Graph) calleesOf(sym Symbol) ([]Edge, error) {
	var edges []Edge
	for _, part := range append([]Symbol{sym}, g.syms.ColdParts(sym)...) {
		f, err := g.FunctionOf(part)
		if err != nil {
			return nil, err
		}
		for _, s := range f.Sites {
			edges = append(edges, Edge{From: part, Site: s})
		}
	}
	return edges, nil
}

// Callers returns the call sites anywhere in the text whose target is the
// function spec names (its start, or any byte of it). The first call
// decodes the whole text, in parallel over GOMAXPROCS.
func (g *Graph) Callers(spec string) ([]Edge, error) {
	sym, err := g.syms.Lookup(spec)
	if err != nil {
		return nil, err
	}
	g.callersOnce.Do(func() { g.callers, g.callersErr = g.buildCallers() })
	if g.callersErr != nil {
		return nil, g.callersErr
	}
	return g.callers[sym.Addr], nil
}

// buildCallers decodes every function and indexes its sites by callee.
func (g *Graph) buildCallers() (map[uint64][]Edge, error) {
	funcs := g.syms.Functions()
	results := make([][]Edge, len(funcs))
	errs := make([]error, len(funcs))
	var wg sync.WaitGroup
	next := make(chan int, 256)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i], errs[i] = g.sitesOf(funcs[i])
			}
		}()
	}
	for i := range funcs {
		next <- i
	}
	close(next)
	wg.Wait()
	index := map[uint64][]Edge{}
	for i, edges := range results {
		if errs[i] != nil {
			return nil, fmt.Errorf("building the callers index: %w", errs[i])
		}
		for _, e := range edges {
			if callee, ok := g.calleeAddr(e.Site); ok {
				index[callee] = append(index[callee], e)
			}
		}
	}
	return index, nil
}

// calleeAddr returns the address of the function a site reaches.
func (g *Graph) calleeAddr(s Site) (uint64, bool) {
	if s.TargetAddr == 0 || s.Target == "" {
		return 0, false
	}
	sym, _, err := g.syms.FuncAt(s.TargetAddr)
	if err != nil {
		return 0, false
	}
	if sym.IsPadding() { // a call-depth-tracking thunk before the callee
		return sym.End(), true
	}
	return sym.Addr, true
}

// sitesOf decodes one function for the callers index without caching it.
func (g *Graph) sitesOf(sym Symbol) ([]Edge, error) {
	code, err := g.coreBytes(sym)
	if err != nil {
		return nil, err
	}
	f, err := g.decode(sym, code)
	if err != nil {
		return nil, err
	}
	edges := make([]Edge, len(f.Sites))
	for i, s := range f.Sites {
		edges[i] = Edge{From: sym, Site: s}
	}
	return edges, nil
}

// coreBytes returns a function's bytes, slicing the core text (read once,
// whole) for core functions.
func (g *Graph) coreBytes(sym Symbol) ([]byte, error) {
	start, end, ok := g.syms.CoreText()
	if !ok || sym.Addr < start || sym.End() > end {
		return g.read(sym)
	}
	g.coreOnce.Do(func() {
		core := make([]byte, end-start)
		if g.text.ReadAt(core, start) == nil {
			g.core = core
		}
	})
	if g.core == nil { // read function by function instead
		return g.read(sym)
	}
	return g.core[sym.Addr-start : sym.End()-start], nil
}

// Reached is a function reachable from another, with its distance in
// calls and the edge that first reached it.
type Reached struct {
	Func  Symbol // the function reached
	Depth int    // the fewest calls from the root
	Via   Edge   // the first site found that reaches it
}

// Reachable returns the functions that direct calls, tail calls and
// resolved static calls reach from the function spec names in at most
// depth steps, nearest first (by name within a depth). Indirect sites are
// not followed.
func (g *Graph) Reachable(spec string, depth int) ([]Reached, error) {
	root, err := g.syms.Lookup(spec)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{root.Addr: true}
	var out []Reached
	frontier := []Symbol{root}
	for d := 1; d <= depth && len(frontier) > 0; d++ {
		var next []Reached
		for _, fn := range frontier {
			edges, err := g.calleesOf(fn)
			if err != nil {
				return nil, err
			}
			for _, e := range edges {
				addr, ok := g.calleeAddr(e.Site)
				if !ok || seen[addr] {
					continue
				}
				seen[addr] = true
				callee, _, _ := g.syms.FuncAt(addr)
				next = append(next, Reached{Func: callee, Depth: d, Via: e})
			}
		}
		sort.Slice(next, func(i, j int) bool { return next[i].Func.Name < next[j].Func.Name })
		frontier = frontier[:0]
		for _, r := range next {
			frontier = append(frontier, r.Func)
		}
		out = append(out, next...)
	}
	return out, nil
}
