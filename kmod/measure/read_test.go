package measure

import (
	"testing"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// TestBatchedReads fills the contexts, statistics and hits maps from user
// space past one batch and reads them back: every context, every CPU's
// values summed, and the contexts read again only once next_ctx moves.
func TestBatchedReads(t *testing.T) {
	const n = 600 // contexts: more than one batch of either kind
	featuretest.Require(t, features.HaveTracepoint())
	m, err := Load(Config{MaxInstruments: n, MaxContexts: n + 8, MaxThreads: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	per := make([]measureCtxStats, m.ncpu)
	hits := make([]uint64, m.ncpu)
	for id := uint32(1); id <= n; id++ {
		if err := m.objs.Ctxs.Put(measureCtxKey{Parent: id - 1, Inst: id % 7}, id); err != nil {
			t.Fatal(err)
		}
		for c := range per {
			per[c] = measureCtxStats{Calls: uint64(id), Incl: uint64(c + 1)}
			hits[c] = uint64(id * 10)
		}
		if err := m.objs.Stats.Put(id, per); err != nil {
			t.Fatal(err)
		}
		if err := m.objs.Hits.Put(id, hits); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.objs.NextCtx.Put(uint32(0), uint32(n)); err != nil {
		t.Fatal(err)
	}
	ctxs, err := m.Contexts()
	if err != nil {
		t.Fatal(err)
	}
	if len(ctxs) != n || ctxs[n] != (Context{Parent: n - 1, Inst: n % 7}) {
		t.Fatalf("%d contexts, context %d %+v; want %d and {%d %d}", len(ctxs), n, ctxs[n], n, n-1, n%7)
	}
	stats, err := m.StatsUpTo(n + 1)
	if err != nil {
		t.Fatal(err)
	}
	wantIncl := uint64(m.ncpu * (m.ncpu + 1) / 2)
	for id := 1; id <= n; id++ {
		if s := stats[id]; s.Calls != uint64(id*m.ncpu) || s.InclNs != wantIncl {
			t.Fatalf("context %d: %d calls, %d ns; want %d, %d", id, s.Calls, s.InclNs, id*m.ncpu, wantIncl)
		}
	}
	ids := []uint32{1, 299, n}
	h, err := m.Hits(ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if h[id] != uint64(id*10)*uint64(m.ncpu) {
			t.Errorf("instrument %d: %d hits, want %d", id, h[id], id*10*uint32(m.ncpu))
		}
	}
	// A context interned now is read once next_ctx counts it, not before.
	if err := m.objs.Ctxs.Put(measureCtxKey{Parent: 1, Inst: 99}, uint32(n+1)); err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Contexts(); len(again) != n {
		t.Errorf("contexts read again while next_ctx stayed: %d", len(again))
	}
	if err := m.objs.NextCtx.Put(uint32(0), uint32(n+1)); err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Contexts(); len(again) != n+1 {
		t.Errorf("%d contexts after next_ctx moved, want %d", len(again), n+1)
	}
	// An id lost for good (two CPUs interned one context at once): the
	// reading stands once two in a row agree.
	if err := m.objs.NextCtx.Put(uint32(0), uint32(n+3)); err != nil {
		t.Fatal(err)
	}
	if err := m.objs.Ctxs.Put(measureCtxKey{Parent: 2, Inst: 99}, uint32(n+3)); err != nil {
		t.Fatal(err)
	}
	m.Contexts()
	m.Contexts()
	if err := m.objs.Ctxs.Put(measureCtxKey{Parent: 3, Inst: 99}, uint32(n+2)); err != nil { // not counted: next_ctx stayed
		t.Fatal(err)
	}
	if again, _ := m.Contexts(); len(again) != n+2 {
		t.Errorf("%d contexts with a lost id, want the %d of the readings that agreed", len(again), n+2)
	}
}

// TestBatchedTargets reads more captured targets than one batch holds.
func TestBatchedTargets(t *testing.T) {
	const n = 700
	featuretest.Require(t, features.HaveTracepoint())
	m, err := Load(Config{MaxInstruments: 8, MaxContexts: 8, MaxThreads: 16, MaxTargets: n + 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	per := make([]uint64, m.ncpu)
	for i := range n {
		for c := range per {
			per[c] = uint64(i)
		}
		if err := m.objs.Targets.Put(measureTargetKey{Ctx: uint32(i % 5), Target: 0xffffffff81000000 + uint64(i)}, per); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := m.Targets()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != n {
		t.Fatalf("%d targets, want %d", len(ts), n)
	}
	for _, x := range ts {
		i := x.Target - 0xffffffff81000000
		if x.Ctx != uint32(i%5) || x.Calls != i*uint64(m.ncpu) {
			t.Fatalf("target %+v: want context %d, %d calls", x, i%5, i*uint64(m.ncpu))
		}
	}
}
