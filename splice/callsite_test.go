package splice

import (
	"bytes"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
)

// callSiteFixture is a caller that calls callee twice and other once,
// tail-jumps to callee, and branches to the instruction after its second
// call; with cold set, a .cold part jumps back to the instruction after
// its first call.
func callSiteFixture(t *testing.T, cold bool) *Placement {
	t.Helper()
	syms := "ffffffff81000000 T _stext\nffffffff81001000 T caller\nffffffff81001100 T callee\nffffffff81001200 T other\n"
	if cold {
		syms += "ffffffff81001300 t caller.cold\n"
	}
	syms += "ffffffff81001400 T _etext\n"
	st, err := callgraph.ParseKallsyms(strings.NewReader(syms))
	if err != nil {
		t.Fatal(err)
	}
	code := map[string][]byte{
		"caller": {
			0xf3, 0x0f, 0x1e, 0xfa, // 0x0 endbr64
			0x0f, 0x1f, 0x44, 0x00, 0x00, // 0x4 nop5 (ftrace)
			0xe8, 0xf2, 0x00, 0x00, 0x00, // 0x9 call callee, returns to 0xe
			0x85, 0xc0, // 0xe test %eax,%eax
			0x74, 0x05, // 0x10 je 0x17
			0xe8, 0xe9, 0x00, 0x00, 0x00, // 0x12 call callee, returns to 0x17
			0x90,                         // 0x17 nop: a branch target
			0xe8, 0xe3, 0x01, 0x00, 0x00, // 0x18 call other, returns to 0x1d
			0xe9, 0xde, 0x00, 0x00, 0x00, // 0x1d jmp callee (tail)
		},
		"callee":      {0xc3},
		"other":       {0xc3},
		"caller.cold": {0xe9, 0x09, 0xfd, 0xff, 0xff}, // jmp caller+0xe
	}
	decode := func(sym callgraph.Symbol) (*callgraph.Function, error) {
		b := bytes.Repeat([]byte{0xcc}, int(sym.Size))
		copy(b, code[sym.Name])
		return callgraph.Decode(sym, b, st)
	}
	return NewPlacement(st, decode, PlacementSources{Traceable: strings.NewReader("caller\ncallee\nother\n"), Blacklist: strings.NewReader("")})
}

// TestCallReturn checks where a call-site timer may close its frame: after
// a call (not a tail jump) of the named callee's start, at an instruction
// nothing else reaches (a branch, a jump back from a .cold part).
func TestCallReturn(t *testing.T) {
	for _, c := range []struct {
		pt   string
		cold bool
		ret  uint32
		err  string
	}{
		{"callee@caller+0x9", false, 0xe, ""},
		{"other@caller+0x18", false, 0x1d, ""},
		{"callee@caller+0x12", false, 0, "also a branch target"},
		{"callee@caller+0x1d", false, 0, "tail jump"},
		{"other@caller+0x9", false, 0, "calls callee, not other"},
		{"callee@caller+0xe", false, 0, "not a call site"},
		{"callee@caller+0x9", true, 0, "also reached from caller.cold"},
	} {
		pt, err := instrument.ParsePoint(c.pt)
		if err != nil {
			t.Fatal(err)
		}
		ret, err := callSiteFixture(t, c.cold).CallReturn(pt)
		switch {
		case c.err == "" && (err != nil || ret != c.ret):
			t.Errorf("%s (cold %v): %#x, %v; want %#x", c.pt, c.cold, ret, err, c.ret)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s (cold %v): %v, want an error saying %q", c.pt, c.cold, err, c.err)
		}
	}
}

// TestCallSiteSpec: a call-site spec parses, prints back and checks as a
// kprobe pair; other backends refuse it.
func TestCallSiteSpec(t *testing.T) {
	spec, err := instrument.ParseSpec("callee@caller+0x9")
	if err != nil || spec.Kind != instrument.Timer || spec.Callee != "callee" || spec.Func != "caller" || spec.Offset != 9 || spec.String() != "callee@caller+0x9:timer" {
		t.Fatalf("ParseSpec = %+v, %v", spec, err)
	}
	for _, bad := range []string{"callee@caller", "callee@caller+0x9:entry", "@caller+0x9"} {
		if _, err := instrument.ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) accepted", bad)
		}
	}
	p := callSiteFixture(t, false)
	if err := p.Check("kprobe", spec); err != nil {
		t.Errorf("kprobe refused %s: %v", spec, err)
	}
	if err := p.Check("fentry", spec); err == nil {
		t.Errorf("fentry accepted %s", spec)
	}
}
