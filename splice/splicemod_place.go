package splice

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// spliceCatalogue is the splice backend's pre-validated catalogue (SAFETY
// A.8): every place a spec may name, checked once against every rule and
// remembered with the window it gets. The controller names places by
// function and offset, never by address; a catalogue belongs to one
// kernel (build id), and a new session builds a new one.
type spliceCatalogue struct {
	graph  *callgraph.Graph
	place  *Placement
	tables *patch.Tables

	mu      sync.Mutex
	windows map[catalogueKey]catalogueEntry
}

type catalogueKey struct {
	fn    string
	off   uint64
	entry bool
	exits bool // the function's return windows
}

type catalogueEntry struct {
	w     *patch.Window
	exits []*patch.Window
	err   error
}

// newSpliceCatalogue reads the kernel's rules: the placement lists (kprobe
// blacklist, traceable functions, forbidden sections), the tables of text
// others patch, and, where the kernel image is at hand, its alternatives.
func newSpliceCatalogue(g *callgraph.Graph, image string) (*spliceCatalogue, error) {
	tables, err := patch.ReadTables(g.Symbols(), g.Text())
	if err != nil {
		return nil, fmt.Errorf("reading the kernel's tables of patched text: %w", err)
	}
	if err := addImageTables(tables, g.Symbols(), image); err != nil {
		return nil, err
	}
	c := &spliceCatalogue{
		graph: g, place: livePlacement(g, nil, nil), tables: tables,
		windows: map[catalogueKey]catalogueEntry{},
	}
	return c, c.refreshKprobes()
}

// addImageTables adds the alternatives of the kernel image at path (or
// /boot/vmlinuz-RELEASE when path is ""), after checking that it is the
// running kernel's. Without an image the alternatives the kernel applied at
// boot are not known; the SMP lock prefixes that could still change are.
func addImageTables(t *patch.Tables, syms *callgraph.Symbols, path string) error {
	explicit := path != ""
	if !explicit {
		rel, err := kernel.Release()
		if err != nil {
			return nil
		}
		path = filepath.Join("/boot", "vmlinuz-"+rel)
	}
	im, err := callgraph.OpenImage(path)
	if err != nil {
		if explicit {
			return fmt.Errorf("kernel image for the alternatives table: %w", err)
		}
		return nil
	}
	if err := checkImageBuildID(im); err != nil {
		return err
	}
	return t.AddImage(im, syms)
}

// checkImageBuildID refuses an image of another kernel.
func checkImageBuildID(im *callgraph.Image) error {
	id, err := splicer.RunningIdentity()
	if err != nil {
		return fmt.Errorf("checking %s against the running kernel: %w", im, err)
	}
	if want := fmt.Sprintf("%x", id.BuildID); im.BuildID() != want {
		return fmt.Errorf("%s has build id %s, the running kernel %s", im, im.BuildID(), want)
	}
	return nil
}

// refreshKprobes rereads the registered kprobes: a splice never overlaps
// one. Without debugfs the list is empty, and the module's compare before
// writing still finds an int3 in the way.
func (c *spliceCatalogue) refreshKprobes() error {
	f, err := os.Open(kernel.Debugfs.Path + "/kprobes/list")
	if err != nil {
		c.tables.Kprobes = nil
		return nil
	}
	defer f.Close()
	kp, err := patch.ParseKprobeList(f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.tables.Kprobes = kp
	c.windows = map[catalogueKey]catalogueEntry{}
	c.mu.Unlock()
	return nil
}

// setOurs tells the placement rules where the module's trampolines lie:
// jumps there are our own splices, not another patcher's.
func (c *spliceCatalogue) setOurs(pool patch.Span) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tables.Ours = pool
	c.windows = map[catalogueKey]catalogueEntry{}
}

// window returns the window of spec, from the catalogue or checked now.
func (c *spliceCatalogue) window(spec instrument.Spec) (*patch.Window, error) {
	key := catalogueKey{fn: spec.Func, off: spec.Offset, entry: spec.Offset == 0}
	c.mu.Lock()
	e, ok := c.windows[key]
	c.mu.Unlock()
	if ok {
		return e.w, e.err
	}
	w, err := c.check(spec)
	c.mu.Lock()
	c.windows[key] = catalogueEntry{w: w, err: err}
	c.mu.Unlock()
	return w, err
}

// exits returns the return windows of spec's function, from the
// catalogue or checked now: a timer or exit counter needs all of them.
func (c *spliceCatalogue) exits(spec instrument.Spec) ([]*patch.Window, error) {
	key := catalogueKey{fn: spec.Func, exits: true}
	c.mu.Lock()
	e, ok := c.windows[key]
	c.mu.Unlock()
	if ok {
		return e.exits, e.err
	}
	ws, err := c.checkExits(spec)
	c.mu.Lock()
	c.windows[key] = catalogueEntry{exits: ws, err: err}
	c.mu.Unlock()
	return ws, err
}

