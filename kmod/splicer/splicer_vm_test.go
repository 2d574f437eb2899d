//go:build vm

package splicer

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/splice/patch"
)

// builtModule is where vmtest.json puts the module built for the guest.
func builtModule(t *testing.T, id Identity) string {
	return filepath.Join("build", id.Release, ModuleName+".ko")
}

func layoutOf(in Info) patch.Layout {
	return patch.Layout{
		PoolStart: in.PoolStart, PoolEnd: in.PoolEnd,
		StubEnter: in.StubEnter, StubCount: in.StubCount,
		GSCurrent: int64(in.GSCurrent), GSRootTask: int64(in.GSRootTask), TaskTgid: int64(in.TaskTgid),
		MaxBlob: MaxBlob,
	}
}

func TestVMSmoke(t *testing.T) {
	id, err := RunningIdentity()
	if err != nil {
		t.Fatal(err)
	}
	g, err := callgraph.OpenLive()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	p, err := NewParams(id, g.Symbols())
	if err != nil {
		t.Fatal(err)
	}
	if err := Load(builtModule(t, id), p); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := Unload(); err != nil {
			t.Errorf("unload: %v", err)
		}
	}()
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	t.Logf("info %+v", d.Info())
	if err := d.Hello(id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	tables, err := patch.ReadTables(g.Symbols(), g.Text())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tables: %d extable, %d alternatives, %d paravirt, %d jump labels, %d static calls",
		len(tables.Extable), len(tables.Alts), len(tables.Paravirt), len(tables.JumpLabels), len(tables.StaticCalls))
	f, err := g.Function("__x64_sys_getpid")
	if err != nil {
		t.Fatal(err)
	}
	w, err := patch.SelectWindow(f, nil, 0, true, tables)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range w.Insts {
		t.Logf("displaced: %s", in)
	}
	me := int32(syscall.Getpid())
	lay := layoutOf(d.Info())
	// splice builds the request for the site w with insts (ids: 0 for new).
	splice := func(insts []patch.Instrument, ids []uint32, replace bool) Splice {
		blob, err := patch.Build(w, insts, lay)
		if err != nil {
			t.Fatal(err)
		}
		var sp Splice
		sp.Addr, sp.Func = w.Addr(), f.Sym.Addr
		sp.SetName(f.Sym.Name)
		sp.Len, sp.NInsns = uint8(w.Len()), uint8(len(w.Insts))
		copy(sp.Orig[:], w.Orig())
		sp.BlobLen = uint16(copy(sp.Blob[:], blob.Code))
		for i, r := range blob.Relocs {
			sp.Relocs[i] = Reloc{Off: r.Off, End: r.End, Kind: uint32(r.Kind), Target: r.Target}
		}
		sp.NRelocs = uint32(len(blob.Relocs))
		sp.NInst = uint32(len(insts))
		for i, in := range insts {
			sp.Insts[i] = InstReq{Kind: Kind(in.Kind), ID: ids[i], NPIDs: 1}
			sp.Insts[i].PIDs[0] = me
		}
		if replace {
			sp.Flags = FlagReplace
		}
		return sp
	}
	insert := func(sp Splice) Splice {
		t.Helper()
		splices := []Splice{sp}
		n, err := d.Insert(splices)
		if err == nil && splices[0].Err == -int32(syscall.ENOENT) {
			// kallsyms names an alias of the function at this address.
			t.Logf("the kernel calls it %s", splices[0].FoundName())
			sp.SetName(splices[0].FoundName())
			splices = []Splice{sp}
			n, err = d.Insert(splices)
		}
		if err != nil || n != 1 {
			t.Fatalf("insert: %d live, %v, splice err %d (%s)", n, err, splices[0].Err, splices[0].FoundName())
		}
		return splices[0]
	}
	got := insert(splice([]patch.Instrument{{Kind: patch.Count, PIDs: []int32{me}}}, []uint32{0}, false))
	count := got.Insts[0].ID
	t.Logf("spliced %s+%#x (%d bytes) to %#x, counter %d", f.Sym.Name, w.Off, w.Len(), got.Tramp, count)
	const calls = 1000
	for i := 0; i < calls; i++ {
		syscall.Getpid()
	}
	// The same site, now with a timer too: the jump is retargeted.
	got = insert(splice([]patch.Instrument{{Kind: patch.Count, PIDs: []int32{me}}, {Kind: patch.Timer, PIDs: []int32{me}}}, []uint32{count, 0}, true))
	timer := got.Insts[1].ID
	if got.Insts[0].ID != count {
		t.Fatalf("the counter came back as %d, want %d", got.Insts[0].ID, count)
	}
	for i := 0; i < calls; i++ {
		syscall.Getpid()
	}
	insts, misses, err := d.Instruments(int(timer))
	if err != nil {
		t.Fatal(err)
	}
	ctxs, _ := d.Contexts()
	total := map[uint32]uint64{count: insts[count-1].Fast}
	for i, c := range ctxs {
		s, _ := d.Stats(uint32(i + 1))
		t.Logf("context %d: %+v calls %d incl %d ns, hist %v", i+1, c, s.Calls, s.Incl, s.Hist)
		total[c.Inst] += s.Calls
	}
	t.Logf("fast %d, totals %v, misses %v", insts[count-1].Fast, total, misses)
	// The Go runtime of this process calls getpid now and then too.
	if total[count] < 2*calls || total[count] > 2*calls+10 || total[timer] < calls || total[timer] > calls+10 {
		t.Errorf("counted %d calls and timed %d, want %d and %d", total[count], total[timer], 2*calls, calls)
	}
	if n, err := d.Withdraw([]uint64{w.Addr()}); err != nil || n != 1 {
		t.Fatalf("withdraw: %d, %v", n, err)
	}
	now := make([]byte, w.Len())
	if err := g.Text().ReadAt(now, w.Addr()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(now, w.Orig()) {
		t.Errorf("after withdrawal the site holds % x, want % x", now, w.Orig())
	}
}
