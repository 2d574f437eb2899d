package search

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// Defaults of Config.
const (
	DefaultRound      = 250 * time.Millisecond
	DefaultBudget     = 2.0  // percent of all CPUs
	DefaultThreshold  = 5.0  // percent of the target's time
	DefaultConfidence = 0.95 // two-sided
	DefaultMinRounds  = 3
	DefaultMaxLive    = 256
	DefaultSubtreeCap = 10000
	// MaxRoundFactor is how many Rounds a round may grow to while
	// autoprof's own CPU is over the budget (Config.MaxRound).
	MaxRoundFactor = 4
)

// DefaultCostNs are the costs per hit assumed for backends that no
// Calibrator measured: the order of magnitude published for each mechanism
// on current x86 hardware (a BPF trampoline about 50 ns, a kprobe with its
// int3 trap about 200 ns, a raw tracepoint about 100 ns per syscall for the
// entry and exit pair).
var DefaultCostNs = map[string]float64{"fentry": 50, "kprobe": 200, "splice": 30, "tracepoint": 100}

// Settings are what the user chooses of a hunt: its target, its roots
// and its rules. The commands and the GUI build them once (live.Options
// holds them), and the hunt reads them from its Config.
type Settings struct {
	Target instrument.Target
	// Roots are functions to start from besides those Deep Start finds
	// (--root).
	Roots []string
	// CompareRoots are the functions of a base run's findings (hunt
	// --compare BASE): roots like Roots, so that what was hot in the base
	// run is measured again exactly. Meta.Compare names the base run.
	CompareRoots []string
	// Round is the length of a round (DefaultRound): the shortest, where
	// autoprof's own CPU (Controller) is over the budget.
	Round time.Duration
	// MaxRound is the longest a round grows to while autoprof's own CPU,
	// mostly a fixed cost per round (reading the instruments, deciding),
	// is over BudgetPct (MaxRoundFactor Rounds by default: a converged
	// hunt takes rounds, so that longer rounds make it longer, while
	// autoprof's CPU over the budget perturbs what the hunt measures;
	// docs/overhead.md).
	MaxRound time.Duration
	// Duration bounds the whole hunt; 0 means until it converges, Done is
	// closed or ctx ends.
	Duration time.Duration
	// DeepStart is how long to sample before choosing roots (4 rounds by
	// default); negative disables it.
	DeepStart time.Duration

	BudgetPct    float64 // predicted overhead bound, percent of all CPUs (DefaultBudget)
	ThresholdPct float64 // share of the target's time that makes a node hot (DefaultThreshold)
	Confidence   float64 // level of the intervals (DefaultConfidence)
	MinRounds    int     // rounds a node is measured before any decision about it (DefaultMinRounds)
	MaxLive      int     // cap on live instruments (DefaultMaxLive)
	SubtreeCap   int     // bound on the reachable-subtree count (DefaultSubtreeCap)

	// RawCosts leaves the instruments' own cost in every reading. By
	// default the hunt takes it out (see hunter.compensate): every share
	// is of the target's time without the instruments, as the workload
	// runs when autoprof is not there. The result is only as good as the
	// calibration; two runs meant to be compared time for time, which
	// instrumented the same places, may be better off raw (the cost is
	// then equal on both sides).
	RawCosts bool
	// NoBlocks keeps the hunt at function level: no basic-block counters
	// (kprobes at func+off) where a function's own code holds a
	// significant share. A block counter costs an int3 until the kprobe
	// optimizer turns it into a jump, so its cost in the times above it
	// differs from one hunt to the next (docs/reports.md, "In the VM");
	// runs meant to be compared time for time do better without them.
	NoBlocks bool
	// ProgressTree adds the tree and the decisions to every Progress
	// (Progress.Nodes, Progress.Events), for a live view of the tree: an
	// export of every node each round, which a hunt without a view does
	// not pay.
	ProgressTree bool
	// FinalRounds is how many rounds the last window must hold before a
	// converged hunt stops (default 4·MinRounds): the findings' intervals
	// are over it.
	FinalRounds int
}

