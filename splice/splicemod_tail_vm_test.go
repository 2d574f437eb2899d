//go:build vm

package splice

import (
	"fmt"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestVMSpliceTailCall: __x64_sys_read leaves by a tail call to ksys_read
// (6.1 and 6.12 alike), so its return address is popped when ksys_read
// returns: its timer's frames end at ksys_read's returns, with
// ksys_read's time, and a timer of ksys_read opens its context under it.
// A helper's reads of a pipe that a writer fills every 5 ms block in
// ksys_read: the first ABI 3, which ended the frame at the tail call,
// timed __x64_sys_read at 0 to 87 ns a call and ksys_read outside it.
// Then the return windows the two timers share stay live while one of
// them is withdrawn.
func TestVMSpliceTailCall(t *testing.T) {
	const n, ms = 40, 5
	s := openSplice(t, 0)
	f, err := s.graph.Function("__x64_sys_read")
	if err != nil {
		t.Fatal(err)
	}
	tails := 0
	for _, site := range f.Sites {
		if site.Jump && site.Target == "ksys_read" {
			tails++
		}
	}
	if tails == 0 {
		t.Fatalf("__x64_sys_read does not tail-call ksys_read here: %v", f.Sites)
	}
	h := startHelper(t, fmt.Sprintf("pipe %d %d", n, ms))
	tg := pid(h.Pid)
	exit := instrument.Spec{Point: instrument.Point{Func: "__x64_sys_read"}, Kind: instrument.ExitCount, Target: tg}
	insertAll(t, s, timer("__x64_sys_read", tg), timer("ksys_read", tg), exit)
	h.Go(t)
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	logReading(t, r)
	got := byPath(r)
	root, child := got["__x64_sys_read:timer"], got["__x64_sys_read;ksys_read:timer"]
	var exits instrument.ContextReading // its context is the frame below it: the timer's
	for _, c := range r.Contexts {
		if c.Kind == instrument.ExitCount && c.Path[len(c.Path)-1].Func == "__x64_sys_read" {
			exits.Calls += c.Calls
		}
	}
	// The helper's reads: its start byte, then n of the pipe.
	if root.Calls < n || root.Calls > n+2 {
		t.Errorf("__x64_sys_read: %d calls, want %d to %d", root.Calls, n, n+2)
	}
	if child.Calls != root.Calls || exits.Calls != root.Calls {
		t.Errorf("ksys_read under __x64_sys_read: %d calls, __x64_sys_read's exits %d, want %d each", child.Calls, exits.Calls, root.Calls)
	}
	if c, ok := got["ksys_read:timer"]; ok && c.Calls > 0 {
		t.Errorf("ksys_read timed outside __x64_sys_read %d times: the caller's frame ended before it ran", c.Calls)
	}
	if want := uint64(n * ms * 1e6 * 8 / 10); root.InclNs < want || child.InclNs < want {
		t.Errorf("__x64_sys_read %d ns, ksys_read in it %d ns, want each at least %d (%d reads blocked %d ms)", root.InclNs, child.InclNs, want, n, ms)
	}
	if root.InclNs < child.InclNs || root.ExclNs > root.InclNs-child.InclNs+1000 {
		t.Errorf("__x64_sys_read incl %d excl %d, ksys_read in it %d: the callee's time is not inside its caller's", root.InclNs, root.ExclNs, child.InclNs)
	}
	if r.Misses.Total() != 0 {
		t.Errorf("misses: %+v", r.Misses)
	}
	// The two timers share ksys_read's returns: withdrawing ksys_read's
	// timer leaves them to __x64_sys_read's.
	h2 := startHelper(t, fmt.Sprintf("pipe %d %d", n, ms))
	tg2 := pid(h2.Pid)
	ins := insertAll(t, s, timer("__x64_sys_read", tg2), timer("ksys_read", tg2))
	if err := ins[1].Close(); err != nil {
		t.Fatal(err)
	}
	h2.Go(t)
	r2, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	logReading(t, r2)
	var calls, incl uint64
	for _, c := range r2.Contexts {
		if c.Path.String() == "__x64_sys_read" && c.Kind == instrument.Timer {
			calls += c.Calls
			incl += c.InclNs
		}
	}
	calls -= root.Calls
	incl -= root.InclNs
	if calls < n || calls > n+2 || incl < uint64(n*ms*1e6*8/10) {
		t.Errorf("after ksys_read's timer went: __x64_sys_read %d calls, %d ns, want %d to %d calls of at least %d ms", calls, incl, n, n+2, ms)
	}
	if r2.Misses.Total() != 0 {
		t.Errorf("misses: %+v", r2.Misses)
	}
}
