//go:build vm

package splicer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/splice/patch"
)

// TestVMSmoke: a counter at the entry of getpid, then a timer beside it
// (its returns first), each counting what they should, each trampoline
// the bytes splice/patch's reference encoder builds; every window holds
// its original bytes again after the withdrawal.
func TestVMSmoke(t *testing.T) {
	e := loadEnv(t)
	d := e.open(t, 5*time.Second, 1)
	t.Logf("info %+v", d.Info())
	t.Logf("tables: %d extable, %d alternatives, %d jump labels, %d static calls, %d returns, %d targets",
		len(e.tables.Extable), len(e.tables.Alts), len(e.tables.JumpLabels), len(e.tables.StaticCalls),
		len(e.tables.ReturnSites), len(e.tables.Targets))
	f := e.function(t, "__x64_sys_getpid")
	entry, err := patch.SelectWindow(f, nil, 0, true, e.tables)
	if err != nil {
		t.Fatal(err)
	}
	rets, err := patch.ExitWindows(f, nil, e.tables, e.callee)
	if err != nil {
		t.Fatal(err)
	}
	me := int32(syscall.Getpid())
	filter := func(k Kind, id uint32) InstReq {
		r := InstReq{Kind: k, ID: id, NPIDs: 1}
		r.PIDs[0] = me
		return r
	}
	var reqs []Splice
	for _, w := range rets {
		reqs = append(reqs, e.request(w))
	}
	reqs = e.insert(t, d, reqs...)
	for i, w := range rets {
		e.checkTramp(t, d, w, nil, reqs[i])
		t.Logf("return at %s+%#x: % x", w.Func.Name, w.Off, w.Orig())
	}
	got := e.insert(t, d, e.request(entry, filter(Count, 0)))[0]
	count := got.Insts[0].ID
	pinned := []patch.Instrument{{Kind: patch.Count, PIDs: []int32{me}}}
	e.checkTramp(t, d, entry, pinned, got)
	const calls = 1000
	for i := 0; i < calls; i++ {
		syscall.Getpid()
	}
	// The same site with a timer too, first: the jump is retargeted.
	rep := e.request(entry, filter(Timer, 0), filter(Count, count))
	rep.Flags = FlagReplace
	got = e.insert(t, d, rep)[0]
	timer := got.Insts[0].ID
	if got.Insts[1].ID != count {
		t.Fatalf("the counter came back as %d, want %d", got.Insts[1].ID, count)
	}
	e.checkTramp(t, d, entry, append([]patch.Instrument{{Kind: patch.Timer, PIDs: []int32{me}}}, pinned...), got)
	for i := 0; i < calls; i++ {
		syscall.Getpid()
	}
	insts, misses, err := d.Instruments([]uint32{count, timer})
	if err != nil {
		t.Fatal(err)
	}
	total := map[uint32]uint64{count: insts[0].Fast}
	ctxs, _ := d.Contexts()
	for i, c := range ctxs {
		s, _ := d.Stats(uint32(i + 1))
		t.Logf("context %d: %+v calls %d incl %d ns", i+1, c, s.Calls, s.Incl)
		total[c.Inst] += s.Calls
	}
	t.Logf("fast %d, totals %v, misses %v", insts[0].Fast, total, misses)
	// The Go runtime of this process calls getpid now and then too.
	if total[count] < 2*calls || total[count] > 2*calls+10 || total[timer] < calls || total[timer] > calls+10 {
		t.Errorf("counted %d calls and timed %d, want %d and %d", total[count], total[timer], 2*calls, calls)
	}
	addrs := []uint64{entry.Addr()}
	for _, w := range rets {
		addrs = append(addrs, w.Addr())
	}
	if n, err := d.Withdraw(addrs); err != nil || n != len(addrs) {
		t.Fatalf("withdraw: %d of %d, %v", n, len(addrs), err)
	}
	e.restored(t, append(rets, entry)...)
}

// rootCalls returns the calls the slow path of counter id counted in the
// root context.
func (d *Device) rootCalls(t *testing.T, id uint32) uint64 {
	ctxs, err := d.Contexts()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for i, c := range ctxs {
		if c.Parent == 0 && c.Inst == id {
			s, err := d.Stats(uint32(i + 1))
			if err != nil {
				t.Fatal(err)
			}
			n += s.Calls
		}
	}
	return n
}

