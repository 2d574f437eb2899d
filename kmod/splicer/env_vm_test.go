//go:build vm

package splicer

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
	"github.com/autoprof/autoprof/splice/patch"
)

// vmEnv is the module loaded for the guest's kernel, with what the tests
// read of that kernel: its call graph and the tables of text that other
// patchers own (the image's alternatives and returns included).
type vmEnv struct {
	id     Identity
	g      *callgraph.Graph
	tables *patch.Tables
	names  map[uint64]string // kallsyms' name of a function, where it differs
}

// builtFile is where vmtest.json puts what vmprep.sh built for the guest.
func builtFile(id Identity, name string) string {
	return filepath.Join("build", id.Release, name)
}

// newEnv reads the running kernel, without loading the module.
func newEnv(t *testing.T) *vmEnv {
	t.Helper()
	id, err := RunningIdentity()
	if err != nil {
		t.Fatal(err)
	}
	g, err := livetext.OpenGraph()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	tables, err := patch.ReadTables(g.Symbols(), g.Text())
	if err != nil {
		t.Fatal(err)
	}
	im, err := callgraph.OpenImage(builtFile(id, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tables.AddImage(im, g.Symbols()); err != nil {
		t.Fatal(err)
	}
	return &vmEnv{id: id, g: g, tables: tables, names: map[uint64]string{}}
}

// load loads the module with p's table sizes; it is unloaded when the
// test ends.
func (e *vmEnv) load(t *testing.T, sizes Params) {
	t.Helper()
	p, err := NewParams(e.id, e.g.Symbols())
	if err != nil {
		t.Fatal(err)
	}
	p.MaxInsts, p.MaxCtxs, p.MaxThreads = sizes.MaxInsts, sizes.MaxCtxs, sizes.MaxThreads
	if err := Load(builtFile(e.id, ModuleName+".ko"), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Unload(); err != nil {
			t.Errorf("unloading the module: %v", err)
		}
	})
}

// loadEnv reads the running kernel and loads the module.
func loadEnv(t *testing.T) *vmEnv {
	e := newEnv(t)
	e.load(t, Params{})
	return e
}

// open opens a session, closed when the test ends.
func (e *vmEnv) open(t *testing.T, deadman time.Duration, maxOverhead float64) *Device {
	t.Helper()
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Hello(e.id, deadman, maxOverhead); err != nil {
		t.Fatal(err)
	}
	return d
}

// function decodes a function of the running kernel.
func (e *vmEnv) function(t *testing.T, name string) *callgraph.Function {
	t.Helper()
	f, err := e.g.Function(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// callee decodes a function that a tail call enters, with its .cold
// parts, for patch.ExitWindows.
func (e *vmEnv) callee(name string) (*callgraph.Function, []*callgraph.Function, error) {
	f, err := e.g.Function(name)
	if err != nil {
		return nil, nil, err
	}
	var cold []*callgraph.Function
	for _, part := range e.g.Symbols().ColdParts(f.Sym) {
		c, err := e.g.FunctionOf(part)
		if err != nil {
			return nil, nil, err
		}
		cold = append(cold, c)
	}
	return f, cold, nil
}

// request returns the module's request for window w with instruments
// insts (ids 0 for new ones).
func (e *vmEnv) request(w *patch.Window, insts ...InstReq) Splice {
	var sp Splice
	sp.Addr, sp.Func = w.Addr(), w.Func.Addr
	name := w.Func.Name
	if n, ok := e.names[w.Func.Addr]; ok {
		name = n
	}
	sp.SetName(name)
	sp.Len, sp.Role = uint8(w.Len()), Role(w.Role())
	copy(sp.Orig[:], w.Orig())
	sp.NInst = uint32(len(insts))
	copy(sp.Insts[:], insts)
	return sp
}

// insert inserts reqs, failing the test unless every one goes live; a
// request refused for naming its function by another alias than
// kallsyms' is made again with kallsyms' name.
func (e *vmEnv) insert(t *testing.T, d *Device, reqs ...Splice) []Splice {
	t.Helper()
	n, err := d.Insert(reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		if reqs[i].Err != -int32(syscall.ENOENT) {
			continue
		}
		e.names[reqs[i].Func] = reqs[i].FoundName()
		reqs[i].SetName(reqs[i].FoundName())
		again := reqs[i : i+1]
		if m, err := d.Insert(again); err != nil {
			t.Fatal(err)
		} else {
			n += m
		}
	}
	if n != len(reqs) {
		for _, sp := range reqs {
			if sp.Err != 0 {
				t.Errorf("%#x (%s, role %d): errno %d", sp.Addr, sp.FoundName(), sp.Role, -sp.Err)
			}
		}
		t.Fatalf("%d of %d splices went live", n, len(reqs))
	}
	return reqs
}

// layout returns what splice/patch's reference encoder needs.
func layout(in Info) patch.Layout {
	return patch.Layout{
		PoolStart: in.PoolStart, PoolEnd: in.PoolEnd,
		StubEnter: in.StubEnter, StubExit: in.StubExit, StubCount: in.StubCount,
		StubExitFlags: in.StubExitFlags, StubCountFlags: in.StubCountFlags,
		GSCurrent: int64(in.GSCurrent), GSRootTask: int64(in.GSRootTask), TaskTgid: int64(in.TaskTgid),
		MaxBlob: int(in.SlotSize),
	}
}

// checkTramp compares the trampoline the module built for sp, at window
// w, with splice/patch's reference (insts in the request's order).
func (e *vmEnv) checkTramp(t *testing.T, d *Device, w *patch.Window, insts []patch.Instrument, sp Splice) {
	t.Helper()
	code := make([]byte, sp.TrampLen)
	if err := e.g.Text().ReadAt(code, sp.Tramp); err != nil {
		t.Fatal(err)
	}
	ref := *w
	if w.Role() == patch.RoleBlock {
		ref.FlagsLive = sp.Out&OutFlags != 0
		if w.FlagsLive && !ref.FlagsLive {
			t.Errorf("%s+%#x: the module found the flags dead where splice/patch finds them live", w.Func.Name, w.Off)
		}
	}
	if w.Role() == patch.RoleReturn && w.FlagsLive != (sp.Out&OutFlags != 0) {
		// Both decide by the bytes the part starts with (compiledStart, ap_entry_site).
		t.Errorf("%s+%#x: return window with flags live %v in splice/patch, %v in the module", w.Func.Name, w.Off, w.FlagsLive, !w.FlagsLive)
	}
	b, err := patch.Build(&ref, insts, layout(d.Info()))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]uint32, sp.NInst)
	for i := range ids {
		ids[i] = sp.Insts[i].ID
	}
	if err := b.Match(code, sp.Tramp, ids); err != nil {
		t.Errorf("%s+%#x (role %d): the module's trampoline differs from the reference: %v", w.Func.Name, w.Off, w.Role(), err)
	}
}

// restored fails the test unless every window holds its original bytes.
func (e *vmEnv) restored(t *testing.T, ws ...*patch.Window) {
	t.Helper()
	for _, w := range ws {
		b := make([]byte, w.Len())
		if err := e.g.Text().ReadAt(b, w.Addr()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, w.Orig()) {
			t.Errorf("%s+%#x holds % x, want % x", w.Func.Name, w.Off, b, w.Orig())
		}
	}
}
