package splice

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice/patch"
)

// A kernel in miniature: its kallsyms, the code of vfs_read, its kprobe
// blacklist and its traceable functions.
const fixtureKallsyms = `ffffffff80fff000 T startup_64
ffffffff81000000 T _stext
ffffffff81001000 T vfs_read
ffffffff81001100 T rw_verify_area
ffffffff81001200 T migrate_disable
ffffffff81001300 t notraced
ffffffff81001400 t __do_sys_read
ffffffff81002000 T __noinstr_text_start
ffffffff81002000 T exc_page_fault
ffffffff81002100 T __noinstr_text_end
ffffffff81002100 T __entry_text_start
ffffffff81002100 T entry_SYSCALL_64
ffffffff81002200 T __entry_text_end
ffffffff81002200 T blacklisted_fn
ffffffff81002280 t blacklisted_fn.part.0
ffffffff81002300 T __x64_sys_read
ffffffff81002380 T _raw_spin_unlock
ffffffff810023a0 t alloc_htab_elem
ffffffff810023c0 T bpf_map_update_elem
ffffffff81002400 T _etext
`

// vfs_read: endbr64; nop5 (ftrace); push %rbp; mov %rsp,%rbp; call *%rax;
// ret; int3 padding.
var fixtureCode = []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x55, 0x48, 0x89, 0xe5, 0xff, 0xd0, 0xc3}

const fixtureBlacklist = "0xffffffff81002200-0xffffffff81002280\tblacklisted_fn\n"
const fixtureTraceable = "vfs_read\nrw_verify_area\nmigrate_disable\nexc_page_fault\nblacklisted_fn\nblacklisted_fn.part.0\n_raw_spin_unlock\nalloc_htab_elem\nbpf_map_update_elem\n"

