package callgraph

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// reachKernel is a small kernel for Reach: inl calls leaf1 and leaf2 and
// has no caller (host_a, which calls both, is where it was inlined);
// part has no caller but its copy part.constprop.0 has one (host_b);
// called has one caller; ksys_pread is called by compat_pread, and
// sys_pread, which calls what it calls, is where it was inlined too
// (other_fn calls the same, but its name says nothing).
func reachKernel(t *testing.T) *Graph {
	t.Helper()
	const base = 0xffffffff81000000
	funcs := []struct {
		name  string
		calls []string
	}{
		{"_stext", nil}, {"leaf1", nil}, {"leaf2", nil},
		{"inl", []string{"leaf1", "leaf2"}},
		{"host_a", []string{"leaf1", "leaf2", "called"}},
		{"host_b", []string{"leaf1", "part.constprop.0"}},
		{"part", []string{"leaf2"}},
		{"part.constprop.0", []string{"leaf2"}},
		{"called", nil},
		{"ksys_pread", []string{"leaf2", "called"}},
		{"compat_pread", []string{"ksys_pread"}},
		{"sys_pread", []string{"leaf2", "called"}},
		{"other_fn", []string{"called", "leaf2"}},
		{"_etext", nil},
	}
	addr := map[string]uint64{}
	var ks strings.Builder
	for i, f := range funcs {
		addr[f.name] = base + uint64(i)*0x20
		fmt.Fprintf(&ks, "%x T %s\n", addr[f.name], f.name)
	}
	syms, err := ParseKallsyms(strings.NewReader(ks.String()))
	if err != nil {
		t.Fatal(err)
	}
	text := &MemText{}
	for _, f := range funcs[:len(funcs)-1] {
		a := newAsm(addr[f.name])
		for _, c := range f.calls {
			a.rel32(addr[c], 0xe8)
		}
		a.op(0xc3)
		text.Add(addr[f.name], a.finish(0x20))
	}
	return NewGraph(syms, text, false)
}

func TestReach(t *testing.T) {
	g := reachKernel(t)
	for fn, want := range map[string]Reach{
		"inl":        {Func: "inl", InlinedInto: []string{"host_a"}},
		"part":       {Func: "part", Copies: []Copy{{Name: "part.constprop.0", Callers: 1}}},
		"called":     {Func: "called", Callers: 4},
		"ksys_pread": {Func: "ksys_pread", Callers: 1, InlinedInto: []string{"sys_pread"}},
		"leaf1":      {Func: "leaf1", Callers: 3},
	} {
		got, err := g.Reach(fn)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Reach(%s) = %+v, want %+v", fn, got, want)
		}
	}
	if _, err := g.Reach("nosuch"); err == nil {
		t.Error("Reach of an unknown function: no error")
	}
}

func TestSameLayerName(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"ksys_pread64", "__x64_sys_pread64", true},
		{"__do_sys_rt_sigreturn", "__ia32_sys_rt_sigreturn", true},
		{"__do_sys_clone", "__do_sys_clone3", false},
		{"__do_sys_sysinfo", "__do_compat_sys_sysinfo", false},
		{"do_perf_trace_kvm_eoi", "do_perf_trace_kvm_exit", false},
	} {
		if got := sameLayerName(c.a, c.b); got != c.want {
			t.Errorf("sameLayerName(%s, %s) = %v", c.a, c.b, got)
		}
	}
}