// Config says what to hunt and with what: the user's Settings, and the
// sources a hunt reads (built by search/live on the running kernel, by
// search/searchtest in a simulation).
type Config struct {
	Settings
	// Instrumenter inserts the hunt's instruments; it must serve Timer
	// specs of the roots. Hunt withdraws every instrument it inserted
	// before it returns; closing the Instrumenter is the caller's job.
	Instrumenter instrument.Instrumenter
	// Graph gives the callees to refine into. Without one the hunt only
	// measures its roots.
	Graph Graph
	// Sampler takes stack samples for Deep Start and, with SampleTree,
	// in every round. Optional.
	Sampler Sampler
	// SampleTree makes the hunt sample the target in every round and grow
	// nodes from the samples under its roots: what a hunt can do where the
	// kernel allows no function instruments.
	SampleTree bool
	// Population counts the target's threads; nil means the whole system.
	Population Population
	// CPUs is the number of CPUs (the whole-system denominator, and the
	// CPU capacity the budget is a share of).
	CPUs int
	// Calibrator measures the backends' cost per hit at start-up; without
	// one (or where it fails) DefaultCostNs are assumed.
	Calibrator Calibrator

	// Syscalls are the kernel's syscall entry functions: Deep Start times
	// every one of them for the target over its sampling period (a census:
	// per-syscall time from the tracepoint backend) and roots the hunt at
	// those that hold time. Optional.
	Syscalls []string
	// Done, when closed, ends the hunt after the round in progress (the
	// target has exited).
	Done <-chan struct{}

	// Controller, if set, measures autoprof's own CPU time (see
	// ControllerMeter).
	Controller ControllerMeter

	// Progress, if set, is called after every round.
	Progress func(Progress)
	// OnRead, if set, is called right after each reading of the
	// instruments: with (1, true) for the reading that opens the first
	// round, then with (r, false) for the reading that ends round r and
	// opens round r+1. Tests align independent measurements with the
	// rounds through it.
	OnRead func(round int, opens bool)
	// Meta is copied into the Run; Hunt fills the fields it measures.
	Meta Meta
	// Limitations are copied into the Run; Hunt adds its own.
	Limitations []string
}

// Progress is what the hunt reports after each round.
type Progress struct {
	Round        int
	Elapsed      time.Duration
	Live         int     // live instruments
	PredictedPct float64 // predicted overhead, percent of all CPUs
	MeasuredPct  float64 // measured overhead, -1 where it cannot be measured
	// ControllerPct is autoprof's own CPU in the round, percent of all
	// CPUs; -1 where it is not measured.
	ControllerPct float64
	Best          []Candidate
	// Nodes is the calling-context tree as it stands after the round
	// (with Config.ProgressTree),
	// each node as Run.Nodes holds it but from its measured totals only
	// (no estimates from samples yet, no per-round samples): a read-only
	// snapshot for a live view of the tree growing.
	Nodes []Node
	// Events are the decisions taken since the previous Progress (the
	// first one: since the hunt began), as Run.Trace will hold them
	// (with Config.ProgressTree).
	Events []Event
}

// Candidate is a node among the best so far.
type Candidate struct {
	Path string
	Excl Interval
}

func (c Config) withDefaults() Config {
	if c.Round <= 0 {
		c.Round = DefaultRound
	}
	if c.MaxRound < c.Round {
		c.MaxRound = MaxRoundFactor * c.Round
	}
	if c.DeepStart == 0 {
		c.DeepStart = 4 * c.Round
	}
	if c.BudgetPct <= 0 {
		c.BudgetPct = DefaultBudget
	}
	if c.ThresholdPct <= 0 {
		c.ThresholdPct = DefaultThreshold
	}
	if c.Confidence <= 0 || c.Confidence >= 1 {
		c.Confidence = DefaultConfidence
	}
	if c.MinRounds < 2 {
		c.MinRounds = DefaultMinRounds
	}
	if c.MaxLive <= 0 {
		c.MaxLive = DefaultMaxLive
	}
	if c.FinalRounds < c.MinRounds {
		c.FinalRounds = 4 * c.MinRounds
	}
	if c.SubtreeCap <= 0 {
		c.SubtreeCap = DefaultSubtreeCap
	}
	if c.CPUs <= 0 {
		c.CPUs = 1
	}
	return c
}

