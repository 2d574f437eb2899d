//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice"
)

// probeConfig is what the probe command's flags and arguments say.
type probeConfig struct {
	backend  instrument.Backend
	target   instrument.Target
	duration time.Duration
	interval time.Duration
	out      string
	dir      *outDir
	json     bool
	plan     []splice.Planned
	cpuprof  string // --cpuprofile
	// maxOverhead is --max-overhead (or the experiment's
	// max_overhead_pct): splice.Run.MaxOverheadPct.
	maxOverhead float64
}

// The files probe -o writes.
const (
	seriesFile  = splice.SeriesFile  // one record per instrument per interval
	summaryFile = splice.SummaryFile // what --json prints
)

func runProbe(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseProbe(args)
	if err != nil {
		return err
	}
	return profiled("probe", cfg.cpuprof, cfg.dir, func() error {
		err := probe(cfg, stdout, stderr)
		if err != nil {
			cfg.dir.abandon()
		}
		return err
	})
}

func probe(cfg *probeConfig, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := splice.Open(ctx, splice.Options{Backend: cfg.backend})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := splice.CheckPlan(s, cfg.plan); errors.Is(err, splice.ErrNoFunction) {
		return usageError("%w", err)
	} else if err != nil {
		return err
	}
	specs := make([]instrument.Spec, len(cfg.plan))
	for i, p := range cfg.plan {
		specs[i] = p.Spec
	}
	return probeLoop(ctx, s, cfg, &reachReport{graph: s.Graph(), specs: specs, out: stderr}, stdout)
}

