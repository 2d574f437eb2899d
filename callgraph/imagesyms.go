package callgraph

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// The kernel image carries its own symbol table, the one /proc/kallsyms
// prints for the core kernel, as tables that scripts/kallsyms.c writes into
// .rodata:
//
//	kallsyms_num_syms       u32, 8 bytes before kallsyms_names
//	kallsyms_names          per symbol: length (ULEB128, 1 or 2 bytes),
//	                        then token indices; the first character of the
//	                        expanded name is the type letter
//	kallsyms_markers        u32 offset into names of every 256th symbol
//	kallsyms_seqs_of_names  (6.2+, also in late 6.1 stable) ignored
//	kallsyms_token_table    256 NUL-terminated tokens
//	kallsyms_token_index    256 u16 offsets into the token table
//	kallsyms_offsets        u32 per symbol, from kallsyms_relative_base
//	kallsyms_relative_base  u64, right after kallsyms_offsets
//
// Every label is 8-byte aligned. Their order differs between versions (6.1
// puts offsets first, 6.12 puts them after the token index), so each table
// is found by its content and checked against the others, as
// vmlinux-to-elf does.

// ksymsTables is where the tables were found, as offsets into the section.
type ksymsTables struct {
	tokens     [256][]byte
	names      int // kallsyms_names
	count      int // number of symbols
	markers    int // kallsyms_markers
	offsets    int // kallsyms_offsets
	absPercpu  bool
	relBase    uint64
	tokenTable int
}

// imageKallsyms decodes the kallsyms tables in sec (.rodata, at address
// base). The symbols come out at the image's link-time addresses.
func imageKallsyms(sec []byte, base uint64) ([]Symbol, error) {
	var t ksymsTables
	var err error
	if t.tokenTable, t.tokens, err = findTokenTable(sec); err != nil {
		return nil, err
	}
	if err := t.findNames(sec); err != nil {
		return nil, err
	}
	if err := t.findOffsets(sec); err != nil {
		return nil, err
	}
	return t.symbols(sec), nil
}

// findTokenTable finds kallsyms_token_table by its run of one-character
// tokens "0".."9" (every digit occurs in some symbol, so those tokens stay
// themselves), and checks it against kallsyms_token_index, which follows it.
func findTokenTable(d []byte) (int, [256][]byte, error) {
	var tokens [256][]byte
	digits := []byte("0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00")
	for at := bytes.Index(d, digits); at >= 0; {
		if start, ok := tokenTableAt(d, at, &tokens); ok {
			return start, tokens, nil
		}
		next := bytes.Index(d[at+1:], digits)
		if next < 0 {
			break
		}
		at += 1 + next
	}
	return 0, tokens, errors.New("no kallsyms token table in .rodata (a kernel without CONFIG_KALLSYMS?)")
}

// tokenTableAt checks whether token '0' is at d[at].
func tokenTableAt(d []byte, at int, tokens *[256][]byte) (int, bool) {
	p := at
	for k := 0; k < '0'; k++ { // walk back over tokens 0x00..0x2f
		if p < 2 {
			return 0, false
		}
		q := bytes.LastIndexByte(d[:p-1], 0)
		if q < 0 || p-1-q < 1 {
			return 0, false
		}
		p = q + 1
	}
	start := p
	if start%8 != 0 {
		return 0, false
	}
	var offs [256]int
	for k := 0; k < 256; k++ {
		q := bytes.IndexByte(d[p:], 0)
		if q < 1 {
			return 0, false
		}
		offs[k], tokens[k] = p-start, d[p:p+q]
		p += q + 1
	}
	idx := align8(p)
	if idx+512 > len(d) {
		return 0, false
	}
	for k := 0; k < 256; k++ {
		if int(binary.LittleEndian.Uint16(d[idx+2*k:])) != offs[k] {
			return 0, false
		}
	}
	return start, true
}

func align8(p int) int { return (p + 7) &^ 7 }

// Limits of a marker's step: 256 symbols of 1 to 512 characters (plus the
// length byte).
const (
	minMarkerStep = 256 * 2
	maxMarkerStep = 256 * 514
)

// findNames finds kallsyms_markers before the token table (first u32 0,
// then steps of one group of 256 names) and kallsyms_names before the
// markers, and counts the symbols.
func (t *ksymsTables) findNames(d []byte) error {
	lo := max(0, t.tokenTable-64<<20)
	for p := t.tokenTable - 8; p >= lo; p -= 8 {
		if binary.LittleEndian.Uint32(d[p:]) != 0 {
			continue
		}
		markers := readMarkers(d, p, t.tokenTable)
		if len(markers) < 2 {
			continue
		}
		// Trailing values may be bytes of the next table that happen to
		// look like steps; try shorter runs too.
		for m := len(markers); m >= max(2, len(markers)-4); m-- {
			if t.namesBefore(d, p, markers[:m]) {
				t.markers = p
				return nil
			}
		}
	}
	return errors.New("no kallsyms_names/kallsyms_markers before the token table")
}

