//go:build vm

package splice

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/splicer"
)

// spliceHelperEnv makes the test binary a controller holding splices (see
// TestSpliceHelperProcess).
const spliceHelperEnv = "AUTOPROF_SPLICE_HELPER"

// TestSpliceHelperProcess is the controller the lifecycle tests kill or
// stop: it opens a splice session with a dead-man timeout, inserts count
// counters at the entries of the first functions that pass Check, writes
// their sites ("ADDR ORIG" lines, ORIG the window's original bytes in
// hex, then "ready") on fd 3, and waits; with a third argument "churn" it
// withdraws and inserts them again and again meanwhile (each insertion
// waits for RCU-tasks: their windows hold several instructions).
func TestSpliceHelperProcess(t *testing.T) {
	args := strings.Fields(os.Getenv(spliceHelperEnv))
	if len(args) != 2 && len(args) != 3 {
		return // run as a test: nothing to do
	}
	count, _ := strconv.Atoi(args[0])
	deadman, _ := time.ParseDuration(args[1])
	out := os.NewFile(3, "sites")
	s := openSplice(t, deadman)
	specs := entryCounters(t, s, count)
	ins, err := s.mod().InsertAll(context.Background(), specs)
	if err != nil {
		fmt.Fprintf(out, "error %v\n", err)
		os.Exit(1)
	}
	for _, in := range ins {
		si := in.(*splicedInst)
		site := s.mod().sites[si.addr]
		fmt.Fprintf(out, "%x %x\n", si.addr, site.w.Orig())
	}
	fmt.Fprintln(out, "ready")
	for {
		if len(args) == 3 {
			for _, in := range ins {
				if in != nil {
					in.Close()
				}
			}
			ins, _ = s.mod().InsertAll(context.Background(), specs)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
		if err := s.alive(); err != nil {
			fmt.Fprintf(out, "dead %v\n", err)
			out.Close()
			os.Exit(0)
		}
	}
}

// entryCounters returns n counter specs at the entries of distinct
// functions that pass Check.
func entryCounters(t testing.TB, s *Session, n int) []instrument.Spec {
	var specs []instrument.Spec
	for _, sym := range s.Graph().Symbols().Functions() {
		if len(specs) == n {
			break
		}
		sp := instrument.Spec{Point: instrument.Point{Func: sym.Name}, Kind: instrument.Count}
		if sym.Module != "" || s.Check(sp) != nil {
			continue
		}
		specs = append(specs, sp)
	}
	if len(specs) < n {
		t.Fatalf("only %d functions take a splice, want %d", len(specs), n)
	}
	return specs
}

// spliceHelper is a started controller and the sites it spliced.
type spliceHelper struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
	sites map[uint64][]byte // address → original bytes of the window
}

func startSpliceHelper(t *testing.T, count int, deadman time.Duration, mode ...string) *spliceHelper {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSpliceHelperProcess$")
	cmd.Env = append(os.Environ(), spliceHelperEnv+"="+strings.Join(append([]string{strconv.Itoa(count), deadman.String()}, mode...), " "))
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	h := &spliceHelper{cmd: cmd, lines: bufio.NewScanner(r), sites: map[uint64][]byte{}}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		r.Close()
		unloadSplicer()
	})
	for h.lines.Scan() {
		line := h.lines.Text()
		if line == "ready" {
			return h
		}
		var addr uint64
		var orig []byte
		if _, err := fmt.Sscanf(line, "%x %x", &addr, &orig); err != nil {
			t.Fatalf("helper: %s", line)
		}
		h.sites[addr] = orig
	}
	t.Fatalf("the helper ended before it was ready: %v", h.lines.Err())
	return nil
}

// spliced counts the sites whose bytes are not their original ones now:
// a site counts as restored only when its whole window is (no jump, no
// int3 left of the patching protocol).
func spliced(t *testing.T, text callgraph.Text, sites map[uint64][]byte) int {
	t.Helper()
	n := 0
	for addr, orig := range sites {
		b := make([]byte, len(orig))
		if err := text.ReadAt(b, addr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, orig) {
			n++
		}
	}
	return n
}