// checkExits finds the return windows of spec's function and its .cold parts.
func (c *spliceCatalogue) checkExits(spec instrument.Spec) ([]*patch.Window, error) {
	sym, err := c.graph.Symbols().Func(spec.Func)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", spec, instrument.ErrUnsafe, err)
	}
	f, cold, err := c.decode(spec, sym)
	if err != nil {
		return nil, err
	}
	ws, err := patch.ExitWindows(f, cold, c.tables, func(name string) (*callgraph.Function, []*callgraph.Function, error) {
		return c.tailCallee(spec.Func, name)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", spec, instrument.ErrUnsafe, err)
	}
	for _, w := range ws {
		// Every window, whatever its stub: see window.
		if err := c.place.checkEmulator(spec, w.Func, w.Off, false); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// tailCallee decodes a function that the timed function tail-calls,
// where the rules let its returns take windows: a timer's frames end
// there.
func (c *spliceCatalogue) tailCallee(timed, name string) (*callgraph.Function, []*callgraph.Function, error) {
	spec := instrument.Spec{Point: instrument.Point{Func: name}, Kind: instrument.ExitCount}
	sym, err := c.graph.Symbols().Func(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %w", spec, instrument.ErrUnsafe, err)
	}
	if err := c.inSections(spec, sym); err != nil {
		return nil, nil, err
	}
	if err := c.place.checkTailCallee(timed, spec, sym); err != nil {
		return nil, nil, err
	}
	return c.decode(spec, sym)
}

// decode returns sym's function and its .cold parts, decoded.
func (c *spliceCatalogue) decode(spec instrument.Spec, sym callgraph.Symbol) (*callgraph.Function, []*callgraph.Function, error) {
	f, err := c.graph.FunctionOf(sym)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: decoding %s: %w", spec, instrument.ErrUnsafe, sym.Name, err)
	}
	var cold []*callgraph.Function
	for _, part := range c.graph.Symbols().ColdParts(sym) {
		cf, err := c.graph.FunctionOf(part)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w: decoding %s: %w", spec, instrument.ErrUnsafe, part.Name, err)
		}
		cold = append(cold, cf)
	}
	return f, cold, nil
}

// rules applies the lists of what the splice backend keeps out of to
// spec's place in sym.
func (c *spliceCatalogue) rules(spec instrument.Spec, sym callgraph.Symbol) error {
	if err := c.inSections(spec, sym); err != nil {
		return err
	}
	// The kprobe blacklist names what must never be entered from a
	// probe; notrace functions (not in available_filter_functions) and
	// BPF's deny list are what tracing must stay out of: a splice keeps
	// out of all of them.
	if err := c.place.checkKprobe(spec, sym, sym.Addr); err != nil {
		return err
	}
	return c.place.checkFentry(spec, sym)
}

// inSections refuses a place in a module, past sym's end, or in a section
// that is never instrumented.
func (c *spliceCatalogue) inSections(spec instrument.Spec, sym callgraph.Symbol) error {
	if sym.Module != "" {
		return refuse(spec, instrument.ErrNotSupported, "the splice backend instruments the core kernel only, not module %s", sym.Module)
	}
	if spec.Offset >= sym.Size {
		return refuse(spec, instrument.ErrUnsafe, "offset %#x is past the end of %s (%d bytes)", spec.Offset, sym.Name, sym.Size)
	}
	addr := sym.Addr + spec.Offset
	for _, s := range c.place.sections {
		if s.Start <= addr && addr < s.End {
			return refuse(spec, instrument.ErrUnsafe, "%s is in %s, which is never instrumented", sym.Name, s.Name)
		}
	}
	return nil
}

// check applies every rule of the splice backend to spec's place.
func (c *spliceCatalogue) check(spec instrument.Spec) (*patch.Window, error) {
	sym, err := c.graph.Symbols().Func(spec.Func)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", spec, instrument.ErrUnsafe, err)
	}
	if err := c.rules(spec, sym); err != nil {
		return nil, err
	}
	f, cold, err := c.decode(spec, sym)
	if err != nil {
		return nil, err
	}
	w, err := patch.SelectWindow(f, cold, uint32(spec.Offset), spec.Offset == 0, c.tables)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", spec, instrument.ErrUnsafe, err)
	}
	// Not only a stub that gives the flags back (popfq): while a site goes
	// in or out, the int3 over its first byte sends a CPU on by iretq,
	// which loads RFLAGS whole as popfq does, after an entry that saved
	// them from the emulator's record (docs/splice.md).
	if err := c.place.checkEmulator(spec, w.Func, w.Off, false); err != nil {
		return nil, err // w.Func: the window may lie in a .cold part
	}
	return w, nil
}
