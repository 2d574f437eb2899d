package measure

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/autoprof/autoprof/internal/bpfmaps"
)

// Context is an interned calling context: the instrument Inst entered
// with Parent on top of the thread's shadow stack (0: none).
type Context struct {
	Parent, Inst uint32
}

// Contexts returns every interned context by id. Contexts are never
// forgotten, and next_ctx hands their ids out in order: while it stays
// where it was and every id below it was read, the last answer stands
// (one lookup instead of a walk of the map each round). The map returned
// is shared: callers must not change it.
func (m *Model) Contexts() (map[uint32]Context, error) {
	var next uint32
	if err := m.objs.NextCtx.Lookup(uint32(0), &next); err != nil {
		return nil, fmt.Errorf("reading contexts: %w", err)
	}
	m.ctxMu.Lock()
	defer m.ctxMu.Unlock()
	if m.ctxs != nil && next == m.ctxsNext {
		return m.ctxs, nil
	}
	out, err := m.readContexts()
	if err != nil {
		return nil, fmt.Errorf("reading contexts: %w", err)
	}
	// Valid once no context can be on its way in: ids 1..next all read,
	// or the same ids missing as at the last read with next where it was
	// then (an id lost to two CPUs interning one context at once, or to
	// a full map: an insert in flight takes microseconds, not a round).
	stable := uint32(len(out)) == next || m.ctxs != nil && len(out) == len(m.ctxs) && next == m.ctxsSeen
	m.ctxs, m.ctxsNext, m.ctxsSeen = out, 0, next
	if stable {
		m.ctxsNext = next
	}
	return out, nil
}

// readContexts reads the whole contexts map.
func (m *Model) readContexts() (map[uint32]Context, error) {
	out := map[uint32]Context{}
	each := func(k measureCtxKey, id []uint32) { out[id[0]] = Context{Parent: k.Parent, Inst: k.Inst} }
	err := bpfmaps.ReadHash(m.objs.Ctxs, 1, each, func() error {
		var k measureCtxKey
		var id uint32
		it := m.objs.Ctxs.Iterate()
		for it.Next(&k, &id) {
			each(k, []uint32{id})
		}
		return it.Err()
	})
	return out, err
}

// Stats is what one context measured, summed over CPUs.
type Stats struct {
	Calls, InclNs, ExclNs, InclOffCPUNs, ExclOffCPUNs uint64
	Hist                                              [HistBuckets]uint64
}

// StatsUpTo returns the statistics of contexts 0 to n-1, by id, read in
// batches (see readPerCPU).
func (m *Model) StatsUpTo(n uint32) ([]Stats, error) {
	per, err := readPerCPU[measureCtxStats](m.objs.Stats, n, m.ncpu)
	if err != nil {
		return nil, fmt.Errorf("reading contexts' statistics: %w", err)
	}
	out := make([]Stats, n)
	for i := range out {
		out[i] = sumStats(per[i*m.ncpu : (i+1)*m.ncpu])
	}
	return out, nil
}

// statsBatch is how many entries of a per-CPU array one
// BPF_MAP_LOOKUP_BATCH reads.
const statsBatch = 256

// readPerCPU reads entries 0 to n-1 of a per-CPU array map: ncpu values
// each, entry after entry. It reads them in batches where the kernel has
// BPF_MAP_LOOKUP_BATCH (Linux 5.6), else entry by entry: each round reads
// every context, and a system call per entry costs tens of microseconds
// under emulation.
func readPerCPU[V any](mp *ebpf.Map, n uint32, ncpu int) ([]V, error) {
	out := make([]V, int(n)*ncpu)
	keys := make([]uint32, min(int(n), statsBatch))
	var cursor ebpf.MapBatchCursor
	for got := 0; got < int(n); {
		k := min(int(n)-got, len(keys))
		c, err := mp.BatchLookup(&cursor, keys[:k], out[got*ncpu:(got+k)*ncpu], nil)
		got += c
		switch {
		case errors.Is(err, ebpf.ErrNotSupported) && got == 0:
			return readPerCPUEach[V](mp, n, ncpu, out)
		case errors.Is(err, ebpf.ErrKeyNotExist) || err == nil && c == 0:
			if got < int(n) {
				return nil, fmt.Errorf("%d of %d entries: the map ends there", got, n)
			}
		case err != nil:
			return nil, err
		}
	}
	return out, nil
}

// readPerCPUEach is readPerCPU one entry at a time, into out.
func readPerCPUEach[V any](mp *ebpf.Map, n uint32, ncpu int, out []V) ([]V, error) {
	for i := range n {
		if err := mp.Lookup(i, out[int(i)*ncpu:int(i+1)*ncpu]); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return out, nil
}

func sumStats(per []measureCtxStats) Stats {
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
	return s
}

// Hits returns, for each instrument id, how many times its programs ran
// for an entry, summed over CPUs, whatever task hit it (see hits in
// measure.bpf.c).
func (m *Model) Hits(ids []uint32) (map[uint32]uint64, error) {
	out := make(map[uint32]uint64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	top := slices.Max(ids)
	per, err := readPerCPU[uint64](m.objs.Hits, top+1, m.ncpu)
	if err != nil {
		return nil, fmt.Errorf("reading the instruments' hits: %w", err)
	}
	for _, id := range ids {
		out[id] = sum(per[int(id)*m.ncpu : int(id+1)*m.ncpu])
	}
	return out, nil
}

// Target is one (context, indirect-call target) count.
type Target struct {
	Ctx    uint32
	Target uint64
	Calls  uint64
}

// Targets returns every captured target (see bpfmaps.ReadHash).
func (m *Model) Targets() ([]Target, error) {
	var out []Target
	each := func(k measureTargetKey, per []uint64) {
		out = append(out, Target{Ctx: k.Ctx, Target: k.Target, Calls: sum(per)})
	}
	err := bpfmaps.ReadHash(m.objs.Targets, m.ncpu, each, func() error {
		var k measureTargetKey
		per := make([]uint64, m.ncpu)
		it := m.objs.Targets.Iterate()
		for it.Next(&k, &per) {
			each(k, per)
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reading call targets: %w", err)
	}
	return out, nil
}

// sum adds up the per-CPU values of one entry.
func sum(per []uint64) uint64 {
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
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
	per, err := readPerCPU[uint64](m.objs.Misses, missN, m.ncpu)
	if err != nil {
		return Misses{}, fmt.Errorf("reading misses: %w", err)
	}
	for i := range v {
		v[i] = sum(per[i*m.ncpu : (i+1)*m.ncpu])
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
