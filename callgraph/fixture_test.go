package callgraph

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files and fixtures under testdata")

// The fixture is a small kernel assembled by hand: a function "subject"
// that holds one of each kind of call site, its .cold part, the thunks and
// static-call trampolines it uses, and a jump table in .rodata. The same
// kernel is written to testdata/fixture for the tests of cmd/autoprof.

const (
	fxText   = 0xffffffff81000000
	fxRodata = 0xffffffff82000000
)

// fxSym is one symbol of the fixture, with its code.
type fxSym struct {
	name string
	typ  byte
	addr uint64
	code func(addr uint64) []byte
}

// assembler assembles a function by hand: raw bytes, and branches to absolute
// addresses or to labels (fixed up at the end).
type assembler struct {
	base   uint64
	b      []byte
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at, end int // where the displacement goes, where the instruction ends
	size    int // 1 or 4
	label   string
}

func newAsm(base uint64) *assembler { return &assembler{base: base, labels: map[string]int{}} }

func (a *assembler) op(b ...byte) { a.b = append(a.b, b...) }

func (a *assembler) label(name string) { a.labels[name] = len(a.b) }

// rel32 emits op followed by the rel32 displacement to target.
func (a *assembler) rel32(target uint64, op ...byte) {
	a.op(op...)
	end := len(a.b) + 4
	a.b = binary.LittleEndian.AppendUint32(a.b, uint32(int32(int64(target)-int64(a.base)-int64(end))))
}

// toLabel emits op and a displacement of size bytes to label.
func (a *assembler) toLabel(label string, size int, op ...byte) {
	a.op(op...)
	a.fixups = append(a.fixups, fixup{at: len(a.b), end: len(a.b) + size, size: size, label: label})
	a.b = append(a.b, make([]byte, size)...)
}

// finish resolves the labels and pads with int3 up to size.
func (a *assembler) finish(size int) []byte {
	for _, f := range a.fixups {
		d := a.labels[f.label] - f.end
		if f.size == 1 {
			a.b[f.at] = byte(int8(d))
		} else {
			binary.LittleEndian.PutUint32(a.b[f.at:], uint32(int32(d)))
		}
	}
	if len(a.b) > size {
		panic(fmt.Sprintf("fixture function of %d bytes does not fit in %d", len(a.b), size))
	}
	return append(a.b, int3s(size-len(a.b))...)
}

func int3s(n int) []byte { return bytes.Repeat([]byte{0xcc}, n) }

// Addresses of the fixture's functions.
const (
	fxFentry   = fxText + 0x000
	fxRetThunk = fxText + 0x010
	fxThunkRax = fxText + 0x020
	fxSCTHook  = fxText + 0x030
	fxSCTNull  = fxText + 0x040
	fxCallee   = fxText + 0x050
	fxPfx      = fxText + 0x060
	fxTarget   = fxText + 0x070
	fxSubject  = fxText + 0x100
	fxCold     = fxText + 0x180
	fxEtext    = fxText + 0x190
	fxSubjSize = 0x80
)

// subjectLabels are the offsets of the interesting instructions of
// subject, by label.
var subjectLabels = subjectAsm().labels

func subjectAsm() *assembler {
	a := newAsm(fxSubject)
	a.label("endbr")
	a.op(0xf3, 0x0f, 0x1e, 0xfa)
	a.label("fentry")
	a.op(ftraceNop...)
	a.label("push")
	a.op(0x53)
	a.label("call")
	a.rel32(fxCallee, 0xe8)
	a.label("indirect")
	a.op(0xff, 0x53, 0x10) // call *0x10(%rbx)
	a.label("thunk")
	a.rel32(fxThunkRax, 0xe8)
	a.label("static")
	a.rel32(fxSCTHook, 0xe8)
	a.label("staticnull")
	a.rel32(fxSCTNull, 0xe8)
	a.label("callthunk")
	a.rel32(fxPfx+6, 0xe8) // a call-depth-tracking call into the padding
	a.label("callmid")
	a.rel32(fxCallee+2, 0xe8)
	a.op(0x85, 0xc0) // test %eax,%eax
	a.label("je")
	a.toLabel("pop", 1, 0x74)
	a.label("tableload")
	a.op(0x48, 0x8b, 0x04, 0xc5) // mov subject_table(,%rax,8),%rax
	a.b = binary.LittleEndian.AppendUint32(a.b, uint32(fxRodata&0xffffffff))
	a.label("tablejump")
	a.rel32(fxThunkRax, 0xe9)
	a.op(0xcc, 0xcc, 0xcc)
	a.label("pop")
	a.op(0x5b)
	a.label("cold")
	a.rel32(fxCold, 0x0f, 0x85)
	a.label("condtail")
	a.rel32(fxTarget, 0x0f, 0x85)
	a.label("retthunk")
	a.rel32(fxRetThunk, 0xe9)
	a.op(0xcc)
	a.label("entry1")
	a.op(0x31, 0xc0) // xor %eax,%eax
	a.label("ret")
	a.op(0xc3, 0xcc)
	a.label("entry2")
	a.op(0x48, 0x89, 0xd8) // mov %rbx,%rax
	a.label("tail")
	a.rel32(fxTarget, 0xe9)
	a.label("padding")
	return a
}