func fixturePlacement(t *testing.T) *Placement {
	t.Helper()
	syms, err := callgraph.ParseKallsyms(strings.NewReader(fixtureKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	decode := func(sym callgraph.Symbol) (*callgraph.Function, error) {
		code := bytes.Repeat([]byte{0xcc}, int(sym.Size))
		if sym.Name == "vfs_read" {
			copy(code, fixtureCode)
		}
		return callgraph.Decode(sym, code, syms)
	}
	return NewPlacement(syms, decode, PlacementSources{
		Blacklist: strings.NewReader(fixtureBlacklist),
		Traceable: strings.NewReader(fixtureTraceable),
		Syscalls:  NewSyscallTable(map[string]int{"__x64_sys_read": 0}),
	})
}

func TestPlacementRules(t *testing.T) {
	p := fixturePlacement(t)
	ok := func(backend instrument.Backend, s string) {
		t.Helper()
		spec, err := instrument.ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Check(backend, spec); err != nil {
			t.Errorf("%s on %s refused: %v", s, backend, err)
		}
	}
	refused := func(backend instrument.Backend, s string, sentinel error, why string) {
		t.Helper()
		spec, err := instrument.ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Check(backend, spec)
		if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), why) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s on %s: %v, want a one-line %v saying %q", s, backend, err, sentinel, why)
		}
	}
	ok("fentry", "vfs_read:timer")
	ok("kprobe", "vfs_read")
	ok("kprobe", "vfs_read+0x9")
	ok("kprobe", "vfs_read+0xd:targets")
	ok("tracepoint", "__x64_sys_read:timer")
	refused("kprobe", "vfs_read+0xb", instrument.ErrUnsafe, "not an instruction boundary")
	refused("kprobe", "vfs_read+0x5", instrument.ErrUnsafe, "not an instruction boundary") // inside the ftrace nop
	refused("kprobe", "vfs_read+0x10", instrument.ErrUnsafe, "padding")
	refused("kprobe", "vfs_read+0x200", instrument.ErrUnsafe, "past the end")
	refused("kprobe", "vfs_read+0x9:targets", instrument.ErrUnsafe, "not a call site")
	refused("kprobe", "exc_page_fault", instrument.ErrUnsafe, ".noinstr.text")
	refused("fentry", "exc_page_fault", instrument.ErrUnsafe, ".noinstr.text")
	refused("kprobe", "entry_SYSCALL_64", instrument.ErrUnsafe, ".entry.text")
	refused("kprobe", "startup_64", instrument.ErrUnsafe, "not in kernel text") // below _stext
	refused("kprobe", "notraced", instrument.ErrUnsafe, "available_filter_functions")
	refused("kprobe", "blacklisted_fn", instrument.ErrUnsafe, "kprobe blacklist")
	// A clone goes with its base (within_kprobe_blacklist; nmi_handle.part.0 on 6.12).
	refused("kprobe", "blacklisted_fn.part.0", instrument.ErrUnsafe, "clone of blacklisted_fn")
	refused("fentry", "migrate_disable", instrument.ErrUnsafe, "deny list")
	refused("kprobe", "migrate_disable", instrument.ErrUnsafe, "BPF trampolines of autoprof's own instruments")
	// Spin locks and BPF's own code run inside autoprof's BPF programs
	// (6.1: an fentry timer on _raw_spin_unlock deadlocked a hash map's
	// free list).
	for _, fn := range []string{"_raw_spin_unlock", "alloc_htab_elem", "bpf_map_update_elem"} {
		refused("fentry", fn+":timer", instrument.ErrUnsafe, "runs inside autoprof's own BPF programs")
		refused("kprobe", fn, instrument.ErrUnsafe, "runs inside autoprof's own BPF programs")
	}
	refused("fentry", "notraced", instrument.ErrUnsafe, "available_filter_functions")
	refused("fentry", "vfs_read+0x9", instrument.ErrNotSupported, "use kprobe")
	refused("kprobe", "no_such_function", ErrNoFunction, "no such kernel function")
	refused("tracepoint", "no_such_function", ErrNoFunction, "no such kernel function")
	refused("tracepoint", "vfs_read:timer", instrument.ErrNotSupported, "not a syscall function (__x64_sys_*): the tracepoint backend times whole syscalls only (--backend fentry or kprobe times functions)")
	refused("tracepoint", "__x64_sys_read:entry", instrument.ErrNotSupported, "whole syscalls")
	refused("kprobe", "vfs_read+0x9:targets", instrument.ErrUnsafe, "")
	refused("bogus", "vfs_read", instrument.ErrNotSupported, "unknown backend")
}

