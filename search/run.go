package search

import (
	"encoding/json"
	"math"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// Run is everything a hunt produced. Package reports renders it (pprof,
// text, HTML) and compares two of them; it is saved as run.json beside the
// other outputs so that a run can be re-rendered and compared later
// without measuring again. Every field is plain data.
type Run struct {
	// Format names the layout of run.json (reports.RunFormat); reports.Write
	// sets it and reports.Load refuses a file without it or with another
	// value, so that a stray JSON file is not read as a run.
	Format   string    `json:"format"`
	Meta     Meta      `json:"meta"`
	Nodes    []Node    `json:"nodes"` // the calling-context tree; Nodes[i].ID == i, parents before children
	Findings []Finding `json:"findings"`
	Trace    []Event   `json:"trace"` // every decision, in order (also written as hunt.jsonl)
	Overhead Overhead  `json:"overhead"`
	// Listings hold the disassembly of the findings' functions as it was
	// at hunt time, so that reports can show it without the kernel.
	Listings []Listing `json:"listings,omitempty"`
	// Limitations says, in plain words, what the hunt could not do here
	// and why ("no function instruments: kprobe unavailable: CONFIG_KPROBES
	// is not set").
	Limitations []string `json:"limitations,omitempty"`
	// Misses are the events the instruments could not measure over the
	// hunt; where any is non-zero, counts are lower bounds.
	Misses instrument.Misses `json:"misses"`
}

// Meta describes the hunt.
type Meta struct {
	Command     []string      `json:"command,omitempty"` // the workload started with -- CMD, if any
	Target      string        `json:"target"`            // instrument.Target.String()
	Backend     string        `json:"backend"`           // function instruments' backend
	Kernel      string        `json:"kernel"`            // uname -r
	Host        string        `json:"host,omitempty"`
	Compare     string        `json:"compare,omitempty"` // the base run of hunt --compare
	Start       time.Time     `json:"start"`
	End         time.Time     `json:"end"`
	Round       time.Duration `json:"round"` // round length
	Rounds      int           `json:"rounds"`
	BudgetPct   float64       `json:"budget_pct"`
	Threshold   float64       `json:"threshold_pct"`
	Confidence  float64       `json:"confidence"` // two-sided level of the intervals, e.g. 0.95
	StopReason  string        `json:"stop_reason"`
	TargetOps   uint64        `json:"target_ops"`    // operations of the target (syscalls) over the measured rounds
	TargetOpsBy string        `json:"target_ops_by"` // what an operation is ("syscalls of pid 123")
	// DeepStartOps are the roots' operations during Deep Start's census,
	// before the first round: a command that is over by then was still
	// measured from its first instruction.
	DeepStartOps uint64 `json:"deep_start_ops,omitempty"`
	TargetNs     uint64 `json:"target_time_ns"` // the denominator of shares, summed over rounds
	// WindowStart, WindowRounds and WindowNs describe the window the
	// nodes with InWindow set report: rounds WindowStart to
	// WindowStart+WindowRounds-1, in which the instruments did not change
	// and all those nodes were measured together, and the target's time
	// over them. It is the last window, the rounds since the instruments
	// last changed, unless the hunt ended in the round holding a change;
	// then it is the one before.
	WindowStart  int    `json:"window_start"`
	WindowRounds int    `json:"window_rounds"`
	WindowNs     uint64 `json:"window_ns"`
}

// NodeKind says what kind of instrument measured a node.
type NodeKind string

// Node kinds.
const (
	NodeRoot     NodeKind = "root"     // a syscall, softirq or --root function
	NodeFunction NodeKind = "function" // a timed function
	NodeBlock    NodeKind = "block"    // a basic-block counter at func+off
	NodeTarget   NodeKind = "target"   // an observed indirect-call target
	NodeSampled  NodeKind = "sampled"  // known only from stack samples
)

// Node is one calling context: the path of instrumented points from a root.
// Shares are of the target's time. A node with InWindow set was live at the
// end: its totals and intervals cover the last window (Meta.WindowRounds,
// Meta.WindowNs), in which all such nodes were measured together, so that
// a parent's inclusive time is its exclusive time plus its InWindow
// children's inclusive times. A node without it was withdrawn: its totals
// cover the rounds it was measured in (TargetNs), and its time is already
// part of its ancestors' exclusive time in the window. A profile is made
// of the InWindow nodes.
type Node struct {
	ID      int              `json:"id"`
	Parent  int              `json:"parent"` // -1 for a root
	Point   instrument.Point `json:"point"`
	Kind    NodeKind         `json:"kind"`
	Backend string           `json:"backend,omitempty"`
	// Path is Point of every node from the root to this one, as strings.
	Path []string `json:"path"`

	Calls        uint64                         `json:"calls"`
	InclNs       uint64                         `json:"incl_ns"`
	ExclNs       uint64                         `json:"excl_ns"`
	InclOffCPUNs uint64                         `json:"incl_offcpu_ns"`
	ExclOffCPUNs uint64                         `json:"excl_offcpu_ns"`
	Hist         [instrument.HistBuckets]uint64 `json:"hist"`
	Samples      uint64                         `json:"samples,omitempty"` // stack samples that hit this context
	Misses       uint64                         `json:"misses,omitempty"`
	// RootCalls are the calls of the node's root over the same rounds as
	// Calls: Calls/RootCalls is the node's calls per operation.
	RootCalls uint64 `json:"root_calls"`
	// DeepStartCalls are a root's calls before the first round, during
	// Deep Start (see Meta.DeepStartOps); not in Calls or the rounds.
	DeepStartCalls uint64 `json:"deep_start_calls,omitempty"`
	// TargetNs is the target's time over the same rounds: the denominator
	// of the node's shares.
	TargetNs uint64 `json:"target_ns"`
	// InWindow says the totals cover the last window (see Node).
	InWindow bool `json:"in_window"`

	// Rounds are the per-round measurements behind the statistics, one
	// per round in which the node was instrumented.
	Rounds []RoundSample `json:"rounds"`
	// Excl is the node's exclusive share with its confidence interval.
	Excl Interval `json:"excl_share"`
	Incl Interval `json:"incl_share"`
	// State is where the search left the node: live, withdrawn, refined.
	State string `json:"state"`
	// Withdrawn says why a withdrawn node was: "cold" (significantly
	// below the threshold) or "budget" (its instrument cost too much).
	Withdrawn string `json:"withdrawn,omitempty"`
	// Fallback says why the backends tried before Backend refused the
	// node's instrument ("" where the first one served it).
	Fallback string `json:"fallback,omitempty"`
	// Source says where Incl and Excl come from (SourceWindow,
	// SourceRounds, SourceBurst, SourceSamples), over rounds From to To
	// (0 to 0 for Deep Start's samples). "" for a node never measured.
	Source string `json:"source,omitempty"`
	From   int    `json:"from_round,omitempty"`
	To     int    `json:"to_round,omitempty"`
	// ChildrenShare is the share of the target's time the node measured
	// as its own that belongs to children measured apart (withdrawn or
	// estimated): Excl is net of it.
	ChildrenShare float64 `json:"children_share,omitempty"`
	// InstrumentNs is the part of ExclNs that the instruments themselves
	// cost there, from the calibrated cost per hit: a timer's cost inside
	// its own window, its timed children's cost around theirs, its block
	// counters' and target recorders'. A node whose exclusive time is
	// mostly that is no finding.
	InstrumentNs uint64 `json:"instrument_ns,omitempty"`
}

// RoundSample is one node's measurement in one round.
type RoundSample struct {
	Round      int     `json:"round"`
	Calls      uint64  `json:"calls"`
	TargetOps  uint64  `json:"target_ops"` // operations of the target in the round: calls of all roots
	RootCalls  uint64  `json:"root_calls"` // calls of the node's own root in the round
	InclShare  float64 `json:"incl"`       // inclusive time / target time
	ExclShare  float64 `json:"excl"`
	OnCPUShare float64 `json:"oncpu"`  // exclusive on-CPU time / target time
	OffCPU     float64 `json:"offcpu"` // exclusive off-CPU time / target time
	// TargetNs is the target's time in the round, the shares'
	// denominator.
	TargetNs float64 `json:"target_ns,omitempty"`
	// InclCost and ExclCost are the instruments' calibrated cost taken
	// out of the inclusive and exclusive time (hunter.compensate), as
	// shares like the others: what a calibration that erred would have
	// moved.
	InclCost float64 `json:"incl_cost,omitempty"`
	ExclCost float64 `json:"excl_cost,omitempty"`
}

// Interval is a mean with its two-sided confidence interval (Student's t
// over per-round values); N is the number of rounds.
type Interval struct {
	Mean float64 `json:"mean"`
	Low  float64 `json:"low"`
	High float64 `json:"high"`
	N    int     `json:"n"`
}

// Finding is a node with a large exclusive share, explained.
type Finding struct {
	Node       int      `json:"node"`
	Path       []string `json:"path"`
	Calls      uint64   `json:"calls"`
	CallsPerOp float64  `json:"calls_per_op"` // calls per target operation
	MeanNs     float64  `json:"mean_ns"`
	// P50Ns and P99Ns are the node's instrument.HistQuantile: NaN where its
	// histogram counts nothing, written as null (see UnmarshalJSON).
	P50Ns       float64  `json:"p50_ns"`
	P99Ns       float64  `json:"p99_ns"`
	ExclShare   Interval `json:"excl_share"`
	OnCPUShare  float64  `json:"oncpu_share"`  // of the node's exclusive time
	OffCPUShare float64  `json:"offcpu_share"` // of the node's exclusive time
	Verdict     string   `json:"verdict"`      // "CPU-bound in X", "blocked in Y waiting on Z", "called N times per syscall"
	// Source, FromRound and ToRound say where the share comes from (see
	// Node.Source).
	Source    string `json:"source,omitempty"`
	FromRound int    `json:"from_round,omitempty"`
	ToRound   int    `json:"to_round,omitempty"`
	// Owner is, for a shared helper's time in one calling context, the
	// function that calls it there, which owns that time; OverallShare is
	// the helper's exclusive share over all its contexts.
	Owner        string  `json:"owner,omitempty"`
	OverallShare float64 `json:"overall_share,omitempty"`
	// InstrumentShare is the part of ExclShare that the instruments
	// themselves cost there (see Node.InstrumentNs): ExclShare less it
	// is the target's own.
	InstrumentShare float64 `json:"instrument_share,omitempty"`
}

// Event is one decision of the search, with the statistic behind it.
type Event struct {
	Round  int       `json:"round"`
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // insert, withdraw, refine, block-refine, target, keep, refuse, budget, stop
	Node   int       `json:"node,omitempty"`
	Spec   string    `json:"spec,omitempty"`
	Stat   *Interval `json:"stat,omitempty"`
	Reason string    `json:"reason"`
}

// Overhead compares what the cost model predicted with what was measured.
type Overhead struct {
	CostPerHitNs map[string]float64 `json:"cost_per_hit_ns"` // calibrated, by backend
	PredictedPct float64            `json:"predicted_pct"`   // of CPU, mean over rounds
	MeasuredPct  float64            `json:"measured_pct"`    // of CPU, from the backends' own run time where they report it
	MaxLive      int                `json:"max_live"`        // most instruments live at once
	Inserted     int                `json:"inserted"`        // instruments inserted over the hunt
	WholeSubtree int                `json:"whole_subtree"`   // instruments a full instrumentation of the reachable subtree would need
	MeasuredBy   string             `json:"measured_by"`     // how MeasuredPct was obtained
	// CompensatedPct is the share of the target's time, in percent, that
	// the hunt took out of its readings as the instruments' own cost (see
	// hunter.compensate); 0 with Config.RawCosts.
	CompensatedPct float64 `json:"compensated_pct"`
	// BaseOpsPerSec is the rate of the target's operations (calls of the
	// roots) during Deep Start's census, with only syscall timers in the
	// kernel; HuntOpsPerSec over the hunt's rounds; SlowdownPct how much
	// slower the workload ran under the hunt than then (0 where either
	// was not measured). The census's own timers cost the same in both.
	BaseOpsPerSec float64 `json:"base_ops_per_sec,omitempty"`
	HuntOpsPerSec float64 `json:"hunt_ops_per_sec,omitempty"`
	SlowdownPct   float64 `json:"slowdown_pct,omitempty"`
	// BareOpsPerSec estimates the rate with no instrument in: the census
	// rate with its timers' calibrated cost taken out of the target's time
	// (see hunter.baseRate); BareSlowdownPct how much slower the workload
	// ran under the hunt than that. 0 where the census timers were not
	// calibrated.
	BareOpsPerSec   float64 `json:"bare_ops_per_sec,omitempty"`
	BareSlowdownPct float64 `json:"bare_slowdown_pct,omitempty"`
	// ControllerPct is autoprof's own CPU over the rounds, percent of all
	// CPUs (reading the instruments, sampling, deciding, writing), 0
	// where it was not measured; StartupWallSec and StartupCPUSec are the
	// wall and CPU time from the hunt's beginning to its first round
	// (opening the instruments, calibration, symbols and call graph,
	// Deep Start). See ControllerMeter.
	ControllerPct  float64 `json:"controller_pct,omitempty"`
	StartupWallSec float64 `json:"startup_wall_sec,omitempty"`
	StartupCPUSec  float64 `json:"startup_cpu_sec,omitempty"`
	// SteadyControllerPct is ControllerPct over the rounds that began
	// with no instrument put in or taken out (OverheadRound.Changed): the
	// fixed cost of a round, without the kernel's work of loading,
	// attaching and detaching programs, which is charged to autoprof.
	SteadyControllerPct float64 `json:"steady_controller_pct,omitempty"`
	// Loop is the wall time of each phase of the rounds' loop, summed
	// over the rounds: what of ControllerPct the hunt's own goroutine
	// spends where (the rest is in the background: the stack sampler,
	// the garbage collector, the runtime). Nil where no round ran.
	Loop *LoopPhases `json:"loop,omitempty"`
	// OverBudget, where not empty, says that the budget could not be
	// kept and what the hunt did about it: reports put it on the first
	// screen.
	OverBudget string `json:"over_budget,omitempty"`
	// Rounds are the overhead of every round.
	Rounds []OverheadRound `json:"rounds,omitempty"`
}

// LoopPhases are the seconds the rounds' loop spent in each phase, over
// every round (Overhead.Loop).
type LoopPhases struct {
	Rounds int `json:"rounds"`
	// Read: reading the instruments, the thread count, the round's
	// samples; Statistics: the round's readings into the tree (costs
	// compensated, estimates); Progress: the intervals and the progress
	// report; Decisions: refining, withdrawing, the budget, inserting and
	// removing instruments.
	ReadSec       float64 `json:"read_sec"`
	StatisticsSec float64 `json:"statistics_sec"`
	ProgressSec   float64 `json:"progress_sec"`
	DecisionsSec  float64 `json:"decisions_sec"`
}

// OverheadRound is the overhead of one round.
type OverheadRound struct {
	Round        int     `json:"round"`
	Live         int     `json:"live"`          // instruments live during the round
	PredictedPct float64 `json:"predicted_pct"` // of CPU
	MeasuredPct  float64 `json:"measured_pct"`  // of CPU; -1 where not measured
	// ControllerPct is autoprof's own CPU in the round, percent of all
	// CPUs; 0 where not measured.
	ControllerPct float64 `json:"controller_pct,omitempty"`
	// Sec is the round's length, seconds: Meta.Round, or longer where
	// autoprof's own CPU was over the budget (Config.MaxRound).
	Sec float64 `json:"sec,omitempty"`
	// Changed is set where instruments went in or out as the round began
	// (Deep Start's roots before the first, a decision after the last
	// round before it): its ControllerPct holds that work.
	Changed bool `json:"changed,omitempty"`
}

// Listing is one function's disassembly with its basic blocks and the
// instruments the hunt placed in it.
type Listing struct {
	Func  string        `json:"func"`
	Addr  uint64        `json:"addr"`
	Lines []ListingLine `json:"lines"`
}

// ListingLine is one instruction.
type ListingLine struct {
	Offset       uint64 `json:"off"`
	Text         string `json:"text"`                   // "call vfs_read", targets symbolized
	BlockStart   bool   `json:"block_start,omitempty"`  // first instruction of a basic block
	Instrumented bool   `json:"instrumented,omitempty"` // an instrument sat here
	Calls        uint64 `json:"calls,omitempty"`        // what it counted
}

// UnmarshalJSON reads a Finding as reports writes it, where a quantile of
// no calls (NaN, which JSON cannot hold) is null: null reads back as NaN,
// not as a quantile of 0 ns.
func (f *Finding) UnmarshalJSON(b []byte) error {
	type plain Finding
	p := plain{P50Ns: math.NaN(), P99Ns: math.NaN()}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*f = Finding(p)
	return nil
}

// UnmarshalJSON reads an Interval as reports writes it, where the
// unbounded interval of one round (NewInterval) has null bounds, since
// JSON cannot hold infinities: a null bound reads back as unbounded, not
// as 0.
func (iv *Interval) UnmarshalJSON(b []byte) error {
	type plain Interval
	p := plain{Low: math.Inf(-1), High: math.Inf(1)}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*iv = Interval(p)
	return nil
}