// ErrNoInstrumenter is returned by Hunt when Config has no Instrumenter.
var ErrNoInstrumenter = errors.New("no instrumenter")

// Hunt runs a bottleneck hunt and returns what it found. It returns an
// error only when the hunt cannot start; a hunt cut short (ctx ends, the
// target exits, an instrument cannot be read) returns what it measured so
// far with the reason in Meta.StopReason. Every instrument it inserted is
// withdrawn before it returns.
//
// A hunt proceeds in rounds (Config.Round). Each round reads every
// instrument; the change since the previous reading is one round's
// activity. Shares are of the target's time in the round:
//
//	D(r) = elapsed(r) · threads(r)   for a target (pid, cgroup, command)
//	D(r) = elapsed(r) · CPUs         for the whole system
//
// where threads(r) is the mean of the target's thread counts at the start
// and the end of the round. Every thread of the target counts, idle ones
// included: a node's share is the fraction of all the target's thread
// time spent in it, so that shares of one target add up to at most 1 and
// compare across nodes. A node's inclusive share in round r is
// InclNs(r)/D(r), its exclusive share ExclNs(r)/D(r); on- and off-CPU
// shares split the exclusive time. The decision rules are on decide.
func Hunt(ctx context.Context, cfg Config) (*Run, error) {
	if cfg.Instrumenter == nil {
		return nil, ErrNoInstrumenter
	}
	h := newHunter(ctx, cfg.withDefaults())
	defer h.withdrawAll()
	inPhase(ctx, "calibrate", h.calibrate)
	inPhase(ctx, "deep-start", h.deepStart)
	if len(h.rootNodes()) == 0 && h.stop == "" {
		h.stop = "no roots: " + h.noRootsReason()
	}
	if h.stop == "" {
		inPhase(ctx, "rounds", h.loop)
	}
	var run *Run
	inPhase(ctx, "finish", func(context.Context) { run = h.finish() })
	return run, nil
}

// The hunt's phases label autoprof's own CPU profile (hunt --cpuprofile):
// every sample taken while the hunt's goroutine, or one it started, was
// in a phase carries the label phase (calibrate, deep-start, rounds,
// finish), and within the rounds step (wait: the round's sampling; read,
// statistics, progress, decide: Overhead.Loop's phases), so that
// `go tool pprof -tagfocus=phase=rounds` shows what the rounds cost. The
// garbage collector's work is in none.
const (
	phaseLabel = "phase"
	stepLabel  = "step"
)

func inPhase(ctx context.Context, phase string, f func(context.Context)) {
	pprof.Do(ctx, pprof.Labels(phaseLabel, phase), f)
}

func inStep(ctx context.Context, step string, f func(context.Context)) {
	pprof.Do(ctx, pprof.Labels(stepLabel, step), f)
}

