package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/debuginfo"
	"github.com/autoprof/autoprof/search"
)

// AddressesFile holds a run's Addresses beside run.json.
const AddressesFile = "addresses.json"

// Addresses are where the functions of a run were in the kernel it ran
// on, as /proc/kallsyms showed them at the end of the hunt: what a pprof
// profile needs for addresses and mappings (go tool pprof -addresses,
// -disasm with the kernel image at hand). Kernel addresses change with
// every boot (KASLR), so they are saved with the run, not looked up when
// a run is rendered again.
type Addresses struct {
	// Kernel is the core kernel's text, _stext to _etext.
	Kernel Range `json:"kernel"`
	// BuildID is the core kernel's GNU build ID (hex, from
	// /sys/kernel/notes), "" where it could not be read: pprof finds the
	// matching vmlinux by it.
	BuildID string `json:"build_id,omitempty"`
	// Modules are the text of each module a function of the run is in.
	Modules map[string]Range `json:"modules,omitempty"`
	// ModuleBuildIDs are the modules' GNU build IDs (hex), by module.
	ModuleBuildIDs map[string]string `json:"module_build_ids,omitempty"`
	// Funcs are the run's functions by the name its points use
	// (MODULE:FUNC for a module's).
	Funcs map[string]Range `json:"funcs"`
	// Lines are the source lines of the run's points, by the point's name
	// and function as in Funcs ("FUNC" at its entry, "FUNC+0x1a" inside
	// it), the innermost first where code was inlined: only where the
	// debug information of the kernel or of the module was found
	// (LiveAddresses).
	Lines map[string][]SourceLine `json:"lines,omitempty"`
}

// SourceLine is one place in the source: a point's, or where a function
// was inlined into the next one's.
type SourceLine struct {
	Func     string `json:"func,omitempty"` // the name in the source
	File     string `json:"file"`
	Line     int    `json:"line"`
	FuncLine int    `json:"func_line,omitempty"` // where Func is declared
}

// Range is an address range [Start, End), written in hex.
type Range struct {
	Start Hex `json:"start"`
	End   Hex `json:"end"`
}

// Hex is an address, written "0xffffffff81000000" in JSON (a JSON number
// loses 64-bit precision in most readers).
type Hex uint64

// MarshalText implements encoding.TextMarshaler.
func (h Hex) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%#x", uint64(h))), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hex) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 0, 64)
	if err != nil {
		return fmt.Errorf("address %q: %w", b, err)
	}
	*h = Hex(v)
	return nil
}

// AddressesOf looks up the functions of run in syms (the running kernel's
// symbol table); buildID is the kernel's build ID or "". Functions the
// table lacks are left out.
func AddressesOf(run *search.Run, syms *callgraph.Symbols, buildID string) *Addresses {
	a := &Addresses{BuildID: buildID, Modules: map[string]Range{}, Funcs: map[string]Range{}}
	if start, end, ok := syms.CoreText(); ok {
		a.Kernel = Range{Hex(start), Hex(end)}
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
		a.Funcs[fn] = Range{Hex(sym.Addr), Hex(sym.End())}
		if sym.Module != "" {
			a.addModule(sym, syms)
		}
	}
	if len(a.Modules) == 0 {
		a.Modules = nil
	}
	return a
}

// addModule records the text range of sym's module: from its lowest to
// the end of its highest function.
func (a *Addresses) addModule(sym callgraph.Symbol, syms *callgraph.Symbols) {
	if _, ok := a.Modules[sym.Module]; ok {
		return
	}
	r := Range{Hex(sym.Addr), Hex(sym.End())}
	for _, s := range syms.Functions() {
		if s.Module == sym.Module {
			r.Start, r.End = min(r.Start, Hex(s.Addr)), max(r.End, Hex(s.End()))
		}
	}
	a.Modules[sym.Module] = r
}

