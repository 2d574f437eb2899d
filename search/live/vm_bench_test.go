//go:build vm

package live

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/testenv"
	"github.com/autoprof/autoprof/search"
)

// huntFigures are what BenchmarkVMHunt reports.
type huntFigures struct {
	baseOps, huntOps float64 // the workload's operations per second without and during the hunt
	slowdown         float64 // 1 - huntOps/baseOps
	// roundsSlowdown is the slowdown over the rounds alone, after the
	// start-up (startWall, startCPU: wall and autoprof's CPU seconds to
	// the first round); controller autoprof's own CPU over the rounds,
	// percent of all CPUs.
	roundsSlowdown      float64
	startWall, startCPU float64
	controller          float64
	// steady is autoprof's own CPU over the rounds that began with no
	// instrument going in or out (Overhead.SteadyControllerPct).
	steady float64
	// ctlPerRound is autoprof's own CPU per round, ms, and loopPerRound
	// the wall time of the round's own work on the hunt's goroutine
	// (Overhead.Loop): the rest of ctlPerRound is the background's.
	ctlPerRound, loopPerRound float64
	firstCorrect              time.Duration
	inserted, maxLive         int
	wholeSubtree              int
	predicted, measure        float64 // mean overhead, percent of CPU
	rounds                    int
	stop                      string
}

func (f huntFigures) String() string {
	return fmt.Sprintf("workload %.1f ops/s alone, %.1f during the hunt (slowdown %.1f%%, %.1f%% over the rounds); first correct finding after %v; "+
		"%d instruments inserted (%d at most live, whole subtree %d); overhead %.2f%% predicted, %.2f%% measured; "+
		"autoprof %.2f%% of CPU over the rounds, %.2f%% over the rounds with no change of instruments (%.1f ms of CPU a round, %.1f ms of it the round's own work), start-up %.1fs (%.1fs CPU); %d rounds, %s",
		f.baseOps, f.huntOps, 100*f.slowdown, 100*f.roundsSlowdown, f.firstCorrect.Round(time.Millisecond), f.inserted, f.maxLive, f.wholeSubtree,
		f.predicted, f.measure, f.controller, f.steady, f.ctlPerRound, f.loopPerRound, f.startWall, f.startCPU, f.rounds, f.stop)
}

