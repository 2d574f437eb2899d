//go:build linux

package live

import (
	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/search"
)

// Graph is search.Graph (and search.Lister) over the kernel's call graph.
type Graph struct{ G *callgraph.Graph }

// Callees returns the functions fn's direct calls, tail calls and resolved
// static calls reach (to their start), and fn's own indirect call sites.
// Sites in fn's .cold parts count for their callees, not for indirect
// sites: a target recorder's offset is from fn's start. Functions of
// .sched.text (schedule, schedule_timeout, io_schedule and the others
// marked __sched) are left out: a thread blocks through them whatever it
// waits for, so that, as in the kernel's own wait channels and stack
// traces, the frame that blocked is their caller.
func (g Graph) Callees(fn string) (search.Callees, error) {
	edges, err := g.G.Callees(fn)
	if err != nil {
		return search.Callees{}, err
	}
	var c search.Callees
	seen := map[string]bool{}
	for _, e := range edges {
		switch e.Kind {
		case callgraph.Indirect:
			if e.From.Name == fn && e.Off != 0 {
				c.Indirect = append(c.Indirect, uint64(e.Off))
			}
		case callgraph.Direct, callgraph.Tail, callgraph.StaticCall:
			if e.Target == "" || e.TargetOff != 0 || e.Target == fn || g.inSchedText(e.TargetAddr) {
				continue
			}
			if !seen[e.Target] {
				seen[e.Target] = true
				c.Funcs = append(c.Funcs, e.Target)
			}
			if e.Kind == callgraph.Direct && !e.Jump && e.From.Name == fn {
				c.Sites = append(c.Sites, search.CallSite{Off: uint64(e.Off), Func: e.Target})
			} else {
				if c.Elsewhere == nil {
					c.Elsewhere = map[string]bool{}
				}
				c.Elsewhere[e.Target] = true
			}
		}
	}
	return c, nil
}

// Blocking implements search.Blocker: fn is in .sched.text.
func (g Graph) Blocking(fn string) bool {
	sym, err := g.G.Symbols().Func(fn)
	return err == nil && g.inSchedText(sym.Addr)
}

// inSchedText reports whether addr lies in .sched.text.
func (g Graph) inSchedText(addr uint64) bool {
	syms := g.G.Symbols()
	start, ok1 := syms.Symbol("__sched_text_start")
	end, ok2 := syms.Symbol("__sched_text_end")
	return ok1 && ok2 && start.Addr <= addr && addr < end.Addr
}

// Blocks returns the starts of fn's basic blocks other than the entry.
func (g Graph) Blocks(fn string) ([]uint64, error) {
	f, err := g.G.Function(fn)
	if err != nil {
		return nil, err
	}
	var offs []uint64
	for _, b := range f.Blocks {
		if b.Start != 0 && b.Start < f.CodeEnd {
			offs = append(offs, uint64(b.Start))
		}
	}
	return offs, nil
}

// Listing disassembles fn, marking the starts of its basic blocks.
func (g Graph) Listing(fn string) (search.Listing, error) {
	f, err := g.G.Function(fn)
	if err != nil {
		return search.Listing{}, err
	}
	starts := map[uint32]bool{}
	for _, b := range f.Blocks {
		starts[b.Start] = true
	}
	l := search.Listing{Func: fn, Addr: f.Sym.Addr}
	for _, in := range f.Insts {
		if in.Off >= f.CodeEnd {
			break
		}
		l.Lines = append(l.Lines, search.ListingLine{
			Offset: uint64(in.Off), Text: f.Asm(g.G.Symbols(), in), BlockStart: starts[in.Off],
		})
	}
	return l, nil
}