func liveText(t *testing.T) callgraph.Text {
	t.Helper()
	text, err := livetext.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { text.Close() })
	return text
}

// TestVMSpliceKill9: a controller with 1,000 live splices is killed; the
// module's release() restores every site within 1 s, and the module
// unloads within 10 s.
func TestVMSpliceKill9(t *testing.T) {
	const n = 1000
	h := startSpliceHelper(t, n, 10*time.Second)
	text := liveText(t)
	if got := spliced(t, text, h.sites); got != n {
		t.Fatalf("%d of %d sites hold a jump", got, n)
	}
	start := time.Now()
	h.cmd.Process.Kill()
	for spliced(t, text, h.sites) > 0 {
		if time.Since(start) > time.Second {
			t.Fatalf("%d sites still spliced 1 s after kill -9", spliced(t, text, h.sites))
		}
		time.Sleep(10 * time.Millisecond)
	}
	restored := time.Since(start)
	h.cmd.Wait()
	if err := unloadSplicer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9 with %d splices: every site restored after %v, module unloaded after %v", n, restored.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if time.Since(start) > 10*time.Second {
		t.Errorf("the module unloaded only after %v", time.Since(start))
	}
}

// TestVMSpliceDeadman: a controller stopped with SIGSTOP stops beating;
// the module withdraws every splice by the dead-man timeout + 1 s.
func TestVMSpliceDeadman(t *testing.T) {
	const deadman = 2 * time.Second
	h := startSpliceHelper(t, 50, deadman)
	text := liveText(t)
	start := time.Now()
	h.cmd.Process.Signal(syscall.SIGSTOP)
	for spliced(t, text, h.sites) > 0 {
		if time.Since(start) > deadman+time.Second {
			t.Fatalf("%d sites still spliced %v after SIGSTOP", spliced(t, text, h.sites), time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("stopped controller: every site withdrawn after %v (dead-man timeout %v)", time.Since(start).Round(time.Millisecond), deadman)
	h.cmd.Process.Signal(syscall.SIGCONT)
	if !h.lines.Scan() || !strings.HasPrefix(h.lines.Text(), "dead") {
		t.Fatalf("the controller, continued, did not learn it was dead-manned: %q", h.lines.Text())
	}
	t.Logf("the controller says: %s", h.lines.Text())
}

// TestVMSpliceRmmod (SAFETY 18): rmmod with live splices withdraws them
// first. A session holds 20 entry counters and a timer in which a helper
// sleeps: rmmod succeeds while the helper still sleeps, every site holds
// its original bytes again, the helper's return comes back through the
// address the module put back on its stack, the session's calls fail with
// ErrRemoved and Close is clean. The module then loads again and counts.
func TestVMSpliceRmmod(t *testing.T) {
	s := openSplice(t, 0)
	keepGraph(t, s)
	fn := sleepTimerFunc(t, s)
	h := startHelper(t, "sleep 1 8000")
	ins := insertAll(t, s, append(entryCounters(t, s, 20), timer(fn, pid(h.Pid)))...)
	text := liveText(t)
	sites := map[uint64][]byte{}
	for a, site := range s.mod().sites {
		sites[a] = site.w.Orig()
	}
	go h.start.Write([]byte{1})
	waitNanosleep(t, h.Pid)
	s.mod().loaded = false // removed by hand
	start := time.Now()
	if err := splicer.Unload(); err != nil {
		t.Fatalf("rmmod with %d live splices: %v, want them withdrawn and the module gone", len(sites), err)
	}
	took := time.Since(start)
	if splicer.Loaded() {
		t.Fatal("the module is still loaded after rmmod succeeded")
	}
	if got := spliced(t, text, sites); got != 0 {
		t.Fatalf("%d of %d sites still differ from their original bytes after rmmod", got, len(sites))
	}
	if !inSyscall(h.Pid, "35 ") {
		t.Fatal("the helper woke before the module went: no return was outstanding (lengthen its sleep)")
	}
	t.Logf("rmmod with %d live sites and a task asleep in the timed %s: every site restored, module gone in %v",
		len(sites), fn, took.Round(time.Millisecond))
	if err := s.mod().dev.Beat(); !errors.Is(err, splicer.ErrRemoved) {
		t.Fatalf("a call of the session after rmmod: %v, want ErrRemoved", err)
	}
	if _, err := s.Read(); !errors.Is(err, splicer.ErrRemoved) {
		t.Fatalf("reading the session after rmmod: %v, want ErrRemoved", err)
	}
	for _, in := range ins {
		if err := in.Close(); err != nil {
			t.Fatalf("closing %s after rmmod (the module withdrew it): %v", in.Spec(), err)
		}
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("the helper, returning from %s after rmmod: %v", fn, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("closing the session after rmmod: %v", err)
	}

	again := reopenSplice(t, s)
	var specs []instrument.Spec
	for _, fn := range []string{"__task_pid_nr_ns", "__x64_sys_getpid"} {
		if sp, ok := singleInstWindow(again, fn); ok {
			specs = append(specs, sp)
			break
		}
	}
	if len(specs) == 0 {
		t.Fatal("no one-instruction window on getpid's path")
	}
	insertAll(t, again, specs...)
	for i := 0; i < 100; i++ {
		syscall.Getpid()
	}
	r, err := again.Read()
	if err != nil {
		t.Fatal(err)
	}
	var calls uint64
	for _, c := range r.Contexts {
		calls += c.Calls
	}
	if calls < 100 {
		t.Fatalf("loaded again after rmmod, a counter in getpid saw %d of 100 calls", calls)
	}
}

// singleInstWindow finds a place of fn whose window is one instruction.
func singleInstWindow(s *Session, fn string) (instrument.Spec, bool) {
	sym, err := s.Graph().Symbols().Func(fn)
	if err != nil {
		return instrument.Spec{}, false
	}
	for off := uint64(1); off < sym.Size && off < 512; off++ {
		sp := instrument.Spec{Point: instrument.Point{Func: fn, Offset: off}, Kind: instrument.Count}
		if w, err := s.mod().cat.window(sp); err == nil && len(w.Insts) == 1 {
			return sp, true
		}
	}
	return instrument.Spec{}, false
}

// getpids counts a hammer's getpid calls, and those that answered wrong.
type getpids struct{ calls, wrong atomic.Int64 }

// hammer keeps every CPU calling getpid until stop is closed, counting
// into n when it is not nil.
func hammer(stop chan struct{}, n *getpids) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := 0; i < runtime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			me := syscall.Getpid()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for k := 0; k < 64; k++ {
					if syscall.Getpid() != me && n != nil {
						n.wrong.Add(1)
					}
				}
				if n != nil {
					n.calls.Add(64)
				}
			}
		}()
	}
	return &wg
}

