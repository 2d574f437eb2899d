//go:build linux

package live

import (
	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/debuginfo"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/search"
)

// Addresses places the functions of run in the running kernel (syms is
// its symbol table, read at the end of the hunt: kernel addresses change
// with every boot), with the build IDs of the kernel and its modules and
// the source lines of the run's points where s finds their debug
// information: what hunt and the ui save beside a run for its profile.
// missing says, by module ("" for the core kernel), why no lines were
// found for it.
func Addresses(run *search.Run, syms *callgraph.Symbols, s debuginfo.Search) (a *reports.Addresses, missing map[string]error) {
	id, _ := debuginfo.KernelBuildID()
	a = addressesOf(run, syms, id)
	for m := range a.Modules {
		if mid, err := debuginfo.ModuleBuildID(m); err == nil {
			if a.ModuleBuildIDs == nil {
				a.ModuleBuildIDs = map[string]string{}
			}
			a.ModuleBuildIDs[m] = mid
		}
	}
	lines := debuginfo.NewRunning(s, uint64(a.Kernel.Start))
	addLines(a, run, lines)
	return a, lines.Missing()
}

// addressesOf looks up the functions of run in syms; buildID is the
// kernel's build ID or "". Functions the table lacks are left out.
func addressesOf(run *search.Run, syms *callgraph.Symbols, buildID string) *reports.Addresses {
	a := &reports.Addresses{BuildID: buildID, Modules: map[string]reports.Range{}, Funcs: map[string]reports.Range{}}
	if start, end, ok := syms.CoreText(); ok {
		a.Kernel = reports.Range{Start: reports.Hex(start), End: reports.Hex(end)}
	}
	for _, n := range run.Nodes {
		fn := n.Point.Func
		if _, ok := a.Funcs[fn]; ok {
			continue
		}
		sym, err := syms.Func(fn)
		if err != nil {
			continue
		}
		a.Funcs[fn] = reports.Range{Start: reports.Hex(sym.Addr), End: reports.Hex(sym.End())}
		if _, ok := a.Modules[sym.Module]; sym.Module != "" && !ok {
			a.Modules[sym.Module] = moduleText(sym.Module, syms)
		}
	}
	if len(a.Modules) == 0 {
		a.Modules = nil
	}
	return a
}

// moduleText returns the text range of a module: from its lowest function
// to the end of its highest.
func moduleText(module string, syms *callgraph.Symbols) reports.Range {
	var r reports.Range
	for _, s := range syms.Functions() {
		if s.Module != module {
			continue
		}
		if r.End == 0 {
			r = reports.Range{Start: reports.Hex(s.Addr), End: reports.Hex(s.End())}
		}
		r.Start, r.End = min(r.Start, reports.Hex(s.Addr)), max(r.End, reports.Hex(s.End()))
	}
	return r
}

// addLines looks up the source lines of run's points.
func addLines(a *reports.Addresses, run *search.Run, lines *debuginfo.Running) {
	for _, n := range run.Nodes {
		pt := instrument.Point{Func: n.Point.Func, Offset: n.Point.Offset}
		key := pt.String()
		if _, ok := a.Lines[key]; ok {
			continue
		}
		addr := a.Addr(pt.Func, pt.Offset)
		if addr == 0 {
			continue
		}
		fs, err := lines.Lines(a.ModuleOf(pt.Func), addr)
		if err != nil {
			continue
		}
		if a.Lines == nil {
			a.Lines = map[string][]reports.SourceLine{}
		}
		for _, f := range fs {
			a.Lines[key] = append(a.Lines[key], reports.SourceLine(f))
		}
	}
}
