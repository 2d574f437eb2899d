package splice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// The files a Run writes in its output directory.
const (
	SeriesFile  = "series.jsonl" // one Record per instrument per interval
	SummaryFile = "summary.json" // the RunSummary
)

// Record is one line of the time series.
type Record struct {
	Time     time.Time `json:"time"`
	Interval float64   `json:"interval_s"`
	Summary
}

// RunSummary is what a Run measured over its whole length: what probe
// --json prints and a Run writes as summary.json.
type RunSummary struct {
	DurationS   float64           `json:"duration_s"`
	Instruments []Summary         `json:"instruments"`
	Misses      instrument.Misses `json:"misses"`
	// Warnings name the instruments that may count nothing (no call
	// reaches their function) or counted nothing all through the run.
	Warnings []string `json:"warnings,omitempty"`
	// Stopped says why the run ended before its time: its instruments
	// cost more than Run.MaxOverheadPct. "" where it ran its course.
	Stopped string `json:"stopped,omitempty"`
}

// Run is one run of an experiment (GILK's manual mode): its instruments
// launched and splashed down on schedule, read every interval. probe and
// the ui both run experiments through it.
type Run struct {
	Plan []Planned
	// PIDs, when given, end the run once every one of them has exited.
	PIDs []int
	// Duration ends the run (0: when ctx ends or the PIDs exit).
	Duration time.Duration
	Interval time.Duration
	// Out is the output directory of SeriesFile and SummaryFile, "" for
	// none. Each file is renamed into place when complete.
	Out string
	// Started, if set, is called once the first instruments are live.
	Started func()
	// Waiting, if set, is called before each wait for the next interval
	// with the instruments launched so far (as Summarize names them).
	Waiting func(launched []string)
	// Each, if set, is called with every interval's reading.
	Each func(Interval) error
	// Notes, if set, returns the summary's warnings of the totals.
	Notes func(launched []string, total []Summary) []string
	// MaxOverheadPct, when positive, ends the run (every instrument
	// withdrawn, the outputs written) after an interval in which the
	// instruments' own run time, as the kernel measured it
	// (Instruments.Overhead), was over this percentage of all CPUs. A
	// session that measures no run time is not bounded.
	MaxOverheadPct float64
	// CPUs is the number of CPUs the percentage is of
	// (runtime.NumCPU() where 0).
	CPUs int
}

// Interval is what Run read at the end of one interval.
type Interval struct {
	Elapsed time.Duration // since the start
	At      time.Time
	// Length is the interval's: the last one is cut short by an
	// interrupt or the deadline.
	Length time.Duration
	Sums   []Summary
	// OverheadCPU is the instruments' own run time over the interval, as
	// the kernel measured it, in CPUs (1: one CPU busy all along); -1
	// where the session measures none.
	OverheadCPU float64
}

// overheadMeter is the part of a Session that MaxOverheadPct reads.
type overheadMeter interface {
	Overhead() (Overhead, error)
}

// IdleNotes are a run summary's warnings: every instrument that counted
// nothing all through the run, with why where warnings (ReachWarnings)
// say.
func IdleNotes(total []Summary, warnings map[string]string) []string {
	var out []string
	for _, s := range total {
		if s.Calls != 0 {
			continue
		}
		n := s.Instrument + " counted no call all through the run"
		if w := warnings[s.Instrument]; w != "" {
			n += " (" + w + ")"
		}
		out = append(out, n)
	}
	return out
}

// CheckPlan checks every planned spec against s's placement rules, without
// touching the kernel; the error is the first refusal.
func CheckPlan(s instrument.Instrumenter, plan []Planned) error {
	for _, p := range plan {
		if err := s.Check(p.Spec); err != nil {
			return err
		}
	}
	return nil
}

