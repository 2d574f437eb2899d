//go:build linux

package live

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/splice"
)

// Sampler is search.Sampler over the running kernel: on-CPU stacks from
// the sample backend (perf cpu-clock with kernel call chains, filtered to
// the target in the kernel) and, for a pid or cgroup target, off-CPU
// stacks. Those come from the kernel's sched_switch, where a BPF program
// adds up each blocked thread's time by kernel stack (splice.OffCPU);
// where it cannot load, from a poll every OffPeriod of the kernel stack
// (/proc/TID/stack) of each of the target's threads that is blocked, each
// standing for the time since the last poll. The on-CPU samples share out
// the target's time on the CPU (see onCPUWeight). Where a
// stack lacks the syscall entry function (a tail call), it is put back:
// from /proc/TID/syscall for off-CPU stacks, and from the call graph for
// on-CPU ones when exactly one syscall entry function tail-calls the
// frame after the dispatcher.
type Sampler struct {
	on  *splice.Sampler
	off *splice.OffCPU // nil: off-CPU stacks are polled from /proc
	// schedText are .sched.text and .lock.text, where waitFrames drops
	// the scheduler's and the locks' own frames.
	schedText [2][2]uint64
	freq      uint64
	syms      *callgraph.Symbols
	table     *splice.SyscallTable
	tails     map[string]string
	offCPU    bool
	offPeriod time.Duration
	// system drops the idle task's samples (see idleStack): a whole-system
	// hunt counts the time of threads that do work.
	system bool
	closed bool
	// windows counts the Sample calls under way: the on-CPU events run
	// only while one is (see window).
	mu      sync.Mutex
	windows int
}

// SamplerOptions configure OpenSampler.
type SamplerOptions struct {
	Target instrument.Target
	Freq   uint64        // on-CPU samples per second per CPU (default 499)
	Period time.Duration // off-CPU polling period (default 10 ms)
}

// OpenSampler starts sampling the target. The on-CPU part may be
// unavailable (err says why) while the off-CPU part still works: the
// returned Sampler is usable whenever it is not nil.
func OpenSampler(ctx context.Context, sess *splice.Session, o SamplerOptions) (*Sampler, error) {
	if o.Freq == 0 {
		o.Freq = 499
	}
	if o.Period == 0 {
		o.Period = 10 * time.Millisecond
	}
	s := &Sampler{freq: o.Freq, syms: sess.Graph().Symbols(), table: sess.Syscalls(), offPeriod: o.Period, system: o.Target.IsSystem()}
	s.tails = syscallTails(sess.Graph())
	s.schedText = [2][2]uint64{textRange(s.syms, "__sched_text"), textRange(s.syms, "__lock_text")}
	if !o.Target.IsSystem() {
		if off, err := splice.OpenOffCPU(ctx, splice.OffCPUOptions{Target: o.Target}); err == nil {
			s.off, s.offCPU = off, true
		} else {
			s.offCPU = procStacks(o.Target)
		}
	}
	on, err := splice.OpenSampler(ctx, splice.SamplerOptions{Freq: o.Freq, Target: o.Target})
	if err != nil {
		if !s.offCPU {
			return nil, err
		}
		return s, err
	}
	if err := on.Pause(); err != nil {
		on.Close()
		s.Close()
		return nil, err
	}
	s.on = on
	return s, nil
}

// window starts the on-CPU events for a Sample call, where none runs
// yet, and returns what ends it: between samplings no sample is taken,
// and the sampler's program costs nothing.
func (s *Sampler) window() (end func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.windows == 0 {
		if err := s.on.Resume(); err != nil {
			return nil, err
		}
	}
	s.windows++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.windows--; s.windows == 0 {
			s.on.Pause() // an error leaves it sampling, as before pausing existed
		}
	}, nil
}

// RunTime is the kernel time the sampler's programs have taken so far
// (see splice.Sampler.RunTime and splice.OffCPU.RunTime).
func (s *Sampler) RunTime() (time.Duration, error) {
	var d time.Duration
	if s.on != nil {
		on, err := s.on.RunTime()
		if err != nil {
			return 0, err
		}
		d += on
	}
	if s.off != nil {
		off, err := s.off.RunTime()
		if err != nil {
			return 0, err
		}
		d += off
	}
	return d, nil
}

