//go:build vm

package splice

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// sweepFuncs are the functions of the live offset sweep: every kind the
// splicer meets (see also splice/patch's offline sweep).
var sweepFuncs = []string{
	"vfs_read", "vfs_write", "ksys_read", "ksys_write", "rw_verify_area", "security_file_permission",
	"__x64_sys_getpid", "__x64_sys_read", "__x64_sys_write", "__x64_sys_pread64", "__task_pid_nr_ns",
	"do_sys_openat2", "do_filp_open", "path_openat", "link_path_walk", "lookup_fast", "dput",
	"kmem_cache_alloc", "kmem_cache_free", "kfree", "__kmalloc", "schedule", "try_to_wake_up",
	"enqueue_task_fair", "dequeue_task_fair", "update_curr", "copy_page_to_iter", "copy_page_from_iter",
	"filemap_read", "filemap_get_pages", "mutex_lock", "mutex_unlock", "down_read", "up_read",
	"__wake_up", "add_wait_queue", "hrtimer_start_range_ns", "ktime_get", "tick_sched_timer",
	"run_timer_softirq", "tcp_sendmsg", "tcp_recvmsg", "ip_rcv", "skb_release_data", "handle_mm_fault",
	"__alloc_pages", "free_unref_page", "get_page_from_freelist", "__fdget", "fput", "__fput",
	"alloc_file_pseudo", "pipe_read", "pipe_write", "strncpy_from_user", "seq_read_iter",
	"do_nanosleep", "hrtimer_nanosleep", "__x64_sys_nanosleep", "getname_flags",
}

// boundaries returns the instruction starts of a linear decode of code.
func boundaries(code []byte) map[uint64]bool {
	out := map[uint64]bool{}
	for off := 0; off < len(code); {
		out[uint64(off)] = true
		if len(code)-off >= 4 && bytes.Equal(code[off:off+4], []byte{0xf3, 0x0f, 0x1e, 0xfa}) {
			off += 4 // ENDBR64, which x86asm does not know
			continue
		}
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			delete(out, uint64(off))
			break
		}
		off += in.Len
	}
	return out
}

// TestVMSpliceSweep (SAFETY A.2): every offset 0..255 of more than 50
// functions of the running kernel. An accepted offset must be an
// instruction boundary of a linear decode of the live text; the accepted
// block counters are then spliced in, function by function, and out; the
// text of every function is unchanged at the end; and enough is accepted
// that the sweep tests something.
func TestVMSpliceSweep(t *testing.T) {
	s := openSplice(t, 0)
	text := liveText(t)
	funcs, accepted, refused, inserted, taking := 0, 0, 0, 0, 0
	for _, name := range sweepFuncs {
		sym, err := s.Graph().Symbols().Func(name)
		if err != nil {
			continue
		}
		funcs++
		before := make([]byte, sym.Size)
		if err := text.ReadAt(before, sym.Addr); err != nil {
			t.Fatal(err)
		}
		bounds := boundaries(before)
		var specs []instrument.Spec
		end := uint64(0)
		for off := uint64(0); off < 256 && off < sym.Size; off++ {
			sp := instrument.Spec{Point: instrument.Point{Func: name, Offset: off}, Kind: instrument.Count}
			if err := s.Check(sp); err != nil {
				if !errors.Is(err, instrument.ErrUnsafe) && !errors.Is(err, instrument.ErrNotSupported) {
					t.Errorf("%s: a refusal that is neither unsafe nor unsupported: %v", sp, err)
				}
				refused++
				continue
			}
			accepted++
			if !bounds[off] {
				t.Errorf("%s accepted, but no instruction starts there", sp)
			}
			// Splice the ones whose windows do not overlap.
			if w, _ := s.mod().cat.window(sp); w != nil && uint64(w.Off) >= end {
				specs = append(specs, sp)
				end = uint64(w.Off) + uint64(w.Len())
			}
		}
		if len(specs) > 0 {
			taking++
			ins := insertAll(t, s, specs...)
			inserted += len(ins)
			for _, in := range ins {
				checkTramp(t, s, text, in.(*splicedInst))
				in.Close()
			}
		}
		after := make([]byte, sym.Size)
		if err := text.ReadAt(after, sym.Addr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Errorf("%s differs after the sweep", name)
		}
	}
	t.Logf("%d functions: %d offsets accepted (%d spliced in and out), %d refused", funcs, accepted, inserted, refused)
	if funcs < 50 {
		t.Errorf("only %d sweep functions exist here, want at least 50", funcs)
	}
	// A splicer that refused everything would pass the checks above. The
	// Debian kernels take about 27 offsets a function, 17 spliced.
	if taking*10 < funcs*8 || accepted < 10*funcs || inserted < 5*funcs {
		t.Errorf("%d of %d functions took a splice, %d offsets accepted, %d spliced: want at least 80%% of the functions, 10 and 5 offsets a function", taking, funcs, accepted, inserted)
	}
}

