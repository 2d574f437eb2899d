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

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time of the calling thread so far.
func threadCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSampler samples this process while it reads /dev/zero in large
// chunks: most kernel samples must fall in the read path.
func TestSampler(t *testing.T) {
	featuretest.Require(t, features.HaveSample())
	s, err := OpenSampler(context.Background(), SamplerOptions{Freq: 999, Target: Target{PIDs: []int{os.Getpid()}}})
	if err != nil {
		t.Fatalf("opening a sampler, which the probe says works here: %v", err)
	}
	defer s.Close()
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	// 400 ms of this thread's CPU time, not of the clock: on a loaded
	// host (under -race, niced, beside TCG guests) 400 ms of wall time
	// gave 38 samples. The sampler's clock counts the time on the CPU.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU(t)
	for end := time.Now().Add(time.Minute); threadCPU(t)-cpu0 < 400*time.Millisecond && time.Now().Before(end); {
		syscall.Read(int(f.Fd()), buf)
	}
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
	t.Logf("%d kernel samples in %d stacks, %d in a read path, %d user, %d lost", p.Total(), len(p.Stacks), inRead, p.User, p.Lost)
	if p.Total() < 50 || inRead*2 < p.Total() {
		t.Errorf("want >= 50 kernel samples, most in the read path")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}
