package callgraph

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

func fixtureGraph(t *testing.T, live bool) *Graph {
	t.Helper()
	syms, text := fixture(t)
	return NewGraph(syms, text, live)
}

func TestGraphJumpTable(t *testing.T) {
	g := fixtureGraph(t, false)
	f, err := g.Function("subject")
	if err != nil {
		t.Fatal(err)
	}
	jt := f.JumpTables[0]
	if !slices.Equal(jt.Entries, []uint32{off("entry1"), off("entry2")}) {
		t.Fatalf("table entries %v, want entry1 and entry2 (the zero entry ends the table)", jt.Entries)
	}
	if !slices.Equal(f.Targets, []uint32{off("pop"), off("entry1"), off("entry2")}) {
		t.Errorf("Targets %v", f.Targets)
	}
	for _, b := range f.Blocks {
		if b.Start == off("tableload") && (b.Leaves || !slices.Equal(b.Succs, jt.Entries)) {
			t.Errorf("table jump block %+v, want the entries as successors", b)
		}
	}
	if !f.IsTarget(off("entry2")) || f.IsTarget(off("entry2")+1) {
		t.Error("IsTarget disagrees with the table")
	}
}

func TestGraphStaticCalls(t *testing.T) {
	for _, live := range []bool{true, false} {
		f, err := fixtureGraph(t, live).Function("subject")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range f.Sites {
			if s.Kind == StaticCall {
				got = append(got, fmt.Sprintf("%s:%v:%q", s.Via, s.Resolved, s.Target))
			}
		}
		want := []string{`__SCT__fx_hook:false:""`, `__SCT__fx_null:false:""`}
		if live {
			want = []string{`__SCT__fx_hook:true:"target_fn"`, `__SCT__fx_null:true:""`}
		}
		if !slices.Equal(got, want) {
			t.Errorf("live %v: static calls %v, want %v", live, got, want)
		}
	}
}

func edgeNames(edges []Edge) []string {
	var out []string
	for _, e := range edges {
		out = append(out, fmt.Sprintf("%s+%#x", e.From.Name, e.Off))
	}
	sort.Strings(out)
	return out
}

func TestGraphCallers(t *testing.T) {
	sub := func(label string) string { return fmt.Sprintf("subject+%#x", off(label)) }
	for _, c := range []struct {
		live   bool
		callee string
		want   []string
	}{
		// The trampoline's own jmp is a tail call of its current target.
		{true, "target_fn", []string{sub("callthunk"), sub("static"), sub("condtail"), sub("tail"), "__SCT__fx_hook+0x0"}},
		{false, "target_fn", []string{sub("callthunk"), sub("condtail"), sub("tail"), "__SCT__fx_hook+0x0"}},
		{false, "callee", []string{sub("call"), sub("callmid")}},
		{false, "subject", nil},
	} {
		edges, err := fixtureGraph(t, c.live).Callers(c.callee)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(c.want)
		sort.Strings(want)
		if got := edgeNames(edges); !slices.Equal(got, want) {
			t.Errorf("live %v: callers of %s = %v, want %v", c.live, c.callee, got, want)
		}
	}
}

func TestGraphCalleesAndReachable(t *testing.T) {
	g := fixtureGraph(t, true)
	edges, err := g.Callees("subject")
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 9 || edges[0].From.Name != "subject" {
		t.Errorf("Callees(subject): %d edges from %s", len(edges), edges[0].From.Name)
	}
	reached, err := g.Reachable("subject", 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range reached {
		got = append(got, fmt.Sprintf("%s@%d", r.Func.Name, r.Depth))
	}
	if !slices.Equal(got, []string{"callee@1", "target_fn@1"}) {
		t.Errorf("Reachable(subject, 3) = %v", got)
	}
}

func TestGraphErrors(t *testing.T) {
	g := fixtureGraph(t, false)
	if _, err := g.Function("nosuch"); !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("unknown function: %v", err)
	}
	if _, err := g.Callers("nosuch"); !errors.Is(err, ErrUnknownFunction) {
		t.Errorf("callers of an unknown function: %v", err)
	}
	syms, _ := fixture(t)
	broken := NewGraph(syms, &MemText{}, false)
	_, err := broken.Function("subject")
	if err == nil || err.Error() != "reading subject: reading kernel memory at 0xffffffff81000100 (128 bytes): not in memory" {
		t.Errorf("unreadable text: %v", err)
	}
	if _, err := broken.Callers("callee"); err == nil || !strings.HasPrefix(err.Error(), "building the callers index: reading ") {
		t.Errorf("callers over unreadable text: %v", err)
	}
}

// TestGraphConcurrent exercises the caches from many goroutines (run it
// with -race).
func TestGraphConcurrent(t *testing.T) {
	g := fixtureGraph(t, true)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, name := range []string{"subject", "callee", "target_fn", "subject.cold"} {
				if _, err := g.Function(name); err != nil {
					t.Error(err)
				}
				if _, err := g.Callers(name); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

// TestLiveSymbolsKept: the running kernel's symbol table is parsed once
// while its modules stay the same, and the table kept is the one a new
// parse gives.
func TestLiveSymbolsKept(t *testing.T) {
	if _, err := os.Stat("/proc/kallsyms"); err != nil {
		t.Skipf("no /proc/kallsyms: %v", err)
	}
	a, err := LiveSymbols()
	if err != nil {
		t.Fatal(err)
	}
	b, err := LiveSymbols()
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("the symbol table was parsed again, the modules unchanged")
	}
	fresh, err := parseLiveSymbols()
	if err != nil {
		t.Fatal(err)
	}
	// BPF programs and trampolines come and go without a module (other
	// tests load them meanwhile); the rest of the table is the kernel's.
	steady := func(s *Symbols) (n int) {
		for _, sym := range s.all {
			if !isPseudoModule(sym.Module) {
				n++
			}
		}
		return n
	}
	if steady(fresh) != steady(a) {
		t.Errorf("kept table %d symbols outside the pseudo-modules, a new parse %d", steady(a), steady(fresh))
	}
}