// TestVMSpliceStress (SAFETY B.9): every CPU calls getpid in a loop while
// its path is spliced and unspliced 10,000 times: counters at a
// one-instruction window, and a timer, counters and exit counters at the
// entry windows (several instructions, each insertion waiting for
// RCU-tasks). No oops, WARN or hang; the text is as before.
func TestVMSpliceStress(t *testing.T) {
	cycles, entryCycles := 10000, 300
	if testing.Short() {
		cycles, entryCycles = 1000, 30
	}
	s := openSplice(t, 0)
	text := liveText(t)
	var fast []instrument.Spec
	for _, fn := range []string{"__task_pid_nr_ns", "__x64_sys_getpid"} {
		if sp, ok := singleInstWindow(s, fn); ok {
			fast = append(fast, sp)
		}
	}
	if len(fast) == 0 {
		t.Fatal("no one-instruction window on getpid's path")
	}
	var entries []instrument.Spec
	for _, fn := range []string{"__x64_sys_getpid", "__task_pid_nr_ns"} {
		for _, k := range []instrument.Kind{instrument.Timer, instrument.Count, instrument.ExitCount} {
			if sp := (instrument.Spec{Point: instrument.Point{Func: fn}, Kind: k}); s.Check(sp) == nil {
				entries = append(entries, sp)
			}
		}
	}
	funcs := map[string][]byte{}
	for _, sp := range append(fast, entries...) {
		sym, _ := s.Graph().Symbols().Func(sp.Func)
		b := make([]byte, sym.Size)
		if err := text.ReadAt(b, sym.Addr); err != nil {
			t.Fatal(err)
		}
		funcs[sp.Func] = b
	}
	stop := make(chan struct{})
	wg := hammer(stop, nil)
	var done atomic.Int64
	start := time.Now()
	cycle := func(specs []instrument.Spec) {
		ins, err := s.mod().InsertAll(context.Background(), specs)
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("cycle %d: %v", done.Load(), err)
		}
		for _, in := range ins {
			if err := in.Close(); err != nil {
				t.Fatalf("cycle %d: %v", done.Load(), err)
			}
		}
		done.Add(int64(len(specs)))
	}
	for i := 0; i < entryCycles && len(entries) > 0; i++ {
		cycle(entries[i%len(entries) : i%len(entries)+1])
	}
	entryTime := time.Since(start)
	for done.Load() < int64(cycles) {
		cycle(fast)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d splice/unsplice cycles (%d at entry windows of several instructions in %v) in %v, every CPU calling getpid",
		done.Load(), entryCycles, entryTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("misses %+v", r.Misses)
	for fn, want := range funcs {
		sym, _ := s.Graph().Symbols().Func(fn)
		b := make([]byte, len(want))
		if err := text.ReadAt(b, sym.Addr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%s differs from before the cycles", fn)
		}
	}
}

