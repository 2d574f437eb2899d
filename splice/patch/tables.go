package patch

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
)

// Span is [Start, End) of kernel memory.
type Span struct{ Start, End uint64 }

// overlaps reports whether s meets [start, end).
func (s Span) overlaps(start, end uint64) bool { return s.Start < end && start < s.End }

// ExEntry is one exception-table entry: a faulting instruction and where
// its fault goes.
type ExEntry struct{ Insn, Fixup uint64 }

// Tables are the kernel's lists of the text that other patchers own or
// that exceptions land in. Each list is sorted.
//
// The exception table, jump labels and static calls stay in memory and
// are read from the running kernel. The alternatives and paravirt tables
// are init data, freed once the kernel has applied them at boot: what can
// still be re-patched at run time is the SMP lock prefixes, kept only when
// the kernel booted uniprocessor (the kernel's own
// alternatives_text_reserved() checks exactly these). AddImage adds every
// alternative and paravirt site from the kernel image, where it is at
// hand.
type Tables struct {
	Extable     []ExEntry // by Insn
	Alts        []Span    // alternative sites (from the image)
	Paravirt    []Span    // paravirt patch sites (from the image; kernels before 6.9)
	SMPLocks    []uint64  // lock prefixes alternatives may still rewrite
	JumpLabels  []uint64  // jump-label sites (a nop or a jmp each)
	StaticCalls []uint64  // static-call sites
	Kprobes     []uint64  // addresses of registered kprobes
	// FromImage says whether AddImage added the alternative sites.
	FromImage bool
}

// symbolRange returns the addresses of two symbols, start <= end.
func symbolRange(syms *callgraph.Symbols, start, end string) (uint64, uint64, bool) {
	a, okA := syms.Symbol(start)
	b, okB := syms.Symbol(end)
	if !okA || !okB || b.Addr < a.Addr || b.Addr-a.Addr > 64<<20 {
		return 0, 0, false
	}
	return a.Addr, b.Addr, true
}

func readRange(text callgraph.Text, start, end uint64) ([]byte, error) {
	b := make([]byte, end-start)
	if len(b) == 0 {
		return b, nil
	}
	return b, text.ReadAt(b, start)
}

type tableReader struct {
	start, end string
	parse      func(b []byte, base uint64) error
}

func readTables(syms *callgraph.Symbols, text callgraph.Text, tables []tableReader) error {
	for _, tb := range tables {
		start, end, ok := symbolRange(syms, tb.start, tb.end)
		if !ok {
			continue
		}
		b, err := readRange(text, start, end)
		if err != nil {
			return fmt.Errorf("reading %s: %w", tb.start, err)
		}
		if err := tb.parse(b, start); err != nil {
			return err
		}
	}
	return nil
}

// ReadTables reads the tables of the running core kernel through text,
// using the section markers in syms. A table whose markers are missing is
// empty; one that cannot be read or parsed is an error: the splicer
// refuses to guess.
func ReadTables(syms *callgraph.Symbols, text callgraph.Text) (*Tables, error) {
	stext, etext, ok := syms.CoreText()
	if !ok {
		return nil, fmt.Errorf("reading the kernel's tables: no _stext/_etext in the symbol table")
	}
	inText := func(a uint64) bool { return stext <= a && a < etext }
	t := &Tables{}
	err := readTables(syms, text, []tableReader{
		{"__start___ex_table", "__stop___ex_table", func(b []byte, base uint64) (err error) {
			t.Extable, err = ParseExtable(b, base)
			return err
		}},
		{"__start___jump_table", "__stop___jump_table", func(b []byte, base uint64) (err error) {
			t.JumpLabels, err = parseRelSites(b, base, 16, inText, "jump table")
			return err
		}},
		{"__start_static_call_sites", "__stop_static_call_sites", func(b []byte, base uint64) (err error) {
			t.StaticCalls, err = parseRelSites(b, base, 8, inText, "static call sites")
			return err
		}},
	})
	if err != nil {
		return nil, err
	}
	t.SMPLocks = readSMPLocks(syms, text, inText)
	return t, nil
}