// TestPlacementUnreadableLists: without the blacklist or the list of
// traceable functions, every kprobe or fentry is refused.
func TestPlacementUnreadableLists(t *testing.T) {
	syms, err := callgraph.ParseKallsyms(strings.NewReader(fixtureKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlacement(syms, nil, PlacementSources{BlacklistErr: os.ErrPermission})
	for _, b := range []instrument.Backend{instrument.Kprobe, instrument.Fentry} {
		if err := p.Check(b, instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Count}); !errors.Is(err, instrument.ErrNotSupported) {
			t.Errorf("%s without its list: %v", b, err)
		}
	}
}

func TestParseKprobeBlacklist(t *testing.T) {
	rs, err := parseKprobeBlacklist(strings.NewReader("0x20-0x30\tb\n\n0x10-0x18 a [mod]\n"))
	if err != nil || len(rs) != 2 || rs[0].Name != "a" || rs[1].End != 0x30 {
		t.Fatalf("%+v %v", rs, err)
	}
	for addr, want := range map[uint64]bool{0x10: true, 0x17: true, 0x18: false, 0x25: true, 0x30: false, 0x5: false} {
		if _, got := rangeHolding(rs, addr); got != want {
			t.Errorf("%#x: held %v, want %v", addr, got, want)
		}
	}
	if _, err := parseKprobeBlacklist(strings.NewReader("zz\n")); err == nil {
		t.Error("a bad line was accepted")
	}
}

func TestParseFilterFunctions(t *testing.T) {
	m, err := parseFilterFunctions(strings.NewReader("vfs_read\nfoo [mod]\nffffffff81000000 bar\n"))
	if err != nil || !m["vfs_read"] || !m["foo"] || !m["bar"] || len(m) != 3 {
		t.Fatalf("%v %v", m, err)
	}
}

// TestLiveLists parses the real files where they can be read (capped).
func TestLiveLists(t *testing.T) {
	for path, parse := range map[string]func(*os.File) error{
		"/sys/kernel/debug/kprobes/blacklist":            func(f *os.File) error { _, err := parseKprobeBlacklist(f); return err },
		"/sys/kernel/tracing/available_filter_functions": func(f *os.File) error { _, err := parseFilterFunctions(f); return err },
	} {
		f, err := os.Open(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		if err := parse(f); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		f.Close()
	}
}

// TestPlacementNoFunctionBackend: where neither fentry nor kprobe works, a
// function the tracepoint fallback cannot time is refused with caps'
// reasons for both, so that probe says why only syscalls can be timed.
func TestPlacementNoFunctionBackend(t *testing.T) {
	syms, err := callgraph.ParseKallsyms(strings.NewReader(fixtureKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	why := errors.New("fentry unavailable: lockdown; kprobe unavailable: CONFIG_KPROBES is not set")
	p := NewPlacement(syms, nil, PlacementSources{Syscalls: NewSyscallTable(map[string]int{"__x64_sys_read": 0}), NoFunctions: why})
	err = p.Check("tracepoint", instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer})
	if !errors.Is(err, instrument.ErrNotSupported) || !errors.Is(err, why) || !strings.Contains(err.Error(), "only syscalls can be timed here") {
		t.Errorf("vfs_read:timer: %v", err)
	}
	if err := p.Check("tracepoint", instrument.Spec{Point: instrument.Point{Func: "__x64_sys_read"}, Kind: instrument.Timer}); err != nil {
		t.Errorf("__x64_sys_read:timer: %v", err)
	}
}

func TestReachWarning(t *testing.T) {
	spec := instrument.Spec{Point: instrument.Point{Func: "ksys_pread64"}, Kind: instrument.Count}
	for _, c := range []struct {
		r    callgraph.Reach
		want string
	}{
		{callgraph.Reach{Func: "ksys_pread64", Callers: 2}, ""},
		{callgraph.Reach{Func: "ksys_pread64", Callers: 3, InlinedInto: []string{"__x64_sys_pread64"}}, "ksys_pread64:entry: the compiler also inlined ksys_pread64, probably into __x64_sys_pread64 (each calls every function ksys_pread64 calls, and not ksys_pread64): only the calls of its 3 call sites are counted"},
		{callgraph.Reach{Func: "ksys_pread64", InlinedInto: []string{"__x64_sys_pread64"}}, "ksys_pread64:entry: no call in the kernel's code reaches ksys_pread64: the compiler inlined it where it is called, probably into __x64_sys_pread64"},
		{callgraph.Reach{Func: "ksys_pread64", Copies: []callgraph.Copy{{Name: "ksys_pread64.constprop.0", Callers: 3}}}, "copies ksys_pread64.constprop.0 (3 call sites)"},
		{callgraph.Reach{Func: "ksys_pread64"}, "called only through a pointer"},
	} {
		got := ReachWarning(spec, c.r)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
	if w := ReachWarning(instrument.Spec{Point: instrument.Point{Func: "__x64_sys_read"}, Kind: instrument.Timer}, callgraph.Reach{Func: "__x64_sys_read"}); w != "" {
		t.Errorf("a syscall (called through the syscall table): %q", w)
	}
}

// TestTailCalleeRules: the returns of a function a timed one tail-calls
// take the rules of a timed function, but for a syscall's body
// (__do_sys_*), notrace only because the kernel's inline implies notrace
// (6.1's and 6.12's __x64_sys_newstat tail-call __do_sys_newstat).
func TestTailCalleeRules(t *testing.T) {
	p := fixturePlacement(t)
	for _, c := range []struct {
		timed, fn, refusal string
	}{
		{"vfs_read", "rw_verify_area", ""},
		{"__x64_sys_read", "__do_sys_read", ""},
		{"__ia32_sys_read", "__do_sys_read", ""},
		// The body of another syscall, or one reached from anything but
		// its own wrapper, is notrace like any other function.
		{"__x64_sys_write", "__do_sys_read", "not in available_filter_functions"},
		{"ksys_read", "__do_sys_read", "not in available_filter_functions"},
		{"vfs_read", "notraced", "not in available_filter_functions"},
		{"vfs_read", "migrate_disable", "BPF trampolines"},
		{"vfs_read", "blacklisted_fn", "kprobe blacklist"},
	} {
		sym, err := p.syms.Func(c.fn)
		if err != nil {
			t.Fatal(err)
		}
		err = p.checkTailCallee(c.timed, instrument.Spec{Point: instrument.Point{Func: c.fn}, Kind: instrument.ExitCount}, sym)
		switch {
		case c.refusal == "" && err != nil:
			t.Errorf("%s tail-calling %s: %v", c.timed, c.fn, err)
		case c.refusal != "" && (err == nil || !errors.Is(err, instrument.ErrUnsafe) || !strings.Contains(err.Error(), c.refusal)):
			t.Errorf("%s tail-calling %s: %v, want a refusal saying %q", c.timed, c.fn, err, c.refusal)
		}
	}
}

// TestPlacementEmulator: on QEMU's emulator a kprobe before the slab
// fast path's cmpxchg16b, or a timer whose kretprobe would sit at a
// return in its shadow, is refused, with the reason; on a real CPU, and
// an entry counter at the function's entry, it is not.
func TestPlacementEmulator(t *testing.T) {
	syms, err := callgraph.ParseKallsyms(strings.NewReader(fixtureKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	// vfs_read here: nop5 (ftrace); test %rax,%rax; jne .+0; mov
	// %rax,%rbx; add $1,%rcx; cmpxchg16b %gs:(%rsi); ret.
	code := []byte{0x0f, 0x1f, 0x44, 0x00, 0x00, 0x48, 0x85, 0xc0, 0x75, 0x00, 0x48, 0x89, 0xc3,
		0x48, 0x83, 0xc1, 0x01, 0x65, 0x48, 0x0f, 0xc7, 0x0e, 0xc3}
	decode := func(sym callgraph.Symbol) (*callgraph.Function, error) {
		c := bytes.Repeat([]byte{0xcc}, int(sym.Size))
		if sym.Name == "vfs_read" {
			copy(c, code)
		}
		return callgraph.Decode(sym, c, syms)
	}
	for _, tcg := range []bool{false, true} {
		p := NewPlacement(syms, decode, PlacementSources{
			Blacklist: strings.NewReader(""),
			Traceable: strings.NewReader(fixtureTraceable),
			TCG:       tcg,
		})
		for _, c := range []struct {
			spec    string
			refused bool
		}{{"vfs_read:entry", false}, {"vfs_read+0xa:entry", tcg}, {"vfs_read+0x16:entry", tcg},
			{"vfs_read:timer", tcg}, // its kretprobe at the ret, in the cmpxchg16b's shadow
		} {
			spec, err := instrument.ParseSpec(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check("kprobe", spec)
			if refused := err != nil; refused != c.refused {
				t.Errorf("TCG %v: %s: %v, want refused %v", tcg, c.spec, err, c.refused)
			}
			if err != nil && (!errors.Is(err, instrument.ErrUnsafe) || !strings.Contains(err.Error(), "cmpxchg16b at +0x11")) {
				t.Errorf("TCG %v: %s: %v, want an unsafe refusal naming the cmpxchg16b", tcg, c.spec, err)
			}
		}
	}
}

// TestSpliceWindowEmulator: on QEMU's emulator, the splice backend refuses
// a block counter before the slab fast path's cmpxchg16b even where its
// flags are dead and its stub runs no popfq: the site goes in and out
// through an int3, whose iretq loads RFLAGS whole (the full soak's oops).
// On a real CPU the same window is taken.
func TestSpliceWindowEmulator(t *testing.T) {
	syms, err := callgraph.ParseKallsyms(strings.NewReader(fixtureKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	// vfs_read as in TestPlacementEmulator: the window at +0xa (mov, add)
	// ends at the cmpxchg16b at +0x11; the add makes its flags dead.
	code := []byte{0x0f, 0x1f, 0x44, 0x00, 0x00, 0x48, 0x85, 0xc0, 0x75, 0x00, 0x48, 0x89, 0xc3,
		0x48, 0x83, 0xc1, 0x01, 0x65, 0x48, 0x0f, 0xc7, 0x0e, 0xc3}
	sym, err := syms.Func("vfs_read")
	if err != nil {
		t.Fatal(err)
	}
	text := &callgraph.MemText{}
	body := bytes.Repeat([]byte{0xcc}, int(sym.Size))
	copy(body, code)
	text.Add(sym.Addr, body)
	g := callgraph.NewGraph(syms, text, false)
	for _, tcg := range []bool{false, true} {
		p := NewPlacement(syms, g.FunctionOf, PlacementSources{
			Blacklist: strings.NewReader(""),
			Traceable: strings.NewReader(fixtureTraceable),
			TCG:       tcg,
		})
		c := &spliceCatalogue{graph: g, place: p, tables: &patch.Tables{}, windows: map[catalogueKey]catalogueEntry{}}
		spec := instrument.Spec{Point: instrument.Point{Func: "vfs_read", Offset: 0xa}, Kind: instrument.Count}
		w, err := c.window(spec)
		switch {
		case !tcg && err != nil:
			t.Errorf("real CPU: %s: %v, want its window", spec, err)
		case !tcg && w.FlagsLive:
			t.Errorf("real CPU: %s: flags live, want dead (the add overwrites them): the test does not test dead flags", spec)
		case tcg && (!errors.Is(err, instrument.ErrUnsafe) || !strings.Contains(err.Error(), "cmpxchg16b at +0x11")):
			t.Errorf("emulator: %s: %v, want an unsafe refusal naming the cmpxchg16b", spec, err)
		}
	}
}

// TestShapeSplice: the splice backend's shape rules are checkShape's, as
// every backend's are: no indirect-call targets, no call sites, no cgroup
// filter, whole functions for timers; a block counter and a timer pass.
func TestShapeSplice(t *testing.T) {
	for spec, want := range map[string]string{
		"vfs_read+0x10:targets":        "does not capture indirect call targets",
		"rw_verify_area@vfs_read+0x30": "cannot time a call site",
		"vfs_read+0x10:entry":          "",
		"vfs_read:timer":               "",
	} {
		s, err := instrument.ParseSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		err = checkShape(instrument.Splice, s)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", spec, err, want)
		}
	}
	s := instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer, Target: instrument.Target{Cgroup: "/sys/fs/cgroup/x"}}
	if err := checkShape(instrument.Splice, s); err == nil || !strings.Contains(err.Error(), "not by cgroup") {
		t.Errorf("a cgroup target: %v", err)
	}
	s = instrument.Spec{Point: instrument.Point{Func: "vfs_read", Offset: 0x10}, Kind: instrument.Timer}
	if err := checkShape(instrument.Splice, s); err == nil || !strings.Contains(err.Error(), "needs a function entry") {
		t.Errorf("a timer at an offset: %v", err)
	}
}
