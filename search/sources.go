package search

import (
	"context"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// This file holds the small interfaces the controller consumes. Package
// search/live satisfies them with the running kernel (callgraph, splice,
// /proc); package search/searchtest with a simulated kernel.

// Graph is the static call graph the search refines along.
type Graph interface {
	// Callees returns what the function fn calls: the functions its direct
	// calls, tail calls and resolved static calls reach (each once), and
	// the offsets of its indirect call sites.
	Callees(fn string) (Callees, error)
	// Blocks returns the start offsets of fn's basic blocks other than the
	// entry, in increasing order.
	Blocks(fn string) ([]uint64, error)
}

// Callees is what one function calls.
type Callees struct {
	Funcs    []string // distinct callee functions, in call-site order
	Indirect []uint64 // offsets of indirect call sites
	// Sites are the direct calls (not tail jumps) of the function's own
	// code, by offset: where a callee can be timed at its call site
	// (instrument.Point.Callee). Elsewhere are the callees it also reaches
	// another way (a tail jump, from a .cold part): call-site timers
	// would miss those calls.
	Sites     []CallSite
	Elsewhere map[string]bool
}

// CallSite is a direct call at Off to Func.
type CallSite struct {
	Off  uint64
	Func string
}

// Blocker is implemented by graphs that know the scheduler's functions
// (.sched.text: schedule, schedule_timeout, io_schedule, all that is
// __sched): a thread blocks through them whatever it waits for, so that
// the frame that blocked is their caller, as in the kernel's own wait
// channels. Stack samples that end in them are their caller's.
type Blocker interface {
	Blocking(fn string) bool
}

// Lister is implemented by graphs that can disassemble a function for the
// report's listings.
type Lister interface {
	Listing(fn string) (Listing, error)
}

// Sampler takes statistical samples of where the target's threads are in
// the kernel: on-CPU samples (perf cpu-clock with kernel call chains) and,
// where it can, off-CPU samples (the kernel stacks of blocked threads).
type Sampler interface {
	// Sample samples the target for d (or until ctx ends) and returns the
	// kernel stacks seen, merged.
	Sample(ctx context.Context, target instrument.Target, d time.Duration) ([]Stack, error)
}

// Stack is one distinct kernel stack seen by a Sampler, with the time the
// samples of it stand for.
type Stack struct {
	// Frames are function names, outermost first (the entry code first,
	// the function that was running or that blocked last).
	Frames []string
	// OnCPU is set for samples of a running thread, clear for a blocked one.
	OnCPU bool
	// Count is the number of samples merged into this stack.
	Count uint64
	// WeightNs is the thread time the samples stand for: Count times the
	// sampling period.
	WeightNs float64
}

// Population tells how many threads the target has, for the denominator
// of shares (see Hunt).
type Population interface {
	// Threads returns the number of threads the target has now.
	Threads() (int, error)
}

// OverheadMeter is implemented by instrumenters that can tell how much CPU
// time their instruments have cost, as measured by the kernel (BPF
// programs' run time, kernel.bpf_stats_enabled). Overhead returns the
// cumulative total since the instrumenter was opened.
type OverheadMeter interface {
	Overhead() (time.Duration, error)
}

// ControllerMeter measures the controller itself, autoprof's own
// process: Controller returns the CPU time its threads have used (and
// what it runs in the kernel on their behalf, its stack sampler) and the
// wall time gone since the hunt began, its set-up before Hunt (opening the
// instruments, the calibration) included. Hunt reports the start-up to
// the first round and the CPU of every round from it (Overhead).
type ControllerMeter interface {
	Controller() (cpu, wall time.Duration, err error)
}

// Router is implemented by instrumenters that serve different specs with
// different backends (syscall roots by tracepoint, functions by fentry or
// kprobe); BackendOf names the backend that serves spec.
type Router interface {
	BackendOf(spec instrument.Spec) instrument.Backend
}

// Calibrator measures each backend's cost per hit, in ns of CPU time per
// instrument hit, by timing a known workload with and without an
// instrument. It runs once, before the hunt's first round.
type Calibrator interface {
	Calibrate(ctx context.Context, in instrument.Instrumenter) (map[string]float64, error)
}