func parseProbe(args []string) (*probeConfig, error) {
	fs := newFlags("probe", "SPEC... (SPEC = FUNC[+OFF][:entry|:exit|:timer|:targets], MODULE:FUNC[+OFF]:KIND)")
	cfg := &probeConfig{}
	fs.StringVar((*string)(&cfg.backend), "backend", "", "function backend: fentry, kprobe, splice (autoprof's module) or tracepoint (default: the best BPF backend available)")
	tf := addTargetFlags(fs)
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to measure (0: until interrupted, or until the --pid processes exit)")
	fs.DurationVar(&cfg.interval, "interval", time.Second, "reading interval")
	fs.Float64Var(&cfg.maxOverhead, "max-overhead", 0, "end the run, every instrument withdrawn, once the instruments cost more than this percentage of the CPUs over an interval (0: no bound)")
	experiment := fs.String("experiment", "", "JSON or YAML file of instruments with launch and splashdown times")
	fs.StringVar(&cfg.out, "o", "", "output directory (created if needed): "+seriesFile+" (one record per instrument per interval) and "+summaryFile)
	fs.BoolVar(&cfg.json, "json", false, "print a JSON summary at the end")
	cpuprof := addCPUProfileFlag(fs)
	pos, _, err := parseFlags(fs, args)
	cfg.cpuprof = *cpuprof
	if err != nil {
		return nil, err
	}
	if cfg.target, err = tf.target(); err != nil {
		return nil, err
	}
	if err := checkDuration("duration", cfg.duration, 0); err != nil {
		return nil, err
	}
	if cfg.interval <= 0 {
		return nil, usageError("--interval %v: must be positive", cfg.interval)
	}
	if cfg.maxOverhead < 0 || cfg.maxOverhead > 100 || math.IsNaN(cfg.maxOverhead) {
		return nil, usageError("--max-overhead %v: want a percentage of the CPUs, 0 for no bound", cfg.maxOverhead)
	}
	if *experiment != "" {
		if err := cfg.readExperiment(*experiment); err != nil {
			return nil, err
		}
	}
	for _, a := range pos {
		spec, err := instrument.ParseSpec(a)
		if err != nil {
			return nil, usageError("%v", err)
		}
		spec.Target = cfg.target
		cfg.plan = append(cfg.plan, splice.Planned{Spec: spec})
	}
	if len(cfg.plan) == 0 {
		return nil, usageError("no instruments: give SPEC arguments or --experiment")
	}
	if err := checkBackend(cfg.backend); err != nil {
		return nil, err
	}
	var funcs []string
	for _, p := range cfg.plan {
		funcs = append(funcs, p.Spec.Func)
	}
	if err := checkFuncs("SPEC", funcs); err != nil {
		return nil, err
	}
	if cfg.out != "" {
		if cfg.dir, err = prepareOutDir(cfg.out); err != nil {
			return nil, err
		}
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
	if e.MaxOverheadPct > 0 && cfg.maxOverhead == 0 {
		cfg.maxOverhead = e.MaxOverheadPct
	}
	for i := range plan {
		if plan[i].Spec.Target.IsSystem() {
			plan[i].Spec.Target = cfg.target
		} else if err := splice.CheckTarget(plan[i].Spec.Target); err != nil {
			return usageError("%s: target %v", path, err)
		}
	}
	cfg.plan = plan
	return nil
}

// record is one line of the time series.
type record = splice.Record

// probeSummary is what probe --json prints and -o writes as summary.json.
type probeSummary = splice.RunSummary

// probeLoop runs the experiment (splice.Run) and prints as it goes: the
// table at every interval on a terminal, the totals at the end, and the
// warnings of reach.
func probeLoop(ctx context.Context, s *splice.Session, cfg *probeConfig, reach *reachReport, stdout io.Writer) error {
	tty := isTerminal(stdout)
	run := &splice.Run{Plan: cfg.plan, PIDs: cfg.target.PIDs, Duration: cfg.duration, Interval: cfg.interval, Out: cfg.out, MaxOverheadPct: cfg.maxOverhead,
		Started: reach.start, // once the instruments are live: it takes the CPUs for seconds
		Waiting: reach.announce,
		Each: func(iv splice.Interval) error {
			if tty {
				printTable(stdout, iv.Elapsed, iv.Sums)
			}
			return nil
		},
		Notes: func(launched []string, total []splice.Summary) []string {
			reach.wait()
			reach.announce(launched)
			return reach.notes(total)
		},
	}
	sum, err := run.Do(ctx, s)
	if err != nil {
		return err
	}
	if cfg.json {
		if err := writeJSON(stdout, sum); err != nil {
			return err
		}
	} else {
		if !tty {
			printTable(stdout, time.Duration(sum.DurationS*float64(time.Second)), sum.Instruments)
		}
		for _, w := range sum.Warnings {
			fmt.Fprintf(stdout, "warning: %s\n", w)
		}
	}
	if sum.Stopped != "" {
		// The outputs are whole; the exit status says the run was cut short.
		return fmt.Errorf("stopped after %.1fs: %s", sum.DurationS, sum.Stopped)
	}
	return nil
}

// reachReport holds the warnings of splice.ReachWarnings, computed in the
// background (the callers index decodes the whole kernel) while the
// instruments measure.
type reachReport struct {
	graph    *callgraph.Graph
	specs    []instrument.Spec
	done     chan struct{}
	warnings map[string]string
	shown    map[string]bool
	out      io.Writer // where announce warns: the command's stderr
}

// start works the warnings out in the background.
func (r *reachReport) start() {
	r.done, r.shown = make(chan struct{}), map[string]bool{}
	go func() {
		r.warnings = splice.ReachWarnings(r.graph, r.specs)
		close(r.done)
	}()
}

func (r *reachReport) wait() { <-r.done }

// announce prints, once each, the warnings of the launched instruments
// that are known by now.
func (r *reachReport) announce(launched []string) {
	select {
	case <-r.done:
	default:
		return
	}
	for _, name := range launched {
		if w := r.warnings[name]; w != "" && !r.shown[name] {
			r.shown[name] = true
			fmt.Fprintf(r.out, "autoprof probe: warning: %s\n", w)
		}
	}
}

// notes are the summary's warnings: every instrument that counted nothing
// all through the run, with why where the static graph says.
func (r *reachReport) notes(total []splice.Summary) []string {
	return splice.IdleNotes(total, r.warnings)
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
