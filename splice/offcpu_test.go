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
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/offcpu"
)

// TestOffCPUWindow cuts waits into a window [100, 200] from snapshots at
// its ends, case by case.
func TestOffCPUWindow(t *testing.T) {
	a, b := offcpu.Wait{Stack: 1, Nr: 35}, offcpu.Wait{Stack: 2, Nr: -1}
	last := func(at, end uint64, w offcpu.Wait) offcpu.Start { return offcpu.Start{At: at, End: end, Wait: w} }
	tot := func(ns uint64) offcpu.Total { return offcpu.Total{Ns: ns, Count: 1} }
	for _, c := range []struct {
		name   string
		s0, s1 OffCPUSnapshot
		want   map[offcpu.Wait]uint64
	}{
		{"began before, ended inside",
			OffCPUSnapshot{At: 100, Last: map[uint32]offcpu.Start{7: last(50, 0, a)}},
			OffCPUSnapshot{At: 200, Last: map[uint32]offcpu.Start{7: last(50, 150, a)}, Totals: map[offcpu.Wait]offcpu.Total{a: tot(100)}},
			map[offcpu.Wait]uint64{a: 50}},
		{"under way throughout",
			OffCPUSnapshot{At: 100, Last: map[uint32]offcpu.Start{7: last(50, 0, a)}},
			OffCPUSnapshot{At: 200, Last: map[uint32]offcpu.Start{7: last(50, 0, a)}},
			map[offcpu.Wait]uint64{a: 100}},
		{"began inside, under way at the end",
			OffCPUSnapshot{At: 100},
			OffCPUSnapshot{At: 200, Last: map[uint32]offcpu.Start{7: last(160, 0, b)}},
			map[offcpu.Wait]uint64{b: 40}},
		{"ended before the window",
			OffCPUSnapshot{At: 100, Last: map[uint32]offcpu.Start{7: last(10, 40, a)}, Totals: map[offcpu.Wait]offcpu.Total{a: tot(30)}},
			OffCPUSnapshot{At: 200, Last: map[uint32]offcpu.Start{7: last(10, 40, a)}, Totals: map[offcpu.Wait]offcpu.Total{a: tot(30)}},
			map[offcpu.Wait]uint64{}},
		{"short waits inside, and one before",
			OffCPUSnapshot{At: 100, Last: map[uint32]offcpu.Start{7: last(10, 40, a)}, Totals: map[offcpu.Wait]offcpu.Total{a: tot(30)}},
			OffCPUSnapshot{At: 200, Last: map[uint32]offcpu.Start{7: last(170, 180, a)}, Totals: map[offcpu.Wait]offcpu.Total{a: tot(60), b: tot(5)}},
			map[offcpu.Wait]uint64{a: 30, b: 5}},
		{"woke and blocked again elsewhere",
			OffCPUSnapshot{At: 100, Last: map[uint32]offcpu.Start{7: last(50, 0, a)}},
			OffCPUSnapshot{At: 200, Last: map[uint32]offcpu.Start{7: last(180, 0, b)}, Totals: map[offcpu.Wait]offcpu.Total{a: tot(100)}},
			map[offcpu.Wait]uint64{a: 50, b: 20}},
		{"ended between the first snapshot's clock and its read of the threads",
			OffCPUSnapshot{At: 100, Last: map[uint32]offcpu.Start{7: last(50, 101, a)}},
			OffCPUSnapshot{At: 200, Last: map[uint32]offcpu.Start{7: last(50, 101, a)}, Totals: map[offcpu.Wait]offcpu.Total{a: tot(51)}},
			map[offcpu.Wait]uint64{a: 1}},
		{"forgotten by the map (LRU) after it ended",
			OffCPUSnapshot{At: 100, Last: map[uint32]offcpu.Start{7: last(50, 0, a)}},
			OffCPUSnapshot{At: 200, Totals: map[offcpu.Wait]offcpu.Total{a: tot(60)}},
			map[offcpu.Wait]uint64{a: 10}},
	} {
		got := OffCPUWindow(&c.s0, &c.s1)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
			continue
		}
		for w, n := range c.want {
			if got[w] != n {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
			}
		}
	}
}

// TestOffCPU: a thread of this process blocked in nanosleep(2) for
// 300 ms is found there, with its syscall, for about that long, and
// nothing is counted for a process outside the target.
func TestOffCPU(t *testing.T) {
	featuretest.Require(t, features.HaveTracepoint())
	o, err := OpenOffCPU(context.Background(), OffCPUOptions{Target: instrument.Target{PIDs: []int{os.Getpid()}}})
	if err != nil {
		t.Fatalf("opening the off-CPU program, which the tracepoint probe says can load: %v", err)
	}
	defer o.Close()
	other, err := OpenOffCPU(context.Background(), OffCPUOptions{Target: instrument.Target{PIDs: []int{1 << 22}}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s0, err := o.Read()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for range 30 {
			ts := syscall.Timespec{Nsec: int64(10 * time.Millisecond)}
			syscall.Nanosleep(&ts, nil)
		}
	}()
	<-done
	s1, err := o.Read()
	if err != nil {
		t.Fatal(err)
	}
	syms, err := callgraph.LiveSymbols()
	if err != nil {
		featuretest.Require(t, err)
	}
	var slept uint64
	for w, ns := range OffCPUWindow(s0, s1) {
		addrs, err := o.Stack(w.Stack)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, a := range addrs {
			names = append(names, syms.Format(a))
		}
		t.Logf("%v in syscall %d: %s", time.Duration(ns), w.Nr, strings.Join(names, " < "))
		if w.Nr == syscall.SYS_NANOSLEEP && strings.Contains(strings.Join(names, " "), "nanosleep") {
			slept += ns
		}
	}
	if d := time.Duration(slept); d < 280*time.Millisecond || d > 2*time.Second {
		t.Errorf("30 nanosleeps of 10ms measured as %v in nanosleep's stacks, want about 300ms", d)
	}
	p, err := other.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Totals) != 0 || len(p.Last) != 0 {
		t.Errorf("a target of no process measured %d waits and %d threads", len(p.Totals), len(p.Last))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); !errors.Is(err, instrument.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}
