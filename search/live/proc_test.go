package live

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/stacks"
	"github.com/autoprof/autoprof/splice"
)

func TestParseStack(t *testing.T) {
	in := `[<0>] hrtimer_nanosleep+0x74/0xf0
[<0>] common_nsleep+0x30/0x60
[<0>] __x64_sys_clock_nanosleep+0xce/0x140
[<0>] do_syscall_64+0x71/0x280
[<0>] entry_SYSCALL_64_after_hwframe+0x76/0x7e
`
	got, err := parseStack(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_clock_nanosleep", "common_nsleep", "hrtimer_nanosleep"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseState(t *testing.T) {
	for line, want := range map[string]byte{
		"123 (sleep) S 1 123 123 0 -1":      'S',
		"7 (a) b (c)) D 1 2 3":              'D',
		"99 (kworker/0:1-events) R 2 0 0 0": 'R',
	} {
		got, err := parseState([]byte(line))
		if err != nil || got != want {
			t.Errorf("parseState(%q) = %c, %v; want %c", line, got, err, want)
		}
	}
	if _, err := parseState([]byte("garbage")); err == nil {
		t.Error("parseState accepted a line without a command")
	}
}

func TestParseIDs(t *testing.T) {
	got, err := parseIDs(strings.NewReader("12\n345\n\n6\n"))
	if err != nil || !reflect.DeepEqual(got, []int{12, 345, 6}) {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := parseIDs(strings.NewReader("12\nx\n")); err == nil {
		t.Error("parseIDs accepted x")
	}
}

// TestBlockedStack blocks a thread of this process in read(2) on a pipe
// and finds it, blocked in pipe_read (anon_pipe_read from 6.16), among the process's blocked tasks.
// (Whether __x64_sys_read is on the stack depends on whether the kernel
// tail-calls ksys_read from it.)
func TestBlockedStack(t *testing.T) {
	if _, err := os.ReadFile("/proc/thread-self/stack"); err != nil {
		featuretest.Require(t, fmt.Errorf("kernel stacks of tasks cannot be read here: %w", err))
	}
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	done := make(chan struct{})
	go func() {
		var b [1]byte
		syscall.Read(p[0], b[:])
		close(done)
	}()
	target := instrument.Target{PIDs: []int{os.Getpid()}}
	if n, err := (Population{Target: target}).Threads(); err != nil || n < 2 {
		t.Fatalf("Threads() = %d, %v", n, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var found []string
	for found == nil && time.Now().Before(deadline) {
		ts, err := tasks(target)
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range ts {
			st := taskStack(dir)
			if slices.ContainsFunc(st, func(f string) bool { return strings.HasSuffix(f, "pipe_read") }) {
				found = st
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Write(p[1], []byte{1})
	<-done
	if found == nil {
		t.Fatal("no thread seen blocked in pipe_read in /proc/PID/task/TID/stack")
	}
	t.Logf("blocked stack: %v", found)
}

// TestRunnableScale: a thread that ran 3 s and waited 1 s on the run
// queue makes each on-CPU sample stand for 4/3 of its run time.
func TestRunnableScale(t *testing.T) {
	if got := runnableScale([2]float64{10e9, 5e9}, [2]float64{13e9, 6e9}); got != 4.0/3 {
		t.Errorf("scale %g, want 4/3", got)
	}
	if got := runnableScale([2]float64{}, [2]float64{}); got != 1 {
		t.Errorf("scale %g where nothing ran, want 1", got)
	}
}

// TestOnCPUWeight: samples share out the target's CPU and run-queue time
// as schedstat counts it, whatever the rate the sampling timer achieved;
// never less than the nominal 1/Freq s (times the run-queue scale).
func TestOnCPUWeight(t *testing.T) {
	s := &Sampler{freq: 100} // 10 ms a sample
	prof := func(kernel, user, lost uint64) *splice.Profile {
		return &splice.Profile{Stacks: []stacks.Stack{{Count: kernel}}, User: user, Lost: lost}
	}
	p0 := prof(10, 5, 0)
	// 3 s on the CPU, 1 s waiting; 100 samples where 300 were due: each
	// stands for 40 ms.
	p1 := prof(80, 30, 5)
	if got := s.onCPUWeight(p0, p1, [2]float64{10e9, 5e9}, [2]float64{13e9, 6e9}); got != 40e6 {
		t.Errorf("weight %g ns, want 40 ms (4 s over 100 samples)", got)
	}
	// 400 samples (threads that exited took their schedstat with them):
	// the nominal 10 ms times 4/3.
	p1 = prof(310, 100, 5)
	if got, want := s.onCPUWeight(p0, p1, [2]float64{10e9, 5e9}, [2]float64{13e9, 6e9}), 4.0/3*10e6; math.Abs(got-want) > 1 {
		t.Errorf("weight %g ns, want %g (nominal)", got, want)
	}
	// No schedstat (a whole-system target): nominal.
	if got := s.onCPUWeight(p0, p1, [2]float64{}, [2]float64{}); got != 10e6 {
		t.Errorf("weight %g ns without schedstat, want 10 ms", got)
	}
}
