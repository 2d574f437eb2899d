package search

import (
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
)

// TestVerdictWaitsUnderScheduler: a scheduler function timed right under
// a syscall root (6.12's ping-pong hunt: __x64_sys_read → schedule, the
// frames between them untimed) is in no off-CPU stack, which the kernel
// takes from the first frame out of the scheduler; the verdict names where
// the thread waited from its caller's stacks, and a function whose own
// stacks say it still names its own.
func TestVerdictWaitsUnderScheduler(t *testing.T) {
	h := &hunter{}
	for _, s := range []Stack{
		{Frames: []string{"__x64_sys_read", "ksys_read", "vfs_read", "pipe_read"}, WeightNs: 9e6},
		{Frames: []string{"__x64_sys_read", "ksys_read", "vfs_read", "pipe_read"}, OnCPU: true, WeightNs: 5e6},
		{Frames: []string{"__x64_sys_futex", "do_futex", "futex_wait"}, WeightNs: 1e6},
	} {
		h.keepWaits(s)
	}
	r := &Run{}
	for _, c := range []struct {
		path []string
		want string
	}{
		{[]string{"__x64_sys_read", "schedule"}, "waiting in pipe_read"},
		{[]string{"__x64_sys_futex", "do_futex"}, "waiting in futex_wait"},
	} {
		pt, _ := instrument.ParsePoint(c.path[len(c.path)-1])
		n := &Node{Point: pt, Path: c.path, Excl: Interval{Mean: 0.5}}
		f := &Finding{OffCPUShare: 0.9}
		if v := h.verdict(r, n, f); !strings.Contains(v, c.want) {
			t.Errorf("%s: verdict %q, want %q", strings.Join(c.path, ";"), v, c.want)
		}
	}
}
