package callgraph

import (
	"errors"
	"fmt"
	"iter"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ErrUnknownFunction is matched by errors.Is when a name is not a function
// of the kernel's symbol table.
var ErrUnknownFunction = errors.New("not in the kernel's symbol table")

// ErrAmbiguousFunction is matched by errors.Is when several functions share
// a name (static functions of different files); address one of them by its
// address or as MODULE:NAME.
var ErrAmbiguousFunction = errors.New("several functions have this name")

// ErrNotText is matched by errors.Is when an address or a symbol lies outside
// the kernel's text (the core kernel's [_stext, _etext) and module text).
var ErrNotText = errors.New("not in kernel text")

// Symbol is one kernel symbol.
type Symbol struct {
	Name string // as kallsyms prints it: "vfs_read", "foo.cold", "__pfx_foo"
	Addr uint64 // at run time (kallsyms) or link time (System.map, image)
	// Size is the extent of a text symbol in bytes: up to the next symbol at
	// a higher address in the same text (a __pfx_/__cfi_ padding symbol
	// included), or the end of that text. Kallsyms does not give the end of
	// a module's last function; its extent runs to the end of its page.
	// Size is 0 for symbols outside text.
	Size uint64
	// Type is the kallsyms type letter: T/t text, W/w weak, D/d data, ...
	Type byte
	// Module is the module's name, or "" for the core kernel.
	Module string
	// Parent is, for a compiler-split ".cold" part ("foo.cold" or
	// "foo.cold.3"), the name of the function it belongs to, whether or not
	// that name is in the table; "" otherwise.
	Parent string
}

// End returns the address just past the symbol's extent.
func (s Symbol) End() uint64 { return s.Addr + s.Size }

// IsText reports whether the type letter says text (T, t, W, w).
func (s Symbol) IsText() bool {
	switch s.Type {
	case 'T', 't', 'W', 'w':
		return true
	}
	return false
}

// IsPadding reports whether the symbol names the padding the compiler puts
// before a function (__pfx_ with CONFIG_CALL_PADDING, __cfi_ with kCFI):
// not code of the function before it, and not a function itself.
func (s Symbol) IsPadding() bool {
	return strings.HasPrefix(s.Name, "__pfx_") || strings.HasPrefix(s.Name, "__cfi_")
}

// IsMarker reports whether the symbol is a section marker the linker script
// provides (_stext, __entry_text_start, __noinstr_text_end, ...), not a
// function. The rule follows may_be_linker_script_provide_symbol() in the
// kernel's scripts/kallsyms.c.
func (s Symbol) IsMarker() bool {
	switch s.Name {
	case "_text", "_stext", "_etext", "_sinittext", "_einittext", "_end", "_sdata", "_edata":
		return true
	}
	n := s.Name
	if len(n) < 8 || !strings.HasPrefix(n, "__") {
		return false
	}
	return strings.HasPrefix(n, "__start_") || strings.HasPrefix(n, "__stop_") ||
		strings.HasPrefix(n, "__end_") || strings.HasSuffix(n, "_start") || strings.HasSuffix(n, "_end")
}

// String returns the name, with its module in brackets when it has one.
func (s Symbol) String() string {
	if s.Module != "" {
		return s.Name + " [" + s.Module + "]"
	}
	return s.Name
}

// textRange is one stretch of text: the core kernel's or one module's.
type textRange struct {
	start, end uint64
	module     string
}

// Symbols is a kernel symbol table with the extents of its functions. It is
// immutable once built and safe for concurrent use.
type Symbols struct {
	all      []Symbol         // every symbol, by address, then input order
	byName   nameIndex        // name -> indices into all
	cold     map[string][]int // parent name -> indices of its .cold parts, by address
	specials map[uint64]special
	ranges   []textRange // by start address
	text     []int       // one text symbol per address in ranges, by address
	funcs    []int       // text minus padding and lone markers
}

// newSymbols indexes syms (in input order) and computes extents.
func newSymbols(syms []Symbol) (*Symbols, error) {
	s := &Symbols{all: syms, cold: map[string][]int{}}
	sort.SliceStable(s.all, func(i, j int) bool { return s.all[i].Addr < s.all[j].Addr })
	s.byName = newNameIndex(s.all)
	for i := range s.all {
		sym := &s.all[i]
		sym.Parent = coldParent(sym.Name)
		if sym.Parent != "" {
			s.cold[sym.Parent] = append(s.cold[sym.Parent], i)
		}
	}
	s.ranges = textRanges(s.all)
	if len(s.ranges) == 0 {
		return nil, errors.New("the symbol table has no text symbols")
	}
	s.computeExtents()
	s.buildSpecials()
	return s, nil
}

// nameIndex finds the symbols of a name: the first index of each name,
// and for each symbol the next of the same name (-1 after the last), so
// that a table of a hundred thousand names costs a map entry each and no
// slice: building it is much of reading a cached table back.
type nameIndex struct {
	first map[string]int32
	next  []int32
}

// newNameIndex indexes all by name, each name's symbols in all's order.
func newNameIndex(all []Symbol) nameIndex {
	x := nameIndex{first: make(map[string]int32, len(all)), next: make([]int32, len(all))}
	for i := len(all) - 1; i >= 0; i-- {
		j, ok := x.first[all[i].Name]
		if !ok {
			j = -1
		}
		x.next[i] = j
		x.first[all[i].Name] = int32(i)
	}
	return x
}

// named yields the indices of the symbols called name.
func (x nameIndex) named(name string) iter.Seq[int] {
	return func(yield func(int) bool) {
		i, ok := x.first[name]
		for ok && i >= 0 {
			if !yield(int(i)) {
				return
			}
			i = x.next[i]
		}
	}
}

// only returns the index of the one symbol called name, false where there
// is none or more than one.
func (x nameIndex) only(name string) (int, bool) {
	i, ok := x.first[name]
	if !ok || x.next[i] >= 0 {
		return 0, false
	}
	return int(i), true
}

// coldParent returns "foo" for "foo.cold" and "foo.cold.12".
func coldParent(name string) string {
	i := strings.Index(name, ".cold")
	if i <= 0 {
		return ""
	}
	rest := name[i+len(".cold"):]
	if rest != "" && (rest[0] != '.' || !isDigits(rest[1:])) {
		return ""
	}
	return name[:i]
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// textRanges finds the core kernel's text from _stext and _etext (or, where
// the table lacks them, from its text symbols) and each module's text from
// its text symbols. The kernel's pseudo-modules ([bpf],
// [__builtin__ftrace], [__builtin__kprobes]) hold code scattered over many
// allocations: each of their symbols gets the rest of its page. Ranges that
// overlap an earlier one (only a malformed table has them) are clipped.
func textRanges(all []Symbol) []textRange {
	var core textRange
	var haveStart, haveEnd bool
	mods := map[string]*textRange{}
	var out []textRange
	for _, sym := range all {
		if sym.Addr == 0 {
			continue
		}
		switch {
		case sym.Module == "" && sym.Name == "_stext":
			core.start, haveStart = sym.Addr, true
		case sym.Module == "" && sym.Name == "_etext":
			core.end, haveEnd = sym.Addr, true
		}
		if !sym.IsText() {
			continue
		}
		if isPseudoModule(sym.Module) {
			out = append(out, textRange{sym.Addr, pageEnd(sym.Addr), sym.Module})
			continue
		}
		r := mods[sym.Module]
		if r == nil {
			r = &textRange{start: sym.Addr, end: sym.Addr, module: sym.Module}
			mods[sym.Module] = r
		}
		r.start, r.end = min(r.start, sym.Addr), max(r.end, sym.Addr)
	}
	for name, r := range mods {
		r.end = pageEnd(r.end)
		if name == "" && haveStart && haveEnd && core.start < core.end {
			r.start, r.end = core.start, core.end
		}
		out = append(out, *r)
	}
	return clipRanges(out)
}

// isPseudoModule reports the module names under which the kernel lists
// code of its own: BPF programs and trampolines, ftrace trampolines,
// kprobe instruction slots.
func isPseudoModule(m string) bool {
	return m == "bpf" || strings.HasPrefix(m, "__builtin__")
}

// clipRanges sorts the ranges, merges overlapping ranges of one module and
// cuts the others so that none overlap, the core kernel's winning.
func clipRanges(rs []textRange) []textRange {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].start != rs[j].start {
			return rs[i].start < rs[j].start
		}
		return rs[i].module == "" && rs[j].module != ""
	})
	var out []textRange
	for _, r := range rs {
		if n := len(out); n > 0 && r.start < out[n-1].end {
			prev := &out[n-1]
			switch {
			case prev.module == r.module:
				prev.end = max(prev.end, r.end)
				continue
			case prev.module == "":
				r.start = prev.end
			default:
				prev.end = r.start
			}
		}
		if r.start < r.end {
			out = append(out, r)
		}
	}
	return out
}

