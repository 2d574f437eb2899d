package splice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/offcpu"
)

// OffCPUOptions configure OpenOffCPU.
type OffCPUOptions struct {
	// Target selects the tasks whose waits count; it must name pids or a
	// cgroup (a whole-system target's idle waits are not the target's).
	Target instrument.Target
	// MaxStacks bounds distinct call chains (default 16384), MaxThreads
	// the threads followed at once (default 16384); waits past them are
	// counted as lost.
	MaxStacks, MaxThreads int
}

// OffCPU measures where the target's threads block, in the kernel: a BPF
// program on sched_switch adds up the time each blocked thread spends off
// the CPU by kernel call chain and syscall (kmod/offcpu). Unlike a poll
// of /proc/TID/stack, it costs the controller one map read per window
// and misses no wait, however short.
type OffCPU struct {
	progTool[*offCPURes]
}

type offCPURes struct {
	objs   *offcpu.Objects
	link   link.Link
	cgroup *os.File
}

func (r *offCPURes) program() *ebpf.Program { return r.objs.Program() }

func (r *offCPURes) close() error {
	var errs []error
	if r.link != nil {
		errs = append(errs, r.link.Close())
	}
	if r.cgroup != nil {
		errs = append(errs, r.cgroup.Close())
	}
	errs = append(errs, r.objs.Close())
	return errors.Join(errs...)
}

// OpenOffCPU starts measuring the target's waits.
func OpenOffCPU(ctx context.Context, opts OffCPUOptions) (*OffCPU, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := features.HaveTracepoint(); err != nil {
		return nil, fmt.Errorf("off-CPU waits: %w: %w", instrument.ErrNotSupported, err)
	}
	if opts.Target.IsSystem() {
		return nil, fmt.Errorf("off-CPU waits: a whole-system target has no waits of its own: %w", instrument.ErrNotSupported)
	}
	if opts.MaxStacks == 0 {
		opts.MaxStacks = 16384
	}
	if opts.MaxThreads == 0 {
		opts.MaxThreads = 16384
	}
	objs, err := offcpu.Load(opts.MaxStacks, opts.MaxThreads)
	if err != nil {
		return nil, fmt.Errorf("off-CPU waits: %w: %w", instrument.ErrNotSupported, err)
	}
	r := &offCPURes{objs: objs}
	if err := r.start(opts); err != nil {
		r.close()
		return nil, err
	}
	o := &OffCPU{progTool[*offCPURes]{res: r, what: "off-CPU waits"}}
	o.clean = runtime.AddCleanup(o, func(r *offCPURes) { r.close() }, r)
	return o, nil
}

func (r *offCPURes) start(opts OffCPUOptions) error {
	var err error
	if r.cgroup, err = filterTarget(opts.Target, r.objs.SetFilter); err != nil {
		return err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: r.objs.Program()})
	if err != nil {
		return fmt.Errorf("off-CPU waits: attaching to sched_switch: %w: %w", instrument.ErrNotSupported, err)
	}
	r.link = l
	return nil
}

// OffCPUSnapshot is what an OffCPU has measured up to one moment: the
// waits that ended, cumulative since OpenOffCPU, and each thread's last
// wait. At is CLOCK_MONOTONIC just before the totals were read: a wait
// that ended before it is in Totals, one that ended after it may not be.
type OffCPUSnapshot struct {
	At     uint64
	Totals map[offcpu.Wait]offcpu.Total
	Last   map[uint32]offcpu.Start
	Lost   uint64
}

// Read takes a snapshot.
func (o *OffCPU) Read() (*OffCPUSnapshot, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, instrument.ErrClosed
	}
	at, err := kernel.MonotonicNs()
	if err != nil {
		return nil, err
	}
	s := &OffCPUSnapshot{At: at}
	if s.Totals, err = o.res.objs.Totals(); err != nil {
		return nil, err
	}
	if s.Last, err = o.res.objs.Starts(); err != nil {
		return nil, err
	}
	if s.Lost, err = o.res.objs.Lost(); err != nil {
		return nil, err
	}
	return s, nil
}

// Stack returns the call chain of a wait, innermost address first; nil
// where the stack map no longer holds it.
func (o *OffCPU) Stack(id int32) ([]uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, instrument.ErrClosed
	}
	return o.res.objs.Stack(id)
}

// OffCPUWindow returns, by wait, the time the target's threads spent
// blocked between two snapshots (from s0.At to s1.At), in nanoseconds:
// the waits that ended between them (their totals' difference), less
// the part before s0.At of those under way at s0, plus the part after
// s0.At of those still under way at s1. A wait that ended while a
// snapshot's totals were being read may be counted in the wrong window;
// a window's time in one place is never below zero.
func OffCPUWindow(s0, s1 *OffCPUSnapshot) map[offcpu.Wait]uint64 {
	ns := map[offcpu.Wait]int64{}
	for w, t1 := range s1.Totals {
		if t0 := s0.Totals[w].Ns; t1.Ns > t0 {
			ns[w] += int64(t1.Ns - t0)
		}
	}
	open := func(s offcpu.Start, at uint64) bool { return s.End == 0 || s.End > at }
	for tid, e0 := range s0.Last {
		if !open(e0, s0.At) {
			continue // ended before s0: in s0's totals, none of it in the window
		}
		e1, ok := s1.Last[tid]
		if ok && e1.At == e0.At && open(e1, s1.At) {
			ns[e0.Wait] += int64(s1.At - min(s1.At, s0.At)) // the whole window, in no total yet
			continue
		}
		// Ended in the window: its whole length is in the totals'
		// difference, but only the part after s0.At is the window's.
		ns[e0.Wait] -= int64(s0.At - min(s0.At, e0.At))
	}
	for tid, e1 := range s1.Last {
		if !open(e1, s1.At) {
			continue
		}
		if e0, ok := s0.Last[tid]; ok && e0.At == e1.At {
			continue // under way at both: counted above
		}
		ns[e1.Wait] += int64(s1.At - min(s1.At, max(e1.At, s0.At)))
	}
	out := make(map[offcpu.Wait]uint64, len(ns))
	for w, n := range ns {
		if n > 0 {
			out[w] = uint64(n)
		}
	}
	return out
}
