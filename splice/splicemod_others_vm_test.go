//go:build vm

package splice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// TestVMSpliceStack (issue 14, defect 8): a stack taken inside a timed
// function names its real caller and goes on to the system call's entry:
// no return address is replaced. The test thread times the functions on
// its own path through a read of /proc/thread-self/stack (vfs_read and
// seq_read_iter, the timed functions on the stack the kernel prints), and
// reads it. Before, every timed function returned to the module's exit
// trampoline, where the unwinder stopped.
func TestVMSpliceStack(t *testing.T) {
	s := openSplice(t, 0)
	var specs []instrument.Spec
	for _, fn := range []string{"vfs_read", "seq_read_iter", "seq_read", "ksys_read"} {
		if sp := timer(fn, pid(os.Getpid())); s.Check(sp) == nil {
			specs = append(specs, sp)
		}
	}
	if len(specs) < 2 {
		t.Fatalf("only %d functions of the read path take a timer here", len(specs))
	}
	insertAll(t, s, specs...)
	runtime.LockOSThread()
	stack, err := os.ReadFile("/proc/thread-self/stack")
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the stack of a read through %d timed functions:\n%s", len(specs), stack)
	lines := strings.Split(strings.TrimSpace(string(stack)), "\n")
	for _, l := range lines {
		if strings.Contains(l, "autoprof") || strings.Contains(l, "ap_") {
			t.Errorf("the stack shows the module: %s", l)
		}
	}
	for _, sp := range specs {
		at := -1
		for i, l := range lines {
			if strings.Contains(l, " "+sp.Func+"+") {
				at = i
			}
		}
		if at < 0 || at+1 >= len(lines) {
			t.Errorf("the stack does not show the timed %s and its caller", sp.Func)
			continue
		}
		// A direct caller must be the next frame; one calling through a
		// pointer (seq_read from vfs_read) the graph does not list.
		callers, err := s.Graph().Callers(sp.Func)
		if err != nil {
			t.Fatal(err)
		}
		direct, ok := false, false
		for _, c := range callers {
			for _, name := range []string{c.From.Name, c.From.Parent} {
				in := name != "" && strings.Contains(string(stack), " "+name+"+")
				direct = direct || in
				ok = ok || in && strings.Contains(lines[at+1], " "+name+"+")
			}
		}
		if direct && !ok {
			t.Errorf("the frame after %s is %q, not its caller", sp.Func, lines[at+1])
		}
	}
	if !strings.Contains(string(stack), "entry_SYSCALL_64") {
		t.Error("the stack stops before the system call's entry")
	}
}

