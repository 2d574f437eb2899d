//go:build linux

package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/autoprof/autoprof/internal/debuginfo"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/search/live"
)

// huntConfig is what the hunt command's flags and arguments say.
type huntConfig struct {
	opts    live.Options
	command []string
	out     string
	json    bool
	cpuprof string   // --cpuprofile
	debug   []string // --debuginfo
	dir     *outDir  // prepared by validate
	args    []string // autoprof's arguments, for the live view
}

// defaultHuntDuration bounds a hunt that has no command to end it.
const defaultHuntDuration = 2 * time.Minute

func runHunt(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseHunt(args)
	if err != nil {
		return err
	}
	cfg.args = append([]string{"hunt"}, args...)
	return profiled("hunt", cfg.cpuprof, cfg.dir, func() error { return hunt(cfg, stdout, stderr) })
}

// hunt runs the hunt that cfg describes and writes its outputs.
func hunt(cfg *huntConfig, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			cancel(fmt.Errorf("%v", s))
		case <-ctx.Done(): // the hunt is over: no goroutine stays behind
		}
	}()
	w := cfg.opts.Workload
	if w != nil {
		// The command may still write to stdout, from exec's copying
		// goroutine, while the summary is printed there: a writer that is
		// no file (a test's buffer) takes one write at a time.
		if _, file := stdout.(*os.File); !file {
			stdout = &lockedWriter{w: stdout}
		}
		w.Cmd = workloadCmd(cfg, stdout)
		defer w.Close()
	}
	cfg.opts.Warn = func(m string) { fmt.Fprintf(stderr, "\nautoprof hunt: warning: %s\n", m) }
	// The live view (reports.LiveFile, which autoprof ui watches) is
	// there while the hunt runs, and goes when it ends.
	lw := reports.NewLiveWriter(cfg.out, cfg.args)
	defer lw.Close()
	printer := progressPrinter(stderr)
	cfg.opts.ProgressTree = true
	cfg.opts.Progress = func(p search.Progress) {
		printer(p)
		if lw.Err() == nil {
			if lw.Progress(p); lw.Err() != nil {
				cfg.opts.Warn(lw.Err().Error() + ": autoprof ui cannot watch this hunt")
			}
		}
	}
	run, err := live.Hunt(ctx, cfg.opts)
	if err != nil {
		if w != nil {
			w.Signal(syscall.SIGKILL)
			<-w.Done()
		}
		lw.Close()
		cfg.dir.abandon()
		return err
	}
	// The live view goes once the outputs are there: its watchers take
	// its end for the run's.
	err = reports.WriteWith(cfg.out, run, addresses(run, cfg.debug, stderr))
	lw.Close()
	if err != nil {
		if w != nil {
			w.Signal(syscall.SIGTERM)
		}
		return err
	}
	if cfg.json {
		err = printHuntJSON(stdout, cfg.out, run)
	} else {
		printHunt(stdout, cfg.out, run)
	}
	if w == nil || errors.Is(w.Err(), live.ErrNotStarted) {
		return err
	}
	stopped := false
	if !closed(w.Done()) {
		if stopped = ctx.Err() != nil; stopped { // a signal ended the hunt
			w.Signal(syscall.SIGTERM)
		} else {
			fmt.Fprintf(stderr, "autoprof: the hunt is over; waiting for %s to exit\n", cfg.command[0])
		}
		<-w.Done()
	}
	if err == nil && !stopped {
		err = commandFailed(cfg.command[0], w.Err())
	}
	return err
}