// checkTramp compares the trampoline the module built for in's site with
// splice/patch's reference encoder's.
func checkTramp(t *testing.T, s *Session, text callgraph.Text, in *splicedInst) {
	t.Helper()
	site := s.mod().sites[in.addr]
	sp := site.req
	code := make([]byte, sp.TrampLen)
	if err := text.ReadAt(code, sp.Tramp); err != nil {
		t.Fatal(err)
	}
	w := *site.w
	if w.Role() == patch.RoleBlock {
		if w.FlagsLive && sp.Out&splicer.OutFlags == 0 {
			t.Errorf("%s: the module found the flags dead where splice/patch finds them live", in.spec)
		}
		w.FlagsLive = sp.Out&splicer.OutFlags != 0
	}
	if w.Role() == patch.RoleReturn && w.FlagsLive != (sp.Out&splicer.OutFlags != 0) {
		// Both decide by the bytes the part starts with (compiledStart, ap_entry_site).
		t.Errorf("%s: return window with flags live %v in splice/patch, %v in the module", in.spec, w.FlagsLive, !w.FlagsLive)
	}
	insts := []patch.Instrument{{Kind: patch.Kind(in.spec.Kind), PIDs: pids32(in.spec.Target.PIDs)}}
	b, err := patch.Build(&w, insts, s.mod().layout)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Match(code, sp.Tramp, []uint32{in.id}); err != nil {
		t.Errorf("%s: the module's trampoline differs from splice/patch's: %v", in.spec, err)
	}
}

func pids32(p []int) []int32 {
	out := make([]int32, len(p))
	for i, v := range p {
		out[i] = int32(v)
	}
	return out
}

// blacklisted lists functions every rule refuses: the kprobe blacklist,
// the noinstr and entry sections, BPF's deny list, and notrace functions.
func blacklisted(t *testing.T, syms *callgraph.Symbols) map[string]string {
	out := map[string]string{}
	f, err := os.Open("/sys/kernel/debug/kprobes/blacklist")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 {
			out[fields[1]] = "kprobe blacklist"
		}
	}
	for _, sec := range forbiddenSections {
		a, okA := syms.Symbol(sec.start)
		b, okB := syms.Symbol(sec.end)
		if !okA || !okB {
			continue
		}
		for _, fn := range syms.Functions() {
			if fn.Module == "" && fn.Addr >= a.Addr && fn.Addr < b.Addr {
				out[fn.Name] = sec.name
			}
		}
	}
	for fn := range bpfDenyList {
		out[fn] = "BPF deny list"
	}
	traceable, err := os.ReadFile("/sys/kernel/tracing/available_filter_functions")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(string(traceable), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			listed[f[0]] = true
		}
	}
	n := 0
	for _, fn := range syms.Functions() {
		if fn.Module == "" && !listed[fn.Name] && !fn.IsMarker() && n < 2000 {
			if _, ok := out[fn.Name]; !ok {
				out[fn.Name] = "notrace"
				n++
			}
		}
	}
	return out
}

