//go:build vm

package live

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/testenv"
	"github.com/autoprof/autoprof/search"
)

const (
	aptestDir  = "/sys/kernel/debug/aptest"
	aptestKo   = "../../kmod/testdata/aptest.ko"
	aptestLoad = "../../kmod/testdata/aptest-load"
)

// startLoad starts a workload and returns a channel closed when it exits
// and a function that kills it and waits for it (call it, deferred, before
// the next workload starts).
func startLoad(t testing.TB, load *exec.Cmd) (<-chan struct{}, func()) {
	t.Helper()
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { load.Wait(); close(done) }()
	return done, func() { load.Process.Kill(); <-done }
}

// loadAptest loads the ground-truth module for the test.
func loadAptest(t testing.TB) {
	t.Helper()
	testenv.LoadModule(t, aptestKo)
	t.Cleanup(func() {
		if err := testenv.UnloadModule("aptest", 50, 100*time.Millisecond); err != nil {
			t.Errorf("aptest would not unload: %v", err)
		}
	})
}

// aptestBackend is the function backend that can instrument the module:
// fentry needs the module's BTF, which a module built against headers
// without vmlinux (Debian's 6.1) lacks; kprobe needs none.
func aptestBackend() instrument.Backend {
	if _, err := os.Stat("/sys/kernel/btf/aptest"); err == nil {
		return ""
	}
	return instrument.Kprobe
}

// aptestStats reads the module's own measurements: calls and ns by name.
func aptestStats(t testing.TB) map[string][2]float64 {
	f, err := os.Open(filepath.Join(aptestDir, "stats"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][2]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var name string
		var calls, ns float64
		if _, err := fmt.Sscan(sc.Text(), &name, &calls, &ns); err == nil {
			out[name] = [2]float64{calls, ns}
		}
	}
	return out
}

// snapshot is the module's measurements at the end of a round (round 0:
// the reading that opens the first).
type snapshot struct {
	round int
	at    time.Time
	stats map[string][2]float64
}

// plantedCase is one planted shape and what a hunt must find.
type plantedCase struct {
	shape      []string // aptest/shape arguments
	planted    string   // the planted function
	exact      bool     // the top finding is the planted function itself (else at or below it)
	callsPerOp uint64
}

var plantedCases = []plantedCase{
	{[]string{"cpu", "2000"}, "aptest_heavy", true, 1},
	{[]string{"sleep", "2000"}, "aptest_sleeper", false, 1},
	{[]string{"indirect", "2000"}, "aptest_ind_heavy", true, 1},
	{[]string{"deep", "2000"}, "aptest_deep_leaf", true, 1},
	{[]string{"many", "4000", "50"}, "aptest_tiny", true, 50},
}

// TestVMGroundTruth hunts each planted shape of the test module, as a
// user would (Deep Start from the census and stack samples), and compares
// the top finding with the module's own measurements over the hunt's
// last window: it must be the planted function (or, for a sleep, a
// function below it), its exclusive share within 10 points of the
// planted share, its calls exactly the planted calls per write(2), and
// the hunt must use at most 10% of the instruments the roots' whole
// reachable subtree would take.
func TestVMGroundTruth(t *testing.T) {
	loadAptest(t)
	for _, c := range plantedCases {
		t.Run(c.shape[0], func(t *testing.T) { huntPlanted(t, c) })
	}
}

