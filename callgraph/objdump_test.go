package callgraph

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The differential tests hand objdump the same bytes the decoder saw, in a
// small ELF file that marks every function with a symbol: objdump restarts
// its sweep at each symbol, so every function is compared from its own
// start, as the decoder sees it.

// region is a stretch of code at an address, with the functions in it.
type region struct {
	addr  uint64
	code  []byte
	funcs []Symbol
}

// writeObjdumpELF writes an ET_EXEC ELF file with one executable section
// per region and a function symbol per function.
func writeObjdumpELF(path string, regions []region) error {
	var strtab, shstrtab bytes.Buffer
	strtab.WriteByte(0)
	shstrtab.WriteByte(0)
	name := func(b *bytes.Buffer, s string) uint32 {
		off := uint32(b.Len())
		b.WriteString(s)
		b.WriteByte(0)
		return off
	}
	var symtab bytes.Buffer
	symtab.Write(make([]byte, 24)) // the null symbol
	type shdr struct {
		name, typ        uint32
		flags, addr, off uint64
		size             uint64
		link, info       uint32
		align, entsize   uint64
	}
	shdrs := []shdr{{}}
	var body bytes.Buffer
	body.Write(make([]byte, 64)) // ELF header, written last
	for i, r := range regions {
		for body.Len()%16 != 0 {
			body.WriteByte(0)
		}
		shdrs = append(shdrs, shdr{name: name(&shstrtab, fmt.Sprintf(".text.%d", i)), typ: 1, flags: 6, addr: r.addr, off: uint64(body.Len()), size: uint64(len(r.code)), align: 1})
		body.Write(r.code)
		for _, f := range r.funcs {
			var sym [24]byte
			binary.LittleEndian.PutUint32(sym[0:], name(&strtab, f.Name))
			sym[4] = 1<<4 | 2 // STB_GLOBAL, STT_FUNC
			binary.LittleEndian.PutUint16(sym[6:], uint16(i+1))
			binary.LittleEndian.PutUint64(sym[8:], f.Addr)
			binary.LittleEndian.PutUint64(sym[16:], f.Size)
			symtab.Write(sym[:])
		}
	}
	if len(regions) >= 0xff00 {
		return fmt.Errorf("%d regions: too many sections", len(regions))
	}
	nsec := len(shdrs)
	add := func(h shdr, data []byte) {
		h.off = uint64(body.Len())
		h.size = uint64(len(data))
		shdrs = append(shdrs, h)
		body.Write(data)
	}
	add(shdr{name: name(&shstrtab, ".symtab"), typ: 2, link: uint32(nsec + 1), info: 1, align: 8, entsize: 24}, symtab.Bytes())
	add(shdr{name: name(&shstrtab, ".strtab"), typ: 3, align: 1}, strtab.Bytes())
	shstrndx := len(shdrs)
	name(&shstrtab, ".shstrtab")
	add(shdr{name: uint32(shstrtab.Len() - len(".shstrtab") - 1), typ: 3, align: 1}, shstrtab.Bytes())
	for body.Len()%8 != 0 {
		body.WriteByte(0)
	}
	shoff := body.Len()
	for _, h := range shdrs {
		var b [64]byte
		le := binary.LittleEndian
		le.PutUint32(b[0:], h.name)
		le.PutUint32(b[4:], h.typ)
		le.PutUint64(b[8:], h.flags)
		le.PutUint64(b[16:], h.addr)
		le.PutUint64(b[24:], h.off)
		le.PutUint64(b[32:], h.size)
		le.PutUint32(b[40:], h.link)
		le.PutUint32(b[44:], h.info)
		le.PutUint64(b[48:], h.align)
		le.PutUint64(b[56:], h.entsize)
		body.Write(b[:])
	}
	out := body.Bytes()
	copy(out, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le := binary.LittleEndian
	le.PutUint16(out[16:], 2)  // ET_EXEC
	le.PutUint16(out[18:], 62) // EM_X86_64
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[40:], uint64(shoff))
	le.PutUint16(out[52:], 64)
	le.PutUint16(out[58:], 64)
	le.PutUint16(out[60:], uint16(len(shdrs)))
	le.PutUint16(out[62:], uint16(shstrndx))
	return os.WriteFile(path, out, 0o644)
}

// runObjdump disassembles the regions with objdump and returns its
// instructions by address. Only the text of lines whose mnemonic keep
// selects is kept, to hold memory down on a whole kernel.
func runObjdump(t testing.TB, regions []region, keep func(text string) bool) ([]uint64, map[uint64]string) {
	t.Helper()
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Skip("objdump (binutils) is not installed")
	}
	path := filepath.Join(t.TempDir(), "code.elf")
	if err := writeObjdumpELF(path, regions); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("objdump", "-d", "-z", "-w", "--no-show-raw-insn", path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var addrs []uint64
	texts := map[uint64]string{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		a, text, ok := parseObjdumpLine(line)
		if !ok {
			continue
		}
		addrs = append(addrs, a)
		if keep(text) {
			texts[a] = text
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("objdump: %v: %s", err, stderr.String())
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	return addrs, texts
}

// parseObjdumpLine parses "ffffffff81000000:\tpush   %rbp".
func parseObjdumpLine(line string) (uint64, string, bool) {
	colon := strings.Index(line, ":\t")
	if colon <= 0 {
		return 0, "", false
	}
	a, err := strconv.ParseUint(strings.TrimSpace(line[:colon]), 16, 64)
	if err != nil {
		return 0, "", false
	}
	return a, strings.TrimSpace(line[colon+2:]), true
}

// objdumpOffsets returns objdump's instruction offsets in [start, end).
func objdumpOffsets(addrs []uint64, start, end uint64) []uint32 {
	i := sort.Search(len(addrs), func(i int) bool { return addrs[i] >= start })
	var out []uint32
	for ; i < len(addrs) && addrs[i] < end; i++ {
		out = append(out, uint32(addrs[i]-start))
	}
	return out
}

// isObjdumpGiveUp reports whether objdump printed no instruction there.
func isObjdumpGiveUp(text string) bool {
	return strings.Contains(text, "(bad)") || strings.HasPrefix(text, ".byte")
}