var fixtureSyms = []fxSym{
	{"_stext", 'T', fxText, nil},
	{"__fentry__", 'T', fxFentry, func(uint64) []byte { return append([]byte{0xc3}, int3s(15)...) }},
	{"__x86_return_thunk", 'T', fxRetThunk, func(uint64) []byte { return append([]byte{0xc3}, int3s(15)...) }},
	{"__x86_indirect_thunk_rax", 'T', fxThunkRax, func(uint64) []byte { return append([]byte{0xff, 0xe0}, int3s(14)...) }},
	{"__SCT__fx_hook", 'T', fxSCTHook, func(addr uint64) []byte {
		a := newAsm(addr)
		a.rel32(fxTarget, 0xe9)
		a.op(0x0f, 0xb9, 0xcc)
		return a.finish(16)
	}},
	{"__SCT__fx_null", 'T', fxSCTNull, func(uint64) []byte {
		return append([]byte{0xc3, 0xcc, 0x90, 0x90, 0x90, 0x0f, 0xb9, 0xcc}, int3s(8)...)
	}},
	{"callee", 'T', fxCallee, func(uint64) []byte { return append([]byte{0x31, 0xc0, 0xc3}, int3s(13)...) }},
	{"__pfx_target_fn", 't', fxPfx, func(uint64) []byte { return bytes.Repeat([]byte{0x90}, 16) }},
	{"target_fn", 't', fxTarget, func(uint64) []byte { return append([]byte{0xc3}, int3s(fxSubject-fxTarget-1)...) }},
	{"subject", 'T', fxSubject, func(uint64) []byte { return subjectAsm().finish(fxSubjSize) }},
	{"subject.cold", 't', fxCold, func(addr uint64) []byte {
		a := newAsm(addr)
		a.rel32(fxSubject+uint64(subjectLabels["pop"]), 0xe9)
		return a.finish(int(fxEtext - fxCold))
	}},
	{"_etext", 'T', fxEtext, nil},
	{"subject_table", 'r', fxRodata, func(uint64) []byte {
		b := make([]byte, 24) // a zero entry ends the table
		binary.LittleEndian.PutUint64(b, fxSubject+uint64(subjectLabels["entry1"]))
		binary.LittleEndian.PutUint64(b[8:], fxSubject+uint64(subjectLabels["entry2"]))
		return b
	}},
}

// fixture returns the fixture's symbol table and text.
func fixture(t testing.TB) (*Symbols, *MemText) {
	t.Helper()
	syms, err := ParseKallsyms(strings.NewReader(fixtureKallsyms()))
	if err != nil {
		t.Fatal(err)
	}
	return syms, fixtureText()
}

func fixtureKallsyms() string {
	var b strings.Builder
	for _, s := range fixtureSyms {
		fmt.Fprintf(&b, "%016x %c %s\n", s.addr, s.typ, s.name)
	}
	return b.String()
}

func fixtureText() *MemText {
	m := &MemText{}
	for _, s := range fixtureSyms {
		if s.code != nil {
			m.Add(s.addr, s.code(s.addr))
		}
	}
	return m
}

// writeFixtureHex writes the text as "ADDRESS HEX" lines.
func fixtureHex(m *MemText) string {
	var b strings.Builder
	for _, s := range m.segs {
		fmt.Fprintf(&b, "%016x %s\n", s.addr, hex.EncodeToString(s.data))
	}
	return b.String()
}

// parseFixtureHex reads fixtureHex's format.
func parseFixtureHex(text string) (*MemText, error) {
	m := &MemText{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		a, h, ok := strings.Cut(sc.Text(), " ")
		addr, err := strconv.ParseUint(a, 16, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("bad line %q", sc.Text())
		}
		data, err := hex.DecodeString(h)
		if err != nil {
			return nil, err
		}
		m.Add(addr, data)
	}
	sort.Slice(m.segs, func(i, j int) bool { return m.segs[i].addr < m.segs[j].addr })
	return m, nil
}

// TestFixtureFiles keeps testdata/fixture in step with the builder above
// (go test -run TestFixtureFiles -update rewrites it).
func TestFixtureFiles(t *testing.T) {
	files := map[string]string{"kallsyms": fixtureKallsyms(), "text.hex": fixtureHex(fixtureText())}
	for name, want := range files {
		path := filepath.Join("testdata", "fixture", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestFixtureFiles -update)", err)
		}
		if string(got) != want {
			t.Errorf("%s is out of date; run go test -run TestFixtureFiles -update", path)
		}
	}
	if _, err := parseFixtureHex(files["text.hex"]); err != nil {
		t.Fatal(err)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