// LiveAddresses places the functions of run in the running kernel (syms
// is its symbol table), with the source lines of its points where s finds
// the debug information of the kernel or of their module: what hunt and
// the ui save beside a run. missing says, by module ("" for the core
// kernel), why no lines were found for it.
func LiveAddresses(run *search.Run, syms *callgraph.Symbols, s debuginfo.Search) (a *Addresses, missing map[string]error) {
	id, _ := debuginfo.KernelBuildID()
	a = AddressesOf(run, syms, id)
	for m := range a.Modules {
		if mid, err := debuginfo.ModuleBuildID(m); err == nil {
			if a.ModuleBuildIDs == nil {
				a.ModuleBuildIDs = map[string]string{}
			}
			a.ModuleBuildIDs[m] = mid
		}
	}
	lines := debuginfo.NewRunning(s, uint64(a.Kernel.Start))
	a.addLines(run, lines)
	return a, lines.Missing()
}

// addLines looks up the source lines of run's points.
func (a *Addresses) addLines(run *search.Run, lines *debuginfo.Running) {
	for _, n := range run.Nodes {
		pt := n.Point
		key := pointName(pt.Func, pt.Offset)
		if _, ok := a.Lines[key]; ok {
			continue
		}
		addr := a.addr(pt.Func, pt.Offset)
		if addr == 0 {
			continue
		}
		fs, err := lines.Lines(a.moduleOf(pt.Func), addr)
		if err != nil {
			continue
		}
		if a.Lines == nil {
			a.Lines = map[string][]SourceLine{}
		}
		for _, f := range fs {
			a.Lines[key] = append(a.Lines[key], SourceLine(f))
		}
	}
}

// loadAddresses reads the addresses saved beside a run's run.json; nil
// (and no error) where there are none.
func loadAddresses(dir string) (*Addresses, error) {
	b, err := os.ReadFile(filepath.Join(dir, AddressesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a Addresses
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, AddressesFile), err)
	}
	return &a, nil
}

// mappingOf returns the range of the mapping that holds a point's
// function (module or core kernel), and whether it is known.
func (a *Addresses) mappingOf(module string) (Range, bool) {
	if a == nil {
		return Range{}, false
	}
	if module == "" {
		return a.Kernel, a.Kernel.End > a.Kernel.Start
	}
	r, ok := a.Modules[module]
	return r, ok
}

// moduleOf returns the module of a point's function: the one it names
// (MODULE:FUNC, "FUNC [MODULE]"), else the one whose text holds it (a
// module's function kallsyms names alone), else "" for the core kernel.
func (a *Addresses) moduleOf(fn string) string {
	if m, _ := splitModule(fn); m != "" || a == nil {
		return m
	}
	if r, ok := a.Funcs[fn]; ok {
		for m, mr := range a.Modules {
			if r.Start >= mr.Start && r.Start < mr.End {
				return m
			}
		}
	}
	return ""
}

// lines returns the source lines of a point, nil where unknown.
func (a *Addresses) lines(fn string, off uint64) []SourceLine {
	if a == nil {
		return nil
	}
	if l, ok := a.Lines[pointName(fn, off)]; ok {
		return l
	}
	// A point may name a module function "FUNC [MODULE]".
	if f, rest, cut := strings.Cut(fn, " ["); cut {
		return a.Lines[pointName(strings.TrimSuffix(rest, "]")+":"+f, off)]
	}
	return nil
}

// addr returns the address of a point: its function's start plus its
// offset, 0 where unknown.
func (a *Addresses) addr(fn string, off uint64) uint64 {
	if a == nil {
		return 0
	}
	r, ok := a.Funcs[fn]
	if !ok {
		// A point may name a module function "FUNC [MODULE]".
		if f, rest, cut := strings.Cut(fn, " ["); cut {
			r, ok = a.Funcs[strings.TrimSuffix(rest, "]")+":"+f]
		}
	}
	if !ok || r.Start+Hex(off) >= r.End {
		return 0
	}
	return uint64(r.Start) + off
}