// procStacks reports whether the kernel stacks of tasks can be read
// (/proc/PID/stack needs CONFIG_STACKTRACE and CAP_SYS_ADMIN): it reads
// its own.
func procStacks(instrument.Target) bool {
	_, err := os.ReadFile(filepath.Join(procRoot, "thread-self", "stack"))
	return err == nil
}

// OffCPU reports whether off-CPU stacks are sampled.
func (s *Sampler) OffCPU() bool { return s.offCPU }

// OnCPU reports whether on-CPU stacks are sampled.
func (s *Sampler) OnCPU() bool { return s.on != nil }

// Close stops sampling. A second call returns os.ErrClosed.
func (s *Sampler) Close() error {
	if s.closed {
		return os.ErrClosed
	}
	s.closed = true
	var errs []error
	if s.off != nil {
		errs = append(errs, s.off.Close())
	}
	if s.on != nil {
		errs = append(errs, s.on.Close())
	}
	return errors.Join(errs...)
}

// syscallTails maps each function that exactly one native x86-64 syscall
// entry function tail-calls to that syscall entry function. The entry
// functions are taken from the symbol table, so that this works where the
// syscall table cannot be read.
func syscallTails(g *callgraph.Graph) map[string]string {
	tails := map[string]string{}
	count := map[string]int{}
	for _, sym := range g.Symbols().Functions() {
		if _, native, ok := instrument.Syscall(sym.Name); !ok || !native {
			continue
		}
		edges, err := g.Callees(sym.Name)
		if err != nil {
			continue
		}
		for _, e := range edges {
			if e.Kind == callgraph.Tail && e.Target != "" && e.TargetOff == 0 {
				count[e.Target]++
				tails[e.Target] = sym.Name
			}
		}
	}
	for f, n := range count {
		if n > 1 {
			delete(tails, f)
		}
	}
	return tails
}