// measureHunt runs, in one VM, the aptest cpu shape alone for a while and
// then under a hunt, and returns the figures. The first correct finding is
// the first round after which the best candidate is the planted function
// with an exclusive share significantly above the threshold.
func measureHunt(tb testing.TB, budget float64) huntFigures {
	const planted = "aptest_heavy"
	var f huntFigures
	if err := os.WriteFile(filepath.Join(aptestDir, "shape"), []byte("cpu 2000"), 0o600); err != nil {
		tb.Fatal(err)
	}
	ops := func() float64 { return aptestStats(tb)["op"][0] }
	// Alone.
	alone := exec.Command(aptestLoad, "8")
	o0, t0 := ops(), time.Now()
	if err := alone.Run(); err != nil {
		tb.Fatal(err)
	}
	f.baseOps = (ops() - o0) / time.Since(t0).Seconds()
	// Under the hunt.
	load := exec.Command(aptestLoad, "600")
	done, stop := startLoad(tb, load)
	defer stop()
	start := time.Now()
	theta := search.DefaultThreshold / 100
	stopProfile := profileHunt(tb, "hunt", "AUTOPROF_HUNT_CPUPROFILE", fmt.Sprintf("budget-%g", budget))
	o1 := ops()
	var oRounds float64 // the workload's operations when the first round opened
	var tRounds time.Time
	run, err := Hunt(context.Background(), Options{
		Settings: search.Settings{Target: instrument.Target{PIDs: []int{load.Process.Pid}}, Duration: 150 * time.Second, BudgetPct: budget},
		OnRead: func(round int, opens bool) {
			if round == 1 && opens {
				oRounds, tRounds = ops(), time.Now()
			}
		},
		Backend: aptestBackend(), Done: done,
		Progress: func(p search.Progress) {
			if f.firstCorrect == 0 && len(p.Best) > 0 && p.Best[0].Excl.Low > theta &&
				slices.Contains(strings.Split(p.Best[0].Path, ";"), planted) {
				f.firstCorrect = time.Since(start)
			}
		},
	})
	stopProfile()
	if err != nil {
		tb.Fatal(err)
	}
	end := ops()
	saveRun(tb, run, "hunt", fmt.Sprintf("budget-%g", budget))
	f.huntOps = (end - o1) / time.Since(start).Seconds()
	f.slowdown = 1 - f.huntOps/f.baseOps
	if !tRounds.IsZero() {
		f.roundsSlowdown = 1 - (end-oRounds)/time.Since(tRounds).Seconds()/f.baseOps
	}
	o := run.Overhead
	f.startWall, f.startCPU, f.controller, f.steady = o.StartupWallSec, o.StartupCPUSec, o.ControllerPct, o.SteadyControllerPct
	for _, r := range o.Rounds {
		f.ctlPerRound += r.ControllerPct / 100 * float64(runtime.NumCPU()) * r.Sec * 1e3
	}
	if len(o.Rounds) > 0 {
		f.ctlPerRound /= float64(len(o.Rounds))
	}
	if l := o.Loop; l != nil && l.Rounds > 0 {
		f.loopPerRound = 1e3 * (l.ReadSec + l.StatisticsSec + l.ProgressSec + l.DecisionsSec) / float64(l.Rounds)
	}
	f.inserted, f.maxLive, f.wholeSubtree = o.Inserted, o.MaxLive, o.WholeSubtree
	f.predicted, f.measure = o.PredictedPct, o.MeasuredPct
	f.rounds, f.stop = run.Meta.Rounds, run.Meta.StopReason
	if len(run.Findings) == 0 || !strings.HasSuffix(strings.Join(run.Findings[0].Path, ";"), planted) {
		tb.Errorf("the hunt did not find %s", planted)
	}
	return f
}

// BenchmarkVMHunt reports, in one VM run, the workload's slowdown during
// a hunt against the same workload alone (over the whole hunt and over
// its rounds), the start-up and autoprof's own CPU, the time to the first
// correct finding, the instruments used and the overhead predicted and
// measured, at the default budget and at the demo's. Run it with `make
// vmbench` (both kernels), or for one kernel
//
//	bin/vmtest test -kernels 6.1 -bench VMHunt ./search/live
//
// With AUTOPROF_HUNT_CPUPROFILE=1 and vmtest -out DIR, each hunt's CPU
// profile (autoprof's own) is kept as hunt-RELEASE/budget-B.cpu.pprof;
// with -out alone, each hunt's run as hunt-RELEASE/budget-B.json.
func BenchmarkVMHunt(b *testing.B) {
	loadAptest(b)
	for _, budget := range []float64{search.DefaultBudget, 50} {
		b.Run(fmt.Sprintf("budget=%g", budget), func(b *testing.B) { benchHunt(b, budget) })
	}
}

func benchHunt(b *testing.B, budget float64) {
	for i := 0; i < b.N; i++ {
		f := measureHunt(b, budget)
		b.Log(f)
		b.ReportMetric(100*f.slowdown, "slowdown-%")
		b.ReportMetric(100*f.roundsSlowdown, "rounds-slowdown-%")
		b.ReportMetric(f.startWall, "startup-s")
		b.ReportMetric(f.startCPU, "startup-cpu-s")
		b.ReportMetric(f.controller, "autoprof-%cpu")
		b.ReportMetric(f.steady, "autoprof-steady-%cpu")
		b.ReportMetric(f.ctlPerRound, "autoprof-cpu-ms/round")
		b.ReportMetric(f.loopPerRound, "round-work-ms/round")
		b.ReportMetric(f.firstCorrect.Seconds(), "first-correct-s")
		b.ReportMetric(float64(f.inserted), "instruments")
		b.ReportMetric(f.predicted, "predicted-%cpu")
		b.ReportMetric(f.measure, "measured-%cpu")
	}
}

