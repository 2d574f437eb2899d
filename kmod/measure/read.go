package measure

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Context is an interned calling context: the instrument Inst entered
// with Parent on top of the thread's shadow stack (0: none).
type Context struct {
	Parent, Inst uint32
}

// Contexts returns every interned context by id.
func (m *Model) Contexts() (map[uint32]Context, error) {
	out := map[uint32]Context{}
	var k measureCtxKey
	var id uint32
	it := m.objs.Ctxs.Iterate()
	for it.Next(&k, &id) {
		out[id] = Context{Parent: k.Parent, Inst: k.Inst}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading contexts: %w", err)
	}
	return out, nil
}

// Stats is what one context measured, summed over CPUs.
type Stats struct {
	Calls, InclNs, ExclNs, InclOffCPUNs, ExclOffCPUNs uint64
	Hist                                              [HistBuckets]uint64
}

// Stats returns the statistics of context id.
func (m *Model) Stats(id uint32) (Stats, error) {
	per := make([]measureCtxStats, m.ncpu)
	if err := m.objs.Stats.Lookup(id, &per); err != nil {
		return Stats{}, fmt.Errorf("reading context %d: %w", id, err)
	}
	var s Stats
	for _, c := range per {
		s.Calls += c.Calls
		s.InclNs += c.Incl
		s.ExclNs += c.Excl
		s.InclOffCPUNs += c.OffIncl
		s.ExclOffCPUNs += c.OffExcl
		for i, h := range c.Hist {
			s.Hist[i] += h
		}
	}
	return s, nil
}

// Hits returns, for each instrument id, how many times its programs ran
// for an entry, summed over CPUs, whatever task hit it (see hits in
// measure.bpf.c).
func (m *Model) Hits(ids []uint32) (map[uint32]uint64, error) {
	out := make(map[uint32]uint64, len(ids))
	per := make([]uint64, m.ncpu)
	for _, id := range ids {
		if err := m.objs.Hits.Lookup(id, &per); err != nil {
			return nil, fmt.Errorf("reading the hits of instrument %d: %w", id, err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		out[id] = n
	}
	return out, nil
}

// Target is one (context, indirect-call target) count.
type Target struct {
	Ctx    uint32
	Target uint64
	Calls  uint64
}

// Targets returns every captured target.
func (m *Model) Targets() ([]Target, error) {
	var out []Target
	var k measureTargetKey
	per := make([]uint64, m.ncpu)
	it := m.objs.Targets.Iterate()
	for it.Next(&k, &per) {
		t := Target{Ctx: k.Ctx, Target: k.Target}
		for _, n := range per {
			t.Calls += n
		}
		out = append(out, t)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading call targets: %w", err)
	}
	return out, nil
}

// Misses are the model's own miss counters, summed over CPUs.
type Misses struct {
	Recursion, StackDepth, MapFull, Unmatched uint64
}

// The miss counters' indices in the misses map: M_* in measure.bpf.c.
const (
	missRecursion = iota
	missDepth
	missMapFull
	missUnmatched
	missN // how many there are
)

// Misses reads the miss counters.
func (m *Model) Misses() (Misses, error) {
	var v [missN]uint64
	per := make([]uint64, m.ncpu)
	for i := range v {
		if err := m.objs.Misses.Lookup(uint32(i), &per); err != nil {
			return Misses{}, fmt.Errorf("reading misses: %w", err)
		}
		for _, n := range per {
			v[i] += n
		}
	}
	return Misses{Recursion: v[missRecursion], StackDepth: v[missDepth], MapFull: v[missMapFull], Unmatched: v[missUnmatched]}, nil
}

// Threads returns the number of threads that hold a shadow stack now.
func (m *Model) Threads() (int, error) {
	n := 0
	var k uint32
	it := m.objs.Threads.Iterate()
	var v measureThread
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return n, fmt.Errorf("reading threads: %w", err)
	}
	return n, nil
}