// loop runs rounds until a stop rule holds.
func (h *hunter) loop(ctx context.Context) {
	prev, err := h.read(true)
	if err != nil {
		h.stop = err.Error()
		return
	}
	h.firstRead = prev.at
	h.countUntilFirstRound(prev.Reading)
	h.looping = true
	lp := &LoopPhases{}
	h.run.Overhead.Loop = lp
	for {
		var stop string
		inStep(ctx, "wait", func(ctx context.Context) { stop = h.wait(ctx) })
		t0 := time.Now()
		var cur *reading
		inStep(ctx, "read", func(context.Context) { cur, err = h.read(false) })
		if err != nil {
			h.stop = err.Error()
			return
		}
		t1 := time.Now()
		h.lastRead = cur.at
		inStep(ctx, "statistics", func(context.Context) { h.absorb(cur, prev) })
		t2 := time.Now()
		inStep(ctx, "progress", func(context.Context) { h.report() })
		t3 := time.Now()
		lp.Rounds++
		lp.ReadSec += t1.Sub(t0).Seconds()
		lp.StatisticsSec += t2.Sub(t1).Seconds()
		lp.ProgressSec += t3.Sub(t2).Seconds()
		if stop != "" {
			h.stop = stop
			return
		}
		var changed bool
		inStep(ctx, "decide", func(context.Context) { changed = h.decide() })
		lp.DecisionsSec += time.Since(t3).Seconds()
		if !changed && h.converged() {
			h.stop = "converged: nothing left to refine or withdraw"
			h.event("stop", nil, "", nil, h.stop)
			return
		}
		prev = cur
	}
}

// reading is one reading of the instruments with the time it was taken,
// the target's thread count and the samples taken since the last one.
type reading struct {
	*instrument.Reading
	at       time.Time
	threads  float64
	overhead time.Duration
	ctlCPU   time.Duration // the controller's CPU so far (Config.Controller)
	stacks   []Stack
}

// read reads the instruments (and the thread count, the overhead, the
// samples of the round) at the end of a round, or, with opens, at the
// start of one.
func (h *hunter) read(opens bool) (*reading, error) {
	stacks := h.takeStacks()
	r, err := h.in.Read()
	if err != nil {
		return nil, fmt.Errorf("reading instruments: %w", err)
	}
	rd := &reading{Reading: merged(r), at: time.Now(), threads: float64(h.cfg.CPUs), stacks: stacks}
	if h.cfg.OnRead != nil {
		if opens {
			h.cfg.OnRead(h.round+1, true)
		} else {
			h.cfg.OnRead(h.round, false)
		}
	}
	if h.cfg.Population != nil {
		n, err := h.cfg.Population.Threads()
		if err != nil {
			return nil, fmt.Errorf("counting the target's threads: %w", err)
		}
		rd.threads = float64(n)
	}
	if h.cfg.Controller != nil {
		cpu, wall, err := h.cfg.Controller.Controller()
		switch {
		case err != nil:
			h.cfg.Controller = nil
			h.limit("autoprof's own CPU not measured: %v", err)
		case opens && h.round == 0:
			h.run.Overhead.StartupCPUSec, h.run.Overhead.StartupWallSec = cpu.Seconds(), wall.Seconds()
		}
		rd.ctlCPU = cpu
	}
	if h.meter != nil {
		if rd.overhead, err = h.meter.Overhead(); err != nil {
			h.meter = nil
			h.limit("overhead not measured: %v", err)
		}
	}
	return rd, nil
}

// wait waits for the end of the round, sampling meanwhile where the hunt
// grows sampled nodes, has blind indirect calls, or watches for new roots
// (watchRound, see lateRoots), and returns a stop reason if
// the hunt must end after this round.
func (h *hunter) wait(ctx context.Context) string {
	d := h.roundLen
	deadline := h.deadline()
	if !deadline.IsZero() {
		if left := time.Until(deadline); left < d {
			d = max(left, 0)
		}
	}
	if (h.cfg.SampleTree || len(h.blind) > 0 || h.watchRound()) && h.cfg.Sampler != nil {
		h.startSampling(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var stop string
	select {
	case <-ctx.Done():
		stop = "interrupted: " + context.Cause(ctx).Error()
	case <-h.cfg.Done:
		stop = stopExited
		if h.sampling != nil {
			h.stopSampling() // what it took up to the exit is the round's
		}
	case <-t.C:
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			stop = "deadline reached"
		}
	}
	h.round++
	return stop
}

// stopExited is the stop reason of a hunt whose target exited.
const stopExited = "the target exited"

func (h *hunter) deadline() time.Time {
	if h.cfg.Duration <= 0 {
		return time.Time{}
	}
	return h.start.Add(h.cfg.Duration)
}