// TestVMSpliceOverhead (issue 14, defect 9; SAFETY D.20): timers on
// getpid's path while every CPU calls getpid, with a limit of 2% of the
// CPUs for the handlers: the module's kill switch withdraws everything by
// itself within two of its one-second windows, the session learns why,
// the instruments read as withdrawn by it, and every site holds its
// original bytes again.
func TestVMSpliceOverhead(t *testing.T) {
	s, err := Open(context.Background(), Options{Backend: instrument.Splice,
		Module: spliceBuild(t, "autoprof_splice.ko"), Image: spliceBuild(t, "vmlinuz"), MaxOverhead: 0.02,
		Deadman: 2 * time.Second, // a beat every 500 ms: the session learns soon
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	text := liveText(t)
	var specs []instrument.Spec
	for _, fn := range []string{"__x64_sys_getpid", "__task_pid_nr_ns"} {
		if sp := timer(fn, instrument.Target{}); s.Check(sp) == nil {
			specs = append(specs, sp)
		}
	}
	if len(specs) == 0 {
		t.Fatal("no function of getpid's path takes a timer")
	}
	ins := insertAll(t, s, specs...)
	sites := map[uint64][]byte{}
	for a, site := range s.mod().sites {
		sites[a] = site.w.Orig()
	}
	stop := make(chan struct{})
	wg := hammer(stop, nil)
	start := time.Now()
	for {
		st, err := s.mod().dev.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Dead != 0 {
			t.Logf("the kill switch fired after %v: the handlers took %d ppm of the CPUs (limit %d), %v in all",
				time.Since(start).Round(time.Millisecond), st.LastPPM, st.LimitPPM, time.Duration(st.HandlerNs))
			break
		}
		if time.Since(start) > 3*time.Second {
			close(stop)
			wg.Wait()
			t.Fatalf("the kill switch did not fire in 3 s (last window: %d ppm of the CPUs, limit %d)", st.LastPPM, st.LimitPPM)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	time.Sleep(time.Second) // the next heartbeat
	if err := s.alive(); !errors.Is(err, syscall.EOVERFLOW) {
		t.Errorf("the session ended with %v, want the overhead switch's EOVERFLOW", err)
	}
	for _, in := range ins {
		if st, err := s.mod().State(in); err != nil || st != splicer.Overload {
			t.Errorf("%s: %v (%v), want withdrawn by the overhead switch", in.Spec(), st, err)
		}
	}
	if n := spliced(t, text, sites); n != 0 {
		t.Errorf("%d of %d sites still spliced", n, len(sites))
	}
}

// TestVMSpliceKill9Quiesce (issue 14, defect 9): a controller inserting
// windows of several instructions over and over (each insertion waits for
// RCU-tasks) is killed, five times (three with -short): every site is
// restored and the module takes a new session within a second each time.
// The wait no longer holds ap_lock and ends on the fatal signal; before,
// release() waited for it.
func TestVMSpliceKill9Quiesce(t *testing.T) {
	text := liveText(t)
	kills := 5
	if testing.Short() {
		kills = 3
	}
	for i := 0; i < kills; i++ {
		h := startSpliceHelper(t, 20, 10*time.Second, "churn")
		time.Sleep(time.Duration(200+100*i) * time.Millisecond)
		start := time.Now()
		h.cmd.Process.Kill()
		for {
			d, err := splicer.Open()
			if err == nil {
				d.Close()
				if spliced(t, text, h.sites) == 0 {
					break
				}
			}
			if time.Since(start) > time.Second {
				t.Fatalf("kill %d: %d sites spliced, the module busy (%v), 1 s after kill -9", i, spliced(t, text, h.sites), err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("kill %d: all withdrawn and the module free after %v", i, time.Since(start).Round(time.Millisecond))
		h.cmd.Wait()
	}
}

// exitingHelpers starts n helpers that sleep in nanosleep and kills them.
func exitingHelpers(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		h := startHelper(t, "sleep 1 10000")
		go h.start.Write([]byte{1})
		waitNanosleep(t, h.Pid)
		h.cmd.Process.Kill()
		h.cmd.Wait()
	}
}

// TestVMSpliceTaskExits (issue 14, defect 5): tasks die while timed
// functions are on their stacks: killed asleep in a timed nanosleep
// function, and, where a function of the signal path takes a timer, inside
// it (the task exits from it and never returns). Each task's shadow stack
// goes only once the task is freed; none is lost, none leaks: with 64
// thread slots, 80 deaths later a new task's every call is counted. No
// oops (the harness fails the run on one). Before, a return after the
// task's exit tracepoint found no frame and the module BUGged. A slot
// never freed would be taken over by a new task at the dead one's
// address: no frame of a dead task may be found (no unmatched miss).
func TestVMSpliceTaskExits(t *testing.T) {
	if splicer.Loaded() {
		if err := unloadSplicer(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(context.Background(), Options{Backend: instrument.Splice,
		Module: spliceBuild(t, "autoprof_splice.ko"), Image: spliceBuild(t, "vmlinuz"), MaxOverhead: 1, MaxThreads: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	specs := []instrument.Spec{timer(sleepTimerFunc(t, s), instrument.Target{})}
	for _, fn := range []string{"get_signal", "arch_do_signal_or_restart", "do_group_exit"} {
		if err := s.Check(timer(fn, instrument.Target{})); err != nil {
			t.Logf("no timer: %v", err)
			continue
		}
		specs = append(specs, timer(fn, instrument.Target{}))
	}
	insertAll(t, s, specs...)
	exitingHelpers(t, 80)
	time.Sleep(500 * time.Millisecond) // RCU frees the tasks
	file := tmpFile(t)
	h := startHelper(t, fmt.Sprintf("pread %d %s", 300, file))
	insertAll(t, s, timer("vfs_read", pid(h.Pid)))
	h.Go(t)
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	logReading(t, r)
	if c := byPath(r)["vfs_read:timer"]; c.Calls != 300 {
		t.Errorf("after 80 tasks died in timed functions, a new task's vfs_read: %d calls, want 300", c.Calls)
	}
	if r.Misses.MapFull != 0 {
		t.Errorf("%d hits found no thread slot: shadow stacks leaked", r.Misses.MapFull)
	}
	// A dead task's slot kept (never freed) is taken over by a new task
	// whose task_struct the slab gives the dead one's address, and the
	// frames found there count as unmatched: the leak shows as misses,
	// not as a full table (make mutants: defect5-slots).
	if r.Misses.Unmatched != 0 {
		t.Errorf("%d frames found unmatched: a dead task's shadow stack outlived it", r.Misses.Unmatched)
	}
}

// TestVMSpliceSoak (issue 14; SAFETY B.9, C.19): insert/withdraw cycles
// of random eligible instruments (timers, exit counters, block counters)
// on the allocator's functions while every CPU runs them and other
// patchers work on the same functions: a kprobe on each one's ftrace
// site, a BPF trampoline (fentry) timing each, and their tracepoints'
// static keys flipped in a loop. 100,000 cycles (3,000 with -short), in
// batches of up to 64 as a hunt inserts and withdraws them; no oops or
// WARN (the harness fails the run on one), the functions' text as before,
// and the kprobes' and BPF trampolines' counts in agreement, the module's audit
// of its bookkeeping clean with no site left.
func TestVMSpliceSoak(t *testing.T) {
	cycles := 100000
	if testing.Short() {
		cycles = 3000
	}
	s := openSplice(t, 0)
	text := liveText(t)
	fns := soakFunctions(t, s)
	fs := openSession(t, "fentry")
	kp := openSession(t, "kprobe")
	var pool []instrument.Spec
	before := map[string][]byte{}
	for fn := range fns {
		insert(t, fs, timer(fn, instrument.Target{}))
		insert(t, kp, instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Count})
		pool = append(pool, timer(fn, instrument.Target{}), instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.ExitCount}, instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Count})
		f, _ := s.Graph().Function(fn)
		end := uint64(0)
		for off := uint64(1); off < uint64(len(f.Code)); off++ {
			sp := instrument.Spec{Point: instrument.Point{Func: fn, Offset: off}, Kind: instrument.Count}
			if w, err := s.mod().cat.window(sp); err == nil && off >= end {
				pool = append(pool, sp)
				end = off + uint64(w.Len())
			}
		}
		before[fn] = append([]byte(nil), f.Code...)
		if err := text.ReadAt(before[fn], f.Sym.Addr); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var flips atomic.Int64
	tps := map[string]bool{}
	for fn, tp := range fns {
		if at, ok := emulatorKeySite(s, fn); ok {
			// The kernel's own text_poke_bp meets QEMU's cmpxchg16b
			// bug there, with no instrument of ours anywhere.
			t.Logf("%s: not flipped: its static key at %s sits where QEMU's emulator corrupts the cmpxchg16b's flags", tp, at)
			continue
		}
		tps[tp] = true
	}
	wg.Add(1 + len(tps))
	go func() { defer wg.Done(); soakLoad(stop) }()
	for tp := range tps {
		go func(tp string) { defer wg.Done(); flipTracepoint(t, tp, stop, &flips) }(tp)
	}
	start := time.Now()
	done, rounds := 0, 0
	var waits int
	var longest time.Duration
	for done < cycles {
		batch := soakBatch(pool, rounds, 64)
		ins, err := s.mod().InsertAll(context.Background(), batch)
		// The module's slots come back only after an RCU-tasks grace
		// period, which every CPU busy in the kernel can hold off for
		// longer than the module waits (ENOSPC): wait for it, as long
		// as a grace period can take, and count it. Slots that never
		// come back are a leak.
		for began := time.Now(); errors.Is(err, syscall.ENOSPC) && time.Since(began) < 3*time.Minute; {
			time.Sleep(5 * time.Second)
			ins, err = s.mod().InsertAll(context.Background(), batch)
			if err == nil {
				waits++
				longest = max(longest, time.Since(began))
				t.Logf("round %d: the pool came back after %v", rounds, time.Since(began).Round(time.Second))
			}
		}
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: %v", rounds, err)
		}
		if err := s.mod().WithdrawAll(ins); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: %v", rounds, err)
		}
		done += len(ins)
		rounds++
	}
	close(stop)
	wg.Wait()
	t.Logf("%d insert/withdraw cycles in %d rounds on %d functions (%d places) in %v, every CPU in them, %d tracepoint flips, a kprobe and a BPF trampoline on each; %d batches waited for the module's slots to come back after a grace period, the longest %v",
		done, rounds, len(fns), len(pool), time.Since(start).Round(time.Millisecond), flips.Load(), waits, longest.Round(time.Second))
	fr, _ := fs.Read()
	kr, _ := kp.Read()
	for fn, code := range before {
		after := make([]byte, len(code))
		sym, _ := s.Graph().Symbols().Func(fn)
		if err := text.ReadAt(after, sym.Addr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(code, after) {
			t.Errorf("%s differs from before the soak", fn)
		}
		fc, kc := callsOf(fr, fn), callsOf(kr, fn)
		if fc == 0 || fc > kc+kc/100 || kc > fc+fc/100 {
			t.Errorf("%s: the BPF trampoline timed %d calls, the kprobe counted %d", fn, fc, kc)
		}
	}
	if m := s.mod().sites; len(m) != 0 {
		t.Errorf("%d sites left after the soak", len(m))
	}
	a, err := s.mod().dev.Audit()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the module's audit after the soak: %+v", a)
	if a.Broken != 0 || a.Sites != 0 {
		t.Errorf("the module's bookkeeping after the soak: %s, %d sites in use", a.Broken, a.Sites)
	}
}

// callsOf sums the calls of fn's instruments over every context they
// were counted in.
func callsOf(r *instrument.Reading, fn string) uint64 {
	var n uint64
	for _, c := range r.Contexts {
		if len(c.Path) > 0 && c.Path[len(c.Path)-1].Func == fn && c.Path[len(c.Path)-1].Offset == 0 {
			n += c.Calls
		}
	}
	return n
}

// soakBatch picks up to n specs of pool for round r: a window of the pool
// that moves every round, so that every place comes in, alone and with
// others.
func soakBatch(pool []instrument.Spec, r, n int) []instrument.Spec {
	var out []instrument.Spec
	for i := 0; i < n && i < len(pool); i++ {
		if (r+i)%3 != 0 || i == 0 {
			out = append(out, pool[(r*7+i)%len(pool)])
		}
	}
	return out
}

// soakFunctions picks the functions the soak times, by the tracepoint
// whose static key each holds: the allocator's, which the soak's load
// (open, read, close) runs on every CPU.
func soakFunctions(t *testing.T, s *Session) map[string]string {
	out := map[string]string{}
	for _, c := range []struct{ fn, tp string }{
		{"kmem_cache_free", "kmem/kmem_cache_free"},
		{"kfree", "kmem/kfree"},
		{"kmem_cache_alloc_noprof", "kmem/kmem_cache_alloc"},
		{"kmem_cache_alloc", "kmem/kmem_cache_alloc"},
		{"__kmalloc_noprof", "kmem/kmalloc"},
		{"__kmalloc", "kmem/kmalloc"},
	} {
		if err := s.Check(timer(c.fn, instrument.Target{})); err != nil {
			t.Logf("%s: %v", c.fn, err)
			continue
		}
		if _, err := os.Stat("/sys/kernel/tracing/events/" + c.tp + "/enable"); err == nil {
			out[c.fn] = c.tp
		}
	}
	if len(out) == 0 {
		t.Fatal("no allocator function takes a timer here")
	}
	return out
}

// emulatorKeySite returns, on QEMU's emulator, a jump-label site of fn
// from which a path reaches a cmpxchg16b, or in a cmpxchg16b's shadow
// (patch.TCGCmpxchg16bHazard): flipping its key patches an int3 there,
// whose iretq loads RFLAGS whole, as the splice placement rule keeps its
// own windows out of (6.12's kmem_cache_alloc_noprof has its tracepoint's
// key in the shadow).
func emulatorKeySite(s *Session, fn string) (string, bool) {
	if !features.QEMUTCG() {
		return "", false
	}
	f, err := s.Graph().Function(fn)
	if err != nil {
		return "", false
	}
	for _, a := range s.mod().cat.tables.JumpLabels {
		if a < f.Sym.Addr || a >= f.Sym.Addr+uint64(f.CodeEnd) {
			continue
		}
		if _, ok := patch.TCGCmpxchg16bHazard(f, uint32(a-f.Sym.Addr)); ok {
			return fmt.Sprintf("%s+%#x", fn, a-f.Sym.Addr), true
		}
	}
	return "", false
}

// soakLoad has every CPU open, read and close a file until stop.
func soakLoad(stop chan struct{}) {
	var wg sync.WaitGroup
	for i := 0; i < 2*runtime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				fd, err := syscall.Open("/proc/self/stat", syscall.O_RDONLY, 0)
				if err == nil {
					syscall.Read(fd, buf)
					syscall.Close(fd)
				}
			}
		}()
	}
	wg.Wait()
}

// flipTracepoint enables and disables tracepoint tp until stop: its
// static key flips in the function the soak splices.
func flipTracepoint(t *testing.T, tp string, stop chan struct{}, n *atomic.Int64) {
	path := "/sys/kernel/tracing/events/" + tp + "/enable"
	defer os.WriteFile(path, []byte("0"), 0)
	for on := 1; ; on ^= 1 {
		select {
		case <-stop:
			return
		default:
		}
		if err := os.WriteFile(path, []byte(fmt.Sprint(on)), 0); err != nil {
			t.Errorf("flipping %s: %v", tp, err)
			return
		}
		n.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
}

// cmpxchg16bWindows finds, in the allocator's fast path of fn, the
// windows around its per-CPU cmpxchg16b: before, a block window with dead
// flags whose jump back is followed, with no branch, by an add, sub or cmp
// and then the cmpxchg16b; after, the first block window past it.
func cmpxchg16bWindows(s *Session, fn string) (before, after *patch.Window, ok bool) {
	f, err := s.Graph().Function(fn)
	if err != nil {
		return nil, nil, false
	}
	var ops []x86asm.Inst
	var offs []uint32
	for _, in := range f.Insts {
		d, err := x86asm.Decode(f.Code[in.Off:], 64)
		if err != nil {
			return nil, nil, false
		}
		ops, offs = append(ops, d), append(offs, in.Off)
	}
	// The windows as the module would take them, before the emulator's
	// rule (which refuses these very ones on QEMU).
	window := func(off uint32) *patch.Window {
		w, err := patch.SelectWindow(f, nil, off, false, s.mod().cat.tables)
		if err != nil {
			return nil
		}
		return w
	}
	for c, in := range ops {
		if in.Op != x86asm.CMPXCHG16B {
			continue
		}
		start := 0
		for i := c - 1; i >= 0; i-- {
			if ops[i].Op == x86asm.CALL || ops[i].Op == x86asm.JMP || ops[i].Op == x86asm.RET || strings.HasPrefix(ops[i].Op.String(), "J") {
				start = i + 1
				break
			}
		}
		for i := start; i < c && before == nil; i++ {
			w := window(offs[i])
			if w == nil || w.FlagsLive {
				continue
			}
			for j := i; j < c; j++ {
				if offs[j] >= w.Off+uint32(w.Len()) && (ops[j].Op == x86asm.ADD || ops[j].Op == x86asm.SUB || ops[j].Op == x86asm.CMP) {
					before = w
					break
				}
			}
		}
		for i := c + 1; i < len(ops) && before != nil && after == nil; i++ {
			after = window(offs[i])
		}
		if before != nil && after != nil {
			return before, after, true
		}
		before, after = nil, nil
	}
	return nil, nil, false
}

// TestVMSpliceFlagsState (issue 14, found by the soak): QEMU's TCG before
// 8.0 computes cmpxchg16b's flags from the last flags operation it
// recorded, not from the one that ran; after a popfq or an iretq that is
// the whole saved RFLAGS, and an add between the two makes it the add's
// operand: TF, DF, AC, NT and reserved bits set at random (the soak's
// double faults, and in the full soak a kworker with DF and AC set that
// called through a zeroed pointer). A counter's stub gives RFLAGS back
// with popfq only where the flags are live, but every site goes in and
// out through an int3 whose iretq loads RFLAGS too: on the emulator the
// counter before the allocator's per-CPU cmpxchg16b is refused, dead
// flags or not, naming it, and the first one after it is too where it
// lies in its shadow; a counter elsewhere in the same function (and the
// one after, where taken) counts while every CPU allocates.
func TestVMSpliceFlagsState(t *testing.T) {
	s := openSplice(t, 0)
	var fn string
	var before, after *patch.Window
	for _, name := range []string{"kmem_cache_alloc_noprof", "kmem_cache_alloc"} {
		if b, a, ok := cmpxchg16bWindows(s, name); ok {
			fn, before, after = name, b, a
			break
		}
	}
	if fn == "" {
		t.Fatal("no block windows around a cmpxchg16b in the allocator")
	}
	tg := instrument.Target{PIDs: []int{os.Getpid(), 1}}
	count := func(off uint32) instrument.Spec {
		return instrument.Spec{Point: instrument.Point{Func: fn, Offset: uint64(off)}, Kind: instrument.Count, Target: tg}
	}
	_, err := s.Insert(context.Background(), count(before.Off))
	t.Logf("%s+%#x (%d bytes, flags live %v), before the cmpxchg16b: %v", fn, before.Off, before.Len(), before.FlagsLive, err)
	if !errors.Is(err, instrument.ErrUnsafe) || !strings.Contains(err.Error(), "cmpxchg16b") {
		t.Errorf("%s+%#x, before the cmpxchg16b on the emulator: %v, want a refusal naming the cmpxchg16b", fn, before.Off, err)
	}
	// The first window after it is refused where it lies in the
	// cmpxchg16b's shadow; where a flags operation ends the shadow
	// before it (6.1's kmem_cache_alloc), it is taken, and counts.
	var past instrument.Instrument
	if past, err = s.Insert(context.Background(), count(after.Off)); err == nil {
		defer past.Close()
	}
	t.Logf("%s+%#x (%d bytes, flags live %v), after the cmpxchg16b: %v", fn, after.Off, after.Len(), after.FlagsLive, err)
	if err != nil && (!errors.Is(err, instrument.ErrUnsafe) || !strings.Contains(err.Error(), "cmpxchg16b")) {
		t.Errorf("%s+%#x, after the cmpxchg16b on the emulator: %v, want it taken or refused naming the cmpxchg16b", fn, after.Off, err)
	}
	f, err := s.Graph().Function(fn)
	if err != nil {
		t.Fatal(err)
	}
	// The entry first (every call passes there), then the blocks.
	elsewhere, found := uint32(0), false
	for _, b := range f.Blocks {
		if b.Start >= f.CodeEnd {
			continue
		}
		if in, err := s.Insert(context.Background(), count(b.Start)); err == nil {
			elsewhere, found = b.Start, true
			t.Logf("%s+%#x: accepted", fn, b.Start)
			defer in.Close()
			break
		}
	}
	if !found {
		t.Fatalf("no block of %s takes a counter on the emulator", fn)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { soakLoad(stop); close(done) }()
	time.Sleep(5 * time.Second)
	close(stop)
	<-done
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	logReading(t, r)
	offs := []uint32{elsewhere}
	if past != nil {
		offs = append(offs, after.Off)
	}
	for _, off := range offs {
		var n uint64
		for _, c := range r.Contexts {
			if p := c.Path[len(c.Path)-1]; p.Func == fn && p.Offset == uint64(off) {
				n += c.Calls
			}
		}
		if n == 0 {
			t.Errorf("%s+%#x: counted nothing while every CPU allocated", fn, off)
		}
	}
}
