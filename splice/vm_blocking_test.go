//go:build vm

package splice

import (
	"fmt"
	"os"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestVMOffCPU: time blocked in nanosleep and in a pipe read shows as
// off-CPU time of the innermost instrumented frame; a busy pread as on-CPU.
func TestVMOffCPU(t *testing.T) {
	s := openSession(t, "fentry")
	t.Run("nanosleep", func(t *testing.T) {
		below := directCallee(t, s, "__x64_sys_nanosleep", "hrtimer_nanosleep", "do_nanosleep")
		h := startHelper(t, "sleep 20 10")
		// Inner first: the helper's runtime (sysmon) nanosleeps all along, and
		// a call entered between the two attachments would charge its sleep
		// to the root.
		ins := insert(t, s, timer(below, pid(h.Pid)), timer("__x64_sys_nanosleep", pid(h.Pid)))
		h.Go(t)
		r := read(t, s)
		closeAll(ins)
		if root := byPath(r)["__x64_sys_nanosleep:timer"]; root.ExclOffCPUNs*10 > root.InclOffCPUNs {
			t.Errorf("root: exclusive off-CPU %d of inclusive %d: the blocking is charged to the root, not to %s", root.ExclOffCPUNs, root.InclOffCPUNs, below)
		}
		blocked(t, byPath(r)["__x64_sys_nanosleep;"+below+":timer"], 20)
	})
	t.Run("pipe", func(t *testing.T) {
		const below = "pipe_read" // reached through f_op->read_iter
		h := startHelper(t, "pipe 10 20")
		ins := insert(t, s, timer("__x64_sys_read", pid(h.Pid)), timer("vfs_read", pid(h.Pid)), timer(below, pid(h.Pid)))
		h.Go(t)
		r := read(t, s)
		closeAll(ins)
		c := byPath(r)["__x64_sys_read;vfs_read;"+below+":timer"]
		blocked(t, c, 10)
		if v := byPath(r)["__x64_sys_read;vfs_read:timer"]; v.ExclOffCPUNs*10 > v.InclOffCPUNs {
			t.Errorf("vfs_read: exclusive off-CPU %d of inclusive %d; want it in %s", v.ExclOffCPUNs, v.InclOffCPUNs, below)
		}
	})
	t.Run("busy", func(t *testing.T) {
		h := startHelper(t, fmt.Sprintf("pread 2000 %s", tmpFile(t)))
		t.Logf("load: %s", loadavg())
		ins := insert(t, s, timer("vfs_read", pid(h.Pid)))
		h.Go(t)
		r := read(t, s)
		closeAll(ins)
		c := byPath(r)["vfs_read:timer"]
		// Preemption is off-CPU time too, and TCG's two slow vCPUs
		// preempt often: "mostly on the CPU" is the bound, against the
		// >= 80% of the blocked workloads above.
		if c.Calls != 2000 || c.InclOffCPUNs*2 > c.InclNs {
			t.Errorf("busy pread: %d calls, %d of %d ns off the CPU; want 2000 calls, mostly on the CPU", c.Calls, c.InclOffCPUNs, c.InclNs)
		}
	})
}

// blocked checks that c has at least n calls and spent most of its time
// blocked in its own frame.
func blocked(t *testing.T, c instrument.ContextReading, n uint64) {
	t.Helper()
	if c.Calls < n || c.ExclOffCPUNs*10 < c.InclNs*8 {
		t.Errorf("%s: %d calls, exclusive off-CPU %d of %d ns; want >= %d calls, >= 80%% blocked", c.Path, c.Calls, c.ExclOffCPUNs, c.InclNs, n)
	}
}

func read(t *testing.T, s *Session) *instrument.Reading {
	t.Helper()
	r, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	logReading(t, r)
	return r
}

func closeAll(ins []instrument.Instrument) {
	for _, in := range ins {
		in.Close()
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(b)
}
