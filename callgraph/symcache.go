package callgraph

import (
	"errors"
	"fmt"
	"strings"

	"github.com/autoprof/autoprof/internal/boot"
)

// symbolCacheName is the file LiveSymbols keeps the boot's table in.
const symbolCacheName = "kallsyms.gob"

// symbolColumns is how the boot's cache keeps a symbol table: column by
// column, every name in one string, so that reading it back takes a few
// large allocations instead of one per symbol (a hundred thousand and
// more). Extents and .cold parents are not kept: newSymbols derives them.
type symbolColumns struct {
	Names   string   // each symbol's name followed by '\n'
	Addrs   []uint64 // by symbol
	Types   []byte   // by symbol
	Modules []string // the modules' names, "" (the core kernel) first
	Module  []uint16 // by symbol, an index into Modules
}

// columnsOf lays all out in columns.
func columnsOf(all []Symbol) (symbolColumns, error) {
	c := symbolColumns{Addrs: make([]uint64, len(all)), Types: make([]byte, len(all)), Modules: []string{""}, Module: make([]uint16, len(all))}
	var names strings.Builder
	mods := map[string]uint16{"": 0}
	for i, sym := range all {
		if strings.Contains(sym.Name, "\n") {
			return c, fmt.Errorf("symbol %q has a newline in its name", sym.Name)
		}
		names.WriteString(sym.Name)
		names.WriteByte('\n')
		c.Addrs[i], c.Types[i] = sym.Addr, sym.Type
		m, ok := mods[sym.Module]
		if !ok {
			if len(c.Modules) > 0xffff {
				return c, errors.New("more than 65,535 modules")
			}
			m = uint16(len(c.Modules))
			mods[sym.Module] = m
			c.Modules = append(c.Modules, sym.Module)
		}
		c.Module[i] = m
	}
	c.Names = names.String()
	return c, nil
}

// symbols turns the columns back into symbols, refusing columns that do
// not agree with one another.
func (c symbolColumns) symbols() ([]Symbol, error) {
	n := len(c.Addrs)
	if len(c.Types) != n || len(c.Module) != n || strings.Count(c.Names, "\n") != n {
		return nil, errors.New("the cached symbol table's columns differ in length")
	}
	out := make([]Symbol, n)
	names := c.Names
	for i := range out {
		j := strings.IndexByte(names, '\n')
		if int(c.Module[i]) >= len(c.Modules) {
			return nil, errors.New("the cached symbol table names a module it does not list")
		}
		out[i] = Symbol{Name: names[:j], Addr: c.Addrs[i], Type: c.Types[i], Module: c.Modules[c.Module[i]]}
		names = names[j+1:]
	}
	return out, nil
}

// loadSymbols returns the table c holds for this boot and these modules.
func loadSymbols(c boot.Cache, modules []byte) (*Symbols, bool) {
	var cols symbolColumns
	if !c.Load(modules, &cols) {
		return nil, false
	}
	all, err := cols.symbols()
	if err != nil {
		return nil, false
	}
	syms, err := newSymbols(all)
	return syms, err == nil
}

// storeSymbols keeps syms as the table of this boot and these modules.
func storeSymbols(c boot.Cache, modules []byte, syms *Symbols) error {
	cols, err := columnsOf(syms.all)
	if err != nil {
		return fmt.Errorf("caching the symbol table: %w", err)
	}
	return c.Store(modules, cols)
}