// TestVMSpliceRmmodUnderLoad: rmmod while every CPU returns through the
// module all the time: timers on getpid's path with every CPU calling
// getpid, and a helper that nanosleeps 1 ms at a time in a timed function.
// Returns in flight at the unload (a task preempted on its way through
// the exit trampoline among them) must all land where they were called
// from: after each of the cycles the sites hold their original bytes, the
// helper lives on, and getpid goes on answering right.
func TestVMSpliceRmmodUnderLoad(t *testing.T) {
	cycles := 10
	if testing.Short() {
		cycles = 4
	}
	// Every cycle's session shares the first one's call graph and catalogue.
	first := openSplice(t, 0)
	keepGraph(t, first)
	first.mod().loaded = false
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	text := liveText(t)
	h := startHelper(t, "sleep 1000000 1")
	go h.start.Write([]byte{1})
	waitNanosleep(t, h.Pid)
	var n getpids
	for c := 0; c < cycles; c++ {
		s := reopenSplice(t, first)
		var specs []instrument.Spec
		for _, fn := range []string{"__x64_sys_getpid", "__task_pid_nr_ns"} {
			if sp := timer(fn, instrument.Target{}); s.Check(sp) == nil {
				specs = append(specs, sp)
			}
		}
		if len(specs) == 0 {
			t.Fatal("no function of getpid's path takes a timer")
		}
		specs = append(specs, timer(sleepTimerFunc(t, s), pid(h.Pid)))
		insertAll(t, s, specs...)
		sites := map[uint64][]byte{}
		for a, site := range s.mod().sites {
			sites[a] = site.w.Orig()
		}
		stop := make(chan struct{})
		wg := hammer(stop, &n)
		time.Sleep(300 * time.Millisecond)
		s.mod().loaded = false
		err := splicer.Unload()
		before := n.calls.Load()
		time.Sleep(100 * time.Millisecond)
		after := n.calls.Load()
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("cycle %d: rmmod with timers live on every CPU: %v", c, err)
		}
		if after == before {
			t.Fatalf("cycle %d: getpid stopped answering after rmmod", c)
		}
		if got := spliced(t, text, sites); got != 0 {
			t.Fatalf("cycle %d: %d of %d sites differ from their original bytes after rmmod", c, got, len(sites))
		}
		s.Close()
		if st := procState(h.Pid); st == "" || st == "Z" || st == "X" {
			t.Fatalf("cycle %d: the sleeping helper did not survive rmmod (state %q)", c, st)
		}
	}
	if w := n.wrong.Load(); w != 0 {
		t.Fatalf("getpid answered wrong %d times of %d", w, n.calls.Load())
	}
	t.Logf("%d rmmods under load: %d getpids on every CPU, the helper nanosleeping in a timed function throughout", cycles, n.calls.Load())
}

