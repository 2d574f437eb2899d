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
	// (search/live.Addresses).
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

// ModuleOf returns the module of a point's function: the one it names
// (MODULE:FUNC, "FUNC [MODULE]"), else the one whose text holds it (a
// module's function kallsyms names alone), else "" for the core kernel.
func (a *Addresses) ModuleOf(fn string) string {
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

// Addr returns the address of a point: its function's start plus its
// offset, 0 where unknown.
func (a *Addresses) Addr(fn string, off uint64) uint64 {
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
