package splice

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// clockInstrumenter is a logInstrumenter whose readings are taken now.
type clockInstrumenter struct{ logInstrumenter }

func (c *clockInstrumenter) Read() (*instrument.Reading, error) {
	return &instrument.Reading{At: time.Now()}, nil
}

// TestRun runs an experiment on a fake clock: instruments go in and out
// at their times, every interval is read and handed to Each, the series
// holds a record per launched instrument per interval, the summary is
// what Do returns, and everything is withdrawn at the end.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		l := &clockInstrumenter{}
		plan := []Planned{
			{Spec: instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer}},
			{Spec: instrument.Spec{Point: instrument.Point{Func: "vfs_write"}, Kind: instrument.Count}, Launch: time.Second, Splashdown: 2 * time.Second},
		}
		var started int
		var at []time.Duration
		run := &Run{Plan: plan, Duration: 3 * time.Second, Interval: time.Second, Out: dir,
			Started: func() { started++ },
			Each: func(iv Interval) error {
				at = append(at, iv.Elapsed)
				return nil
			},
			Notes: func(launched []string, _ []Summary) []string { return []string{strings.Join(launched, " ")} },
		}
		sum, err := run.Do(context.Background(), l)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"+vfs_read:timer", "+vfs_write:entry", "-vfs_write:entry", "-vfs_read:timer"}; !slices.Equal(l.log, want) {
			t.Errorf("inserts and withdrawals %q, want %q", l.log, want)
		}
		if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}; started != 1 || !slices.Equal(at, want) {
			t.Errorf("started %d times, intervals at %v; want once, %v", started, at, want)
		}
		if sum.DurationS != 3 || len(sum.Instruments) != 2 || len(sum.Warnings) != 1 || sum.Warnings[0] != "vfs_read:timer vfs_write:entry" {
			t.Errorf("summary %+v", sum)
		}
		series, err := os.ReadFile(filepath.Join(dir, SeriesFile))
		if err != nil {
			t.Fatal(err)
		}
		// Both in all three intervals: vfs_write is listed from its launch
		// on, as probe lists it, with no calls once withdrawn.
		if n := strings.Count(string(series), "\n"); n != 6 {
			t.Errorf("%s: %d records, want 6:\n%s", SeriesFile, n, series)
		}
		var saved RunSummary
		if data, err := os.ReadFile(filepath.Join(dir, SummaryFile)); err != nil || json.Unmarshal(data, &saved) != nil || saved.DurationS != 3 {
			t.Errorf("%s: %v %+v", SummaryFile, err, saved)
		}
	})
}

// TestRunCancelled: the end of the context ends the run early, with its
// outputs written and everything withdrawn.
func TestRunCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		l := &clockInstrumenter{}
		ctx, cancel := context.WithCancel(context.Background())
		run := &Run{Plan: []Planned{{Spec: instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer}}}, Interval: time.Second, Out: dir,
			Each: func(iv Interval) error {
				if iv.Elapsed >= 2*time.Second {
					cancel()
				}
				return nil
			}}
		sum, err := run.Do(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		if sum.DurationS != 2 || !slices.Equal(l.log, []string{"+vfs_read:timer", "-vfs_read:timer"}) {
			t.Errorf("duration %v, log %q; want 2 s, the timer in and out", sum.DurationS, l.log)
		}
		for _, f := range []string{SeriesFile, SummaryFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Error(err)
			}
		}
	})
}

// costlyInstrumenter is a clockInstrumenter whose instruments cost
// cpuFrac of all cpus CPUs from the time the run asks for it after
// costFrom: the kernel's run-time statistics, as Overhead reads them.
type costlyInstrumenter struct {
	clockInstrumenter
	start    time.Time
	costFrom time.Duration
	cpuFrac  float64
	cpus     int
}

