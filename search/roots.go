package search

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// maxRoots bounds the roots Deep Start chooses.
const maxRoots = 8

// dispatchers are the kernel functions that run interrupt and softirq
// handlers; in a stack, the frame after the innermost of them is the
// handler the interrupted task was charged for.
var dispatchers = map[string]bool{
	"handle_softirqs": true, "__do_softirq": true, "do_softirq": true,
	"__handle_irq_event_percpu": true, "handle_irq_event": true,
	"__sysvec_apic_timer_interrupt": true, "hrtimer_interrupt": true,
	"__hrtimer_run_queues": true, "run_ksoftirqd": true,
}

// instrumentFrames start the names of the kernel functions that run
// instruments: BPF programs and the trampolines, tracepoint and kprobe
// glue that call them.
var instrumentFrames = []string{
	"bpf_prog_", "__bpf_prog_enter", "__bpf_prog_exit", "bpf_trampoline_", "__bpf_trace_", "bpf_trace_run",
	"trace_call_bpf", "kprobe_ftrace_handler", "kprobe_perf_func", "kprobe_dispatcher", "kretprobe_dispatcher",
	"kprobe_int3_handler", "__kretprobe_trampoline_handler", "perf_trace_run_bpf_submit",
}

// tracepointSlowPath are the kernel functions a syscall runs only
// because a syscall tracepoint is enabled (SYSCALL_WORK_SYSCALL_TRACEPOINT
// sends every syscall of every task through the entry code's slow path):
// the tracepoint's own cost, which a syscall root's tracepoint timer
// brings. What they call for other work (seccomp filters, audit) is the
// target's, so only a sample that ran in them itself is the instruments'.
var tracepointSlowPath = map[string]bool{
	"syscall_trace_enter": true, "syscall_exit_work": true,
	"__traceiter_sys_enter": true, "__traceiter_sys_exit": true,
	"trace_sys_enter": true, "trace_sys_exit": true,
}

// splitOwn drops the stacks that sampled the instruments themselves (that
// time is the hunt's overhead, which it measures and reports as such, not
// the target's): a stack through an instrument's code, or one that ran in
// the syscall tracepoints' slow path itself (see tracepointSlowPath). It
// returns the others with the thread time of the dropped ones.
func splitOwn(stacks []Stack) ([]Stack, float64) {
	out := stacks[:0:0]
	var dropped float64
	for _, s := range stacks {
		if slices.ContainsFunc(s.Frames, isInstrumentFrame) || s.OnCPU && inSlowPath(s.Frames) {
			dropped += s.WeightNs
			continue
		}
		out = append(out, s)
	}
	return out, dropped
}

// inSlowPath reports whether the innermost frame is one of the syscall
// tracepoints' slow path (a compiler's .isra or .constprop copy too).
func inSlowPath(frames []string) bool {
	if len(frames) == 0 {
		return false
	}
	name, _, _ := strings.Cut(frames[len(frames)-1], ".")
	return tracepointSlowPath[name]
}