// addresses looks up where the run's functions are in the running kernel,
// and their source lines where the debug information is found in the
// distribution's place or in debugDirs (--debuginfo), for the profile;
// nil where the symbol table cannot be read. Where the user named
// directories and some code still has no lines, it says why on stderr.
func addresses(run *search.Run, debugDirs []string, stderr io.Writer) *reports.Addresses {
	syms, err := liveSymbols()
	if err != nil {
		return nil
	}
	rel, _ := kernel.Release()
	a, missing := live.Addresses(run, syms, debuginfo.DefaultSearch(rel, debugDirs))
	if len(debugDirs) > 0 {
		for _, m := range slices.Sorted(maps.Keys(missing)) {
			fmt.Fprintf(stderr, "autoprof hunt: no source lines for %s: %v\n", cmp.Or(m, "the kernel"), missing[m])
		}
	}
	return a
}

// commandFailed turns a failure of the hunted command into the error that
// makes autoprof exit with the command's status, as time(1) does: the
// outputs are written, and a script sees that they describe a failed run.
func commandFailed(name string, err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	code := ee.ExitCode()
	if code < 0 { // killed by a signal: the shell's convention
		code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
	}
	return &exitStatus{code: code, err: fmt.Errorf("%s: %w (the outputs describe that run)", name, err)}
}

func parseHunt(args []string) (*huntConfig, error) {
	fs := newFlags("hunt", "[-- CMD ARGS...]")
	cfg := &huntConfig{}
	o := &cfg.opts
	fs.DurationVar(&o.Duration, "duration", 0, "bound on the hunt (default: until the command exits, or "+defaultHuntDuration.String()+" without one)")
	tf := addTargetFlags(fs)
	noInherit := fs.Bool("no-inherit", false, "with -- CMD: measure the command's own process only, not the processes it starts")
	fs.BoolVar(&o.IncludeIdle, "include-idle", false, "whole system: count every thread's waits, idle threads' too (default: on-CPU time only)")
	var roots rootList
	fs.Var(&roots, "root", "start the search at this kernel function too (repeatable)")
	fs.StringVar((*string)(&o.Backend), "backend", "", "function backend: fentry, kprobe, splice (autoprof's module) or tracepoint (default: the best BPF backend the kernel allows)")
	fs.StringVar(&o.Compare, "compare", "", "a base run (hunt output directory or run.json): its findings become extra roots, measured again exactly")
	fs.Float64Var(&o.BudgetPct, "budget", search.DefaultBudget, "bound on the instruments' predicted overhead, percent of all CPUs")
	fs.Float64Var(&o.ThresholdPct, "threshold", search.DefaultThreshold, "share of the target's time, in percent, that makes a calling context worth refining")
	fs.DurationVar(&o.Round, "round", search.DefaultRound, "length of a measurement round")
	fs.BoolVar(&o.Recalibrate, "recalibrate", false, "measure the instruments' cost per hit again, where this boot's calibration of the last hour would serve")
	fs.BoolVar(&o.RawCosts, "raw-costs", false, "leave the instruments' own cost (calibrated per hit) in every share and time, as for two runs meant to be compared that instrumented the same places")
	fs.BoolVar(&o.NoBlocks, "no-blocks", false, "stay at function level: no basic-block counters, whose cost varies from run to run (int3 until the kprobe optimizer makes it a jump); for runs meant to be compared with diff")
	fs.StringVar(&cfg.out, "o", "autoprof-out", "output directory (created if needed): profile.pb.gz, report.txt, report.html, findings.json, hunt.jsonl, run.json; live.json while the hunt runs, for autoprof ui to watch")
	fs.BoolVar(&cfg.json, "json", false, "print a JSON summary instead of the text one")
	cpuprof := addCPUProfileFlag(fs)
	debugDirs := fs.String("debuginfo", "", "directories (separated by "+string(filepath.ListSeparator)+") searched for the kernel's and modules' debug information by build ID, for source lines in the profile, beside /usr/lib/debug (a kernel build tree, a module's build directory)")
	var rest []string
	for i, a := range args { // the flag package would swallow the "--"
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usageError("unexpected argument %q (a command goes after --)", pos[0])
	}
	o.Roots, cfg.command, o.Command = roots, rest, rest
	cfg.cpuprof = *cpuprof
	if *debugDirs != "" {
		cfg.debug = filepath.SplitList(*debugDirs)
	}
	if len(rest) > 0 {
		o.Workload = &live.Workload{NoInherit: *noInherit}
	} else if *noInherit {
		return nil, usageError("--no-inherit: applies to a command (-- CMD) only")
	}
	return cfg, cfg.validate(tf)
}

