package callgraph

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// ksymsLayout is the order scripts/kallsyms.c writes its tables in.
type ksymsLayout int

const (
	layout61  ksymsLayout = iota // offsets, relative_base, num_syms, names, markers, seqs, tokens
	layout612                    // num_syms, names, markers, tokens, offsets, relative_base, seqs
)

// buildKallsyms writes kallsyms tables for syms the way scripts/kallsyms.c
// does, without compression (every character is its own token; the other
// token slots hold unused two-letter tokens), after some decoy bytes.
func buildKallsyms(syms []Symbol, layout ksymsLayout, absPercpu bool, relBase uint64) []byte {
	var d bytes.Buffer
	align := func() {
		for d.Len()%8 != 0 {
			d.WriteByte(0)
		}
	}
	u32 := func(v uint32) { d.Write(binary.LittleEndian.AppendUint32(nil, v)) }
	// A decoy: the digit run of a ctype-like table, without a token index.
	d.WriteString("junk\x00/\x000\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00:\x00")
	align()
	var names bytes.Buffer
	var markers []uint32
	for i, s := range syms {
		if i%256 == 0 {
			markers = append(markers, uint32(names.Len()))
		}
		entry := string(s.Type) + s.Name
		names.WriteByte(byte(len(entry)))
		names.WriteString(entry)
	}
	var tokens bytes.Buffer
	var index []uint16
	used := map[byte]bool{}
	for _, s := range syms {
		used[s.Type] = true
		for _, c := range []byte(s.Name) {
			used[c] = true
		}
	}
	for i := 0; i < 256; i++ {
		index = append(index, uint16(tokens.Len()))
		if used[byte(i)] {
			tokens.WriteByte(byte(i))
		} else {
			fmt.Fprintf(&tokens, "%c%c", 'A'+i/26%26, 'a'+i%26)
		}
		tokens.WriteByte(0)
	}
	offsets := func() {
		align()
		for _, s := range syms {
			switch {
			case !absPercpu:
				u32(uint32(s.Addr - relBase))
			case s.Addr < relBase:
				u32(uint32(s.Addr))
			default:
				u32(uint32(int32(int64(relBase) - int64(s.Addr) - 1)))
			}
		}
		align()
		d.Write(binary.LittleEndian.AppendUint64(nil, relBase))
	}
	numAndNames := func() {
		align()
		u32(uint32(len(syms)))
		align()
		d.Write(names.Bytes())
		align()
		for _, m := range markers {
			u32(m)
		}
	}
	seqs := func() {
		align()
		d.Write(make([]byte, 3*len(syms)))
	}
	tokenTables := func() {
		align()
		d.Write(tokens.Bytes())
		align()
		for _, v := range index {
			d.Write(binary.LittleEndian.AppendUint16(nil, v))
		}
	}
	if layout == layout61 {
		offsets()
		numAndNames()
		seqs()
		tokenTables()
	} else {
		numAndNames()
		tokenTables()
		offsets()
		seqs()
	}
	align()
	return d.Bytes()
}

func syntheticSymbols(n int, relBase uint64, percpu int) []Symbol {
	var syms []Symbol
	for i := 0; i < percpu; i++ {
		syms = append(syms, Symbol{Name: fmt.Sprintf("percpu_var_%d", i), Type: 'A', Addr: uint64(0x100 * i)})
	}
	for i := 0; i < n; i++ {
		syms = append(syms, Symbol{Name: fmt.Sprintf("func_%05d_0123456789", i), Type: "Tt"[i%2], Addr: relBase + uint64(0x10*i)})
	}
	return syms
}

func TestImageKallsymsLayouts(t *testing.T) {
	const relBase = 0xffffffff81000000
	for _, c := range []struct {
		name      string
		layout    ksymsLayout
		absPercpu bool
		percpu    int
	}{
		{"6.1 with absolute percpu", layout61, true, 3},
		{"6.12", layout612, false, 0},
		{"6.1 without percpu", layout61, false, 0},
		{"6.12 with absolute percpu", layout612, true, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := syntheticSymbols(700, relBase, c.percpu)
			sec := buildKallsyms(want, c.layout, c.absPercpu, relBase)
			got, err := imageKallsyms(sec, 0xffffffff82000000)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d symbols, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("symbol %d: %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestImageKallsymsErrors(t *testing.T) {
	syms := syntheticSymbols(600, 0xffffffff81000000, 0)
	good := buildKallsyms(syms, layout612, false, 0xffffffff81000000)
	for _, c := range []struct {
		name string
		sec  []byte
		want string
	}{
		{"no tables", []byte("nothing to see here"), "no kallsyms token table in .rodata (a kernel without CONFIG_KALLSYMS?)"},
		{"markers broken", breakMarkers(good), "no kallsyms_names/kallsyms_markers before the token table"},
	} {
		if _, err := imageKallsyms(c.sec, 0); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
}

// breakMarkers zeroes the second marker, so no names table matches.
func breakMarkers(sec []byte) []byte {
	sec = bytes.Clone(sec)
	for p := 0; p+8 <= len(sec); p += 8 {
		if m := readMarkers(sec, p, len(sec)); len(m) >= 2 && m[0] == 0 {
			binary.LittleEndian.PutUint32(sec[p+4:], 0)
			return sec
		}
	}
	return sec
}
