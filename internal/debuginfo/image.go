package debuginfo

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// Load says where a debug file's code runs in the kernel.
type Load struct {
	// Sections are, for a relocatable file (a module's .ko), the
	// addresses the running kernel gave its sections, by name
	// (/sys/module/MODULE/sections/).
	Sections map[string]uint64
	// Text is, for an executable (vmlinux), the running kernel's _stext:
	// the file's addresses move by its difference with the file's own
	// _stext (KASLR).
	Text uint64
}

// Image is one opened debug file, placed where its code runs.
type Image struct {
	path  string
	data  *dwarf.Data
	shift uint64 // running address − the file's, for an executable
	cus   *dwarf.Reader
	units map[dwarf.Offset]*cuScopes
	names map[dwarf.Offset]funcName
}

// Open reads the DWARF of the ELF file at path, placed by load: an
// executable moved by load.Text, a relocatable file's sections at
// load.Sections.
func Open(path string, load Load) (*Image, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ef, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im := &Image{path: path, units: map[dwarf.Offset]*cuScopes{}, names: map[dwarf.Offset]funcName{}}
	switch ef.Type {
	case elf.ET_EXEC, elf.ET_DYN:
		if load.Text == 0 {
			return nil, fmt.Errorf("%s: the running kernel's _stext is not known", path)
		}
		stext, err := symbolValue(ef, "_stext")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		im.shift = load.Text - stext
	case elf.ET_REL:
		if ef, err = placeSections(raw, ef, load.Sections); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("%s: ELF type %v has no code to place", path, ef.Type)
	}
	if im.data, err = ef.DWARF(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im.cus = im.data.Reader()
	return im, nil
}

// Lookup returns the source lines of the instruction at addr, an
// address in the running kernel: the innermost first (see Frame).
func (im *Image) Lookup(addr uint64) ([]Frame, error) {
	pc := addr - im.shift
	cu, err := im.cus.SeekPC(pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %#x: %w", im.path, addr, err)
	}
	c, err := im.scopesOf(cu)
	if err != nil || c == nil {
		return nil, fmt.Errorf("%s: %#x: no line table (%v)", im.path, addr, err)
	}
	e, ok := c.line(pc)
	if !ok {
		return nil, fmt.Errorf("%s: %#x: no line", im.path, addr)
	}
	chain := c.chain(pc)
	if len(chain) == 0 {
		return []Frame{{File: e.file.Name, Line: e.line}}, nil
	}
	out := make([]Frame, 0, len(chain))
	file, line := e.file.Name, e.line
	for i := len(chain) - 1; i >= 0; i-- {
		name, decl := im.nameOf(chain[i].origin)
		out = append(out, Frame{Func: name, File: file, Line: line, FuncLine: decl})
		file, line = c.file(chain[i].callFile), chain[i].callLine
	}
	return out, nil
}

// symbolValue returns the value of the symbol name in ef's symbol table.
func symbolValue(ef *elf.File, name string) (uint64, error) {
	syms, err := ef.Symbols()
	if err != nil {
		return 0, err
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value, nil
		}
	}
	return 0, fmt.Errorf("no symbol %s", name)
}

// placeSections returns the relocatable file raw (ef parsed) with the
// symbols of each section in bases moved to its address there, so that
// the relocations debug/elf applies to the DWARF (symbol plus addend)
// give running addresses. Where the sections are left at 0, as the file
// has them, the code of two sections overlaps in the line tables (a
// module's .text and .text.unlikely both start at 0), and an address
// could name the other's line.
func placeSections(raw []byte, ef *elf.File, bases map[string]uint64) (*elf.File, error) {
	if ef.Machine != elf.EM_X86_64 || ef.Class != elf.ELFCLASS64 || ef.ByteOrder != binary.LittleEndian {
		return nil, errors.New("a relocatable file other than x86-64 ELF64")
	}
	symtab := ef.SectionByType(elf.SHT_SYMTAB)
	if symtab == nil {
		return nil, errors.New("no symbol table")
	}
	const symSize = 24 // Elf64_Sym: name 4, info 1, other 1, shndx 2, value 8, size 8
	if symtab.Entsize != symSize || symtab.Offset+symtab.Size > uint64(len(raw)) {
		return nil, errors.New("a symbol table of an unknown shape")
	}
	base := make([]uint64, len(ef.Sections))
	placed := 0
	for i, s := range ef.Sections {
		if a, ok := bases[s.Name]; ok && s.Flags&elf.SHF_ALLOC != 0 {
			base[i] = a
			placed++
		}
	}
	if placed == 0 {
		return nil, errors.New("none of its sections is loaded")
	}
	out := bytes.Clone(raw)
	tab := out[symtab.Offset : symtab.Offset+symtab.Size]
	for off := symSize; off+symSize <= len(tab); off += symSize {
		shndx := binary.LittleEndian.Uint16(tab[off+6:])
		if int(shndx) >= len(base) || base[shndx] == 0 {
			continue
		}
		v := binary.LittleEndian.Uint64(tab[off+8:])
		binary.LittleEndian.PutUint64(tab[off+8:], v+base[shndx])
	}
	return elf.NewFile(bytes.NewReader(out))
}