// pageEnd returns the end of the 4 KiB page holding addr.
func pageEnd(addr uint64) uint64 { return addr&^0xfff + 0x1000 }

// rangeOf returns the index of the text range holding addr and belonging to
// module, or -1.
func (s *Symbols) rangeOf(addr uint64, module string) int {
	i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].end > addr })
	for ; i < len(s.ranges) && s.ranges[i].start <= addr; i++ {
		if s.ranges[i].module == module {
			return i
		}
	}
	return -1
}

// computeExtents sets Size on every text symbol inside a text range and
// builds the address-ordered indices text and funcs.
func (s *Symbols) computeExtents() {
	byRange := make([][]int, len(s.ranges))
	for i, sym := range s.all {
		if !sym.IsText() {
			continue
		}
		if r := s.rangeOf(sym.Addr, sym.Module); r >= 0 {
			byRange[r] = append(byRange[r], i)
		}
	}
	for r, idx := range byRange {
		for k := 0; k < len(idx); {
			group := k
			for k < len(idx) && s.all[idx[k]].Addr == s.all[idx[group]].Addr {
				k++
			}
			end := s.ranges[r].end
			if k < len(idx) {
				end = s.all[idx[k]].Addr
			}
			for _, i := range idx[group:k] {
				s.all[i].Size = end - s.all[i].Addr
			}
			p := s.primary(idx[group:k])
			s.text = append(s.text, p)
			if !s.all[p].IsPadding() && !s.all[p].IsMarker() {
				s.funcs = append(s.funcs, p)
			}
		}
	}
	sort.Slice(s.text, func(i, j int) bool { return s.all[s.text[i]].Addr < s.all[s.text[j]].Addr })
	sort.Slice(s.funcs, func(i, j int) bool { return s.all[s.funcs[i]].Addr < s.all[s.funcs[j]].Addr })
}

