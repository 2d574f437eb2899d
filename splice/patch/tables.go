package patch

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
)

// Span is [Start, End) of kernel memory.
type Span struct{ Start, End uint64 }

// overlaps reports whether s meets [start, end).
func (s Span) overlaps(start, end uint64) bool { return s.Start < end && start < s.End }

// contains reports whether a lies in s.
func (s Span) contains(a uint64) bool { return s.Start <= a && a < s.End }

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
	// Targets are the places control reaches by a branch that no decode
	// of a function's own code shows: where a jump label jumps once its
	// key flips (jump_entry.target), where the jumps of an alternative's
	// replacement go (the kernel keeps their absolute targets when it
	// applies one), static-call sites (rewritten to a call, a jmp or a
	// ret) and exception-table fixups. A window may not hold one after
	// its first byte (SAFETY A.3).
	Targets []uint64
	// ReturnSites are the returns the image lists (.return_sites: each a
	// jmp __x86_return_thunk as built, rewritten at boot to the return
	// the kernel chose): where a timer's frame ends. From the image.
	ReturnSites []uint64
	// Text is the core kernel's text, [_stext, _etext); Ours is where the
	// splice module's trampolines lie. A jump from a function to neither
	// is another patcher's.
	Text, Ours Span
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
	t := &Tables{Text: Span{stext, etext}}
	err := readTables(syms, text, []tableReader{
		{"__start___ex_table", "__stop___ex_table", func(b []byte, base uint64) (err error) {
			t.Extable, err = ParseExtable(b, base)
			return err
		}},
		{"__start___jump_table", "__stop___jump_table", func(b []byte, base uint64) (err error) {
			var targets []uint64
			t.JumpLabels, targets, err = ParseJumpTable(b, base, inText)
			t.Targets = append(t.Targets, targets...)
			return err
		}},
		{"__start_static_call_sites", "__stop_static_call_sites", func(b []byte, base uint64) (err error) {
			t.StaticCalls, err = parseRelSites(b, base, 8, inText, "static call sites")
			t.Targets = append(t.Targets, t.StaticCalls...)
			return err
		}},
	})
	if err != nil {
		return nil, err
	}
	for _, e := range t.Extable {
		t.Targets = append(t.Targets, e.Fixup)
	}
	t.Targets = sortedSet(t.Targets)
	t.SMPLocks = readSMPLocks(syms, text, inText)
	return t, nil
}

