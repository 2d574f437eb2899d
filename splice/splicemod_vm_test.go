//go:build vm

package splice

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// spliceBuild is where vmtest.json puts what kmod/splicer/vmprep.sh built
// for the guest's kernel: the module and the kernel's image.
func spliceBuild(t testing.TB, file string) string {
	t.Helper()
	rel, err := kernel.Release()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join("..", "kmod", "splicer", "build", rel, file)
}

// openSplice opens a splice session with the module built for the guest.
func openSplice(t testing.TB, deadman time.Duration) *Session {
	t.Helper()
	s, err := Open(context.Background(), Options{
		Backend: instrument.Splice, Module: spliceBuild(t, "autoprof_splice.ko"), Image: spliceBuild(t, "vmlinuz"), Deadman: deadman,
		MaxOverhead: 1, // the tests load every CPU on purpose; TestVMSpliceOverhead tests the switch
	})
	if err != nil {
		t.Fatalf("opening a splice session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// mod returns the splice module's engine behind a splice session.
func (s *Session) mod() *moduleSession { return s.eng.(*moduleSession) }

// keepGraph makes s leave its call graph open when it closes, until the
// test ends, for reopenSplice.
func keepGraph(t testing.TB, s *Session) {
	if s.ownGraph {
		s.ownGraph = false
		t.Cleanup(func() { s.graph.Close() })
	}
}

// reopenSplice starts a session sharing prev's call graph and catalogue
// (the slow parts of opening one), loading the module again if it has
// gone. keepGraph(prev) must come before prev closes.
func reopenSplice(t testing.TB, prev *Session) *Session {
	t.Helper()
	keepGraph(t, prev)
	m := newModuleSession(prev.graph)
	m.cat = prev.mod().cat
	if err := m.connect(context.Background(), Options{Module: spliceBuild(t, "autoprof_splice.ko"), MaxOverhead: 1}); err != nil {
		t.Fatalf("opening a splice session: %v", err)
	}
	s := &Session{backend: instrument.Splice, graph: prev.graph, eng: m}
	s.releaseDropped()
	t.Cleanup(func() { s.Close() })
	return s
}

// askModule asks the module itself for a splice of spec at w, the
// catalogue's checks (kprobes/list, the tables) bypassed, and returns its
// answer: Err is 0 where it spliced.
func askModule(t testing.TB, s *Session, w *patch.Window, spec instrument.Spec) splicer.Splice {
	t.Helper()
	c := &siteChange{addr: w.Addr(), w: w, added: []instrument.Spec{spec}}
	if err := s.mod().request(c); err != nil {
		t.Fatal(err)
	}
	batch := []splicer.Splice{c.req}
	if _, err := s.mod().insertBatch(batch); err != nil {
		t.Fatal(err)
	}
	return batch[0]
}

// insertAll inserts specs in one batch, failing the test on any error.
func insertAll(t testing.TB, s *Session, specs ...instrument.Spec) []instrument.Instrument {
	t.Helper()
	ins, err := s.mod().InsertAll(context.Background(), specs)
	if err != nil {
		t.Fatalf("inserting: %v", err)
	}
	return ins
}

// TestVMSpliceExact: the same deterministic workload (a helper's n preads)
// measured by fentry/fexit and by splices at the same places, at once:
// every count in every calling context agrees exactly.
func TestVMSpliceExact(t *testing.T) {
	const n = 2000
	file := tmpFile(t)
	ss := openSplice(t, 0)
	fs := openSession(t, "fentry")
	h := startHelper(t, fmt.Sprintf("pread %d %s", n, file))
	tg := pid(h.Pid)
	count := func(fn string) instrument.Spec {
		return instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Count, Target: tg}
	}
	exit := func(fn string) instrument.Spec {
		return instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.ExitCount, Target: tg}
	}
	specs := []instrument.Spec{timer("__x64_sys_pread64", tg), timer("vfs_read", tg), count("rw_verify_area"), exit("vfs_read"), count("__x64_sys_pread64")}
	var both []instrument.Spec
	for _, sp := range specs {
		if err := ss.Check(sp); err != nil {
			t.Logf("splice refuses %s here: %v", sp, err)
			continue
		}
		if err := fs.Check(sp); err != nil {
			t.Logf("fentry refuses %s here: %v", sp, err)
			continue
		}
		both = append(both, sp)
	}
	if len(both) < 3 {
		t.Fatalf("only %d of the specs are allowed by both backends", len(both))
	}
	insertAll(t, ss, both...)
	insert(t, fs, both...)
	h.Go(t)
	sr, err := ss.Read()
	if err != nil {
		t.Fatal(err)
	}
	fr, err := fs.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Log("splice:")
	logReading(t, sr)
	t.Log("fentry:")
	logReading(t, fr)
	sp, fp := byPath(sr), byPath(fr)
	for k, f := range fp {
		if s := sp[k]; s.Calls != f.Calls {
			t.Errorf("%s: splice counted %d, fentry %d", k, s.Calls, f.Calls)
		}
	}
	for k, s := range sp {
		if _, ok := fp[k]; !ok && s.Calls > 0 {
			t.Errorf("%s: splice counted %d, fentry has no such context", k, s.Calls)
		}
	}
	if c := sp["__x64_sys_pread64:timer"]; c.Calls != n {
		t.Errorf("__x64_sys_pread64: %d calls, want %d", c.Calls, n)
	}
	if sr.Misses.Total() != 0 {
		t.Errorf("splice misses: %+v", sr.Misses)
	}
}
