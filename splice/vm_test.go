//go:build vm

package splice

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
)

var functionBackends = []instrument.Backend{instrument.Fentry, instrument.Kprobe}

// TestVMExactCount: a helper does exactly n preads; timers filtered to it
// count exactly n in each calling context, on both function backends.
func TestVMExactCount(t *testing.T) {
	const n = 1000
	file := tmpFile(t)
	for _, b := range functionBackends {
		t.Run(string(b), func(t *testing.T) {
			s := openSession(t, b)
			below := directCallee(t, s, "vfs_read", "rw_verify_area", "security_file_permission", "fsnotify_access")
			h := startHelper(t, fmt.Sprintf("pread %d %s", n, file))
			tg := pid(h.Pid)
			insert(t, s, timer("__x64_sys_pread64", tg), timer("vfs_read", tg), timer(below, tg))
			h.Go(t)
			r, err := s.Read()
			if err != nil {
				t.Fatal(err)
			}
			logReading(t, r)
			got := byPath(r)
			want := []string{"__x64_sys_pread64", "__x64_sys_pread64;vfs_read", "__x64_sys_pread64;vfs_read;" + below}
			for _, p := range want {
				if c := got[p+":timer"]; c.Calls != n {
					t.Errorf("%s: %d calls, want %d", p, c.Calls, n)
				}
			}
			for k, c := range got {
				if c.Calls > 0 && !contains(want, k[:len(k)-len(":timer")]) && c.Path[len(c.Path)-1].Func == "vfs_read" {
					t.Errorf("vfs_read counted in an unexpected context %s: %d", k, c.Calls)
				}
			}
			outer, inner := got["__x64_sys_pread64:timer"], got["__x64_sys_pread64;vfs_read:timer"]
			if inner.InclNs > outer.InclNs || outer.ExclNs+inner.InclNs > outer.InclNs+outer.InclNs/100 {
				t.Errorf("exclusive time of the root (%d) + inclusive of vfs_read (%d) exceeds the root's inclusive %d", outer.ExclNs, inner.InclNs, outer.InclNs)
			}
		})
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// bpf returns the BPF engine behind a session of a BPF backend.
func (s *Session) bpf() *bpfSession { return s.eng.(*bpfSession) }

// TestVMTraceableCached: the first read of available_filter_functions
// in a boot keeps a copy under the cache directory, and the next read
// returns that copy, the same bytes as the kernel's file.
func TestVMTraceableCached(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	if _, err := kernel.Tracefs.Ensure(); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(kernel.Tracefs.Path + "/available_filter_functions")
	if err != nil {
		t.Fatal(err)
	}
	first, err := readTraceable()
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(cache, "autoprof", traceableCacheName)
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("no copy kept: %v", err)
	}
	second, err := readTraceable()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, want) || !bytes.Equal(second, want) {
		t.Fatalf("read %d bytes, then %d from the copy; the kernel's file has %d", len(first), len(second), len(want))
	}
	if err := os.WriteFile(kept, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if third, err := readTraceable(); err != nil || !bytes.Equal(third, want) {
		t.Fatalf("with the copy damaged: %d bytes, %v", len(third), err)
	}
}

// TestVMStaleFrames: a timer withdrawn while its function sleeps on a
// thread's stack leaves a frame whose return is never taken (the
// program of a withdrawn instrument does nothing). On both function
// backends, filtered to a helper:
//
//   - the helper sleeps in two nested timed functions of nanosleep's
//     path, both timers go, and the helper then makes n preads under a
//     vfs_read timer: the two stale frames are dropped at the first
//     (unmatched frames) and every vfs_read is counted at the top, none
//     under either sleep function;
//   - the helper sleeps in an inner timed function under an outer one,
//     the inner timer goes, and the outer returns: its frame is found
//     under the stale one (an unmatched frame) and closed with the
//     sleep's time.
//
// (measure.bpf.c's drop_stale and pop, whose searches below the top
// frame run in bpf_loop.) The helper's workload thread must still sleep
// once the timers are gone, or there is no stale frame to find.
func TestVMStaleFrames(t *testing.T) {
	const n, sleepMs = 300, 1000
	file := tmpFile(t)
	for _, b := range functionBackends {
		t.Run(string(b)+"/dropped", func(t *testing.T) {
			s := openSession(t, b)
			outer, inner := nestedSleepFuncs(t, s)
			h := startHelper(t, fmt.Sprintf("sleeppread %d %d %s", sleepMs, n, file))
			ins := insert(t, s, timer(outer, pid(h.Pid)), timer(inner, pid(h.Pid)), timer("vfs_read", pid(h.Pid)))
			r := withdrawAsleep(t, s, h, ins[0], ins[1])
			for k, c := range byPath(r) {
				top := k == "vfs_read:timer"
				switch {
				case top && c.Calls != n:
					t.Errorf("vfs_read at the top: %d calls, want %d", c.Calls, n)
				case !top && strings.HasSuffix(k, ";vfs_read:timer") && c.Calls != 0:
					t.Errorf("vfs_read under a withdrawn sleep function (%s): %d calls, want none", k, c.Calls)
				}
			}
			// More than two where another thread of the helper's
			// took a sleep function's exit without its entry, between
			// the two detachments (fentry's entry goes first).
			if r.Misses.Unmatched < 2 {
				t.Errorf("%d unmatched frames, want the two sleep functions', dropped", r.Misses.Unmatched)
			}
		})
		t.Run(string(b)+"/below", func(t *testing.T) {
			s := openSession(t, b)
			outer, inner := nestedSleepFuncs(t, s)
			h := startHelper(t, fmt.Sprintf("sleep 1 %d", sleepMs))
			ins := insert(t, s, timer(outer, pid(h.Pid)), timer(inner, pid(h.Pid)))
			r := withdrawAsleep(t, s, h, ins[1])
			got := byPath(r)
			// The Go runtime's sysmon thread may sleep in nanosleep
			// too, briefly: the helper's long sleep is in the outer's
			// time only if its frame was found and closed.
			if c := got[outer+":timer"]; c.Calls < 1 || c.InclNs < sleepMs*1e6 {
				t.Errorf("%s: %d calls, %d ns; want the helper's sleep of %d ms in them", outer, c.Calls, c.InclNs, sleepMs)
			}
			if r.Misses.Unmatched < 1 {
				t.Errorf("no unmatched frame, want %s's above %s's", inner, outer)
			}
		})
	}
}

// withdrawAsleep lets helper h run, withdraws ins once its workload
// thread sleeps in nanosleep (and fails if it woke meanwhile), waits for
// h to exit and returns the session's reading.
func withdrawAsleep(t *testing.T, s *Session, h *helper, ins ...instrument.Instrument) *instrument.Reading {
	t.Helper()
	go h.start.Write([]byte{1})
	h.waitSyscall(t, "35 ", "nanosleep")
	for _, in := range ins {
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !h.inSyscall("35 ") {
		t.Fatal("the helper woke before its timers were withdrawn: lengthen its sleep")
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	logReading(t, r)
	return r
}

// nestedSleepFuncs returns two functions of nanosleep's path, one calling
// the other, that take timers here.
func nestedSleepFuncs(t *testing.T, s *Session) (outer, inner string) {
	path := []string{"__x64_sys_nanosleep", "hrtimer_nanosleep", "do_nanosleep"}
	ok := timeable(s, path...)
	if len(ok) < 2 {
		t.Fatalf("of nanosleep's path %v only %v take timers here, want two", path, ok)
	}
	return ok[0], ok[len(ok)-1]
}