// sortedSet sorts a and drops duplicates.
func sortedSet(a []uint64) []uint64 {
	sort.Slice(a, func(i, j int) bool { return a[i] < a[j] })
	out := a[:0]
	for i, v := range a {
		if i == 0 || v != a[i-1] {
			out = append(out, v)
		}
	}
	return out
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
	var alts []Alternative
	var pv []Span
	var rets []uint64
	err = readTables(isyms, im, []tableReader{
		{"__alt_instructions", "__alt_instructions_end", func(b []byte, base uint64) (err error) {
			alts, err = ParseAlternatives(b, base, inText, inKernel)
			return err
		}},
		{"__parainstructions", "__parainstructions_end", func(b []byte, base uint64) (err error) {
			pv, err = ParseParavirt(b, inText)
			return err
		}},
		{"__return_sites", "__return_sites_end", func(b []byte, base uint64) (err error) {
			rets, err = parseRelSites(b, base, 4, inText, "return sites")
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
	var sites []Span
	for _, a := range alts {
		sites = append(sites, a.Site)
		targets, err := a.Targets(im)
		if err != nil {
			return fmt.Errorf("%s: %w", im, err)
		}
		for _, tg := range targets {
			t.Targets = append(t.Targets, tg+delta)
		}
	}
	for i := range rets {
		rets[i] += delta
	}
	t.Targets = sortedSet(t.Targets)
	t.Alts, t.Paravirt, t.ReturnSites, t.FromImage = shift(sites), shift(pv), rets, true
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

// Alternative is one entry of the alternatives table: the site the
// kernel may rewrite, and the replacement it may write there.
type Alternative struct {
	Site, Repl Span
}

// ParseAlternatives parses struct alt_instr entries: s32 instr_offset,
// s32 repl_offset, the CPU feature (16 bits until 6.2, 32 bits of feature
// and flags after), u8 instrlen, u8 replacementlen. The entry size (12 or
// 14 bytes) is the one under which every site lies in the kernel's text or
// init text (inKernel); the entries whose sites are in text (inText) are
// returned, by site.
func ParseAlternatives(b []byte, base uint64, inText, inKernel func(uint64) bool) ([]Alternative, error) {
	for _, size := range []int{14, 12} {
		if len(b)%size != 0 {
			continue
		}
		var out []Alternative
		ok := true
		for i := 0; i < len(b); i += size {
			start := base + uint64(i) + uint64(s32(b[i:]))
			repl := base + uint64(i) + 4 + uint64(s32(b[i+4:]))
			n, rn := uint64(b[i+size-2]), uint64(b[i+size-1])
			if !inKernel(start) {
				ok = false
				break
			}
			if inText(start) {
				out = append(out, Alternative{Site: Span{start, start + n}, Repl: Span{repl, repl + rn}})
			}
		}
		if ok {
			sort.Slice(out, func(i, j int) bool { return out[i].Site.Start < out[j].Site.Start })
			return out, nil
		}
	}
	return nil, fmt.Errorf("alternatives table of %d bytes: neither 12- nor 14-byte entries land in kernel text", len(b))
}

// Targets returns where the direct jumps and calls of the replacement go
// outside the replacement itself: the kernel rewrites their displacements
// when it applies the replacement (apply_relocation), so that in the site
// they reach the same absolute addresses, branch targets that the site's
// own code as built does not show (a jump to the replacement's end stays
// in the site, as need_reloc() has it). The replacement is read from text (the
// image: replacements are init data).
func (a Alternative) Targets(text callgraph.Text) ([]uint64, error) {
	code := make([]byte, a.Repl.End-a.Repl.Start)
	if len(code) == 0 {
		return nil, nil
	}
	if err := text.ReadAt(code, a.Repl.Start); err != nil {
		return nil, fmt.Errorf("replacement of the alternative at %#x: %w", a.Site.Start, err)
	}
	var out []uint64
	for off := 0; off < len(code); {
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil || in.Len == 0 {
			break // data or a new encoding: the rest has no branch x86asm knows
		}
		end := a.Repl.Start + uint64(off+in.Len)
		if rel, ok := in.Args[0].(x86asm.Rel); ok {
			if to := end + uint64(int64(rel)); to < a.Repl.Start || to > a.Repl.End {
				out = append(out, to)
			}
		}
		off += in.Len
	}
	return out, nil
}

// ParseJumpTable parses struct jump_entry entries (s32 code, s32 target,
// long key; code and target relative to their own fields): the sites, and
// the targets an enabled key jumps to. Entries outside text (freed init
// text) are dropped.
func ParseJumpTable(b []byte, base uint64, inText func(uint64) bool) (sites, targets []uint64, err error) {
	const size = 16
	if len(b)%size != 0 {
		return nil, nil, fmt.Errorf("jump table of %d bytes: not a whole number of %d-byte entries", len(b), size)
	}
	for i := 0; i < len(b); i += size {
		code := base + uint64(i) + uint64(s32(b[i:]))
		target := base + uint64(i) + 4 + uint64(s32(b[i+4:]))
		if inText(code) {
			sites = append(sites, code)
			targets = append(targets, target)
		}
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i] < sites[j] })
	sort.Slice(targets, func(i, j int) bool { return targets[i] < targets[j] })
	return sites, targets, nil
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
// [FLAGS]" per registered kprobe) into the probed addresses whose bytes a
// kprobe writes: an int3, or an optprobe's jmp. A kprobe on the ftrace
// site ([FTRACE]) writes none: ftrace calls it from the site that it owns
// anyway.
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
		if strings.Contains(sc.Text(), "[FTRACE]") {
			continue
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
	_, ok := firstIn(sorted, start, end)
	return ok
}

// firstIn returns the first address of a sorted list in [start, end).
func firstIn(sorted []uint64, start, end uint64) (uint64, bool) {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= start })
	if i < len(sorted) && sorted[i] < end {
		return sorted[i], true
	}
	return 0, false
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
