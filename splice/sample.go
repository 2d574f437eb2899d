package splice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/stacks"
)

// SamplerOptions configure OpenSampler.
type SamplerOptions struct {
	// Freq is samples per second per CPU (default 99).
	Freq uint64
	// Target selects the tasks whose samples count.
	Target instrument.Target
	// MaxStacks bounds distinct call chains (default 16384); samples of
	// new chains past it are counted as lost.
	MaxStacks int
}

// Sampler is the sample backend: a cpu-clock perf event per online CPU
// with a BPF perf_event program that aggregates kernel call chains in a
// stack map, in the kernel. Its output is a statistical call graph: the
// search's first look at where the target's kernel time goes. Every event
// is owned by its fd (closing it detaches the program).
type Sampler struct {
	progTool[*samplerRes]
}

type samplerRes struct {
	objs   *stacks.Objects
	events []*os.File
	links  []link.Link
	cgroup *os.File
}

func (r *samplerRes) program() *ebpf.Program { return r.objs.Program() }

func (r *samplerRes) close() error {
	var errs []error
	for _, l := range r.links {
		errs = append(errs, l.Close())
	}
	for _, f := range r.events {
		errs = append(errs, f.Close())
	}
	if r.cgroup != nil {
		errs = append(errs, r.cgroup.Close())
	}
	errs = append(errs, r.objs.Close())
	return errors.Join(errs...)
}

// OpenSampler starts sampling.
func OpenSampler(ctx context.Context, opts SamplerOptions) (*Sampler, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := features.HaveSample(); err != nil {
		return nil, fmt.Errorf("sampling: %w: %w", instrument.ErrNotSupported, err)
	}
	if opts.Freq == 0 {
		opts.Freq = 99
	}
	if opts.MaxStacks == 0 {
		opts.MaxStacks = 16384
	}
	objs, err := stacks.Load(opts.MaxStacks)
	if err != nil {
		return nil, err
	}
	r := &samplerRes{objs: objs}
	if err := r.start(opts); err != nil {
		r.close()
		return nil, err
	}
	s := &Sampler{progTool[*samplerRes]{res: r, what: "sampling"}}
	s.clean = runtime.AddCleanup(s, func(r *samplerRes) { r.close() }, r)
	return s, nil
}

func (r *samplerRes) start(opts SamplerOptions) error {
	var err error
	if r.cgroup, err = filterTarget(opts.Target, r.objs.SetFilter); err != nil {
		return err
	}
	cpus, err := kernel.OnlineCPUs()
	if err != nil {
		return fmt.Errorf("sampling: listing CPUs: %w", err)
	}
	for _, cpu := range cpus {
		f, err := kernel.CPUClockEvent(cpu, opts.Freq)
		if err != nil {
			return err
		}
		r.events = append(r.events, f)
		l, err := link.AttachRawLink(link.RawLinkOptions{Target: int(f.Fd()), Program: r.objs.Program(), Attach: ebpf.AttachPerfEvent})
		if err != nil {
			return fmt.Errorf("attaching the sampler on cpu %d: %w", cpu, err)
		}
		r.links = append(r.links, l)
		if err := kernel.PerfEnable(f); err != nil {
			return err
		}
	}
	return nil
}

// Profile is what a Sampler collected: kernel call chains with their
// sample counts, cumulative since OpenSampler.
type Profile struct {
	At     time.Time
	Stacks []stacks.Stack // innermost address first
	// User counts samples of the target taken in user mode (no kernel
	// stack); Lost those that found no room.
	User, Lost uint64
}

// Total returns the samples in Stacks.
func (p *Profile) Total() uint64 {
	var n uint64
	for _, s := range p.Stacks {
		n += s.Count
	}
	return n
}

// Read returns the samples so far.
func (s *Sampler) Read() (*Profile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, instrument.ErrClosed
	}
	st, err := s.res.objs.Stacks()
	if err != nil {
		return nil, err
	}
	c, err := s.res.objs.Counters()
	if err != nil {
		return nil, err
	}
	return &Profile{At: time.Now(), Stacks: st, User: c.User, Lost: c.Lost}, nil
}

// Pause stops sampling until Resume: no sample is taken, and the
// sampler's program costs nothing, while no one reads the samples.
func (s *Sampler) Pause() error { return s.setEnabled(false) }

// Resume starts sampling again after Pause.
func (s *Sampler) Resume() error { return s.setEnabled(true) }

func (s *Sampler) setEnabled(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return instrument.ErrClosed
	}
	for _, f := range s.res.events {
		var err error
		if on {
			err = kernel.PerfEnable(f)
		} else {
			err = kernel.PerfDisable(f)
		}
		if err != nil {
			return fmt.Errorf("sampling: %w", err)
		}
	}
	return nil
}