func huntPlanted(t *testing.T, c plantedCase) {
	load := exec.Command(aptestLoad, append([]string{"300"}, c.shape...)...)
	load.Stderr = os.Stderr
	done, stop := startLoad(t, load)
	defer stop()
	time.Sleep(500 * time.Millisecond)
	var mu sync.Mutex
	var snaps []snapshot
	var firstCorrect time.Duration
	start := time.Now()
	snap := func(round int) {
		s := snapshot{round: round, at: time.Now(), stats: aptestStats(t)}
		mu.Lock()
		snaps = append(snaps, s)
		mu.Unlock()
	}
	opts := Options{
		Settings: search.Settings{Target: instrument.Target{PIDs: []int{load.Process.Pid}}, Duration: 150 * time.Second, BudgetPct: 25},
		Backend:  aptestBackend(), Done: done,
		OnRead: func(round int, opens bool) {
			if opens {
				round--
			}
			snap(round)
		},
		Progress: func(p search.Progress) {
			if len(p.Best) > 0 && firstCorrect == 0 && slices.Contains(strings.Split(p.Best[0].Path, ";"), c.planted) {
				firstCorrect = time.Since(start)
			}
		},
	}
	run, err := Hunt(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	logRun(t, run)
	t.Logf("first correct best candidate after %v", firstCorrect)
	checkPlantedRun(t, run, c, snaps)
}

// logRun logs a run's figures.
func logRun(t testing.TB, run *search.Run) {
	t.Helper()
	m, o := run.Meta, run.Overhead
	t.Logf("%s: %d rounds in %v, window %d rounds; backend %s", m.StopReason, m.Rounds, m.End.Sub(m.Start).Round(time.Millisecond), m.WindowRounds, m.Backend)
	t.Logf("instruments: %d inserted, %d at most live, whole subtree %d; overhead %.2f%% predicted, %.2f%% measured; cost per hit %v",
		o.Inserted, o.MaxLive, o.WholeSubtree, o.PredictedPct, o.MeasuredPct, o.CostPerHitNs)
	t.Logf("autoprof: %.2f%% of CPU over the rounds; start-up %.1fs (%.1fs of CPU); compensated %.1f%%", o.ControllerPct, o.StartupWallSec, o.StartupCPUSec, o.CompensatedPct)
	for i, f := range run.Findings[:min(4, len(run.Findings))] {
		t.Logf("finding %d: %.1f%% [%.1f, %.1f] calls %d (%.4g per op) %s\n\t%s", i+1, 100*f.ExclShare.Mean, 100*f.ExclShare.Low,
			100*f.ExclShare.High, f.Calls, f.CallsPerOp, f.Verdict, strings.Join(f.Path, ";"))
	}
	for _, l := range run.Limitations {
		t.Logf("limitation: %s", l)
	}
	if m := run.Misses.Total(); m > 0 {
		t.Logf("misses: %+v", run.Misses)
	}
	actions := map[string]int{}
	for _, e := range run.Trace {
		actions[e.Action]++
	}
	t.Logf("decisions: %v", actions)
}

// checkPlantedRun compares the top finding with the module's truth over
// the last window.
func checkPlantedRun(t *testing.T, run *search.Run, c plantedCase, snaps []snapshot) {
	t.Helper()
	if len(run.Findings) == 0 {
		t.Fatal("no findings")
	}
	top := run.Findings[0]
	n := run.Nodes[top.Node]
	last := top.Path[len(top.Path)-1]
	if c.exact && last != c.planted || !c.exact && !slices.Contains(top.Path, c.planted) {
		t.Errorf("top finding %s, want the planted %s", strings.Join(top.Path, ";"), c.planted)
	}
	// The truth over the window: from the end of the round before it to
	// the end of its last.
	before := run.Meta.WindowStart - 1
	end := before + run.Meta.WindowRounds
	var a, b *snapshot
	for i := range snaps {
		switch snaps[i].round {
		case before:
			a = &snaps[i]
		case end:
			b = &snaps[i]
		}
	}
	if a == nil || b == nil {
		t.Fatalf("no module snapshot for the end of rounds %d and %d", before, end)
	}
	stat := c.planted
	wall := float64(b.at.Sub(a.at))
	share := (b.stats[stat][1] - a.stats[stat][1]) / wall
	calls := b.stats[stat][0] - a.stats[stat][0]
	t.Logf("truth over the window: %s %.1f%% of the thread's time, %.0f calls; hunt: %.1f%%, %d calls over %d writes",
		stat, 100*share, calls, 100*top.ExclShare.Mean, n.Calls, n.RootCalls)
	if d := math.Abs(top.ExclShare.Mean - share); d > 0.10 {
		t.Errorf("top finding's share %.1f%%, planted %.1f%%: %.1f points apart", 100*top.ExclShare.Mean, 100*share, 100*d)
	}
	// Exact up to the one operation in flight at each end of the window
	// (one thread: the write(2) root is counted when it returns, the
	// planted function when it returns, inside the write) and up to the
	// events the instruments reported missing.
	if c.exact {
		tol := float64(c.callsPerOp) * float64(1+run.Misses.Total())
		if d := math.Abs(float64(n.Calls) - float64(n.RootCalls*c.callsPerOp)); n.Calls == 0 || d > tol {
			t.Errorf("top finding counted %d calls over %d writes, want %d per write", n.Calls, n.RootCalls, c.callsPerOp)
		}
		// The module's counters are read just after the instruments, while
		// the workload runs on: allow 1%.
		if d := math.Abs(float64(n.Calls) - calls); d > max(float64(c.callsPerOp), calls/100) {
			t.Errorf("top finding counted %d calls, the module %.0f over the same rounds", n.Calls, calls)
		}
	}
	if w := run.Overhead.WholeSubtree; 10*run.Overhead.Inserted > w {
		t.Errorf("%d instruments, more than 10%% of the whole subtree's %d", run.Overhead.Inserted, w)
	}
}