func (c *costlyInstrumenter) Overhead() (Overhead, error) {
	el := time.Since(c.start) - c.costFrom
	if el < 0 {
		return Overhead{Enabled: true}, nil
	}
	return Overhead{Enabled: true, RunNs: uint64(c.cpuFrac * float64(c.cpus) * float64(el))}, nil
}

// TestRunOverheadBound: an experiment whose instruments start to cost 30%
// of the CPUs at 2 s, under a 10% bound, ends after the interval that
// measured it, everything withdrawn, the outputs written, and the summary
// says why; under a 50% bound it runs its course.
func TestRunOverheadBound(t *testing.T) {
	for _, c := range []struct {
		max  float64
		stop bool
	}{{10, true}, {50, false}, {0, false}} {
		synctest.Test(t, func(t *testing.T) {
			dir := t.TempDir()
			l := &costlyInstrumenter{start: time.Now(), costFrom: 2 * time.Second, cpuFrac: 0.3, cpus: 4}
			run := &Run{Plan: []Planned{{Spec: instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer}}},
				Duration: 6 * time.Second, Interval: time.Second, Out: dir, MaxOverheadPct: c.max, CPUs: l.cpus}
			sum, err := run.Do(context.Background(), l)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.log, []string{"+vfs_read:timer", "-vfs_read:timer"}) {
				t.Errorf("bound %v%%: log %q", c.max, l.log)
			}
			stopped := sum.Stopped != ""
			if want := 6.0; c.stop {
				want = 3
				if !strings.Contains(sum.Stopped, "30% of the CPUs") || !strings.Contains(sum.Stopped, "budget of 10%") {
					t.Errorf("bound %v%%: stopped %q", c.max, sum.Stopped)
				}
			} else if stopped || sum.DurationS != want {
				t.Errorf("bound %v%%: stopped %q after %vs, want the whole %vs", c.max, sum.Stopped, sum.DurationS, want)
			}
			if c.stop && sum.DurationS != 3 {
				t.Errorf("bound %v%%: ran %vs, want 3s (the interval that measured 30%%)", c.max, sum.DurationS)
			}
			var saved RunSummary
			if data, err := os.ReadFile(filepath.Join(dir, SummaryFile)); err != nil || json.Unmarshal(data, &saved) != nil || saved.Stopped != sum.Stopped {
				t.Errorf("bound %v%%: %s: %v %+v", c.max, SummaryFile, err, saved)
			}
		})
	}
}

// TestRunOverheadEach: each interval's reading carries the instruments'
// run time over it, read once per interval (the bound and Each share it):
// 0 CPUs before the cost starts at 2 s, 1.2 CPUs (30% of 4) after.
func TestRunOverheadEach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &countedOverhead{costlyInstrumenter: costlyInstrumenter{start: time.Now(), costFrom: 2 * time.Second, cpuFrac: 0.3, cpus: 4}}
		var got []float64
		run := &Run{Plan: []Planned{{Spec: instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer}}},
			Duration: 4 * time.Second, Interval: time.Second, MaxOverheadPct: 50, CPUs: l.cpus,
			Each: func(iv Interval) error { got = append(got, iv.OverheadCPU); return nil }}
		if _, err := run.Do(context.Background(), l); err != nil {
			t.Fatal(err)
		}
		want := []float64{0, 0, 1.2, 1.2}
		if len(got) != len(want) {
			t.Fatalf("overhead of %d intervals, want %d: %v", len(got), len(want), got)
		}
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-9 {
				t.Errorf("interval %d: %.3f CPUs, want %.3f (all %v)", i+1, got[i], want[i], got)
			}
		}
		if l.reads != len(want)+1 {
			t.Errorf("the overhead was read %d times over %d intervals, want once each and once at the start", l.reads, len(want))
		}
	})
}

// countedOverhead counts the reads of a costlyInstrumenter's overhead.
type countedOverhead struct {
	costlyInstrumenter
	reads int
}

func (c *countedOverhead) Overhead() (Overhead, error) {
	c.reads++
	return c.costlyInstrumenter.Overhead()
}