// TestVMSpliceBlacklist (SAFETY A.7): every blacklisted function, at its
// entry and at offsets inside, is refused by Check and by Insert, and no
// byte of any of them changes.
func TestVMSpliceBlacklist(t *testing.T) {
	s := openSplice(t, 0)
	text := liveText(t)
	syms := s.Graph().Symbols()
	list := blacklisted(t, syms)
	type fnText struct {
		sym  callgraph.Symbol
		code []byte
	}
	var all []fnText
	var specs []instrument.Spec
	for name := range list {
		sym, err := syms.Func(name)
		if err != nil || sym.Size == 0 || sym.Size > 1<<16 {
			continue // not text, ambiguous, or freed init text
		}
		b := make([]byte, sym.Size)
		if text.ReadAt(b, sym.Addr) != nil {
			continue
		}
		all = append(all, fnText{sym, b})
		for _, off := range []uint64{0, 4, 5, 9, sym.Size / 2} {
			if off < sym.Size {
				specs = append(specs, instrument.Spec{Point: instrument.Point{Func: name, Offset: off}, Kind: instrument.Count})
			}
		}
		specs = append(specs, instrument.Spec{Point: instrument.Point{Func: name}, Kind: instrument.Timer})
	}
	accepted := 0
	for _, sp := range specs {
		if err := s.Check(sp); err == nil {
			accepted++
			t.Errorf("%s (%s) passes Check", sp, list[sp.Func])
		}
	}
	ins, err := s.mod().InsertAll(context.Background(), specs)
	if err == nil {
		t.Error("inserting the blacklisted places: no error")
	}
	for i, in := range ins {
		if in != nil {
			t.Errorf("%s was inserted", specs[i])
			in.Close()
		}
	}
	for _, f := range all {
		b := make([]byte, len(f.code))
		if err := text.ReadAt(b, f.sym.Addr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, f.code) {
			t.Errorf("%s changed", f.sym.Name)
		}
	}
	t.Logf("%d blacklisted functions, %d places tried: %d accepted, none written", len(all), len(specs), accepted)
}

// TestVMSpliceChangedUnderneath (SAFETY B.10): the module compares the
// window with the bytes the controller analysed before it writes. A
// request whose expected bytes differ from the text by one byte is
// refused, and the text is left as it was.
func TestVMSpliceChangedUnderneath(t *testing.T) {
	s := openSplice(t, 0)
	text := liveText(t)
	sp := instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Count}
	w, err := s.mod().cat.window(sp)
	if err != nil {
		t.Fatal(err)
	}
	before := make([]byte, w.Len())
	if err := text.ReadAt(before, w.Addr()); err != nil {
		t.Fatal(err)
	}
	c := &siteChange{addr: w.Addr(), w: w, added: []instrument.Spec{sp}}
	if err := s.mod().request(c); err != nil {
		t.Fatal(err)
	}
	c.req.Orig[1] ^= 0xff // as if the kernel had changed since the analysis
	batch := []splicer.Splice{c.req}
	if _, err := s.mod().insertBatch(batch); err != nil {
		t.Fatal(err)
	}
	if batch[0].Err != -int32(syscall.EBUSY) {
		t.Fatalf("a splice expecting other bytes: errno %d, want EBUSY", -batch[0].Err)
	}
	after := make([]byte, w.Len())
	if err := text.ReadAt(after, w.Addr()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("the refused site now holds % x, was % x", after, before)
	}
	// And the right bytes go in.
	c.req.Orig[1] ^= 0xff
	batch = []splicer.Splice{c.req}
	if _, err := s.mod().insertBatch(batch); err != nil || batch[0].Err != 0 {
		t.Fatalf("the same splice with the right bytes: %v, errno %d", err, -batch[0].Err)
	}
	if _, err := s.mod().dev.Withdraw([]uint64{w.Addr()}); err != nil {
		t.Fatal(err)
	}
}
