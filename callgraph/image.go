package callgraph

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
)

// ErrSymbolsMismatch is matched by errors.Is when a System.map does not
// belong to the kernel image it was given with.
var ErrSymbolsMismatch = errors.New("the symbol table does not belong to this kernel image")

// Image is a kernel image held in memory: the ELF vmlinux, decompressed
// from a vmlinuz (bzImage) where needed. It is a Text at the image's
// link-time addresses, showing the code as built: calls to __fentry__,
// alternatives, static keys and static calls unpatched, retpoline thunks in
// place. It is safe for concurrent use.
type Image struct {
	path string
	elf  *elf.File
	data []byte
	secs []imageSection // allocated sections with contents, by address

	symsOnce sync.Once
	syms     *Symbols
	symsErr  error
}

type imageSection struct {
	name       string
	addr, size uint64
	data       []byte
}

// OpenImage reads a vmlinuz (gzip, xz, zstd, bzip2 or lzma bzImage) or an
// uncompressed vmlinux ELF file.
func OpenImage(path string) (*Image, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the kernel image: %w", err)
	}
	data, err := VmlinuxFromImage(raw)
	if err != nil {
		return nil, fmt.Errorf("kernel image %s: %w", path, err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("kernel image %s: vmlinux: %w", path, err)
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("kernel image %s: built for %v, not x86-64", path, f.Machine)
	}
	im := &Image{path: path, elf: f, data: data}
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type != elf.SHT_PROGBITS || s.Addr == 0 {
			continue
		}
		if s.Offset+s.Size > uint64(len(data)) {
			return nil, fmt.Errorf("kernel image %s: section %s runs past the end of the file", path, s.Name)
		}
		im.secs = append(im.secs, imageSection{s.Name, s.Addr, s.Size, data[s.Offset : s.Offset+s.Size]})
	}
	sort.Slice(im.secs, func(i, j int) bool { return im.secs[i].addr < im.secs[j].addr })
	return im, nil
}

// String names the image, for messages.
func (im *Image) String() string { return "kernel image " + im.path }

// ReadAt fills p with the image's bytes at link-time address addr; the
// whole range must lie in one section.
func (im *Image) ReadAt(p []byte, addr uint64) error {
	i := sort.Search(len(im.secs), func(i int) bool { return im.secs[i].addr+im.secs[i].size > addr })
	if i < len(im.secs) && im.secs[i].addr <= addr && addr+uint64(len(p)) <= im.secs[i].addr+im.secs[i].size {
		s := im.secs[i]
		copy(p, s.data[addr-s.addr:])
		return nil
	}
	return fmt.Errorf("reading kernel text at %#x (%d bytes): outside the sections of %s", addr, len(p), im.path)
}

// Close releases nothing (the image is plain memory); it exists to make an
// Image a Text.
func (im *Image) Close() error { return nil }

// Section returns an allocated section's address and contents.
func (im *Image) Section(name string) (addr uint64, data []byte, ok bool) {
	for _, s := range im.secs {
		if s.name == name {
			return s.addr, s.data, true
		}
	}
	return 0, nil, false
}

// BuildID returns the GNU build ID note in hex, or "".
func (im *Image) BuildID() string {
	for _, s := range im.elf.Sections {
		if s.Type != elf.SHT_NOTE || s.Offset+s.Size > uint64(len(im.data)) {
			continue
		}
		if id := gnuBuildID(im.data[s.Offset : s.Offset+s.Size]); id != "" {
			return id
		}
	}
	return ""
}

// Symbols returns the core kernel's symbol table compiled into the image
// (its kallsyms tables): the same symbols /proc/kallsyms lists for the
// core kernel when it runs, at link-time addresses. Debian's vmlinuz has
// CONFIG_KALLSYMS_ALL, so data symbols such as linux_banner are there too.
func (im *Image) Symbols() (*Symbols, error) {
	im.symsOnce.Do(func() {
		addr, data, ok := im.Section(".rodata")
		if !ok {
			im.symsErr = fmt.Errorf("%s: no .rodata section", im)
			return
		}
		syms, err := imageKallsyms(data, addr)
		if err != nil {
			im.symsErr = fmt.Errorf("%s: reading its kallsyms tables: %w", im, err)
			return
		}
		im.syms, im.symsErr = newSymbols(syms)
	})
	return im.syms, im.symsErr
}