// blockWindows returns up to n one-counter block windows of fn.
func (e *vmEnv) blockWindows(t *testing.T, fn string, n int) []*patch.Window {
	f := e.function(t, fn)
	var out []*patch.Window
	end := uint32(0)
	for off := uint32(1); off < uint32(len(f.Code)) && len(out) < n; off++ {
		w, err := patch.SelectWindow(f, nil, off, false, e.tables)
		if err == nil && off >= end {
			out = append(out, w)
			end = off + uint32(w.Len())
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no block window", fn)
	}
	return out
}

// TestVMWithdrawTwice (issue 14, defect 9): an address twice in one
// withdrawal batch is one withdrawal. Before, the second saw the int3 the
// first had written, took the site as changed underneath and pinned the
// module for good.
func TestVMWithdrawTwice(t *testing.T) {
	e := loadEnv(t)
	d := e.open(t, 5*time.Second, 1)
	w := e.blockWindows(t, "vfs_read", 1)[0]
	sp := e.insert(t, d, e.request(w, InstReq{Kind: Count}))[0]
	n, err := d.Withdraw([]uint64{w.Addr(), w.Addr(), w.Addr()})
	if err != nil || n != 1 {
		t.Fatalf("withdrawing one site named three times: %d, %v; want 1", n, err)
	}
	e.restored(t, w)
	insts, _, err := d.Instruments([]uint32{sp.Insts[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if insts[0].State != Withdrawn {
		t.Errorf("the counter is %s, want withdrawn", insts[0].State)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	auditIdle(t)
	// The module is not pinned: the cleanup unloads it.
}

// moduleRefs returns the module's reference count as the kernel keeps
// it: the module takes one on itself, for good, when it gives up a site
// as changed underneath (pinned: rmmod is refused).
func moduleRefs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/sys/module/" + ModuleName + "/refcnt")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestVMWithdrawDuringReplace: a withdrawal of a live site sent while an
// insertion that replaces it (the same window, its instrument kept and one
// added) is in the module, with a window of several instructions in the
// same batch, so that the insertion waits for quiescence with the
// replacement's int3 over the live site's jump. Were the withdrawal to run
// then, it would take that int3 for another patcher's, give the site up as
// changed underneath and pin the module for good: insertions and
// withdrawals run one at a time (ap_op_lock), so it runs before the
// insertion (which then finds nothing to replace) or after it (and
// withdraws the replacement). Each round: one site withdrawn, the module
// not pinned, its bookkeeping whole, both windows their original bytes.
func TestVMWithdrawDuringReplace(t *testing.T) {
	e := loadEnv(t)
	d := e.open(t, 10*time.Second, 1)
	ws := e.blockWindows(t, "vfs_read", 8)
	x := ws[0]
	var y *patch.Window
	for _, w := range ws[1:] {
		if len(w.Insts) > 1 {
			y = w
			break
		}
	}
	if y == nil {
		t.Fatal("vfs_read has no second block window of several instructions")
	}
	after := 0
	for round := 0; round < 10; round++ {
		id := e.insert(t, d, e.request(x, InstReq{Kind: Count}))[0].Insts[0].ID
		batch := []Splice{
			e.request(x, InstReq{Kind: Count, ID: id}, InstReq{Kind: Count}),
			e.request(y, InstReq{Kind: Count}),
		}
		batch[0].Flags |= FlagReplace
		withdrawn := make(chan int)
		go func() {
			time.Sleep(time.Duration(round) * 500 * time.Microsecond) // 0 to 4.5 ms into the insertion
			n, err := d.Withdraw([]uint64{x.Addr()})
			if err != nil {
				t.Error(err)
			}
			withdrawn <- n
		}()
		if _, err := d.Insert(batch); err != nil {
			t.Fatal(err)
		}
		if n := <-withdrawn; n != 1 {
			t.Fatalf("round %d: %d sites withdrawn, want 1 (the replacement errno %d)", round, n, -batch[0].Err)
		}
		if batch[0].Err == 0 {
			after++
		}
		if refs := moduleRefs(t); refs != "0" {
			t.Fatalf("round %d: the module holds %s references on itself: it gave a site up as changed", round, refs)
		}
		if a, err := d.Audit(); err != nil || a.Broken != 0 {
			t.Fatalf("round %d: the module's bookkeeping: %s, %v", round, a.Broken, err)
		}
		if _, err := d.Withdraw([]uint64{x.Addr(), y.Addr()}); err != nil {
			t.Fatal(err)
		}
		e.restored(t, x, y)
	}
	t.Logf("the withdrawal ran after the replacement in %d rounds of 10, before it in the others", after)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	auditIdle(t)
}

// TestVMIDsReused (issue 14, defect 9): instrument ids are reused once
// withdrawn, so that a session outlives the id space. The module gets 16
// instrument slots; 400 insert/withdraw cycles each take a fresh id. Before,
// ids only grew, and the 16th insertion was refused. An id is never given
// twice: the old one reads withdrawn with its final count. 100 cycles with
// -short.
func TestVMIDsReused(t *testing.T) {
	e := newEnv(t)
	e.load(t, Params{MaxInsts: 16})
	d := e.open(t, 10*time.Second, 1)
	w := e.blockWindows(t, "__x64_sys_getpid", 1)[0]
	seen := map[uint32]bool{}
	cycles := 400
	if testing.Short() {
		cycles = 100
	}
	for i := 0; i < cycles; i++ {
		sp := e.insert(t, d, e.request(w, InstReq{Kind: Count}))[0]
		id := sp.Insts[0].ID
		if seen[id] {
			t.Fatalf("cycle %d: id %#x given twice", i, id)
		}
		seen[id] = true
		for k := 0; k < 3; k++ {
			syscall.Getpid()
		}
		if n, err := d.Withdraw([]uint64{w.Addr()}); err != nil || n != 1 {
			t.Fatalf("cycle %d: withdraw %d, %v", i, n, err)
		}
		if a, err := d.Audit(); err != nil || a.Broken != 0 {
			t.Fatalf("cycle %d: the module's bookkeeping: %s, %v", i, a.Broken, err)
		}
	}
	var ids []uint32
	for id := range seen {
		ids = append(ids, id)
	}
	insts, _, err := d.Instruments(ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		// A hit the fast path does not take counts in the root context.
		if n := in.Fast + d.rootCalls(t, in.ID); in.State != Withdrawn || n < 3 {
			t.Fatalf("instrument %#x: %s with %d counts, want withdrawn with 3 or more", in.ID, in.State, n)
		}
	}
	t.Logf("%d cycles through 16 instrument slots, %d distinct ids", cycles, len(seen))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	auditIdle(t)
}

// capHelperEnv makes the test binary open the control file with the
// capabilities it was started with and print the errno (TestVMCapability).
const capHelperEnv = "AUTOPROF_SPLICE_CAP_HELPER"

func TestCapHelperProcess(t *testing.T) {
	if os.Getenv(capHelperEnv) == "" {
		return // run as a test: nothing to do
	}
	f, err := os.OpenFile(ControlPath, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		fmt.Println("opened")
		return
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		fmt.Println("errno", int(errno))
		return
	}
	fmt.Println("error", err)
}

// TestVMCapability (issue 14, defect 6): the control file writes kernel
// text, as loading a module does: a process holding CAP_SYS_ADMIN (and
// CAP_DAC_OVERRIDE to get past the file's mode) but not CAP_SYS_MODULE is
// refused, with EPERM. Before, CAP_SYS_ADMIN was enough.
func TestVMCapability(t *testing.T) {
	loadEnv(t)
	run := func(caps ...uintptr) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCapHelperProcess$")
		cmd.Env = append(os.Environ(), capHelperEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
			AmbientCaps: caps,
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the helper: %v\n%s", err, out)
		}
		return strings.SplitN(string(out), "\n", 2)[0]
	}
	const capDacOverride, capSysModule, capSysAdmin = 1, 16, 21
	if got := run(capSysAdmin, capDacOverride); got != fmt.Sprintf("errno %d", syscall.EPERM) {
		t.Errorf("with CAP_SYS_ADMIN, without CAP_SYS_MODULE: %q, want errno %d (EPERM)", got, syscall.EPERM)
	}
	if got := run(capSysModule, capDacOverride); !strings.HasPrefix(got, "opened") {
		t.Errorf("with CAP_SYS_MODULE: %q, want the file opened", got)
	}
}
