package live

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/search"
)

// BenchmarkHostHunt reports what a hunt costs a syscall-bound workload
// (4 KiB preads of /dev/zero) on this machine's kernel, with whatever it
// allows (on the locked-down development and CI machines: the syscall
// roots by tracepoint and the tree from stack samples), at the default
// budget and at the demo's: the workload's slowdown over the whole hunt
// and over its rounds alone (after the start-up), the start-up's wall and
// CPU time, autoprof's own CPU over the rounds and the instruments'
// measured overhead. The workload is sized to run about 20 s alone.
// Timings on a shared machine move from run to run: compare the lines of
// one run.
func BenchmarkHostHunt(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("hunting needs root")
	}
	featuretest.Require(b, features.HaveTracepoint())
	// The workload runs about workloadSec alone, whatever this machine's
	// speed: a first short run sizes it.
	const workloadSec = 20
	rate := func(n int) float64 {
		start := time.Now()
		if err := helperCommand(fmt.Sprint("preads ", n)).Run(); err != nil {
			b.Fatal(err)
		}
		return float64(n) / time.Since(start).Seconds()
	}
	n := int(workloadSec * rate(300000))
	alone := rate(n)
	for _, budget := range []float64{2, 50} {
		b.Run(fmt.Sprintf("budget=%g", budget), func(b *testing.B) {
			for range b.N {
				w := &Workload{Cmd: helperCommand(fmt.Sprint("preads ", n))}
				var reads0 float64
				var t0 time.Time
				run, err := Hunt(context.Background(), Options{
					Settings: search.Settings{BudgetPct: budget},
					Workload: w,
					OnRead: func(round int, opens bool) {
						if round == 1 && opens {
							reads0, t0 = syscallsRead(w.Pid()), time.Now()
						}
					},
				})
				if err != nil {
					b.Fatal(err)
				}
				<-w.Done()
				o := run.Overhead
				whole := float64(n) / w.Ran().Seconds()
				rounds := 0.0
				if !t0.IsZero() && w.endAt.After(t0) {
					rounds = (float64(n) - reads0) / w.endAt.Sub(t0).Seconds()
				}
				b.Logf("preads %.0f/s alone, %.0f/s under the hunt, %.0f/s over its rounds; start-up %.1fs (%.1fs CPU); autoprof %.2f%% of CPU over %d rounds; instruments %.2f%% measured, %.2f%% predicted; %s",
					alone, whole, rounds, o.StartupWallSec, o.StartupCPUSec, o.ControllerPct, run.Meta.Rounds, o.MeasuredPct, o.PredictedPct, run.Meta.StopReason)
				b.ReportMetric(100*(1-whole/alone), "slowdown-%")
				if rounds > 0 {
					b.ReportMetric(100*(1-rounds/alone), "rounds-slowdown-%")
				}
				b.ReportMetric(o.StartupWallSec, "startup-s")
				b.ReportMetric(o.StartupCPUSec, "startup-cpu-s")
				b.ReportMetric(o.ControllerPct, "autoprof-%cpu")
				b.ReportMetric(o.MeasuredPct, "measured-%cpu")
			}
		})
	}
}

// syscallsRead returns how many read system calls process pid has made
// (/proc/PID/io syscr), 0 where it cannot be read.
func syscallsRead(pid int) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return 0
}
