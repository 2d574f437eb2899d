package search

import (
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestMerged: an instrument withdrawn and inserted again reads as two
// contexts with one path (and a target as two records); merged sums them,
// so that what grows from reading to reading is their sum (which
// instrument.Reading.Sub then takes).
func TestMerged(t *testing.T) {
	p := instrument.Path{{Func: "__x64_sys_read"}, {Func: "vfs_read"}}
	ctx := func(calls, ns uint64) instrument.ContextReading {
		return instrument.ContextReading{Path: p, Kind: instrument.Timer, Calls: calls, InclNs: ns, ExclNs: ns}
	}
	prev := &instrument.Reading{Contexts: []instrument.ContextReading{ctx(10, 1000)}}
	cur := &instrument.Reading{Contexts: []instrument.ContextReading{ctx(3, 200), ctx(10, 1000)}}
	d := merged(cur).Sub(merged(prev))
	if len(d.Contexts) != 1 || d.Contexts[0].Calls != 3 || d.Contexts[0].InclNs != 200 {
		t.Errorf("merged difference = %+v, want 3 calls and 200 ns", d.Contexts)
	}
	tr := instrument.TargetReading{Path: p, Target: 0xffffffff81000000, Func: "pipe_read", Calls: 5}
	tr2 := tr
	tr2.Calls = 7
	d = merged(&instrument.Reading{Targets: []instrument.TargetReading{tr, tr2}}).Sub(merged(&instrument.Reading{Targets: []instrument.TargetReading{tr}}))
	if len(d.Targets) != 1 || d.Targets[0].Calls != 7 {
		t.Errorf("targets difference = %+v, want 7 calls", d.Targets)
	}
}

// TestTargetsOfTheSite: an indirect call's target is a callee of the
// site's function; a reading whose context lost that function (its timer
// withdrawn while the recorder still read) names no callee of the
// context's node. (The 6.12 truth benchmark's gt20: vfs_write's target
// kernfs_fop_write_iter was planned under ksys_write, and the same calls
// were measured on two paths.)
func TestTargetsOfTheSite(t *testing.T) {
	h := &hunter{tree: tree{byKey: map[string]*node{}}}
	root := instrument.Path{{Func: "__x64_sys_write"}, {Func: "ksys_write"}}
	for _, p := range []instrument.Path{root, extend(root, instrument.Point{Func: "vfs_write"})} {
		h.byKey[p.String()] = &node{path: p, key: p.String()}
	}
	site := instrument.Point{Func: "vfs_write", Offset: 0xf3}
	target := "kernfs_fop_write_iter"
	h.absorbTargets([]instrument.TargetReading{
		{Path: extend(root, site), Func: target, Calls: 3},                                              // vfs_write's timer gone
		{Path: extend(extend(root, instrument.Point{Func: "vfs_write"}), site), Func: target, Calls: 5}, // as it should read
	})
	if got := h.byKey[root.String()].targets; got[target] {
		t.Errorf("ksys_write's targets %v: vfs_write's site named a callee of ksys_write", got)
	}
	if got := h.byKey[extend(root, instrument.Point{Func: "vfs_write"}).String()].targets; !got[target] {
		t.Errorf("vfs_write's targets %v, want %s", got, target)
	}
}

// TestSplitOwn: the stacks that sampled the instruments are the hunt's
// overhead: one through a BPF program, and one that ran in the syscall
// tracepoints' slow path itself (issue 15: `syscall_exit_work` and
// `syscall_trace_enter` were findings of a tracepoint hunt of dd); what the
// slow path calls for the target (a seccomp filter) and a wait stay.
func TestSplitOwn(t *testing.T) {
	st := func(onCPU bool, w float64, frames ...string) Stack {
		return Stack{Frames: frames, OnCPU: onCPU, Count: 1, WeightNs: w}
	}
	in := []Stack{
		st(true, 1, "entry_SYSCALL_64", "do_syscall_64", "syscall_trace_enter", "__traceiter_sys_enter", "bpf_trace_run2", "bpf_prog_abc_sys_enter"),
		st(true, 2, "entry_SYSCALL_64", "do_syscall_64", "syscall_trace_enter.constprop.0"),
		st(true, 4, "entry_SYSCALL_64", "do_syscall_64", "syscall_exit_to_user_mode", "syscall_exit_work"),
		st(true, 8, "entry_SYSCALL_64", "do_syscall_64", "syscall_trace_enter", "__secure_computing", "__seccomp_filter"),
		st(true, 16, "entry_SYSCALL_64", "do_syscall_64", "ksys_read", "vfs_read", "read_zero"),
		st(false, 32, "entry_SYSCALL_64", "do_syscall_64", "syscall_exit_work"),
	}
	out, dropped := splitOwn(in)
	if dropped != 1+2+4 {
		t.Errorf("dropped %v ns, want 7 (the BPF program and the slow path's own samples)", dropped)
	}
	var kept float64
	for _, s := range out {
		kept += s.WeightNs
	}
	if kept != 8+16+32 || len(out) != 3 {
		t.Errorf("kept %d stacks of %v ns, want the seccomp filter, read_zero and the wait (56 ns)", len(out), kept)
	}
}