// primary picks the name that stands for an address among aliases: a
// function over a marker or padding, global over local, strong over weak,
// fewer leading underscores, then the first listed.
func (s *Symbols) primary(aliases []int) int {
	rank := func(sym Symbol) int {
		r := 0
		if sym.IsMarker() || sym.IsPadding() {
			r += 1000
		}
		if strings.HasPrefix(sym.Name, "__pi_") {
			r += 500
		}
		if sym.Type == 't' || sym.Type == 'w' {
			r += 100
		}
		if sym.Type == 'W' || sym.Type == 'w' {
			r += 10
		}
		return r + len(sym.Name) - len(strings.TrimLeft(sym.Name, "_"))
	}
	best := aliases[0]
	for _, i := range aliases[1:] {
		if rank(s.all[i]) < rank(s.all[best]) {
			best = i
		}
	}
	return best
}

// Len returns the number of symbols in the table.
func (s *Symbols) Len() int { return len(s.all) }

// Functions returns the kernel's functions in address order: one symbol per
// address (the primary among aliases), inside text, without padding
// symbols and section markers. Cold parts are listed as functions of their
// own (see Symbol.Parent).
func (s *Symbols) Functions() []Symbol {
	out := make([]Symbol, len(s.funcs))
	for k, i := range s.funcs {
		out[k] = s.all[i]
	}
	return out
}

