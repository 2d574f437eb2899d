package splice

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/instrument"
)

// abiSyscalls are numbers of the x86-64 syscall ABI, which never change:
// a fixture for kernels whose sys_call_table cannot be read (the host's,
// without CONFIG_KALLSYMS_ALL).
var abiSyscalls = map[string]int{
	"__x64_sys_read": 0, "__x64_sys_write": 1, "__x64_sys_pread64": 17,
	"__x64_sys_nanosleep": 35, "__x64_sys_getpid": 39, "__x64_sys_clock_nanosleep": 230,
}

// openSession opens a session of backend. It skips where the probes say
// the kernel lacks what the session needs (the backend, the tp_btf
// programs of the measurement model, a reader of kernel text), except in
// the test VM, and fails where they say it has it but Open fails. Where the
// kernel's syscall table cannot be read, the ABI fixture stands in.
func openSession(t testing.TB, backend instrument.Backend) *Session {
	t.Helper()
	featuretest.Require(t, features.Backend(string(backend)), features.HaveTracepoint())
	requireLiveText(t)
	opts := Options{Backend: backend}
	if !featuretest.InVM() {
		opts.Syscalls = hostSyscalls()
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("opening a %s session, which the probes say works here: %v", backend, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// requireLiveText skips where neither reader of live kernel text works
// here (and fails in the test VM, where both do).
func requireLiveText(t testing.TB) {
	t.Helper()
	featuretest.RequireAny(t, features.HaveKcore(), features.HaveBPFRead())
}

// openLive opens the running kernel's call graph, where a text reader
// works (see requireLiveText).
func openLive(t testing.TB) *callgraph.Graph {
	t.Helper()
	requireLiveText(t)
	g, err := livetext.OpenGraph()
	if err != nil {
		t.Fatalf("opening the live call graph, whose text reader works here: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// hostSyscalls returns nil where the running kernel's table can be read,
// else the ABI fixture.
func hostSyscalls() *SyscallTable {
	g, err := livetext.OpenGraph()
	if err != nil {
		return nil
	}
	defer g.Close()
	if _, err := ReadSyscallTable(g.Symbols(), g.Text()); err == nil {
		return nil
	}
	return NewSyscallTable(abiSyscalls)
}

// TestSyscallTable reads the running kernel's table where its symbol
// table lists sys_call_table (always in the VM).
func TestSyscallTable(t *testing.T) {
	g := openLive(t)
	tab, err := ReadSyscallTable(g.Symbols(), g.Text())
	if err != nil {
		// Hosts without CONFIG_KALLSYMS_ALL do not list sys_call_table.
		featuretest.Require(t, err)
	}
	s := &bpfSession{sysTable: tab}
	// The x86-64 syscall ABI is stable: these numbers are fixed forever.
	for name, want := range map[string]int{"read": 0, "write": 1, "pread64": 17, "getpid": 39} {
		// Kernels that serve an argument-less syscall of both ABIs with
		// one function name it __ia32_sys_NAME; Number finds it either way.
		nr, ok := s.syscalls().Number("__x64_sys_" + name)
		if !ok || nr != want {
			t.Errorf("%s: number %d, %v; want %d", name, nr, ok, want)
		}
	}
	if s.syscalls().Len() < 300 {
		t.Errorf("only %d syscalls read", s.syscalls().Len())
	}
}

// TestTracepointPread counts exactly n pread64 calls of this process.
func TestTracepointPread(t *testing.T) {
	s := openSession(t, "tracepoint")
	spec := instrument.Spec{Point: instrument.Point{Func: "__x64_sys_pread64"}, Kind: instrument.Timer, Target: instrument.Target{PIDs: []int{os.Getpid()}}}
	in, err := s.Insert(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 1000
	buf := make([]byte, 32)
	for i := 0; i < n; i++ {
		syscall.Pread(int(f.Fd()), buf, 0)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); !errors.Is(err, instrument.ErrClosed) || !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	for i := 0; i < 10; i++ { // withdrawn: no longer counted
		syscall.Pread(int(f.Fd()), buf, 0)
	}
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Contexts) != 1 || r.Contexts[0].Path.String() != "__x64_sys_pread64" || r.Contexts[0].Calls != n {
		t.Fatalf("readings %+v, want one context __x64_sys_pread64 with %d calls", r.Contexts, n)
	}
	c := r.Contexts[0]
	var hist uint64
	for _, h := range c.Hist {
		hist += h
	}
	if hist != n || c.ExclNs != c.InclNs || c.InclNs == 0 {
		t.Errorf("reading %+v: want the histogram to count every call and exclusive = inclusive time", c)
	}
	if r.Misses.Total() != 0 {
		t.Errorf("misses %+v", r.Misses)
	}
}

func TestTracepointRefusals(t *testing.T) {
	s := openSession(t, "tracepoint")
	for _, spec := range []instrument.Spec{
		{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer},
		{Point: instrument.Point{Func: "__x64_sys_read"}, Kind: instrument.Count},
		{Point: instrument.Point{Func: "__x64_sys_no_such_call"}, Kind: instrument.Timer},
		{Point: instrument.Point{Func: "__x64_sys_ni_syscall"}, Kind: instrument.Timer},
	} {
		err := s.Check(spec)
		if !errors.Is(err, instrument.ErrNotSupported) && !errors.Is(err, instrument.ErrUnsafe) && !errors.Is(err, ErrNoFunction) {
			t.Errorf("Check(%s) = %v, want a refusal", spec, err)
		}
	}
}

func TestSessionClose(t *testing.T) {
	s := openSession(t, "tracepoint")
	if _, err := s.Insert(context.Background(), instrument.Spec{Point: instrument.Point{Func: "__x64_sys_getpid"}, Kind: instrument.Timer}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, instrument.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if _, err := s.Read(); !errors.Is(err, instrument.ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
}

// TestSyscallDispatch checks the table read out of x64_sys_call's compare
// tree: against sys_call_table where the kernel lists both (entry by
// entry, by address), else against the fixed x86-64 ABI numbers.
func TestSyscallDispatch(t *testing.T) {
	g := openLive(t)
	syms := g.Symbols()
	if _, err := syms.Func("x64_sys_call"); err != nil {
		// 6.9 added it (1e3ad78334a6); stable kernels before took it
		// later, so an older kernel may have it too.
		featuretest.SkipOnOldKernel(t, "6.9", "x64_sys_call")
		t.Fatal(err)
	}
	fromDispatch, err := readDispatch(syms, g.Text())
	if err != nil {
		t.Fatal(err)
	}
	if tab, ok := syms.Symbol("sys_call_table"); ok && tab.Addr != 0 {
		fromTable, err := readTable(tab, syms, g.Text())
		if err != nil {
			t.Fatal(err)
		}
		addr := func(name string) uint64 {
			s, err := syms.Func(name)
			if err != nil {
				t.Fatal(err)
			}
			return s.Addr
		}
		real := 0
		for nr, name := range fromTable.byNr {
			if strings.HasSuffix(name, "_sys_ni_syscall") {
				continue // a hole: the dispatch's default case
			}
			real++
			got, ok := fromDispatch.Name(nr)
			if !ok || addr(got) != addr(name) {
				t.Errorf("syscall %d: sys_call_table has %s, x64_sys_call gives %q", nr, name, got)
			}
		}
		if fromDispatch.Len() != real {
			t.Errorf("x64_sys_call gives %d syscalls, sys_call_table %d", fromDispatch.Len(), real)
		}
		return
	}
	checked := 0
	for name, want := range abiSyscalls {
		nr, ok := fromDispatch.Number(name)
		if !ok {
			if _, err := syms.Func(name); err == nil {
				t.Errorf("%s exists but x64_sys_call never calls it", name)
			}
			continue
		}
		if nr != want {
			t.Errorf("%s: number %d from x64_sys_call, the ABI says %d", name, nr, want)
		}
		checked++
	}
	if checked < len(abiSyscalls)/2 {
		t.Errorf("only %d of %d ABI syscalls checked", checked, len(abiSyscalls))
	}
}