// startupHelperEnv makes the test binary one hunt of the process whose
// pid it holds (see startupHelper).
const startupHelperEnv = "AUTOPROF_STARTUP_HELPER"

func init() { processHelpers[startupHelperEnv] = startupHelper }

// startupHelper hunts the process $AUTOPROF_STARTUP_HELPER for eight
// seconds, in a process of its own, and prints the hunt's overhead figures
// (search.Overhead) as JSON on stdout. With $AUTOPROF_STARTUP_PROFILE, it
// writes its CPU profile there.
func startupHelper() int {
	pid, err := strconv.Atoi(os.Getenv(startupHelperEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "startup helper: bad pid:", err)
		return 2
	}
	if path := os.Getenv("AUTOPROF_STARTUP_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "startup helper:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "startup helper:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	run, err := Hunt(context.Background(), Options{
		Settings: search.Settings{Target: instrument.Target{PIDs: []int{pid}}, Duration: 8 * time.Second},
		Backend:  aptestBackend(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "startup helper:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(run.Overhead); err != nil {
		fmt.Fprintln(os.Stderr, "startup helper:", err)
		return 1
	}
	return 0
}

// BenchmarkVMStartup reports a hunt's start-up (wall and CPU to its first
// round, from the hunt's run.json figures) in a process of its own, first
// with an empty cache directory (cache=cold: the symbol table parsed from
// /proc/kallsyms, every backend calibrated) and then with the cache the
// first left (cache=warm: what a user's second hunt on the same boot
// takes), with the whole hunt's CPU beside it. Each hunt is eight seconds
// of the aptest cpu shape. AUTOPROF_STARTUP_CPUPROFILE=1 (with vmtest
// -out) keeps each hunt's CPU profile as startup-RELEASE/CACHE.cpu.pprof.
func BenchmarkVMStartup(b *testing.B) {
	loadAptest(b)
	if err := os.WriteFile(filepath.Join(aptestDir, "shape"), []byte("cpu 2000"), 0o600); err != nil {
		b.Fatal(err)
	}
	cache := b.TempDir()
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "warm"}[warm]
		b.Run("cache="+name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if !warm {
					if err := os.RemoveAll(filepath.Join(cache, "autoprof")); err != nil {
						b.Fatal(err)
					}
				}
				o := startupHunt(b, cache, name)
				b.Logf("start-up %.2fs wall, %.2fs CPU; autoprof %.2f%% of CPU over the rounds; %d rounds", o.StartupWallSec, o.StartupCPUSec, o.ControllerPct, len(o.Rounds))
				b.ReportMetric(o.StartupWallSec, "startup-s")
				b.ReportMetric(o.StartupCPUSec, "startup-cpu-s")
				b.ReportMetric(o.ControllerPct, "autoprof-%cpu")
			}
		})
	}
}

// startupHunt runs startupHelper over the aptest load with the cache
// directory cache and returns its figures.
func startupHunt(b *testing.B, cache, name string) search.Overhead {
	load := exec.Command(aptestLoad, "60")
	_, stop := startLoad(b, load)
	defer stop()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), startupHelperEnv+"="+strconv.Itoa(load.Process.Pid), "XDG_CACHE_HOME="+cache)
	if dir, ok := testenv.VMOut(b, "startup"); ok && os.Getenv("AUTOPROF_STARTUP_CPUPROFILE") != "" {
		cmd.Env = append(cmd.Env, "AUTOPROF_STARTUP_PROFILE="+filepath.Join(dir, name+".cpu.pprof"))
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("the %s hunt: %v: %s", name, err, stderr.String())
	}
	var o search.Overhead
	if err := json.Unmarshal(out, &o); err != nil {
		b.Fatalf("the %s hunt's figures: %v: %q", name, err, out)
	}
	if o.StartupWallSec <= 0 {
		b.Fatalf("the %s hunt measured no start-up: %q", name, out)
	}
	return o
}
