package splice

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/instrument"
	"golang.org/x/sys/unix"
)

// threadSystemCPU is the time the calling thread has spent in the
// kernel so far.
func threadSystemCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Stime.Nano())
}

// readZeroInKernel reads /dev/zero in large chunks on the calling thread
// (locked to it by the caller) until the thread has spent d in the kernel,
// or a minute has gone, and returns the kernel time it spent. The time in
// the kernel, not of the clock nor of the thread's CPU: on a loaded host
// (under -race, niced, beside TCG guests) 400 ms of wall time gave 38
// samples, and on CI 400 ms of CPU time gave 43 kernel samples beside 368
// in user mode. The kernel samples are what the tests are about.
func readZeroInKernel(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	sys0 := threadSystemCPU(t)
	for end := time.Now().Add(time.Minute); threadSystemCPU(t)-sys0 < d && time.Now().Before(end); {
		syscall.Read(int(f.Fd()), buf)
	}
	return threadSystemCPU(t) - sys0
}

// TestSampler samples this process while it reads /dev/zero in large
// chunks: most kernel samples must fall in the read path.
func TestSampler(t *testing.T) {
	featuretest.Require(t, features.HaveSample())
	s, err := OpenSampler(context.Background(), SamplerOptions{Freq: 999, Target: instrument.Target{PIDs: []int{os.Getpid()}}})
	if err != nil {
		t.Fatalf("opening a sampler, which the probe says works here: %v", err)
	}
	defer s.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sys := readZeroInKernel(t, 400*time.Millisecond)
	p, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	syms, err := callgraph.LiveSymbols()
	if err != nil {
		featuretest.Require(t, err)
	}
	var inRead uint64
	for _, st := range p.Stacks {
		for _, a := range st.Addrs {
			if strings.Contains(syms.Format(a), "read") {
				inRead += st.Count
				break
			}
		}
	}
	t.Logf("%d kernel samples in %d stacks, %d in a read path, %d user, %d lost, over %v of the thread's system time", p.Total(), len(p.Stacks), inRead, p.User, p.Lost, sys)
	if p.Total() < 50 || inRead*2 < p.Total() {
		t.Errorf("want >= 50 kernel samples, most in the read path")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, instrument.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

// TestSamplerPause: a paused sampler takes no sample however busy its
// target, takes them again once resumed, and tells the kernel time its
// program took while the kernel keeps BPF run-time statistics.
func TestSamplerPause(t *testing.T) {
	featuretest.Require(t, features.HaveSample())
	stats, err := ebpf.EnableStats(uint32(bpfStatsRunTime))
	if err != nil {
		t.Fatalf("enabling BPF run-time statistics, which the sampler's cost is read from: %v", err)
	}
	defer stats.Close()
	s, err := OpenSampler(context.Background(), SamplerOptions{Freq: 999, Target: instrument.Target{PIDs: []int{os.Getpid()}}})
	if err != nil {
		t.Fatalf("opening a sampler, which the probe says works here: %v", err)
	}
	defer s.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	busy := func() { readZeroInKernel(t, 200*time.Millisecond) }
	samples := func() uint64 {
		p, err := s.Read()
		if err != nil {
			t.Fatal(err)
		}
		return p.Total() + p.User + p.Lost
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	n0 := samples()
	rt0, err := s.RunTime()
	if err != nil {
		t.Fatal(err)
	}
	busy()
	n1 := samples()
	rt1, _ := s.RunTime()
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	busy()
	n2 := samples()
	rt2, _ := s.RunTime()
	t.Logf("paused: %d samples, %v of the program's run time; resumed: %d samples, %v", n1-n0, rt1-rt0, n2-n1, rt2-rt1)
	if n1 != n0 || rt1 != rt0 {
		t.Errorf("paused, the sampler took %d samples in %v", n1-n0, rt1-rt0)
	}
	if n2-n1 < 50 {
		t.Errorf("resumed, the sampler took %d samples over 200 ms of the thread's system time, want >= 50", n2-n1)
	}
	if rt2 <= rt1 {
		t.Errorf("resumed, the program's run time did not grow (%v, then %v) with statistics on", rt1, rt2)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(); !errors.Is(err, instrument.ErrClosed) {
		t.Errorf("Pause after Close: %v", err)
	}
	if _, err := s.RunTime(); !errors.Is(err, instrument.ErrClosed) {
		t.Errorf("RunTime after Close: %v", err)
	}
}
