package live

import (
	"reflect"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

// TestOnCPUOnly: a whole-system hunt's readings lose their off-CPU time,
// so that a thread asleep in futex for the whole hunt counts nothing.
func TestOnCPUOnly(t *testing.T) {
	r := &instrument.Reading{Contexts: []instrument.ContextReading{
		{Kind: instrument.Timer, Calls: 2, InclNs: 1000, ExclNs: 600, InclOffCPUNs: 900, ExclOffCPUNs: 550},
		{Kind: instrument.Count, Calls: 5},
		{Kind: instrument.Timer, InclNs: 10, ExclNs: 10, InclOffCPUNs: 12, ExclOffCPUNs: 12}, // off > wall: clamped
	}}
	onCPUOnly(r)
	want := []instrument.ContextReading{
		{Kind: instrument.Timer, Calls: 2, InclNs: 100, ExclNs: 50},
		{Kind: instrument.Count, Calls: 5},
		{Kind: instrument.Timer},
	}
	for i, c := range r.Contexts {
		if !reflect.DeepEqual(c, want[i]) {
			t.Errorf("context %d: %+v, want %+v", i, c, want[i])
		}
	}
}

// TestTargetCfgSystem: a whole-system hunt reads on-CPU time (readHook)
// and says so; with IncludeIdle every thread counts (a Population).
func TestTargetCfgSystem(t *testing.T) {
	cfg := search.Config{Instrumenter: Session{}, Limitations: []string{"whole system: old words"}}
	targetCfg(&cfg, Options{}, nil)
	if _, ok := cfg.Instrumenter.(readHook); !ok || cfg.Population != nil || len(cfg.Limitations) != 1 || !strings.Contains(cfg.Limitations[0], "on-CPU time only") {
		t.Errorf("system: %T, population %v, limitations %q", cfg.Instrumenter, cfg.Population, cfg.Limitations)
	}
	cfg = search.Config{Instrumenter: Session{}}
	targetCfg(&cfg, Options{IncludeIdle: true}, nil)
	if _, ok := cfg.Instrumenter.(Session); !ok || cfg.Population == nil || !strings.Contains(strings.Join(cfg.Limitations, ";"), "--include-idle") {
		t.Errorf("include idle: %T, population %v, limitations %q", cfg.Instrumenter, cfg.Population, cfg.Limitations)
	}
	cfg = search.Config{Settings: search.Settings{Target: instrument.Target{PIDs: []int{1}}}, Instrumenter: Session{}}
	targetCfg(&cfg, Options{Settings: search.Settings{Target: instrument.Target{PIDs: []int{1}}}}, nil)
	if _, ok := cfg.Instrumenter.(Session); !ok || len(cfg.Limitations) != 0 {
		t.Errorf("pid: %T, limitations %q", cfg.Instrumenter, cfg.Limitations)
	}
}

// TestSilentRoots: a --root that counted nothing is named, with where its
// code runs when the static graph says.
func TestSilentRoots(t *testing.T) {
	run := &search.Run{Nodes: []search.Node{
		{ID: 0, Parent: -1, Point: instrument.Point{Func: "ksys_pread64"}, Kind: search.NodeRoot, Rounds: make([]search.RoundSample, 7)},
		{ID: 1, Parent: -1, Point: instrument.Point{Func: "vfs_read"}, Kind: search.NodeRoot, Calls: 9, Rounds: make([]search.RoundSample, 7)},
	}}
	reach := map[string]string{"ksys_pread64:timer": "ksys_pread64:timer: the compiler also inlined ksys_pread64"}
	got := silentRoots(run, []string{"ksys_pread64", "vfs_read"}, reach)
	if len(got) != 1 || !strings.HasPrefix(got[0], "--root ksys_pread64 counted no call in 7 rounds: ksys_pread64:timer: the compiler also inlined") {
		t.Errorf("%q", got)
	}
}

// TestIdleStack: a CPU's idle loop is dropped from a whole-system hunt's
// samples, an interrupt taken while idle is not.
func TestIdleStack(t *testing.T) {
	for _, c := range []struct {
		frames []string
		idle   bool
	}{
		{[]string{"secondary_startup_64", "start_secondary", "cpu_startup_entry", "do_idle", "default_idle_call", "pv_native_safe_halt"}, true},
		{[]string{"start_secondary", "cpu_startup_entry", "do_idle", "default_idle_call", "asm_sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt", "__sysvec_apic_timer_interrupt", "hrtimer_interrupt"}, false},
		{[]string{"entry_SYSCALL_64", "do_syscall_64", "__x64_sys_read", "vfs_read"}, false},
	} {
		if got := idleStack(c.frames); got != c.idle {
			t.Errorf("%v: idle %v", c.frames, got)
		}
	}
}