// validate checks the configuration before anything is started, and
// makes the output directory ready last.
func (cfg *huntConfig) validate(tf *targetFlags) error {
	o := &cfg.opts
	switch {
	case tf.pids != "" && tf.cgroup != "" || tf.set() && len(cfg.command) > 0:
		return usageError("give one target: --pid, --cgroup or -- CMD")
	case o.IncludeIdle && (tf.set() || len(cfg.command) > 0):
		return usageError("--include-idle: applies to a whole-system hunt only")
	}
	if err := o.Check(); err != nil {
		return usageError("--%s", firstErr(err))
	}
	t, err := tf.target()
	if err != nil {
		return err
	}
	o.Target = t
	if o.Compare != "" {
		base, err := reports.Load(o.Compare)
		if err != nil {
			return usageError("--compare: %w", err)
		}
		for _, pt := range reports.CompareRoots(base) {
			o.CompareRoots = append(o.CompareRoots, pt.Func)
		}
	}
	for _, r := range o.Roots {
		if _, err := instrument.ParsePoint(r); err != nil || strings.Contains(r, "+") {
			return usageError("--root %q: want a function name", r)
		}
	}
	if len(cfg.command) > 0 {
		if _, err := exec.LookPath(cfg.command[0]); err != nil {
			return usageError("command %q: %v", cfg.command[0], errors.Unwrap(err))
		}
	}
	if o.Duration == 0 && len(cfg.command) == 0 {
		o.Duration = defaultHuntDuration
	}
	if err := checkBackend(o.Backend); err != nil {
		return err
	}
	for _, d := range cfg.debug {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return usageError("--debuginfo %q: not a directory (give the directories that hold the debug files)", d)
		}
	}
	if err := checkFuncs("--root", o.Roots); err != nil {
		return err
	}
	cfg.dir, err = prepareOutDir(cfg.out)
	return err
}

// firstErr returns the first error of a join.
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()[0]
	}
	return err
}

// rootList collects repeated --root flags.
type rootList []string

func (r *rootList) String() string { return strings.Join(*r, ",") }

func (r *rootList) Set(s string) error {
	*r = append(*r, s)
	return nil
}

var _ flag.Value = (*rootList)(nil)