func isInstrumentFrame(f string) bool {
	for _, p := range instrumentFrames {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}

// deepStart chooses the roots: every Config.Roots function, and the roots
// of the stacks a short sample finds (Paradyn's Deep Start: start where the
// samples point, and let exact instruments confirm or refute). A stack's
// root is, in this order of preference: the frame after the innermost
// interrupt or softirq dispatcher that can be timed; the syscall entry
// function; the outermost frame that can be timed. A root is taken when
// the samples give it at least θ/2 of the target's time (at most maxRoots
// of them, the largest first). Along each root's hot sampled paths (at
// least θ of the target's time), every frame that can be timed is timed
// at once, so that a deep bottleneck is confirmed without refining level
// by level. Sampling is repeated until some root is found or the hunt must
// stop.
func (h *hunter) deepStart(ctx context.Context) {
	for _, r := range h.cfg.Roots {
		h.addRoot(r, "--root")
	}
	for _, r := range h.cfg.CompareRoots {
		h.addRoot(r, "--compare: a finding of the base run")
	}
	if (h.cfg.Sampler == nil && len(h.cfg.Syscalls) == 0) || h.cfg.DeepStart < 0 {
		if len(h.cfg.Roots)+len(h.cfg.CompareRoots) == 0 {
			h.limit("no Deep Start (no stack sampler, no syscall census): roots come from --root only")
		}
		return
	}
	for {
		d := h.cfg.DeepStart
		if dl := h.deadline(); !dl.IsZero() {
			d = min(d, time.Until(dl))
		}
		census := h.startCensus()
		began := time.Now()
		stacks, err := h.sample(ctx, d)
		took := time.Since(began)
		if err != nil {
			h.limit("no stack samples for Deep Start: %v", err)
		}
		stacks, dropped := splitOwn(stacks)
		h.deep = append(h.deep, stacks...)
		h.keepStacks(stacks, h.sampleTargetNs(took)-dropped, 0, 0)
		for _, s := range stacks {
			h.keepWaits(s)
		}
		h.census = census
		h.chooseRoots(h.endCensus(census), stacks, d)
		h.baseRate(census)
		if census != nil {
			h.censusEnd = census.end
		}
		h.closeCensus(census)
		h.census = nil
		if len(h.rootNodes()) > 0 {
			h.planHotPaths(d)
			return
		}
		if stop := h.stopNow(ctx); stop != "" {
			h.stop = stop
			return
		}
	}
}

// A hunt that samples no round otherwise samples one now and then to look
// for work outside its roots (lateRoots): the first rootWatch rounds
// after Deep Start, and then, as long as none finds any, twice as long
// after each, up to maxRootWatch rounds (a sampled round costs autoprof
// about twice another: the sampler's program in every CPU's clock
// interrupt, and the stacks read and resolved); a round that finds a late
// root starts again from rootWatch.
const (
	rootWatch    = 4
	maxRootWatch = 16
)

// watchRound reports whether the round about to run samples for late
// roots.
func (h *hunter) watchRound() bool { return h.round+1 == h.nextWatch }

// scheduleWatch sets the next watch round after the round just taken:
// sooner where it found a late root (added), later where a watch round
// found none.
func (h *hunter) scheduleWatch(added bool) {
	switch {
	case added:
		h.watchEvery = rootWatch
	case h.round != h.nextWatch:
		return
	default:
		h.watchEvery = min(2*h.watchEvery, maxRootWatch)
	}
	h.nextWatch = h.round + h.watchEvery
}

// minLateSamples is how many of a round's samples must put a frame's time
// outside every root before lateRoots takes it for a root: one round's
// few samples are noisy.
const minLateSamples = 10

// lateRoots adds the roots that the last round's stack samples put at
// least θ of the target's time under, outside every root: work the target
// began after Deep Start chose its roots (a child it started later, a new
// phase), which no instrument would otherwise see. It reports whether it
// added one.
func (h *hunter) lateRoots() (added bool) {
	if h.roundStacks == nil || h.roundNs <= 0 || len(h.roots) >= maxRoots {
		return false
	}
	weight, count := map[string]float64{}, map[string]uint64{}
	for _, s := range h.roundStacks {
		i := h.rootIndex(s.Frames)
		if i < 0 || slices.ContainsFunc(s.Frames, func(f string) bool { return h.roots[f] }) {
			continue
		}
		weight[s.Frames[i]] += s.WeightNs
		count[s.Frames[i]] += s.Count
	}
	names := heaviest(weight)
	for _, f := range names {
		share := weight[f] / h.roundNs
		if share < h.theta() || len(h.roots) >= maxRoots {
			break
		}
		if count[f] < minLateSamples {
			continue
		}
		h.addRoot(f, fmt.Sprintf("stack samples of round %d put %s of the target's time in it, outside every root: it began after Deep Start", h.round, pct(share)))
		added = added || h.roots[f]
	}
	return added
}

// sample samples the target for d, or waits d where there is no sampler.
func (h *hunter) sample(ctx context.Context, d time.Duration) ([]Stack, error) {
	if h.cfg.Sampler != nil {
		return h.cfg.Sampler.Sample(ctx, h.cfg.Target, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-h.cfg.Done:
	case <-t.C:
	}
	return nil, nil
}

// stopNow returns why the hunt must stop now, or "".
func (h *hunter) stopNow(ctx context.Context) string {
	select {
	case <-ctx.Done():
		return "interrupted: " + context.Cause(ctx).Error()
	case <-h.cfg.Done:
		return stopExited
	default:
	}
	if dl := h.deadline(); !dl.IsZero() && !time.Now().Before(dl) {
		return "deadline reached"
	}
	return ""
}

// chooseRoots adds the roots that hold time: syscalls by the census
// where one ran (exact), other stack roots by the samples.
func (h *hunter) chooseRoots(census map[string]float64, stacks []Stack, d time.Duration) {
	weight := map[string]float64{}
	how := map[string]string{}
	for f, ns := range census {
		weight[f] = ns
		how[f] = "census: the syscall's timer measured"
	}
	for _, s := range stacks {
		if i := h.rootIndex(s.Frames); i >= 0 && !(census != nil && instrument.IsSyscall(s.Frames[i])) {
			weight[s.Frames[i]] += s.WeightNs
			how[s.Frames[i]] = "Deep Start: stack samples put"
		}
	}
	names := heaviest(weight)
	total := h.sampleTargetNs(d)
	for _, f := range names[:min(len(names), maxRoots)] {
		share := weight[f] / total
		if share < h.theta()/2 {
			break
		}
		h.addRoot(f, fmt.Sprintf("%s %s of the target's time in it", how[f], pct(share)))
	}
}

// heaviest returns the names of weight, the heaviest first (by name
// among equals).
func heaviest(weight map[string]float64) []string {
	names := make([]string, 0, len(weight))
	for f := range weight {
		names = append(names, f)
	}
	sort.Slice(names, func(i, j int) bool {
		if weight[names[i]] != weight[names[j]] {
			return weight[names[i]] > weight[names[j]]
		}
		return names[i] < names[j]
	})
	return names
}

// sampleTargetNs is the target's time over a sampling period d.
func (h *hunter) sampleTargetNs(d time.Duration) float64 {
	threads := float64(h.cfg.CPUs)
	if h.cfg.Population != nil {
		if n, err := h.cfg.Population.Threads(); err == nil && n > 0 {
			threads = float64(n)
		}
	}
	return max(float64(d)*threads, 1)
}

// rootIndex returns the index of the root frame of a stack (see deepStart),
// or -1. Where the hunt grows sampled trees, a frame the rules pick is
// the root even if it cannot be timed (a sampled root).
func (h *hunter) rootIndex(frames []string) int {
	ok := func(f string) bool { return h.cfg.SampleTree || h.canTime(f) }
	for i := len(frames) - 1; i >= 0; i-- {
		if dispatchers[frames[i]] {
			for j := i + 1; j < len(frames); j++ {
				if h.canTime(frames[j]) {
					return j
				}
			}
			if h.cfg.SampleTree && i+1 < len(frames) {
				return i + 1
			}
			return -1
		}
	}
	for i, f := range frames {
		if instrument.IsSyscall(f) {
			if ok(f) {
				return i
			}
			return -1
		}
	}
	for i := len(frames) - 1; i >= 0; i-- {
		if syscallDispatchers[frames[i]] && i+1 < len(frames) && ok(frames[i+1]) {
			return i + 1
		}
	}
	for i, f := range frames {
		if h.canTime(f) {
			return i
		}
	}
	return -1
}

// syscallDispatchers are the functions that call syscall entry
// functions. A syscall entry function that only forwards its arguments
// ends in a tail call, so that a stack may show its callee right after the
// dispatcher; where the syscall cannot be named, that callee is the root.
var syscallDispatchers = map[string]bool{
	"do_syscall_64": true, "x64_sys_call": true, "do_int80_syscall_32": true, "__do_fast_syscall_32": true,
}

// IsSyscallDispatcher reports whether fn calls syscall entry functions.
func IsSyscallDispatcher(fn string) bool { return syscallDispatchers[fn] }

// canTime reports whether fn can get a timer.
func (h *hunter) canTime(fn string) bool {
	return h.check(nil, instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer, Target: h.cfg.Target}) == nil
}

// addRoot times fn as a root: with the census's timer where it ran one,
// else with a new one. Where fn cannot be timed and the hunt grows sampled
// trees, fn becomes a sampled root.
func (h *hunter) addRoot(fn, reason string) {
	if h.roots[fn] {
		return
	}
	spec := instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer, Target: h.cfg.Target}
	if err := h.check(nil, spec); err != nil {
		if h.cfg.SampleTree {
			h.addSampledRoot(fn, reason)
			return
		}
		h.limit("root %s refused: %v", fn, err)
		return
	}
	h.roots[fn] = true
	in, err := h.adopt(spec)
	if err != nil {
		delete(h.roots, fn)
		h.limit("root %s: %v", fn, err)
		return
	}
	in.root = true
	n := h.nodeFor(instrument.Path{spec.Point})
	n.kind = NodeRoot
	h.event("root", n, spec.String(), nil, reason)
}

