package searchtest

import (
	"fmt"
	"math/rand/v2"
)

// Shapes are the planted call trees Planted can build, after the shapes
// of the ground-truth kernel module (kmod/testdata).
var Shapes = []string{"cpu", "sleep", "indirect", "deep", "many"}

// Truth is what a hunt on a planted kernel must find.
type Truth struct {
	Shape string
	// Func is the planted bottleneck; Path the functions from the root to
	// it.
	Func string
	Path []string
	// Share is its exclusive share of the target's time.
	Share float64
	// CallsPerOp is how often it runs per operation of the root.
	CallsPerOp uint64
	// Verdict is a word the finding's verdict must hold.
	Verdict string
}

// Planted builds a kernel with one planted bottleneck of the given shape
// under a syscall root, among cold subtrees drawn at random from seed
// (a few thousand functions reachable in all), and returns it with the
// truth. The target has one thread busy about two thirds of the time.
func Planted(shape string, seed uint64) (*Kernel, Truth) {
	rng := rand.New(rand.NewPCG(seed, 7))
	k := &Kernel{Funcs: map[string]*Func{}, Noise: 0.05, Seed: seed, Offsets: true, CostPerHitNs: 50, TargetThreads: 1, CPUs: 2}
	add := func(f *Func) *Func { k.Funcs[f.Name] = f; return f }
	// Entry code that cannot be instrumented, and a shared library of
	// cheap functions many cold functions call.
	add(&Func{Name: "do_syscall_64", NoTrace: true})
	for _, lib := range []string{"kmalloc", "kfree", "mutex_lock", "mutex_unlock", "_raw_spin_lock"} {
		add(&Func{Name: lib, OnNs: 40 + 40*rng.Float64(), SystemRate: 20000})
	}
	add(&Func{Name: "__schedule", NoTrace: true})
	root := add(&Func{Name: "__x64_sys_write", OnNs: 300})
	k.Roots = []Root{{Func: root.Name, Entry: []string{"entry_SYSCALL_64", "do_syscall_64"}}}
	chain := []*Func{root}
	depth := 3 + rng.IntN(3)
	if shape == "deep" {
		depth = 10
	}
	for i := 0; i < depth; i++ {
		f := add(&Func{Name: fmt.Sprintf("hot_%s_%d", shape, i), OnNs: 200 + 300*rng.Float64()})
		last := chain[len(chain)-1]
		last.Calls = append(last.Calls, Call{Func: f.Name, N: 1})
		chain = append(chain, f)
	}
	parent := chain[len(chain)-1]
	t := Truth{Shape: shape, CallsPerOp: 1, Verdict: "CPU-bound"}
	leaf := &Func{Name: "planted_" + shape}
	switch shape {
	case "cpu", "deep":
		leaf.OnNs = 400e3
		leaf.Blocks = []Block{{Off: 0x10, PerCall: 1}, {Off: 0x24, PerCall: 1000}, {Off: 0x40, PerCall: 1}}
		parent.Calls = append(parent.Calls, Call{Func: leaf.Name, N: 1})
	case "sleep":
		leaf.OnNs, leaf.OffNs = 2e3, 400e3
		leaf.Calls = []Call{{Func: "__schedule", N: 1}}
		parent.Calls = append(parent.Calls, Call{Func: leaf.Name, N: 1})
		t.Verdict = "blocked"
	case "indirect":
		leaf.OnNs = 400e3
		parent.Calls = append(parent.Calls, Call{Func: leaf.Name, N: 1, Site: 0x3a})
		add(&Func{Name: "planted_indirect_other", OnNs: 1e3})
		parent.Calls = append(parent.Calls, Call{Func: "planted_indirect_other", N: 1, Site: 0x3a})
	case "many":
		leaf.OnNs = 1e3
		t.CallsPerOp = 400
		parent.Calls = append(parent.Calls, Call{Func: leaf.Name, N: t.CallsPerOp})
		t.Verdict = "called 400 times"
	default:
		panic("unknown shape " + shape)
	}
	add(leaf)
	// A warm sibling (about 3% of the time, under a 5% threshold) and
	// cold subtrees below every function of the hot chain.
	warm := add(&Func{Name: "warm_" + shape, OnNs: 20e3})
	parent.Calls = append(parent.Calls, Call{Func: warm.Name, N: 1})
	n := 0
	for _, f := range chain {
		for j := 0; j < 3+rng.IntN(3); j++ {
			c := coldTree(k, rng, fmt.Sprintf("cold%d", n), 4)
			n++
			f.Calls = append(f.Calls, Call{Func: c, N: uint64(1 + rng.IntN(2))})
		}
	}
	for _, f := range chain[1:] {
		t.Path = append(t.Path, f.Name)
	}
	t.Path = append([]string{root.Name}, append(t.Path, leaf.Name)...)
	t.Func = leaf.Name
	// One operation takes about 1.5 times the leaf's time; the thread is
	// busy 2/3 of the time.
	opNs := k.InclNs(root.Name)
	k.Roots[0].Rate = 0.66e9 / opNs
	// A second, cheap syscall the target makes often.
	add(&Func{Name: "__x64_sys_getppid", OnNs: 300, Calls: []Call{{Func: "kmalloc", N: 1}}})
	k.Roots = append(k.Roots, Root{Func: "__x64_sys_getppid", Rate: 200, Entry: []string{"entry_SYSCALL_64", "do_syscall_64"}})
	t.Share = k.SelfShare(leaf.Name)
	return k, t
}

// coldTree adds a random subtree of cheap functions and returns its root.
func coldTree(k *Kernel, rng *rand.Rand, name string, depth int) string {
	f := &Func{Name: name, OnNs: 20 + 60*rng.Float64()}
	k.Funcs[name] = f
	if depth > 0 {
		for i := 0; i < 2+rng.IntN(3); i++ {
			f.Calls = append(f.Calls, Call{Func: coldTree(k, rng, fmt.Sprintf("%s_%d", name, i), depth-1), N: 1})
		}
	}
	if rng.IntN(3) == 0 {
		libs := []string{"kmalloc", "kfree", "mutex_lock", "mutex_unlock", "_raw_spin_lock"}
		f.Calls = append(f.Calls, Call{Func: libs[rng.IntN(len(libs))], N: 1})
	}
	if rng.IntN(40) == 0 {
		f.NoTrace = true
	}
	return name
}