// readSMPLocks reads the SMP lock sites where the kernel kept them: each
// entry must point at a lock prefix (f0) or the nop alternatives put in
// its place on one CPU (3e). Freed pages fail that test, or the read.
func readSMPLocks(syms *callgraph.Symbols, text callgraph.Text, inText func(uint64) bool) []uint64 {
	start, end, ok := symbolRange(syms, "__smp_locks", "__smp_locks_end")
	if !ok || start == end {
		return nil
	}
	b, err := readRange(text, start, end)
	if err != nil {
		return nil
	}
	var out []uint64
	for i := 0; i+4 <= len(b); i += 4 {
		v := s32(b[i:])
		if v == 0 {
			continue // the page-aligned tail
		}
		a := start + uint64(i) + uint64(v)
		var p [1]byte
		if !inText(a) || text.ReadAt(p[:], a) != nil || p[0] != 0xf0 && p[0] != 0x3e {
			return nil
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// AddImage adds the alternative and paravirt sites from im, the image of
// the running kernel (the caller checks its build id), whose core kernel
// syms describes: the image's addresses are shifted by the KASLR offset.
func (t *Tables) AddImage(im *callgraph.Image, syms *callgraph.Symbols) error {
	isyms, err := im.Symbols()
	if err != nil {
		return err
	}
	live, okL := syms.Symbol("_stext")
	built, okB := isyms.Symbol("_stext")
	if !okL || !okB {
		return fmt.Errorf("%s: no _stext to relate it to the running kernel", im)
	}
	delta := live.Addr - built.Addr
	stext, etext, ok := isyms.CoreText()
	if !ok {
		return fmt.Errorf("%s: no _stext/_etext", im)
	}
	inText := func(a uint64) bool { return stext <= a && a < etext }
	initStart, initEnd, hasInit := symbolRange(isyms, "_sinittext", "_einittext")
	inKernel := func(a uint64) bool { return inText(a) || hasInit && initStart <= a && a < initEnd }
	var alts, pv []Span
	err = readTables(isyms, im, []tableReader{
		{"__alt_instructions", "__alt_instructions_end", func(b []byte, base uint64) (err error) {
			alts, err = ParseAlternatives(b, base, inText, inKernel)
			return err
		}},
		{"__parainstructions", "__parainstructions_end", func(b []byte, base uint64) (err error) {
			pv, err = ParseParavirt(b, inText)
			return err
		}},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", im, err)
	}
	shift := func(s []Span) []Span {
		for i := range s {
			s[i].Start += delta
			s[i].End += delta
		}
		return s
	}
	t.Alts, t.Paravirt, t.FromImage = shift(alts), shift(pv), true
	return nil
}

func s32(b []byte) int64 { return int64(int32(binary.LittleEndian.Uint32(b))) }

// ParseExtable parses the exception table at base: entries of three
// 32-bit fields (insn, fixup, data), insn and fixup relative to their own
// address (x86-64, Linux 4.20 to 6.18).
func ParseExtable(b []byte, base uint64) ([]ExEntry, error) {
	if len(b)%12 != 0 {
		return nil, fmt.Errorf("exception table of %d bytes: not a whole number of 12-byte entries", len(b))
	}
	out := make([]ExEntry, 0, len(b)/12)
	for i := 0; i < len(b); i += 12 {
		at := base + uint64(i)
		out = append(out, ExEntry{Insn: at + uint64(s32(b[i:])), Fixup: at + 4 + uint64(s32(b[i+4:]))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Insn < out[j].Insn })
	return out, nil
}

// ParseAlternatives parses struct alt_instr entries: s32 instr_offset,
// s32 repl_offset, the CPU feature (16 bits until 6.2, 32 bits of feature
// and flags after), u8 instrlen, u8 replacementlen. The entry size (12 or
// 14 bytes) is the one under which every site lies in the kernel's text or
// init text (inKernel); the sites in text (inText) are returned.
func ParseAlternatives(b []byte, base uint64, inText, inKernel func(uint64) bool) ([]Span, error) {
	for _, size := range []int{14, 12} {
		if len(b)%size != 0 {
			continue
		}
		var out []Span
		ok := true
		for i := 0; i < len(b); i += size {
			start := base + uint64(i) + uint64(s32(b[i:]))
			n := uint64(b[i+size-2])
			if !inKernel(start) {
				ok = false
				break
			}
			if inText(start) {
				out = append(out, Span{start, start + n})
			}
		}
		if ok {
			sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
			return out, nil
		}
	}
	return nil, fmt.Errorf("alternatives table of %d bytes: neither 12- nor 14-byte entries land in kernel text", len(b))
}

// ParseParavirt parses struct paravirt_patch_site entries (u8 *instr,
// u8 type, u8 len, padded to 16 bytes).
func ParseParavirt(b []byte, inText func(uint64) bool) ([]Span, error) {
	if len(b)%16 != 0 {
		return nil, fmt.Errorf("paravirt sites of %d bytes: not a whole number of 16-byte entries", len(b))
	}
	var out []Span
	for i := 0; i < len(b); i += 16 {
		start := binary.LittleEndian.Uint64(b[i:])
		if !inText(start) {
			continue // in init text, freed
		}
		out = append(out, Span{start, start + uint64(b[i+9])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// parseRelSites parses entries of size bytes whose first field is a site
// address relative to itself (struct jump_entry, struct static_call_site).
// Sites outside text (in freed init text) are dropped.
func parseRelSites(b []byte, base uint64, size int, inText func(uint64) bool, what string) ([]uint64, error) {
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%s of %d bytes: not a whole number of %d-byte entries", what, len(b), size)
	}
	var out []uint64
	for i := 0; i < len(b); i += size {
		a := base + uint64(i) + uint64(s32(b[i:]))
		if inText(a) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// ParseKprobeList parses debugfs kprobes/list ("ADDR  TYPE  SYMBOL+OFF
// [FLAGS]" per registered kprobe) into the probed addresses.
func ParseKprobeList(r io.Reader) ([]uint64, error) {
	var out []uint64
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kprobes/list line %d: %q: want ADDRESS TYPE SYMBOL", line, sc.Text())
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kprobes/list: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// anyIn reports whether a sorted list holds an address in [start, end).
func anyIn(sorted []uint64, start, end uint64) bool {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= start })
	return i < len(sorted) && sorted[i] < end
}

// spanMeets reports whether a sorted list of spans, none longer than 255
// bytes (their lengths are u8 fields), meets [start, end).
func spanMeets(spans []Span, start, end uint64) (Span, bool) {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].Start >= end })
	for k := i - 1; k >= 0 && spans[k].Start+256 > start; k-- {
		if spans[k].overlaps(start, end) {
			return spans[k], true
		}
	}
	return Span{}, false
}

// exceptionIn returns an entry whose instruction or fixup lies in
// [start, end).
func (t *Tables) exceptionIn(start, end uint64) (ExEntry, bool) {
	i := sort.Search(len(t.Extable), func(i int) bool { return t.Extable[i].Insn >= start })
	if i < len(t.Extable) && t.Extable[i].Insn < end {
		return t.Extable[i], true
	}
	for _, e := range t.Extable {
		if start <= e.Fixup && e.Fixup < end {
			return e, true
		}
	}
	return ExEntry{}, false
}
