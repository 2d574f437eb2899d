//go:build vm

package splice

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// BenchmarkVMCost measures, in one VM run, the cost per hit of every
// instrument kind of every backend on one function that getpid(2) calls
// exactly once, filtered to this process, and of the tracepoint backend's
// timer on the getpid syscall itself. Each round times every instrument
// against the uninstrumented call measured right after it; the median of
// the rounds is reported (b.N rounds, at least 5). TCG distorts absolute
// times: the ratios within one run are what compare, and they are
// reported as metrics beside the ns/hit of each instrument:
//
//	splice-counter/fentry   (target ≤ 1/3)
//	splice-timer/fentry+fexit (target ≤ 1/2)
//
// Run it with `make vmbench`.
func BenchmarkVMCost(b *testing.B) {
	fs := openSession(b, "fentry")
	ks := openSession(b, "kprobe")
	// vmtest.json builds the module for the guest's kernel: a splice
	// backend that does not open here is a failure, not a row left out.
	ss, err := Open(context.Background(), Options{Backend: instrument.Splice, Module: spliceBuild(b, "autoprof_splice.ko"), Image: spliceBuild(b, "vmlinuz"), MaxOverhead: 1})
	if err != nil {
		b.Fatalf("opening the splice backend: %v", err)
	}
	defer ss.Close()
	fn := ""
	for _, c := range []string{"__task_pid_nr_ns", "__x64_sys_getpid"} {
		ok := fs.Check(instrument.Spec{Point: instrument.Point{Func: c}, Kind: instrument.Count}) == nil && ks.Check(instrument.Spec{Point: instrument.Point{Func: c}, Kind: instrument.Count}) == nil &&
			ss.Check(instrument.Spec{Point: instrument.Point{Func: c}, Kind: instrument.Timer}) == nil
		if ok {
			fn = c
			break
		}
	}
	if fn == "" {
		b.Fatal("no function on getpid's path that every backend instruments")
	}
	me := pid(os.Getpid())
	at := func(k instrument.Kind) instrument.Spec {
		return instrument.Spec{Point: instrument.Point{Func: fn}, Kind: k, Target: me}
	}
	type config struct {
		name string
		in   instrument.Instrumenter
		spec instrument.Spec
	}
	configs := []config{
		{"fentry", fs, at(instrument.Count)},
		{"fexit", fs, at(instrument.ExitCount)},
		{"fentry+fexit", fs, at(instrument.Timer)},
		{"kprobe", ks, at(instrument.Count)},
		{"kretprobe", ks, at(instrument.ExitCount)},
		{"kprobe+kretprobe", ks, at(instrument.Timer)},
		{"tracepoint-syscall-timer", fs, timer("__x64_sys_getpid", me)},
		{"splice-counter", ss, at(instrument.Count)},
		{"splice-exit-counter", ss, at(instrument.ExitCount)},
		{"splice-timer", ss, at(instrument.Timer)},
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 40000
	loop := func() time.Duration {
		start := time.Now()
		for i := 0; i < n; i++ {
			syscall.Getpid()
		}
		return time.Since(start) / n
	}
	rounds := max(b.N, 5)
	cost := make([][]time.Duration, len(configs))
	var base []time.Duration
	b.ResetTimer()
	for round := 0; round < rounds; round++ {
		for i, c := range configs {
			in, err := c.in.Insert(context.Background(), c.spec)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			loop() // warm up: the emulator translates the new code
			d := loop()
			in.Close()
			loop()
			bare := loop()
			base = append(base, bare)
			cost[i] = append(cost[i], d-bare)
		}
	}
	b.StopTimer()
	added := map[string]time.Duration{}
	var table strings.Builder
	fmt.Fprintf(&table, "per-hit cost on %s (getpid), median of %d rounds of %d calls against the bare call (%d ns):\n", fn, rounds, n, median(base).Nanoseconds())
	fmt.Fprintf(&table, "%-26s %14s %12s %16s\n", "instrument", "ns/hit added", "spread", "call / bare call")
	bare := median(base)
	for i, c := range configs {
		added[c.name] = median(cost[i])
		lo, hi := slices.Min(cost[i]), slices.Max(cost[i])
		slower := float64(bare+added[c.name]) / float64(max(bare, 1))
		fmt.Fprintf(&table, "%-26s %14d %12s %16.2f\n", c.name, added[c.name].Nanoseconds(), fmt.Sprintf("%d..%d", lo.Nanoseconds(), hi.Nanoseconds()), slower)
		b.ReportMetric(float64(added[c.name].Nanoseconds()), "ns/hit:"+c.name)
		b.ReportMetric(slower, "x-bare:"+c.name)
	}
	ratio := func(a, over string) float64 { return float64(added[a]) / float64(max(added[over], 1)) }
	fmt.Fprintf(&table, "splice counter / fentry = %.3f (target <= 0.333)\n", ratio("splice-counter", "fentry"))
	fmt.Fprintf(&table, "splice timer / fentry+fexit = %.3f (target <= 0.5)\n", ratio("splice-timer", "fentry+fexit"))
	b.ReportMetric(ratio("splice-counter", "fentry"), "splice-counter/fentry")
	b.ReportMetric(ratio("splice-timer", "fentry+fexit"), "splice-timer/fentry+fexit")
	for _, s := range []*Session{fs, ks} {
		if o, err := s.Overhead(); err == nil && o.Runs > 0 {
			fmt.Fprintf(&table, "%s session: BPF run time %.0f ns/run over %d runs\n", s.Backend(), float64(o.RunNs)/float64(o.Runs), o.Runs)
		}
	}
	b.Log("\n" + table.String())
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