// readMarkers reads the run of plausible marker values at d[p:].
func readMarkers(d []byte, p, limit int) []uint32 {
	var m []uint32
	for ; p+4 <= limit; p += 4 {
		v := binary.LittleEndian.Uint32(d[p:])
		if len(m) > 0 && (v < m[len(m)-1]+minMarkerStep || v > m[len(m)-1]+maxMarkerStep) {
			break
		}
		m = append(m, v)
	}
	return m
}

// namesBefore looks for kallsyms_names ending just before the markers at
// p: a start s from which every 256th entry lands on a marker and the last
// entry ends within the 8-byte alignment before p. Names of equal length
// let several starts pass; the one kallsyms_num_syms precedes (8 bytes
// before, in every layout) wins, else the lowest.
func (t *ksymsTables) namesBefore(d []byte, p int, markers []uint32) bool {
	last := int(markers[len(markers)-1])
	hi := p - last - 1
	found := false
	for s := hi &^ 7; s >= max(0, hi-maxMarkerStep); s -= 8 {
		n, ok := walkNames(d, s, markers, p)
		if !ok {
			continue
		}
		t.names, t.count, found = s, n, true
		if s >= 8 && int(binary.LittleEndian.Uint32(d[s-8:])) == n {
			break
		}
	}
	return found
}

// walkNames checks the names table at s against the markers and returns
// the number of entries. The table ends where the zero padding before end
// (the 8-byte aligned markers) begins.
func walkNames(d []byte, s int, markers []uint32, end int) (int, bool) {
	o, n := s, 0
	for o < end && d[o] != 0 {
		if n%256 == 0 && (n/256 >= len(markers) || o-s != int(markers[n/256])) {
			return 0, false
		}
		next, ok := skipName(d, o)
		if !ok || next > end {
			return 0, false
		}
		o, n = next, n+1
	}
	if align8(o) != end || (n+255)/256 != len(markers) {
		return 0, false
	}
	return n, true
}

// skipName returns the offset after the names entry at o.
func skipName(d []byte, o int) (int, bool) {
	if o >= len(d) || d[o] == 0 {
		return 0, false
	}
	l, n := int(d[o]), 1
	if l&0x80 != 0 {
		if o+1 >= len(d) {
			return 0, false
		}
		l, n = l&0x7f|int(d[o+1])<<7, 2
	}
	return o + n + l, true
}

// findOffsets finds kallsyms_offsets and kallsyms_relative_base: after the
// token index (6.12) or before kallsyms_num_syms (6.1). The addresses must
// come out in ascending order, which also tells whether percpu symbols are
// absolute (CONFIG_KALLSYMS_ABSOLUTE_PERCPU, x86-64 before 6.15).
func (t *ksymsTables) findOffsets(d []byte) error {
	var tokenEnd int
	for _, tok := range t.tokens {
		tokenEnd += len(tok) + 1
	}
	size := 4 * t.count
	candidates := []int{
		align8(align8(t.tokenTable+tokenEnd) + 512), // after kallsyms_token_index
		(t.names - 16 - size) &^ 7,                  // before relative_base, num_syms, names
	}
	for _, c := range candidates {
		rb := align8(c + size)
		if c < 0 || rb+8 > len(d) {
			continue
		}
		t.offsets, t.relBase = c, binary.LittleEndian.Uint64(d[rb:])
		if t.relBase>>47 != 0x1ffff {
			continue
		}
		for _, abs := range []bool{false, true} {
			t.absPercpu = abs
			if t.sorted(d) {
				return nil
			}
		}
	}
	return errors.New("no kallsyms_offsets table that gives ascending addresses")
}

func (t *ksymsTables) addr(d []byte, i int) uint64 {
	v := binary.LittleEndian.Uint32(d[t.offsets+4*i:])
	if !t.absPercpu {
		return t.relBase + uint64(v)
	}
	if int32(v) >= 0 {
		return uint64(v)
	}
	return t.relBase - 1 - uint64(int64(int32(v)))
}

func (t *ksymsTables) sorted(d []byte) bool {
	for i := 1; i < t.count; i++ {
		if t.addr(d, i) < t.addr(d, i-1) {
			return false
		}
	}
	return true
}

// symbols expands every name.
func (t *ksymsTables) symbols(d []byte) []Symbol {
	syms := make([]Symbol, 0, t.count)
	var buf []byte
	o := t.names
	for i := 0; i < t.count; i++ {
		l, n := int(d[o]), 1
		if l&0x80 != 0 {
			l, n = l&0x7f|int(d[o+1])<<7, 2
		}
		buf = buf[:0]
		for _, tok := range d[o+n : o+n+l] {
			buf = append(buf, t.tokens[tok]...)
		}
		o += n + l
		if len(buf) < 2 {
			continue
		}
		syms = append(syms, Symbol{Name: string(buf[1:]), Type: buf[0], Addr: t.addr(d, i)})
	}
	return syms
}