// Do launches and splashes down the instruments on s on schedule, reads
// every interval, and writes the outputs. The end of ctx, or the exit of
// every PID, ends it early; the outputs are still written. Every
// instrument it launched is withdrawn when it returns.
func (run *Run) Do(ctx context.Context, s instrument.Instrumenter) (*RunSummary, error) {
	out, err := newSeries(run.Out, SeriesFile)
	if err != nil {
		return nil, err
	}
	defer out.abort()
	var gone <-chan struct{}
	if len(run.PIDs) > 0 {
		gone = WatchExit(ctx, run.PIDs)
	}
	start := time.Now()
	sched := NewSchedule(s, run.Plan)
	defer sched.CloseAll()
	if err := sched.Step(ctx, 0); err != nil {
		return nil, err
	}
	first, err := s.Read()
	if err != nil {
		return nil, err
	}
	if run.Started != nil {
		run.Started()
	}
	prev := first
	overhead := overheadOf(s)
	tick := time.NewTicker(run.Interval)
	defer tick.Stop()
	stopped := ""
	for done := false; !done; {
		if run.Waiting != nil {
			run.Waiting(sched.Launched())
		}
		select {
		case <-ctx.Done():
			done = true
		case <-gone:
			done = true
		case <-tick.C:
		}
		el := time.Since(start)
		if run.Duration > 0 && el >= run.Duration {
			done = true
		}
		if !done {
			if err := sched.Step(ctx, el); err != nil {
				return nil, err
			}
		}
		r, err := s.Read()
		if err != nil {
			return nil, err
		}
		iv := Interval{Elapsed: el, At: r.At, Length: r.At.Sub(prev.At)}
		iv.Sums = WithIdle(Summarize(r.Sub(prev), iv.Length), sched.Launched())
		iv.OverheadCPU = overhead(iv.Length)
		prev = r
		if err := out.write(r.At, iv.Length, iv.Sums); err != nil {
			return nil, err
		}
		if run.Each != nil {
			if err := run.Each(iv); err != nil {
				return nil, err
			}
		}
		if why := run.overBound(iv); why != "" {
			stopped, done = why, true
		}
	}
	if err := out.commit(); err != nil {
		return nil, err
	}
	total := WithIdle(Summarize(prev.Sub(first), prev.At.Sub(start)), sched.Launched())
	sum := &RunSummary{DurationS: prev.At.Sub(start).Seconds(), Instruments: total, Misses: prev.Misses, Stopped: stopped}
	if run.Notes != nil {
		sum.Warnings = run.Notes(sched.Launched(), total)
	}
	if run.Out != "" {
		if err := writeSummary(filepath.Join(run.Out, SummaryFile), sum); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// overheadOf returns the instruments' run time over each interval, in
// CPUs, from the session's own measure: -1 where it measures none. It is
// read once an interval, for the bound and for Each.
func overheadOf(s instrument.Instrumenter) func(interval time.Duration) float64 {
	m, ok := s.(overheadMeter)
	if !ok {
		return func(time.Duration) float64 { return -1 }
	}
	last, err := m.Overhead()
	if err != nil || !last.Enabled {
		return func(time.Duration) float64 { return -1 }
	}
	return func(interval time.Duration) float64 {
		o, err := m.Overhead()
		if err != nil || !o.Enabled || interval <= 0 {
			return -1
		}
		cpu := float64(o.RunNs-last.RunNs) / float64(interval)
		last = o
		return cpu
	}
}

// overBound says why the run must stop after iv (MaxOverheadPct), or "".
func (run *Run) overBound(iv Interval) string {
	if run.MaxOverheadPct <= 0 || iv.OverheadCPU < 0 {
		return ""
	}
	cpus := run.CPUs
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	pct := 100 * iv.OverheadCPU / float64(cpus)
	if pct <= run.MaxOverheadPct {
		return ""
	}
	return fmt.Sprintf("the instruments cost %.3g%% of the CPUs over %v, more than the overhead budget of %.3g%%: every instrument was withdrawn",
		pct, iv.Length.Round(time.Millisecond), run.MaxOverheadPct)
}

// writeSummary writes summary.json beside the series, renamed into place.
func writeSummary(path string, sum *RunSummary) error {
	out, err := newSeries(filepath.Dir(path), filepath.Base(path))
	if err != nil {
		return err
	}
	defer out.abort()
	enc := json.NewEncoder(out.f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	return out.commit()
}

// series writes an output file to a temporary file in the output
// directory and renames it into place at the end, so that an earlier
// output is never truncated by a run that fails.
type series struct {
	path string
	f    *os.File
	enc  *json.Encoder
}

// newSeries opens the output name in dir; with no dir it writes nothing.
func newSeries(dir, name string) (*series, error) {
	if dir == "" {
		return &series{}, nil
	}
	path := filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return &series{path: path, f: f, enc: json.NewEncoder(f)}, nil
}

func (s *series) write(at time.Time, over time.Duration, sums []Summary) error {
	if s.f == nil {
		return nil
	}
	for _, sum := range sums {
		if err := s.enc.Encode(Record{Time: at, Interval: over.Seconds(), Summary: sum}); err != nil {
			return fmt.Errorf("output %s: %w", s.path, err)
		}
	}
	return nil
}

func (s *series) commit() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	if err := errors.Join(f.Chmod(0o644), f.Sync(), f.Close()); err != nil { // CreateTemp made it 0600
		os.Remove(f.Name())
		return fmt.Errorf("output %s: %w", s.path, err)
	}
	if err := os.Rename(f.Name(), s.path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("output %s: %w", s.path, err)
	}
	return nil
}

func (s *series) abort() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
	}
}
