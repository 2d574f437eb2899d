package searchtest

import (
	"fmt"

	"github.com/autoprof/autoprof/internal/calltree"
)

// Costs of one instrument hit under QEMU's emulation (TCG), as the VM
// runs calibrate them (docs/search.md): the order of magnitude at which
// the budget decides what a hunt can afford there.
const (
	TCGTimerNs  = 1900
	TCGInsideNs = 800
)

// FromTree builds the simulated kernel of a generated tree: a write(2)
// root, the kernel's path for the tree's entry (the VFS, then procfs's,
// debugfs's or sysfs's handlers, each reaching the next through a
// function pointer as the kernel does), the tree's handler and its
// functions with their costs and calls. A sleeping function sleeps below
// itself, in usleep_range_state, as in the kernel. The target writes in a
// loop, busy about nine tenths of the time.
func FromTree(t *calltree.Tree) *Kernel {
	k := &Kernel{Funcs: map[string]*Func{}, Noise: 0.03, Seed: t.Seed, Offsets: true, CostPerHitNs: 50, TargetThreads: 1, CPUs: 2}
	add := func(f *Func) { k.Funcs[f.Name] = f }
	add(&Func{Name: "do_syscall_64", NoTrace: true})
	add(&Func{Name: "__schedule", NoTrace: true})
	add(&Func{Name: "usleep_range_state", OnNs: 1500, Calls: []Call{{Func: "__schedule", N: 1}}})
	add(&Func{Name: "__x64_sys_write", OnNs: 800, Calls: []Call{{Func: "ksys_write", N: 1}}})
	add(&Func{Name: "ksys_write", OnNs: 600, Calls: []Call{{Func: "vfs_write", N: 1}}})
	glue := map[calltree.Entry][]string{
		calltree.Proc:    {"proc_reg_write"},
		calltree.Debugfs: {"full_proxy_write"},
		calltree.Sysfs:   {"kernfs_fop_write_iter", "sysfs_kf_write", "kobj_attr_store"},
	}[t.Entry]
	add(&Func{Name: "vfs_write", OnNs: 1500, Calls: []Call{{Func: glue[0], N: 1, Site: 0x9a}}})
	for i, g := range glue {
		next := t.Handler()
		if i+1 < len(glue) {
			next = glue[i+1]
		}
		add(&Func{Name: g, OnNs: 700, Calls: []Call{{Func: next, N: 1, Site: 0x2e}}})
	}
	add(&Func{Name: t.Handler(), OnNs: 300, Calls: []Call{{Func: t.Funcs[0].Name, N: 1}}})
	for _, f := range t.Funcs {
		add(fromTreeFunc(t, f))
		if f.SleepUs > 0 { // one sleeping function per tree
			k.Funcs["usleep_range_state"].OffNs = float64(f.SleepUs) * 1000
		}
	}
	k.Roots = []Root{{Func: "__x64_sys_write", Entry: []string{"entry_SYSCALL_64", "do_syscall_64"}}}
	k.Roots[0].Rate = 0.9e9 / k.InclNs("__x64_sys_write")
	return k
}

// fromTreeFunc is the simulated function of f: recursion unrolled into
// levels (f, f.rec1, ... each calling the next), indirect calls at
// distinct sites.
func fromTreeFunc(t *calltree.Tree, f *calltree.Func) *Func {
	sf := &Func{Name: f.Name, OnNs: float64(f.SpinNs)}
	if f.SleepUs > 0 {
		sf.Calls = append(sf.Calls, Call{Func: "usleep_range_state", N: 1})
	}
	for j, c := range f.Calls {
		call := Call{Func: t.Funcs[c.To].Name, N: uint64(c.N)}
		if c.Via == calltree.Pointer {
			call.Site = uint64(0x20 + 0x10*j)
		}
		sf.Calls = append(sf.Calls, call)
	}
	if f.Recurse > 0 {
		// The simulator has no recursion: the levels are one function
		// whose own cost and calls are repeated.
		sf.OnNs *= float64(1 + f.Recurse)
		for i := range sf.Calls {
			sf.Calls[i].N *= uint64(1 + f.Recurse)
		}
	}
	return sf
}

// TreeTruth is the share of the target's time each plant of a tree takes
// in its simulated kernel, by the plant's Stat: the planted ns per write
// over the time of a write and the wait between writes.
func TreeTruth(k *Kernel, t *calltree.Tree) map[string]float64 {
	calls := t.CallsPerOp()
	cycle := 1e9 / k.Roots[0].Rate
	out := map[string]float64{}
	for _, p := range t.Plants {
		var ns float64
		switch {
		case p.Kind == calltree.Sleep:
			ns = calls[p.Owner] * (k.Funcs[p.Owner].OnNs + k.InclNs("usleep_range_state"))
		case p.Kind == calltree.Many:
			ns = calls[p.Owner] * k.Funcs[p.Owner].OnNs
		case p.Helper != "":
			ns = calls[p.Owner] * k.Funcs[p.Helper].OnNs * float64(helperCalls(t, p.Owner, p.Helper))
		default:
			ns = calls[p.Owner] * k.Funcs[p.Owner].OnNs
		}
		out[p.Stat] = ns / cycle / float64(k.TargetThreads)
	}
	return out
}

// helperCalls is how often caller calls callee per call.
func helperCalls(t *calltree.Tree, caller, callee string) int {
	f := t.Func(caller)
	n := 0
	for _, c := range f.Calls {
		if t.Funcs[c.To].Name == callee {
			n += c.N
		}
	}
	if n == 0 {
		panic(fmt.Sprintf("%s does not call %s", caller, callee))
	}
	return n
}