// adopt takes over the census's timer of a root, or inserts one.
func (h *hunter) adopt(spec instrument.Spec) (*inserted, error) {
	if h.census == nil || h.census.live[spec.Func] == nil {
		return h.insert(nil, spec, 0)
	}
	live := h.census.live[spec.Func]
	delete(h.census.live, spec.Func)
	in := &inserted{spec: spec, key: spec.String(), live: live, backend: h.backendOf(spec), since: h.nextFull()}
	h.specs[in.key] = in
	h.run.Overhead.Inserted++
	h.run.Overhead.MaxLive = max(h.run.Overhead.MaxLive, h.liveCount())
	return in, nil
}

// addSampledRoot makes fn a root known from stack samples only.
func (h *hunter) addSampledRoot(fn, reason string) {
	h.roots[fn] = true
	n := h.nodeFor(instrument.Path{{Func: fn}})
	n.kind, n.state = NodeRoot, StateSampled
	h.event("root", n, fn, nil, reason+"; it cannot be timed here, so samples alone measure it")
}

// noRootsReason explains why no root was found.
func (h *hunter) noRootsReason() string {
	switch {
	case len(h.cfg.Roots)+len(h.cfg.CompareRoots) > 0:
		return "every --root and --compare root was refused"
	case h.cfg.Sampler == nil && len(h.cfg.Syscalls) == 0:
		return "no --root given, no stack sampler and no syscall census"
	case len(h.deep) == 0 && len(h.cfg.Syscalls) == 0:
		return "the samples saw the target nowhere in the kernel"
	}
	return fmt.Sprintf("no stack root had %s of the target's time, or none could be timed", pct(h.theta()/2))
}
