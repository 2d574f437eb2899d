package search_test

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/search/searchtest"
)

// sharedKernel is a target whose hot function work calls a library
// helper 50 times per operation, and whose other functions call it once;
// other tasks call the helper a million times a second. The helper's time
// under work is 40% of the target's.
func sharedKernel() *searchtest.Kernel {
	k := &searchtest.Kernel{Funcs: map[string]*searchtest.Func{}, Noise: 0.02, Seed: 1, Offsets: true, CostPerHitNs: 100, TargetThreads: 1, CPUs: 2}
	add := func(f *searchtest.Func) { k.Funcs[f.Name] = f }
	add(&searchtest.Func{Name: "do_syscall_64", NoTrace: true})
	add(&searchtest.Func{Name: "__x64_sys_write", OnNs: 2000, Calls: []searchtest.Call{{Func: "outer", N: 1}, {Func: "side", N: 1}}})
	add(&searchtest.Func{Name: "outer", OnNs: 3000, Calls: []searchtest.Call{{Func: "work", N: 1}, {Func: "memhelp", N: 1}}})
	add(&searchtest.Func{Name: "work", OnNs: 5000, Calls: []searchtest.Call{{Func: "memhelp", N: 50}}})
	add(&searchtest.Func{Name: "side", OnNs: 40000, Calls: []searchtest.Call{{Func: "memhelp", N: 2}}})
	add(&searchtest.Func{Name: "memhelp", OnNs: 4000, SystemRate: 1000000})
	k.Roots = []searchtest.Root{{Func: "__x64_sys_write", Entry: []string{"entry_SYSCALL_64", "do_syscall_64"}}}
	k.Roots[0].Rate = 0.9e9 / k.InclNs("__x64_sys_write")
	return k
}

// TestSharedHelper: a helper that other tasks hit far more often than
// the target is timed where the hot caller calls it, not at its entry,
// once its entry timer's hits say so; the finding names the caller's
// share of it.
func TestSharedHelper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := sharedKernel()
		k.Start()
		run := hunt(t, k, func(c *search.Config) {
			c.DeepStart = -1
			c.Roots = []string{"__x64_sys_write"}
			c.Duration = 40 * time.Second
		})
		want := k.SelfShare("memhelp") * 50 / 53 // its calls from work
		top := run.Findings[0]
		n := run.Nodes[top.Node]
		t.Logf("top: %s %.1f%% (%s), want work's calls of memhelp %.1f%%", strings.Join(top.Path, ";"), 100*top.ExclShare.Mean, top.Verdict, 100*want)
		if !n.Point.IsCallSite() || n.Point.Callee != "memhelp" || n.Point.Func != "work" || top.Owner != "work" {
			t.Errorf("top finding at %s (owner %q), want memhelp timed at its call site in work", n.Point, top.Owner)
		}
		if d := top.ExclShare.Mean - want; d > 0.03 || d < -0.03 {
			t.Errorf("share %.1f%%, want %.1f%%", 100*top.ExclShare.Mean, 100*want)
		}
		converted := false
		for _, e := range run.Trace {
			converted = converted || e.Action == "call-site" && strings.HasPrefix(e.Spec, "memhelp")
		}
		if !converted {
			t.Error("no call-site decision in the trace")
		}
		checkHysteresis(t, run)
		checkConsistent(t, run)
		render(t, run)
	})
}

// checkHysteresis: no spec goes in more than twice without a new reason
// in the trace.
func checkHysteresis(t *testing.T, run *search.Run) {
	t.Helper()
	if s := searchtest.Reinserted(run); s != "" {
		t.Errorf("inserted more than twice without a new reason: %s", s)
	}
}

// checkConsistent: exclusive shares over the tree add up to at most the
// whole (105%, for the intervals' noise), and no node's is negative.
func checkConsistent(t *testing.T, run *search.Run) {
	t.Helper()
	var sum float64
	for _, n := range run.Nodes {
		if n.Kind == search.NodeBlock {
			continue
		}
		if n.Excl.Mean < 0 {
			t.Errorf("%s: exclusive share %.3f", strings.Join(n.Path, ";"), n.Excl.Mean)
		}
		sum += n.Excl.Mean
	}
	if sum > 1.05 {
		t.Errorf("exclusive shares add up to %.1f%%", 100*sum)
	}
}