// Func returns the function called name. The name may be written
// MODULE:NAME (as kprobes do) to pick a module's function. An unknown name
// gives an error wrapping ErrUnknownFunction, a symbol outside text one
// wrapping ErrNotText, and a name several functions share one wrapping
// ErrAmbiguousFunction.
func (s *Symbols) Func(name string) (Symbol, error) {
	module, bare, hasModule := strings.Cut(name, ":")
	if !hasModule {
		bare = name
	}
	var found []Symbol
	var outside *Symbol
	for i := range s.byName.named(bare) {
		sym := s.all[i]
		if !sym.IsText() || hasModule && sym.Module != module {
			continue
		}
		if s.rangeOf(sym.Addr, sym.Module) < 0 {
			outside = &sym
			continue
		}
		if len(found) == 0 || found[len(found)-1].Addr != sym.Addr {
			found = append(found, sym)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return Symbol{}, ambiguous(name, found)
	case outside != nil:
		return Symbol{}, fmt.Errorf("function %q at %#x: %w (init or exit text, freed after boot)", name, outside.Addr, ErrNotText)
	}
	return Symbol{}, fmt.Errorf("function %q: %w", name, ErrUnknownFunction)
}

func ambiguous(name string, found []Symbol) error {
	var addrs []string
	for _, f := range found[:min(len(found), 4)] {
		a := "0x" + strconv.FormatUint(f.Addr, 16)
		if f.Module != "" {
			a += " [" + f.Module + "]"
		}
		addrs = append(addrs, a)
	}
	more := ""
	if len(found) > 4 {
		more = ", ..."
	}
	return fmt.Errorf("function %q: %w: %d of them, at %s%s (name one by address)", name, ErrAmbiguousFunction, len(found), strings.Join(addrs, ", "), more)
}

// Lookup resolves what a user typed: a function name, MODULE:NAME, or a
// hexadecimal address (0x...) of any byte of a function.
func (s *Symbols) Lookup(spec string) (Symbol, error) {
	if strings.HasPrefix(spec, "0x") {
		addr, err := strconv.ParseUint(spec[2:], 16, 64)
		if err != nil {
			return Symbol{}, fmt.Errorf("address %q: not a hexadecimal number", spec)
		}
		sym, _, err := s.FuncAt(addr)
		return sym, err
	}
	return s.Func(spec)
}

// FuncAt returns the text symbol whose extent holds addr (the primary name
// among aliases; a __pfx_ symbol for padding bytes) and addr's offset in it.
// An address outside text gives an error naming it, wrapping ErrNotText.
func (s *Symbols) FuncAt(addr uint64) (Symbol, uint64, error) {
	i := sort.Search(len(s.text), func(i int) bool { return s.all[s.text[i]].Addr > addr }) - 1
	if i >= 0 {
		sym := s.all[s.text[i]]
		if addr < sym.End() {
			return sym, addr - sym.Addr, nil
		}
	}
	return Symbol{}, 0, fmt.Errorf("address %#x: %w", addr, ErrNotText)
}

// Aliases returns every text symbol that starts at addr, primary first.
func (s *Symbols) Aliases(addr uint64) []Symbol {
	lo := sort.Search(len(s.all), func(i int) bool { return s.all[i].Addr >= addr })
	var out []Symbol
	primary, _, err := s.FuncAt(addr)
	if err == nil && primary.Addr == addr {
		out = append(out, primary)
	}
	for i := lo; i < len(s.all) && s.all[i].Addr == addr; i++ {
		if sym := s.all[i]; sym.IsText() && (len(out) == 0 || sym != out[0]) {
			out = append(out, sym)
		}
	}
	return out
}

// ColdParts returns the ".cold" parts whose Parent is fn's name, in the
// same module, in address order.
func (s *Symbols) ColdParts(fn Symbol) []Symbol {
	var out []Symbol
	for _, i := range s.cold[fn.Name] {
		if s.all[i].Module == fn.Module && s.all[i].Size > 0 {
			out = append(out, s.all[i])
		}
	}
	return out
}

// Format returns addr as "func+0x1a" ("func" at offset 0), or as a bare
// hexadecimal address when it is outside text.
func (s *Symbols) Format(addr uint64) string {
	sym, off, err := s.FuncAt(addr)
	if err != nil {
		return "0x" + strconv.FormatUint(addr, 16)
	}
	if off == 0 {
		return sym.Name
	}
	return sym.Name + "+0x" + strconv.FormatUint(off, 16)
}

// Match returns every symbol, text or not, whose name re matches, in
// address order.
func (s *Symbols) Match(re *regexp.Regexp) []Symbol {
	var out []Symbol
	for _, sym := range s.all {
		if re.MatchString(sym.Name) {
			out = append(out, sym)
		}
	}
	return out
}

// Symbol returns the first symbol of any type called name.
func (s *Symbols) Symbol(name string) (Symbol, bool) {
	i, ok := s.byName.first[name]
	if !ok {
		return Symbol{}, false
	}
	return s.all[i], true
}

// InText reports whether addr lies in the core kernel's or a module's text.
func (s *Symbols) InText(addr uint64) bool {
	for _, r := range s.ranges {
		if r.start <= addr && addr < r.end {
			return true
		}
	}
	return false
}

// CoreText returns the core kernel's text range [start, end), from _stext
// and _etext.
func (s *Symbols) CoreText() (start, end uint64, ok bool) {
	for _, r := range s.ranges {
		if r.module == "" {
			return r.start, r.end, true
		}
	}
	return 0, 0, false
}

// specialKind marks the symbols that calls and jumps are classified by.
type specialKind uint8

const (
	specNone specialKind = iota
	// specFtrace: the ftrace call target at function entry: __fentry__ as
	// built, ftrace_caller/ftrace_regs_caller and ftrace or BPF trampolines
	// while tracing.
	specFtrace
	// specReturnThunk: a jmp to it is a return (__x86_return_thunk and the
	// other *_return_thunk variants).
	specReturnThunk
	// specIndirectThunk: a retpoline thunk; the target is in register reg.
	specIndirectThunk
	// specStaticCall: a static-call trampoline __SCT__*.
	specStaticCall
)

type special struct {
	kind specialKind
	reg  string // specIndirectThunk: the register, "rax"
	name string // the symbol that made it special
}

var indirectThunk = regexp.MustCompile(`^(?:__pi_)?__x86_indirect_(?:call_|jump_|its_|paranoid_)?thunk_(r(?:ax|bx|cx|dx|si|di|bp|sp|8|9|1[0-5]))$`)

// classifySpecial tells whether a text symbol is one of the special ones.
func classifySpecial(sym Symbol) special {
	n := sym.Name
	switch {
	case n == "__fentry__" || n == "ftrace_caller" || n == "ftrace_regs_caller" ||
		sym.Module == "__builtin__ftrace" || sym.Module == "bpf" && strings.HasPrefix(n, "bpf_trampoline_"):
		return special{kind: specFtrace, name: n}
	case n == "__x86_return_thunk" || strings.HasSuffix(n, "_return_thunk") || n == "__x86_return_skl":
		return special{kind: specReturnThunk, name: n}
	case strings.HasPrefix(n, "__SCT__"):
		return special{kind: specStaticCall, name: n}
	}
	if m := indirectThunk.FindStringSubmatch(n); m != nil {
		return special{kind: specIndirectThunk, reg: m[1], name: n}
	}
	return special{}
}

// buildSpecials indexes the special symbols by address.
func (s *Symbols) buildSpecials() {
	s.specials = map[uint64]special{}
	for _, sym := range s.all {
		if !sym.IsText() {
			continue
		}
		if sp := classifySpecial(sym); sp.kind != specNone {
			s.specials[sym.Addr] = sp
		}
	}
}

// specialAt returns the special meaning of a call or jump target.
func (s *Symbols) specialAt(addr uint64) special { return s.specials[addr] }

// Nearest returns the symbol of any type at or below addr, and addr's
// offset from it, for display: data symbols have no extent, so the offset
// may run past the symbol's object.
func (s *Symbols) Nearest(addr uint64) (Symbol, uint64, bool) {
	i := sort.Search(len(s.all), func(i int) bool { return s.all[i].Addr > addr }) - 1
	if i < 0 || s.all[i].Addr == 0 {
		return Symbol{}, 0, false
	}
	return s.all[i], addr - s.all[i].Addr, true
}
