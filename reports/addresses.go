package reports

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
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
	// Funcs are the run's functions by the name its points use
	// (MODULE:FUNC for a module's).
	Funcs map[string]Range `json:"funcs"`
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

// KernelBuildID reads the running kernel's GNU build ID from
// /sys/kernel/notes.
func KernelBuildID() (string, error) {
	f, err := os.Open("/sys/kernel/notes")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseBuildID(f)
}

// parseBuildID finds the NT_GNU_BUILD_ID note ("GNU", type 3) among ELF
// notes (namesz, descsz, type, then name and descriptor, each padded to
// 4 bytes).
func parseBuildID(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<16))
	if err != nil {
		return "", err
	}
	for len(b) >= 12 {
		namesz, descsz, typ := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[8:])
		name, desc := 12+align4(namesz), 12+align4(namesz)+align4(descsz)
		if uint64(len(b)) < desc {
			break
		}
		if typ == 3 && bytes.Equal(bytes.TrimRight(b[12:12+namesz], "\x00"), []byte("GNU")) {
			return fmt.Sprintf("%x", b[name:name+uint64(descsz)]), nil
		}
		b = b[desc:]
	}
	return "", errors.New("no GNU build ID note")
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }

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