// Sample implements search.Sampler.
func (s *Sampler) Sample(ctx context.Context, target instrument.Target, d time.Duration) ([]search.Stack, error) {
	acc := map[string]*search.Stack{}
	var p0 *splice.Profile
	if s.on != nil {
		stop, err := s.window()
		if err != nil {
			return nil, fmt.Errorf("starting the stack sampler: %w", err)
		}
		defer stop()
		if p0, err = s.on.Read(); err != nil {
			return nil, fmt.Errorf("reading stack samples: %w", err)
		}
	}
	sched0 := schedTimes(target)
	var w0 *splice.OffCPUSnapshot
	if s.off != nil {
		var err error
		if w0, err = s.off.Read(); err != nil {
			return nil, fmt.Errorf("reading off-CPU waits: %w", err)
		}
	}
	start := time.Now()
	end := start.Add(d)
	last := start.Add(-s.offPeriod)
	for {
		if s.offCPU && s.off == nil {
			// Each blocked thread stands for the time since the last
			// poll: the polls come less often than offPeriod on a busy
			// machine, and a nominal weight would undercount waits.
			now := time.Now()
			s.pollOffCPU(target, acc, now.Sub(last))
			last = now
		}
		wait := min(s.offPeriod, time.Until(end))
		if !s.offCPU || s.off != nil {
			wait = time.Until(end)
		}
		if wait <= 0 || sleep(ctx, wait) != nil {
			break
		}
	}
	if s.off != nil {
		w1, err := s.off.Read()
		if err != nil {
			return nil, fmt.Errorf("reading off-CPU waits: %w", err)
		}
		if err := s.addOffCPU(w0, w1, acc); err != nil {
			return nil, err
		}
	}
	if s.on != nil {
		p1, err := s.on.Read()
		if err != nil {
			return nil, fmt.Errorf("reading stack samples: %w", err)
		}
		s.addOnCPU(p0, p1, acc, s.onCPUWeight(p0, p1, sched0, schedTimes(target)))
	}
	out := make([]search.Stack, 0, len(acc))
	for _, st := range acc {
		out = append(out, *st)
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// onCPUWeight is the wall time in nanoseconds that each on-CPU sample
// taken between two profiles stands for: the target's time on the CPU and
// waiting on a run queue over the period (schedstat), spread over all its
// samples (kernel, user and lost), so that samples give proportions and
// the kernel's own accounting the amount. A sampling timer fires less
// often than asked (under emulation, on a loaded machine, perf's
// throttling), and 1/Freq s a sample then undercounts the time: the
// stat-storm VM hunt's samples covered a third of the time its syscall
// timer measured. Where schedstat cannot be read (a whole-system target)
// or gives less than the nominal rate (threads exited in the period took
// their time with them), it is 1/Freq s times runnableScale.
func (s *Sampler) onCPUWeight(p0, p1 *splice.Profile, before, after [2]float64) float64 {
	nominal := runnableScale(before, after) * 1e9 / float64(s.freq)
	n := p1.Total() + p1.User + p1.Lost
	n -= min(n, p0.Total()+p0.User+p0.Lost)
	cpu := (after[0] - before[0]) + (after[1] - before[1])
	if n == 0 || cpu <= 0 {
		return nominal
	}
	return max(nominal, cpu/float64(n))
}

// addOnCPU adds the samples taken between two profiles, each standing
// for weight nanoseconds of a thread's time (see onCPUWeight).
func (s *Sampler) addOnCPU(p0, p1 *splice.Profile, acc map[string]*search.Stack, weight float64) {
	before := map[string]uint64{}
	for _, st := range p0.Stacks {
		before[addrKey(st.Addrs)] = st.Count
	}
	for _, st := range p1.Stacks {
		n := st.Count - min(st.Count, before[addrKey(st.Addrs)])
		if n == 0 {
			continue
		}
		frames := s.fixSyscall(s.symbolize(st.Addrs), -1)
		if s.system && idleStack(frames) {
			continue
		}
		add(acc, frames, true, n, weight*float64(n))
	}
}

// addOffCPU adds the target's waits between two snapshots of the off-CPU
// program, one stack per place, standing for the time waited there. Its
// Count is that time in poll periods (at least 1): what a poll of
// /proc every offPeriod would have counted, for the search's intervals.
func (s *Sampler) addOffCPU(w0, w1 *splice.OffCPUSnapshot, acc map[string]*search.Stack) error {
	for w, ns := range splice.OffCPUWindow(w0, w1) {
		addrs, err := s.off.Stack(w.Stack)
		if err != nil {
			return fmt.Errorf("reading off-CPU waits: %w", err)
		}
		frames := s.fixSyscall(s.waitFrames(addrs), int(w.Nr))
		n := max(1, uint64(math.Round(float64(ns)/float64(s.offPeriod))))
		add(acc, frames, false, n, float64(ns))
	}
	return nil
}

// waitFrames names the frames of a blocked thread's call chain taken at
// sched_switch (innermost first) as /proc/TID/stack shows a sleeping
// task's, outermost first: without the tracepoint's and BPF's frames
// inside the scheduler, and without the scheduler's and the locks' own
// functions (.sched.text and .lock.text: the kernel's
// in_sched_functions), so that a wait is named by what waits.
func (s *Sampler) waitFrames(addrs []uint64) []string {
	sched := func(a uint64) bool {
		for _, r := range s.schedText {
			if r[0] <= a && a < r[1] {
				return true
			}
		}
		return false
	}
	inner := len(addrs)
	for i, a := range addrs {
		if sched(a) {
			inner = i
			break
		}
	}
	if inner == len(addrs) {
		inner = 0 // no scheduler frame: keep the chain as it is
	}
	kept := make([]uint64, 0, len(addrs)-inner)
	for _, a := range addrs[inner:] {
		if !sched(a) {
			kept = append(kept, a)
		}
	}
	return s.symbolize(kept)
}

// textRange returns the addresses between the kernel symbols
// section_start and section_end (e.g. __sched_text_start, _end); an
// empty range where the kernel lacks them.
func textRange(syms *callgraph.Symbols, section string) [2]uint64 {
	start, ok1 := syms.Symbol(section + "_start")
	end, ok2 := syms.Symbol(section + "_end")
	if !ok1 || !ok2 {
		return [2]uint64{}
	}
	return [2]uint64{start.Addr, end.Addr}
}

// pollOffCPU adds one off-CPU sample per blocked thread of the target,
// standing for weight of its time.
func (s *Sampler) pollOffCPU(target instrument.Target, acc map[string]*search.Stack, weight time.Duration) {
	ts, err := tasks(target)
	if err != nil {
		return
	}
	for _, dir := range ts {
		frames := taskStack(dir)
		if len(frames) == 0 {
			continue
		}
		frames = s.fixSyscall(frames, syscallNr(dir))
		add(acc, frames, false, 1, float64(weight))
	}
}

// schedTimes sums, over the target's threads, the time they ran and the
// time they waited on a run queue, runnable but not running
// (/proc/TID/schedstat, the first two fields); zeros where it cannot be
// read.
func schedTimes(target instrument.Target) (t [2]float64) {
	if target.IsSystem() {
		return t
	}
	ts, err := tasks(target)
	if err != nil {
		return t
	}
	for _, dir := range ts {
		b, err := os.ReadFile(filepath.Join(dir, "schedstat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		r, err1 := strconv.ParseFloat(f[0], 64)
		w, err2 := strconv.ParseFloat(f[1], 64)
		if err1 == nil && err2 == nil {
			t[0], t[1] = t[0]+r, t[1]+w
		}
	}
	return t
}

// runnableScale is the factor by which on-CPU samples stand for wall
// time: a thread preempted while runnable is sampled neither on the CPU
// (it does not run) nor off it (it is not blocked), while a timer counts
// that wait in whatever it interrupted. Spread over where the thread ran,
// as preemption falls, it is (run + run-queue wait) / run over the
// period, 1 where schedstat is unavailable.
func runnableScale(before, after [2]float64) float64 {
	run, wait := after[0]-before[0], after[1]-before[1]
	if run <= 0 || wait < 0 {
		return 1
	}
	return (run + wait) / run
}

// syscallNr returns the syscall a blocked thread is in, or -1.
func syscallNr(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "syscall"))
	if err != nil {
		return -1
	}
	f, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	nr, err := strconv.Atoi(f)
	if err != nil {
		return -1
	}
	return nr
}

func add(acc map[string]*search.Stack, frames []string, on bool, n uint64, ns float64) {
	if len(frames) == 0 {
		return
	}
	key := fmt.Sprint(on, frames)
	st := acc[key]
	if st == nil {
		st = &search.Stack{Frames: frames, OnCPU: on}
		acc[key] = st
	}
	st.Count += n
	st.WeightNs += ns
}

func addrKey(addrs []uint64) string {
	var b strings.Builder
	for _, a := range addrs {
		b.WriteString(strconv.FormatUint(a, 16))
		b.WriteByte(',')
	}
	return b.String()
}

// symbolize names the frames of a call chain (innermost first) and returns
// them outermost first; addresses outside known text are dropped.
func (s *Sampler) symbolize(addrs []uint64) []string {
	frames := make([]string, 0, len(addrs))
	for i := len(addrs) - 1; i >= 0; i-- {
		if sym, _, err := s.syms.FuncAt(addrs[i]); err == nil {
			frames = append(frames, sym.Name)
		}
	}
	return frames
}

// fixSyscall puts the syscall entry function back into a stack that lacks
// it (see Sampler); nr is the syscall number where known, else -1.
func (s *Sampler) fixSyscall(frames []string, nr int) []string {
	at := -1
	for i, f := range frames {
		if instrument.IsSyscall(f) {
			return frames
		}
		if search.IsSyscallDispatcher(f) {
			at = i
		}
	}
	if at < 0 || at+1 >= len(frames) {
		return frames
	}
	name := s.tails[frames[at+1]]
	if nr >= 0 && s.table != nil {
		if n, ok := s.table.Name(nr); ok {
			name = n
		}
	}
	if name == "" {
		return frames
	}
	out := append(append(append([]string(nil), frames[:at+1]...), name), frames[at+1:]...)
	return out
}

// idleStack reports whether an on-CPU stack is a CPU's idle loop (do_idle,
// the idle task) and not an interrupt it took while idle: the whole
// system's idle CPUs are no thread's work.
func idleStack(frames []string) bool {
	idle := false
	for _, f := range frames {
		switch {
		case f == "do_idle":
			idle = true
		case idle && isInterruptFrame(f):
			return false
		}
	}
	return idle
}

// interruptPrefixes start the names of the kernel's interrupt and softirq
// entry and handling functions.
var interruptPrefixes = []string{"asm_sysvec_", "asm_common_interrupt", "sysvec_", "__sysvec_", "common_interrupt", "handle_softirqs", "__do_softirq", "irq_exit", "__irq_exit_rcu"}

func isInterruptFrame(f string) bool {
	for _, p := range interruptPrefixes {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}
