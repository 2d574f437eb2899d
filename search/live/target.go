//go:build linux

package live

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/splice"
)

// targetCfg adapts a hunt's Config to its target and roots: a workload is
// let run (launch) by the first reading of the instruments (or the first
// stack sample), so that what the hunt attached first measures it from
// its first instruction; a whole-system hunt counts on-CPU time only, unless
// IncludeIdle; --root functions whose code runs elsewhere are warned
// about. The function it returns completes the run when the hunt is over.
func targetCfg(cfg *search.Config, o Options, launch func()) (finish func(*search.Run)) {
	reach := rootReach(cfg.Graph, o)
	if w := o.Workload; w != nil && w.Limitation != "" {
		cfg.Limitations = append(cfg.Limitations, w.Limitation)
	}
	firstRound := new(time.Time)
	if on := cfg.OnRead; true {
		cfg.OnRead = func(round int, opens bool) {
			if round == 1 && opens {
				*firstRound = time.Now()
			}
			if on != nil {
				on(round, opens)
			}
		}
	}
	var hooks []func(*instrument.Reading)
	if o.Target.IsSystem() {
		cfg.Limitations = dropPrefixed(cfg.Limitations, "whole system:")
		if o.IncludeIdle {
			cfg.Population = Population{Target: o.Target}
			cfg.Limitations = append(cfg.Limitations, "whole system with --include-idle: every thread's waits count, idle ones too; shares are of all threads' time (off-CPU stacks are not sampled)")
		} else {
			hooks = append(hooks, onCPUOnly)
			cfg.Limitations = append(cfg.Limitations, "whole system: on-CPU time only, a share of CPUs × time; waits are not counted, as every idle thread would count (--include-idle keeps them; --pid, --cgroup or a command counts a target's waits)")
		}
	}
	if launch != nil {
		hooks = append(hooks, func(*instrument.Reading) { launch() })
		if cfg.Sampler != nil {
			cfg.Sampler = launchingSampler{cfg.Sampler, launch}
		}
	}
	if s, ok := cfg.Instrumenter.(Session); ok && len(hooks) > 0 {
		cfg.Instrumenter = readHook{s, hooks}
	}
	return func(run *search.Run) {
		if o.Workload != nil {
			describeWorkload(run, o.Workload, *firstRound)
		}
		run.Limitations = append(run.Limitations, silentRoots(run, o.Roots, <-reach)...)
	}
}

// rootReach works out splice.ReachWarnings for the --root functions in
// the background (the callers index decodes the whole kernel), tells
// o.Warn, and sends them on the channel.
func rootReach(g search.Graph, o Options) <-chan map[string]string {
	out := make(chan map[string]string, 1)
	lg, ok := g.(Graph)
	var specs []instrument.Spec
	for _, r := range o.Roots {
		if !instrument.IsSyscall(r) {
			specs = append(specs, instrument.Spec{Point: instrument.Point{Func: r}, Kind: instrument.Timer})
		}
	}
	if !ok || len(specs) == 0 {
		out <- nil
		return out
	}
	go func() {
		w := splice.ReachWarnings(lg.G, specs)
		if o.Warn != nil {
			for _, s := range specs {
				if m := w[s.String()]; m != "" {
					o.Warn(m)
				}
			}
		}
		out <- w
	}()
	return out
}

// silentRoots says which --root functions counted no call all through the
// hunt, and which may count fewer calls than run their code.
func silentRoots(run *search.Run, roots []string, reach map[string]string) []string {
	var out []string
	for _, r := range roots {
		spec := instrument.Spec{Point: instrument.Point{Func: r}, Kind: instrument.Timer}.String()
		calls, rounds := uint64(0), 0
		for _, n := range run.Nodes {
			if n.Parent < 0 && n.Point.Func == r && n.Kind == search.NodeRoot {
				calls, rounds = calls+n.Calls, rounds+len(n.Rounds)
			}
		}
		switch {
		case rounds > 0 && calls == 0 && reach[spec] != "":
			out = append(out, fmt.Sprintf("--root %s counted no call in %d rounds: %s", r, rounds, reach[spec]))
		case rounds > 0 && calls == 0:
			out = append(out, fmt.Sprintf("--root %s counted no call in %d rounds", r, rounds))
		case reach[spec] != "":
			out = append(out, reach[spec])
		}
	}
	return out
}

func dropPrefixed(lines []string, prefix string) []string {
	out := lines[:0:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// readHook is a Session whose every reading goes through hooks before the
// hunt sees it.
type readHook struct {
	Session
	hooks []func(*instrument.Reading)
}

// Read implements instrument.Instrumenter.
func (r readHook) Read() (*instrument.Reading, error) {
	rd, err := r.Session.Read()
	if err != nil {
		return nil, err
	}
	for _, h := range r.hooks {
		h(rd)
	}
	return rd, nil
}

// onCPUOnly takes the off-CPU time out of every context of a reading: a
// thread's time in a function then counts only while it runs on a CPU.
// Readings are cumulative; the change is linear, so their differences
// are the on-CPU time of each round.
func onCPUOnly(r *instrument.Reading) {
	for i := range r.Contexts {
		c := &r.Contexts[i]
		c.InclNs -= min(c.InclOffCPUNs, c.InclNs)
		c.ExclNs -= min(c.ExclOffCPUNs, c.ExclNs)
		c.InclOffCPUNs, c.ExclOffCPUNs = 0, 0
	}
}

// launchingSampler lets the workload run before its first sample: a hunt
// with no syscall census samples before it reads any instrument.
type launchingSampler struct {
	search.Sampler
	launch func()
}

// Sample implements search.Sampler.
func (s launchingSampler) Sample(ctx context.Context, t instrument.Target, d time.Duration) ([]search.Stack, error) {
	s.launch()
	return s.Sampler.Sample(ctx, t, d)
}

// ExitedEarly starts the limitation that says the command a hunt started
// was over before the first round.
const ExitedEarly = "the target exited before the first round"

// describeWorkload names the command in the run and says when it exited
// before the first round opened (at firstRound, zero if none did).
func describeWorkload(run *search.Run, w *Workload, firstRound time.Time) {
	run.Meta.Target = w.Describe()
	select {
	case <-w.Done():
	default:
		return
	}
	if errors.Is(w.Err(), ErrNotStarted) {
		return
	}
	if firstRound.IsZero() || w.endAt.Before(firstRound) {
		run.Limitations = append(run.Limitations, fmt.Sprintf("%s (it ran %.2fs): only Deep Start's stack samples and syscall census saw it", ExitedEarly, w.Ran().Seconds()))
	}
}
