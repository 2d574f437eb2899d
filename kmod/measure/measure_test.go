package measure

import (
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

// load loads a small model. It skips where the probe says the kernel
// cannot load tp_btf programs (never in the test VM), and fails where it
// can and Load fails: a verifier rejection of measure.bpf.c is a failure.
func load(t *testing.T) *Model {
	t.Helper()
	featuretest.Require(t, features.HaveTracepoint())
	m, err := Load(Config{MaxInstruments: 64, MaxContexts: 256, MaxThreads: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestSyscallRoot times pread64 (x86-64 syscall 17) and clock_nanosleep
// (230; the Go runtime sleeps with nanosleep, not this one)
// for this process through the sys_enter/sys_exit handlers: exact call
// counts, and nanosleep's time off the CPU.
func TestSyscallRoot(t *testing.T) {
	m := load(t)
	pid := []uint32{uint32(os.Getpid())}
	for id, nr := range map[uint32]int{1: 17, 2: 230} {
		if err := m.SetInstrument(id, Instrument{Kind: Syscall, PIDs: pid, Cgroup: -1}); err != nil {
			t.Fatal(err)
		}
		if err := m.SetSyscall(nr, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.AttachSyscalls(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 500
	buf := make([]byte, 64)
	for i := 0; i < n; i++ {
		if _, err := syscall.Pread(int(f.Fd()), buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		ts := syscall.NsecToTimespec(int64(5 * time.Millisecond))
		syscall.Syscall6(syscall.SYS_CLOCK_NANOSLEEP, 1, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	}
	ctxs, err := m.Contexts()
	if err != nil {
		t.Fatal(err)
	}
	var top uint32
	for id := range ctxs {
		top = max(top, id)
	}
	stats, err := m.StatsUpTo(top + 1)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]Stats{}
	for id, c := range ctxs {
		if c.Parent != 0 {
			t.Errorf("context %d %+v: syscall roots have no parent", id, c)
		}
		got[c.Inst] = stats[id]
	}
	if got[1].Calls != n {
		t.Errorf("pread64 calls = %d, want %d", got[1].Calls, n)
	}
	if s := got[2]; s.Calls != 5 || s.ExclOffCPUNs < uint64(20*time.Millisecond) || s.ExclOffCPUNs > s.InclNs {
		t.Errorf("clock_nanosleep: %+v, want 5 calls, >= 20ms off the CPU", s)
	}
	if s := got[1]; s.InclOffCPUNs*2 > s.InclNs {
		t.Errorf("pread64 of a proc file: %d of %d ns off the CPU; want mostly on", s.InclOffCPUNs, s.InclNs)
	}
	ms, err := m.Misses()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pread64 %+v clock_nanosleep calls %d incl %d offcpu %d; misses %+v", got[1].Calls, got[2].Calls, got[2].InclNs, got[2].ExclOffCPUNs, ms)
}