// workloadCmd is the command to hunt, not started. Its standard output
// goes to stderr when stdout carries the JSON summary.
func workloadCmd(cfg *huntConfig, stdout io.Writer) *exec.Cmd {
	cmd := exec.Command(cfg.command[0], cfg.command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, os.Stderr
	if cfg.json {
		cmd.Stdout = os.Stderr
	}
	return cmd
}

// lockedWriter serializes the writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// closed reports whether ch has been closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// progressPrinter prints the hunt's progress: on a terminal one line
// rewritten every round, elsewhere (or where TERM is unset or dumb, as on
// a serial console) one line a second.
func progressPrinter(w io.Writer) func(search.Progress) {
	tty := isTerminal(w) && os.Getenv("TERM") != "" && os.Getenv("TERM") != "dumb"
	var last time.Duration = -time.Second
	return func(p search.Progress) {
		if !tty && p.Elapsed-last < time.Second {
			return
		}
		last = p.Elapsed
		line := progressLine(p)
		if tty {
			fmt.Fprintf(w, "\r\x1b[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

func progressLine(p search.Progress) string {
	meas := "not measured"
	if p.MeasuredPct >= 0 {
		meas = fmt.Sprintf("%.2f%% measured", p.MeasuredPct)
	}
	s := fmt.Sprintf("autoprof: round %d %.1fs, %d live, overhead %.2f%% predicted %s", p.Round, p.Elapsed.Seconds(), p.Live, p.PredictedPct, meas)
	if p.ControllerPct >= 0 {
		s += fmt.Sprintf(", autoprof %.2f%%", p.ControllerPct)
	}
	for i, c := range p.Best {
		if i == 0 {
			s += "; best:"
		}
		path := strings.Split(c.Path, ";")
		s += fmt.Sprintf(" %s %.1f%%", path[len(path)-1], 100*c.Excl.Mean)
	}
	return s
}

// printHunt prints the text summary.
func printHunt(w io.Writer, dir string, run *search.Run) {
	m := run.Meta
	fmt.Fprintf(w, "\nautoprof: hunted %s for %.1fs, %d rounds: %s\n", m.Target, m.End.Sub(m.Start).Seconds(), m.Rounds, m.StopReason)
	switch {
	case len(run.Findings) == 0 && slices.ContainsFunc(run.Limitations, func(l string) bool { return strings.HasPrefix(l, live.ExitedEarly) }):
		fmt.Fprintln(w, "no findings: the target exited before the first round (the limitations say what saw it)")
	case len(run.Findings) == 0:
		fmt.Fprintln(w, "no findings: nothing measurable took the target's time")
	default:
		fmt.Fprintln(w, "findings (exclusive share of the target's time, 95% interval):")
	}
	for i, f := range run.Findings[:min(5, len(run.Findings))] {
		fmt.Fprintf(w, "%2d. %5.1f%% [%.1f, %.1f]  %s\n    %s\n", i+1, 100*f.ExclShare.Mean, 100*f.ExclShare.Low, 100*f.ExclShare.High,
			f.Verdict, strings.Join(f.Path, " → "))
	}
	o := run.Overhead
	fmt.Fprintf(w, "instruments: %d inserted, at most %d live", o.Inserted, o.MaxLive)
	if o.WholeSubtree > 0 {
		fmt.Fprintf(w, ", %.1f%% of the %d functions of the roots' reachable subtree", 100*float64(o.Inserted)/float64(o.WholeSubtree), o.WholeSubtree)
	}
	fmt.Fprintf(w, "\noverhead: %.2f%% of CPU predicted", o.PredictedPct)
	if strings.HasPrefix(o.MeasuredBy, "not") {
		fmt.Fprintf(w, ", %s\n", o.MeasuredBy)
	} else {
		fmt.Fprintf(w, ", %.2f%% measured (%s)\n", o.MeasuredPct, o.MeasuredBy)
	}
	if c := reports.Controller(o); c != "" {
		fmt.Fprintln(w, c)
	}
	if o.CompensatedPct > 0 {
		fmt.Fprintf(w, "compensated: %.2f%% of the target's time was the instruments' own cost (calibrated per hit), taken out of every share and time\n", o.CompensatedPct)
	}
	if len(run.Limitations) > 0 {
		fmt.Fprintln(w, "limitations:")
		for _, l := range run.Limitations {
			fmt.Fprintf(w, "  - %s\n", l)
		}
	}
	fmt.Fprintf(w, "profile: %s (go tool pprof -top %s)\nreport:  %s, %s\n",
		filepath.Join(dir, reports.ProfileFile), filepath.Join(dir, reports.ProfileFile),
		filepath.Join(dir, reports.TextFile), filepath.Join(dir, reports.HTMLFile))
}

// huntJSON is the --json summary.
type huntJSON struct {
	reports.Summary
	Out     string `json:"out"`
	Profile string `json:"profile"`
}

func printHuntJSON(w io.Writer, dir string, run *search.Run) error {
	return reports.WriteJSON(w, huntJSON{Summary: reports.Summarize(run), Out: dir, Profile: filepath.Join(dir, reports.ProfileFile)})
}
