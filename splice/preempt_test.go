package splice

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"golang.org/x/sys/unix"
)

// TestPreemptedNotOffCPU times read(2) of /dev/zero, a syscall that only
// computes, on a thread that shares one CPU with a busy process: the
// scheduler preempts the read (or it yields in cond_resched) and it waits
// runnable on the run queue for about half its time. That wait is not
// blocking: the timer's off-CPU time stays near zero (the host's dd hunt
// said "blocked in __x64_sys_read" of a read that never sleeps).
func TestPreemptedNotOffCPU(t *testing.T) {
	s := openSession(t, "tracepoint")
	// The competitor is a process: the splice tests run without Go's
	// asynchronous preemption (testenv.NoAsyncPreempt), so a spinning
	// goroutine would hold up every stop-the-world for good.
	spin := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	spin.Env = append(os.Environ(), helperEnv+"=spin0")
	if err := spin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { spin.Process.Kill(); spin.Wait() }()
	for end := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) { // until it spins
		if processCPUTicks(spin.Process.Pid) >= 30 { // 300 ms at USER_HZ 100
			break
		}
		if time.Now().After(end) {
			t.Fatal("the busy process did not start spinning in a minute")
		}
	}
	var one unix.CPUSet
	one.Set(0)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &all)
	tid := unix.Gettid()
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 16<<20)
	for i := range buf { // no page faults inside the timed reads
		buf[i] = 1
	}
	in, err := s.Insert(context.Background(), instrument.Spec{Point: instrument.Point{Func: "__x64_sys_read"}, Kind: instrument.Timer, Target: instrument.Target{PIDs: []int{os.Getpid()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	wait0 := runQueueWait(t, tid)
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		syscall.Read(int(f.Fd()), buf)
	}
	waited := runQueueWait(t, tid) - wait0
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	var c *instrument.ContextReading
	for i := range r.Contexts {
		if r.Contexts[i].Path.String() == "__x64_sys_read" {
			c = &r.Contexts[i]
		}
	}
	if c == nil || c.Calls == 0 {
		t.Fatalf("no reads timed: %+v", r.Contexts)
	}
	t.Logf("%d reads, %v in them, %v of it off-CPU; the thread waited %v on the run queue", c.Calls, time.Duration(c.InclNs), time.Duration(c.InclOffCPUNs), waited)
	if waited < 200*time.Millisecond {
		t.Fatalf("the reading thread waited %v on the run queue in 2s beside a busy thread on its CPU: the test did not preempt it", waited)
	}
	if c.InclOffCPUNs > c.InclNs/10 {
		t.Errorf("%v of %v in read(2) counted off-CPU: a preempted syscall is not blocked", time.Duration(c.InclOffCPUNs), time.Duration(c.InclNs))
	}
}

// runQueueWait is the time thread tid has waited on a run queue
// (/proc/self/task/TID/schedstat, the second field).
func runQueueWait(t *testing.T, tid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/self/task", strconv.Itoa(tid), "schedstat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		t.Fatalf("schedstat %q", b)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ns)
}

// processCPUTicks is the user and system time of process pid, all its
// threads, in clock ticks (/proc/PID/stat fields 14 and 15); 0 where it
// cannot be read.
func processCPUTicks(pid int) int64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}
