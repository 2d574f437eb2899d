//go:build linux

// Package live runs a hunt on the running kernel: it opens the splice
// instruments, the call graph, the stack sampler and the target's thread
// count, hands them to search.Hunt behind search's interfaces, and says
// in the Run what the kernel did not allow.
package live

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/splice"
)

// Options say what to hunt: the user's search.Settings, and how to reach
// the target on the running kernel.
type Options struct {
	search.Settings
	// Backend serves function instruments: fentry, kprobe, splice
	// (autoprof's own module) or tracepoint (syscall roots only); "" picks
	// the best BPF backend the kernel allows.
	Backend instrument.Backend
	Command []string // the workload started with -- CMD, for the Run
	// Compare names the base run of hunt --compare, whose findings'
	// functions Settings.CompareRoots are.
	Compare string
	// NoCalibrate skips the start-up calibration (tests that compare
	// against it calibrate once themselves).
	NoCalibrate bool
	// Recalibrate measures the costs per hit again where this boot's
	// calibration of the last hour would serve (see calibrate).
	Recalibrate bool
	// Done, when closed, ends the hunt (the target has gone). A hunt of
	// --pid processes without one ends when they have all exited.
	Done <-chan struct{}
	// Workload, if set, is a command to start and hunt from its first
	// instruction (with its children unless Workload.NoInherit); it
	// becomes Target and Done.
	Workload *Workload
	// IncludeIdle keeps the waits of every thread in a whole-system hunt,
	// whose shares are then of all threads' time; without it a
	// whole-system hunt counts on-CPU time, a share of CPUs × time.
	IncludeIdle bool
	// Warn, if set, is told what the user should know at once: a --root
	// function whose code runs elsewhere (splice.ReachWarning).
	Warn     func(string)
	Progress func(search.Progress)
	OnRead   func(round int, opens bool) // see search.Config.OnRead
}

// Hunt hunts on the running kernel. Everything it opens is closed before
// it returns: no instrument, program or event stays in the kernel.
func Hunt(ctx context.Context, o Options) (*search.Run, error) {
	ctl := startControllerMeter()
	if o.Backend != "" {
		if _, err := instrument.ParseBackend(string(o.Backend)); err != nil {
			return nil, err
		}
	}
	sess, err := splice.Open(ctx, splice.Options{Backend: o.Backend})
	if err != nil {
		return nil, fmt.Errorf("opening the instruments: %w", err)
	}
	defer sess.Close()
	var costs search.Calibrator // the hunt's, measured before the workload starts
	if !o.NoCalibrate {
		costs = calibrate(ctx, sess, o.Recalibrate)
	}
	var launch func()
	if w := o.Workload; w != nil {
		t, err := w.start(sess.Backend())
		if err != nil {
			return nil, err
		}
		defer w.abandon() // a hunt over before its first reading
		o.Target, o.Done, launch = t, w.Done(), w.goOn
	} else if len(o.Target.PIDs) > 0 && o.Done == nil {
		o.Done = splice.WatchExit(ctx, o.Target.PIDs)
	}
	cfg, closeAll := huntConfig(ctx, sess, o)
	defer closeAll()
	cfg.Calibrator = costs
	if ctl != nil {
		ctl.sampler, _ = cfg.Sampler.(*Sampler)
		cfg.Controller = ctl
	}
	finish := targetCfg(&cfg, o, launch)
	run, err := search.Hunt(ctx, cfg)
	if err == nil {
		finish(run)
	}
	return run, err
}

// controllerMeter is a search.ControllerMeter over this process's CPU
// time (getrusage) since it was started, and the kernel time of its stack
// sampler's program: that runs in the sampling interrupt, charged to the
// task it interrupts, and is autoprof's cost as much as its own threads'.
type controllerMeter struct {
	wall    time.Time
	cpu     time.Duration
	sampler *Sampler // set once the hunt's sampler is open
}

// startControllerMeter starts measuring this process now; nil where the
// kernel does not tell its CPU time.
func startControllerMeter() *controllerMeter {
	cpu, err := kernel.ProcessCPU()
	if err != nil {
		return nil
	}
	return &controllerMeter{wall: time.Now(), cpu: cpu}
}

func (m *controllerMeter) Controller() (cpu, wall time.Duration, err error) {
	now, err := kernel.ProcessCPU()
	if err != nil {
		return 0, 0, err
	}
	cpu = now - m.cpu
	if m.sampler != nil {
		k, err := m.sampler.RunTime()
		if err != nil {
			return 0, 0, err
		}
		cpu += k
	}
	return cpu, time.Since(m.wall), nil
}