// CheckSymbols reports, as an error wrapping ErrSymbolsMismatch, a symbol
// table that does not belong to this image: _stext must be where .text
// starts, linux_banner (where listed) must point at "Linux version ", and
// every function named once in both tables must have the same address in
// the image's own kallsyms tables.
func (im *Image) CheckSymbols(syms *Symbols) error {
	mismatch := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrSymbolsMismatch, fmt.Sprintf(format, a...))
	}
	text, _, ok := im.Section(".text")
	if !ok {
		return fmt.Errorf("%s: no .text section", im)
	}
	stext, ok := syms.Symbol("_stext")
	if !ok {
		return mismatch("it has no _stext")
	}
	if stext.Addr != text {
		return mismatch("_stext is %#x there, but .text starts at %#x in the image", stext.Addr, text)
	}
	if banner, ok := syms.Symbol("linux_banner"); ok {
		buf := make([]byte, len("Linux version "))
		if err := im.ReadAt(buf, banner.Addr); err != nil || string(buf) != "Linux version " {
			return mismatch("linux_banner (%#x) does not point at \"Linux version\" in the image", banner.Addr)
		}
	}
	own, err := im.Symbols()
	if err != nil {
		return nil // nothing more to compare with
	}
	return compareSymbols(syms, own, mismatch)
}

// compareSymbols checks the functions of got against want.
func compareSymbols(got, want *Symbols, mismatch func(string, ...any) error) error {
	bad, checked := 0, 0
	var first string
	for _, i := range got.funcs {
		g := got.all[i]
		_, gotOne := got.byName.only(g.Name)
		wi, wantOne := want.byName.only(g.Name)
		if !gotOne || !wantOne {
			continue
		}
		w := want.all[wi]
		checked++
		if w.Addr != g.Addr {
			if bad == 0 {
				first = fmt.Sprintf("%s is %#x there, %#x in the image", g.Name, g.Addr, w.Addr)
			}
			bad++
		}
	}
	if bad > 0 {
		return mismatch("%d of %d functions are elsewhere (%s)", bad, checked, first)
	}
	return nil
}

// gnuBuildID finds the NT_GNU_BUILD_ID note in a note section.
func gnuBuildID(notes []byte) string {
	for len(notes) >= 12 {
		namesz := int(le32(notes[0:]))
		descsz := int(le32(notes[4:]))
		typ := le32(notes[8:])
		name := (namesz + 3) &^ 3
		desc := (descsz + 3) &^ 3
		if 12+name+desc > len(notes) {
			return ""
		}
		if typ == 3 && namesz == 4 && string(notes[12:15]) == "GNU" {
			return fmt.Sprintf("%x", notes[12+name:12+name+descsz])
		}
		notes = notes[12+name+desc:]
	}
	return ""
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// OpenOfflineText opens a kernel image for offline analysis with its
// symbol table: the System.map at systemMap, checked against the image, or,
// when systemMap is "", the symbol table compiled into the image.
func OpenOfflineText(vmlinuz, systemMap string) (*Image, *Symbols, error) {
	var syms *Symbols
	if systemMap != "" { // first, as it fails faster than a decompression
		f, err := os.Open(systemMap)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the System.map: %w", err)
		}
		defer f.Close()
		if syms, err = ParseSystemMap(f); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", systemMap, err)
		}
	}
	im, err := OpenImage(vmlinuz)
	if err != nil {
		return nil, nil, err
	}
	if syms == nil {
		if syms, err = im.Symbols(); err != nil {
			return nil, nil, fmt.Errorf("%w (give its System.map)", err)
		}
		return im, syms, nil
	}
	if err := im.CheckSymbols(syms); err != nil {
		return nil, nil, fmt.Errorf("checking %s against %s: %w", systemMap, vmlinuz, err)
	}
	return im, syms, nil
}
