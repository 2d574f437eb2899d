package search

import (
	"testing"

	"github.com/autoprof/autoprof/splice"
)

// TestDelta: an instrument withdrawn and inserted again reads as two
// contexts with one path; their sum is what grows from reading to reading.
func TestDelta(t *testing.T) {
	p := splice.Path{{Func: "__x64_sys_read"}, {Func: "vfs_read"}}
	ctx := func(calls, ns uint64) splice.ContextReading {
		return splice.ContextReading{Path: p, Kind: splice.Timer, Calls: calls, InclNs: ns, ExclNs: ns}
	}
	prev := &splice.Reading{Contexts: []splice.ContextReading{ctx(10, 1000)}}
	cur := &splice.Reading{Contexts: []splice.ContextReading{ctx(3, 200), ctx(10, 1000)}}
	d := delta(merged(cur), merged(prev))
	if len(d.Contexts) != 1 || d.Contexts[0].Calls != 3 || d.Contexts[0].InclNs != 200 {
		t.Errorf("delta = %+v, want 3 calls and 200 ns", d.Contexts)
	}
	// The same readings without merging: Sub pairs one of the twins with
	// the previous context and the counts wrap around.
	bad := cur.Sub(prev)
	wrapped := false
	for _, c := range bad.Contexts {
		wrapped = wrapped || c.Calls > 1<<60
	}
	t.Logf("unmerged Sub: %+v (wrapped: %v)", bad.Contexts, wrapped)
	// A context that went down gives nothing for the round.
	d = delta(&splice.Reading{Contexts: []splice.ContextReading{ctx(2, 50)}}, prev)
	if len(d.Contexts) != 0 {
		t.Errorf("a context that went down: %+v", d.Contexts)
	}
	tr := splice.TargetReading{Path: p, Target: 0xffffffff81000000, Func: "pipe_read", Calls: 5}
	tr2 := tr
	tr2.Calls = 7
	d = delta(merged(&splice.Reading{Targets: []splice.TargetReading{tr, tr2}}), merged(&splice.Reading{Targets: []splice.TargetReading{tr}}))
	if len(d.Targets) != 1 || d.Targets[0].Calls != 7 {
		t.Errorf("targets delta = %+v, want 7 calls", d.Targets)
	}
}