// calibrate returns the session's costs per hit: this boot's calibration
// of the last hour where the cache holds one and recalibrate is not set
// (calibrationCache), else a new one, kept for the next hunts.
func calibrate(ctx context.Context, sess *splice.Session, recalibrate bool) fixedCosts {
	cache := openCalibrationCache()
	key, _ := calibrationKey(string(sess.Backend()))
	now := time.Now()
	if !recalibrate {
		if c, at, ok := cache.load(key, now); ok {
			return fixedCosts{c, fmt.Errorf("costs per hit from this boot's calibration at %s, %v ago (--recalibrate measures them again)",
				at.Format("15:04:05"), now.Sub(at).Round(time.Second))}
		}
	}
	c, err := (Calibrator{Graph: sess.Graph()}).Calibrate(ctx, Session{sess})
	if err == nil {
		cache.store(key, now, c) // the next hunt only calibrates again
	}
	return fixedCosts{c, err}
}

// fixedCosts is a Calibrator that answers what a calibration measured
// before the hunt.
type fixedCosts struct {
	costs map[string]float64
	err   error
}

func (f fixedCosts) Calibrate(context.Context, instrument.Instrumenter) (map[string]float64, error) {
	return f.costs, f.err
}

// huntConfig builds the search.Config of a hunt over an open session,
// its Calibrator aside (Hunt calibrates before it starts the workload);
// call the returned function when the hunt is over.
func huntConfig(ctx context.Context, sess *splice.Session, o Options) (search.Config, func()) {
	in := Session{sess}
	cfg := search.Config{
		Settings:     o.Settings,
		Instrumenter: in,
		Graph:        Graph{sess.Graph()},
		SampleTree:   sess.Backend() == instrument.Tracepoint,
		Syscalls:     syscallFuncs(sess.Syscalls()),
		Done:         o.Done,
		Progress:     o.Progress,
		OnRead:       o.OnRead,
		Limitations:  limitations(sess, o.Target),
	}
	if !o.Target.IsSystem() {
		cfg.Population = Population{Target: o.Target}
	}
	if cpus, err := kernel.OnlineCPUs(); err == nil {
		cfg.CPUs = len(cpus)
	}
	rel, _ := kernel.Release()
	host, _ := os.Hostname()
	cfg.Meta = search.Meta{Command: o.Command, Kernel: rel, Host: host, Compare: o.Compare} // search adds what it measures, the backend too
	sampler, err := OpenSampler(ctx, sess, SamplerOptions{Target: o.Target})
	if err != nil {
		cfg.Limitations = append(cfg.Limitations, "no on-CPU stack samples: "+err.Error())
	}
	done := func() {}
	if sampler != nil {
		cfg.Sampler = sampler
		done = func() { sampler.Close() }
		if !sampler.OffCPU() && !o.Target.IsSystem() {
			cfg.Limitations = append(cfg.Limitations, "no off-CPU stack samples: the target's /proc/TID/stack cannot be read")
		}
	}
	if o.Target.IsSystem() {
		cfg.Limitations = append(cfg.Limitations, "whole system: off-CPU time is not sampled (every idle thread would count); shares are of CPUs × time")
	}
	return cfg, done
}

// syscallFuncs lists the syscall table's entry functions.
func syscallFuncs(t *splice.SyscallTable) []string {
	if t == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for nr := 0; nr < 2048; nr++ {
		if name, ok := t.Name(nr); ok && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// limitations says what the kernel does not allow, from the feature
// probes and the session's own refusals.
func limitations(sess *splice.Session, target instrument.Target) []string {
	var out []string
	kprobe := features.HaveKprobe()
	syscalls := sess.Check(instrument.Spec{Point: instrument.Point{Func: "__x64_sys_read"}, Kind: instrument.Timer, Target: target})
	if syscalls != nil {
		out = append(out, "syscalls cannot be timed: "+syscalls.Error()+"; syscall roots come from stack samples")
	}
	if sess.Backend() == instrument.Splice {
		out = append(out, "no indirect-call target capture: the splice backend does not record them (kprobe does); the targets timed are those the stack samples saw")
	} else if kprobe != nil && sess.Backend() != instrument.Tracepoint {
		out = append(out, "no basic-block counters and no indirect-call targets (they need kprobe): "+reason(kprobe))
	}
	if err := features.HaveTracepoint(); err != nil {
		out = append(out, "no syscall roots or off-CPU time (tracepoint): "+reason(err))
	}
	return out
}

// reason is a probe's answer in words.
func reason(err error) string {
	if err == nil {
		return "available"
	}
	var u *features.Unavailable
	if errors.As(err, &u) {
		return u.Reason
	}
	return err.Error()
}

// Session adapts an instrument session of any backend to search's
// optional interfaces: search.OverheadMeter, and search.Router (the
// session's own BackendOf).
type Session struct{ *splice.Session }

// Overhead implements search.OverheadMeter with the kernel's run-time
// statistics of the instruments' BPF programs. The splice backend runs no
// BPF program: its overhead is the calibrated prediction alone.
func (s Session) Overhead() (time.Duration, error) {
	o, err := s.Session.Overhead()
	if err != nil {
		return 0, err
	}
	if !o.Enabled {
		if s.Backend() == instrument.Splice {
			return 0, errors.New("splice instruments run no BPF program for the kernel to time")
		}
		return 0, errors.New("the kernel refused BPF run-time statistics (kernel.bpf_stats_enabled)")
	}
	return time.Duration(o.RunNs), nil
}