// sleepTimerFunc returns a function of nanosleep's path that takes a
// timer, failing the test where none does (on the VM's kernels
// __x64_sys_nanosleep at least must).
func sleepTimerFunc(t *testing.T, s *Session) string {
	ok := timeable(s, "do_nanosleep", "hrtimer_nanosleep", "common_nsleep", "__x64_sys_nanosleep")
	if len(ok) == 0 {
		t.Fatal("no function of nanosleep's path takes a timer here")
	}
	return ok[0]
}

// waitNanosleep waits until a thread of process pid sleeps in nanosleep
// (syscall 35), and a little more.
func waitNanosleep(t *testing.T, pid int) {
	for deadline := time.Now().Add(10 * time.Second); !inSyscall(pid, "35 "); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the helper never slept in nanosleep")
		}
	}
	time.Sleep(100 * time.Millisecond)
}

// TestVMSpliceSleepAcross (SAFETY B.11): a task sleeps inside a timed
// function while the timer is withdrawn and the session closed. The
// module puts the hijacked return address back on the sleeping stack (no
// return is left to come through it), so it unloads at once, while the
// task still sleeps; the task then returns where it was called from.
func TestVMSpliceSleepAcross(t *testing.T) {
	s := openSplice(t, 0)
	fn := sleepTimerFunc(t, s)
	h := startHelper(t, "sleep 1 8000")
	insertAll(t, s, timer(fn, pid(h.Pid)))
	go h.start.Write([]byte{1})
	waitNanosleep(t, h.Pid)
	s.mod().loaded = false // unload by hand below
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := splicer.Unload(); err != nil {
		t.Fatalf("unloading the module after the session closed, a return from %s outstanding: %v", fn, err)
	}
	if !inSyscall(h.Pid, "35 ") {
		t.Fatal("the helper woke before the module went: no return was outstanding (lengthen its sleep)")
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("the helper, returning from %s after the module went: %v", fn, err)
	}
}

// procState returns the state letter of process pid, "" when it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) S ...: comm may hold spaces, not ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// inSyscall reports whether a thread of process pid is in the syscall
// whose /proc line starts with nr.
func inSyscall(pid int, nr string) bool {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		if strings.HasPrefix(string(b), nr) {
			return true
		}
	}
	return false
}

// TestVMSpliceMisses (SAFETY B.13): timers on a function the timer
// interrupt calls, while every CPU runs the handlers of timers on getpid's
// path: ticks that land inside a handler are recursion misses, counted,
// never followed, and nothing hangs.
func TestVMSpliceMisses(t *testing.T) {
	s := openSplice(t, 0)
	var specs []instrument.Spec
	for _, fn := range timeable(s, "update_process_times", "account_process_tick", "scheduler_tick", "sched_tick", "tick_sched_handle", "hrtimer_interrupt", "__task_pid_nr_ns", "__x64_sys_getpid") {
		specs = append(specs, timer(fn, instrument.Target{}))
	}
	if len(specs) < 2 {
		t.Fatalf("only %d of the functions take a timer here, want 2", len(specs))
	}
	insertAll(t, s, specs...)
	stop := make(chan struct{})
	wg := hammer(stop, nil)
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Contexts {
		if len(c.Path) == 1 {
			t.Logf("%-40s %8d calls", c.Path, c.Calls)
		}
	}
	t.Logf("misses %+v", r.Misses)
	if r.Misses.Recursion == 0 {
		t.Error("no recursion miss: no tick landed in a handler in 5 s of getpid on every CPU")
	}
}
