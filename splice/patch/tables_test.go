package patch

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
)

func rel(at, target uint64) []byte {
	return binary.LittleEndian.AppendUint32(nil, uint32(int32(int64(target-at))))
}

func TestParseExtable(t *testing.T) {
	const base = 0xffffffff82000000
	var b []byte
	b = append(append(append(b, rel(base, fnAddr+8)...), rel(base+4, fnAddr+0x40)...), 0, 0, 0, 0)
	b = append(append(append(b, rel(base+12, fnAddr+2)...), rel(base+16, fnAddr+0x30)...), 0, 0, 0, 0)
	got, err := ParseExtable(b, base)
	if err != nil {
		t.Fatal(err)
	}
	want := []ExEntry{{fnAddr + 2, fnAddr + 0x30}, {fnAddr + 8, fnAddr + 0x40}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v (sorted by instruction)", got, want)
	}
	if _, err := ParseExtable(b[:13], base); err == nil {
		t.Error("a torn entry parses")
	}
}

// TestParseAlternatives tells the 12-byte entries of 6.1 from the 14-byte
// ones of later kernels by where they point.
func TestParseAlternatives(t *testing.T) {
	const base = 0xffffffff83000000
	inText := func(a uint64) bool { return a >= 0xffffffff81000000 && a < 0xffffffff82000000 }
	// 84 bytes are 7 entries of 12 bytes or 6 of 14: only one reading
	// lands every site in text.
	for _, size := range []int{12, 14} {
		var b []byte
		for i := 0; i < 84/size; i++ {
			e := make([]byte, size)
			copy(e, rel(base+uint64(i*size), fnAddr+0x10*uint64(i+1)))
			copy(e[4:], rel(base+uint64(i*size+4), 0xffffffff80000000)) // replacement: elsewhere
			e[size-2] = 5                                               // instrlen
			b = append(b, e...)
		}
		got, err := ParseAlternatives(b, base, inText, inText)
		if err != nil {
			t.Fatalf("%d-byte entries: %v", size, err)
		}
		if len(got) != 84/size || got[0].Site != (Span{fnAddr + 0x10, fnAddr + 0x15}) {
			t.Errorf("%d-byte entries: %+v", size, got)
		}
	}
	if _, err := ParseAlternatives(make([]byte, 13), base, inText, inText); err == nil {
		t.Error("13 bytes of alternatives parse")
	}
}

func TestParseRelSitesAndKprobes(t *testing.T) {
	const base = 0xffffffff82800000
	inText := func(a uint64) bool { return a >= 0xffffffff81000000 && a < 0xffffffff82000000 }
	b := append(append(rel(base, fnAddr+9), 0, 0, 0, 0), append(rel(base+8, 0xffffffff83000000), 0, 0, 0, 0)...)
	got, err := parseRelSites(b, base, 8, inText, "static call sites")
	if err != nil || len(got) != 1 || got[0] != fnAddr+9 {
		t.Errorf("static call sites %x, %v; want the one in text", got, err)
	}
	kp, err := ParseKprobeList(strings.NewReader("ffffffff81001005  k  fn+0x5    [FTRACE]\nffffffff81000010  r  other+0x0\nffffffff81000020  k  other+0x10  [OPTIMIZED]\n"))
	if err != nil || len(kp) != 2 || kp[0] != 0xffffffff81000010 || kp[1] != 0xffffffff81000020 {
		t.Errorf("kprobes %x, %v; want the two that write bytes, not the one on the ftrace site", kp, err)
	}
	if _, err := ParseKprobeList(strings.NewReader("nonsense\n")); err == nil {
		t.Error("a line without an address parses")
	}
}

// TestReadTables reads the tables of a tiny kernel through a MemText.
func TestReadTables(t *testing.T) {
	syms, err := callgraph.ParseKallsyms(strings.NewReader(`ffffffff81000000 T _stext
ffffffff81001000 T fn
ffffffff82000000 T _etext
ffffffff82100000 D __start___jump_table
ffffffff82100010 D __stop___jump_table
ffffffff82200000 R __start___ex_table
ffffffff8220000c R __stop___ex_table
ffffffff82300000 R __smp_locks
ffffffff82300004 R __smp_locks_end
`))
	if err != nil {
		t.Fatal(err)
	}
	var text callgraph.MemText
	text.Add(0xffffffff82100000, append(append(rel(0xffffffff82100000, fnAddr+0x20), rel(0xffffffff82100004, fnAddr+0x40)...), make([]byte, 8)...))
	text.Add(0xffffffff82200000, append(append(rel(0xffffffff82200000, fnAddr+4), rel(0xffffffff82200004, fnAddr+0x60)...), 0, 0, 0, 0))
	text.Add(0xffffffff82300000, rel(0xffffffff82300000, fnAddr+0x30))
	text.Add(fnAddr, make([]byte, 0x100))
	tb, err := ReadTables(syms, &text)
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.JumpLabels) != 1 || tb.JumpLabels[0] != fnAddr+0x20 || len(tb.Extable) != 1 {
		t.Errorf("jump labels %x, extable %+v", tb.JumpLabels, tb.Extable)
	}
	if len(tb.SMPLocks) != 0 {
		t.Errorf("a lock site over zero bytes (freed) counts: %x", tb.SMPLocks)
	}
	b := make([]byte, 0x100)
	b[0x30] = 0xf0
	text = callgraph.MemText{}
	text.Add(0xffffffff82300000, rel(0xffffffff82300000, fnAddr+0x30))
	text.Add(fnAddr, b)
	if tb, err = ReadTables(syms, &text); err == nil && (len(tb.SMPLocks) != 1 || tb.SMPLocks[0] != fnAddr+0x30) {
		t.Errorf("the lock prefix at fn+0x30 is not among %x", tb.SMPLocks)
	}
}

// TestParseJumpTable reads both fields of struct jump_entry that point
// into text: the site, and where it jumps once its key flips.
func TestParseJumpTable(t *testing.T) {
	const base = 0xffffffff82100000
	inText := func(a uint64) bool { return a >= 0xffffffff81000000 && a < 0xffffffff82000000 }
	var b []byte
	b = append(append(b, rel(base, fnAddr+0x20)...), rel(base+4, fnAddr+0x47)...)
	b = append(b, make([]byte, 8)...) // the key
	b = append(append(b, rel(base+16, 0xffffffff83000000)...), rel(base+20, fnAddr+0x10)...)
	b = append(b, make([]byte, 8)...)
	sites, targets, err := ParseJumpTable(b, base, inText)
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 1 || sites[0] != fnAddr+0x20 || len(targets) != 1 || targets[0] != fnAddr+0x47 {
		t.Errorf("sites %x, targets %x; want the site in text and its target", sites, targets)
	}
	if _, _, err := ParseJumpTable(b[:20], base, inText); err == nil {
		t.Error("a torn entry parses")
	}
}

// TestAlternativeTargets: a jump of a replacement keeps its absolute
// target when the kernel applies it; a jump inside the replacement is no
// target of the site's function.
func TestAlternativeTargets(t *testing.T) {
	const repl = 0xffffffff83000000
	var text callgraph.MemText
	// jmp fn+0x33 (e9 rel32), then jmp .+0 inside the replacement (eb 00).
	text.Add(repl, append(append([]byte{0xe9}, rel(repl+5, fnAddr+0x33)...), 0xeb, 0x00))
	a := Alternative{Site: Span{fnAddr + 0x10, fnAddr + 0x17}, Repl: Span{repl, repl + 7}}
	got, err := a.Targets(&text)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != fnAddr+0x33 {
		t.Errorf("targets %x, want fn+0x33 only", got)
	}
}
