package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/autoprof/autoprof/splice"
)

// probeConfig is what the probe command's flags and arguments say.
type probeConfig struct {
	backend  string
	target   splice.Target
	duration time.Duration
	interval time.Duration
	out      string
	json     bool
	plan     []splice.Planned
}

func runProbe(args []string, stdout io.Writer) error {
	cfg, err := parseProbe(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := splice.OpenInstruments(ctx, splice.Options{Backend: cfg.backend})
	if err != nil {
		return err
	}
	defer s.Close()
	for _, p := range cfg.plan {
		if err := s.Check(p.Spec); err != nil {
			return usageError("%w", err)
		}
	}
	return probeLoop(ctx, s, cfg, stdout)
}

func parseProbe(args []string) (*probeConfig, error) {
	fs := newFlags("probe", "SPEC... (SPEC = FUNC[+OFF][:entry|:exit|:timer|:targets])")
	cfg := &probeConfig{}
	fs.StringVar(&cfg.backend, "backend", "", "function backend: fentry, kprobe, splice (autoprof's module) or tracepoint (default: the best BPF backend available)")
	pids := fs.String("pid", "", "measure only these processes (comma-separated pids)")
	fs.StringVar(&cfg.target.Cgroup, "cgroup", "", "measure only tasks in this cgroup v2 directory")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to measure (0: until interrupted)")
	fs.DurationVar(&cfg.interval, "interval", time.Second, "reading interval")
	experiment := fs.String("experiment", "", "JSON or YAML file of instruments with launch and splashdown times")
	fs.StringVar(&cfg.out, "o", "", "write a JSON-lines time series here (one record per instrument per interval)")
	fs.BoolVar(&cfg.json, "json", false, "print a JSON summary at the end")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if *pids != "" {
		for _, p := range strings.Split(*pids, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n <= 0 {
				return nil, usageError("--pid %q: not a process id", p)
			}
			cfg.target.PIDs = append(cfg.target.PIDs, n)
		}
	}
	if cfg.backend != "" {
		if err := splice.CheckBackend(cfg.backend); err != nil {
			return nil, usageError("--%v", err)
		}
	}
	if cfg.interval <= 0 {
		return nil, usageError("--interval %v: must be positive", cfg.interval)
	}
	if *experiment != "" {
		if err := cfg.readExperiment(*experiment); err != nil {
			return nil, err
		}
	}
	for _, a := range pos {
		spec, err := splice.ParseSpec(a)
		if err != nil {
			return nil, usageError("%v", err)
		}
		spec.Target = cfg.target
		cfg.plan = append(cfg.plan, splice.Planned{Spec: spec})
	}
	if len(cfg.plan) == 0 {
		return nil, usageError("no instruments: give SPEC arguments or --experiment")
	}
	return cfg, nil
}

func (cfg *probeConfig) readExperiment(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError("--experiment: %v", err)
	}
	e, plan, err := splice.ParseExperiment(data)
	if err != nil {
		return usageError("%s: %v", path, err)
	}
	if e.Duration > 0 {
		cfg.duration = time.Duration(e.Duration)
	}
	if e.Interval > 0 {
		cfg.interval = time.Duration(e.Interval)
	}
	for i := range plan {
		if plan[i].Spec.Target.IsSystem() {
			plan[i].Spec.Target = cfg.target
		}
	}
	cfg.plan = plan
	return nil
}

// record is one line of the time series.
type record struct {
	Time     time.Time `json:"time"`
	Interval float64   `json:"interval_s"`
	splice.Summary
}

// probeLoop launches and splashes down instruments on schedule, reads
// every interval, and writes the outputs. An interrupt ends it early; the
// outputs are still written.
func probeLoop(ctx context.Context, s splice.Instruments, cfg *probeConfig, stdout io.Writer) error {
	out, err := newSeries(cfg.out)
	if err != nil {
		return err
	}
	defer out.abort()
	start := time.Now()
	sched := splice.NewSchedule(s, cfg.plan)
	defer sched.CloseAll()
	if err := sched.Step(ctx, 0); err != nil {
		return err
	}
	first, err := s.Read()
	if err != nil {
		return err
	}
	prev := first
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()
	tty := isTerminal(stdout)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		el := time.Since(start)
		if cfg.duration > 0 && el >= cfg.duration {
			done = true
		}
		if !done {
			if err := sched.Step(ctx, el); err != nil {
				return err
			}
		}
		r, err := s.Read()
		if err != nil {
			return err
		}
		interval := r.At.Sub(prev.At) // the last one is cut short by an interrupt or the deadline
		sums := splice.WithIdle(splice.Summarize(r.Sub(prev), interval), sched.Launched())
		prev = r
		if err := out.write(r.At, interval, sums); err != nil {
			return err
		}
		if tty {
			printTable(stdout, el, sums)
		}
	}
	if err := out.commit(); err != nil {
		return err
	}
	total := splice.WithIdle(splice.Summarize(prev.Sub(first), prev.At.Sub(start)), sched.Launched())
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"duration_s": prev.At.Sub(start).Seconds(), "instruments": total, "misses": prev.Misses})
	}
	if !tty {
		printTable(stdout, prev.At.Sub(start), total)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printTable(w io.Writer, el time.Duration, sums []splice.Summary) {
	if isTerminal(w) {
		fmt.Fprint(w, "\033[H\033[2J")
	}
	fmt.Fprintf(w, "autoprof probe: %v\n", el.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "calls/s\tmean\tp50\tp99\ton-CPU\toff-CPU\tmisses\tINSTRUMENT\t")
	for _, s := range sums {
		fmt.Fprintf(tw, "%.1f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", s.CallsPerSec, ns(s.MeanNs), ns(s.P50Ns), ns(s.P99Ns),
			pct(s.OnCPUShare, s.InclNs), pct(s.OffCPUShare, s.InclNs), s.MissesInRead, s.Instrument)
	}
	tw.Flush()
}

func ns(v float64) string {
	if v == 0 {
		return "-"
	}
	return time.Duration(v).Round(time.Microsecond / 10).String()
}

func pct(v float64, base uint64) string {
	if base == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

// series writes the JSON-lines time series to a temporary file beside the
// output and renames it into place at the end, so that an earlier output
// is never truncated by a run that fails.
type series struct {
	path string
	f    *os.File
	enc  *json.Encoder
}

func newSeries(path string) (*series, error) {
	if path == "" {
		return &series{}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return &series{path: path, f: f, enc: json.NewEncoder(f)}, nil
}

func (s *series) write(at time.Time, over time.Duration, sums []splice.Summary) error {
	if s.f == nil {
		return nil
	}
	for _, sum := range sums {
		if err := s.enc.Encode(record{Time: at, Interval: over.Seconds(), Summary: sum}); err != nil {
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
