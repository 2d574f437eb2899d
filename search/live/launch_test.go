package live

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// TestWorkloadStartsOnGo: a command does not run before the hunt lets it
// (its output appears only after goOn). With a cgroup it is started in
// it then, the cgroup being the target (its children are in it); with
// NoInherit it is started traced, stopped at its execve, its pid the
// target. Close removes the cgroup.
func TestWorkloadStartsOnGo(t *testing.T) {
	needRoot(t)
	for _, noInherit := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		w := &Workload{Cmd: helperCommand("write " + out), NoInherit: noInherit}
		target, err := w.start("fentry")
		if err != nil {
			t.Fatal(err)
		}
		if w.Limitation != "" { // no cgroup v2 here: the VM has one
			featuretest.Require(t, errors.New(w.Limitation))
		}
		cg := w.cgroup
		switch {
		case noInherit && (len(target.PIDs) != 1 || target.PIDs[0] != w.Pid() || cg != ""):
			t.Errorf("NoInherit: target %v, want pid %d and no cgroup", target, w.Pid())
		case !noInherit && (target.Cgroup != cg || cg == "" || w.Pid() != 0):
			t.Errorf("target %v (pid %d), want the cgroup %s and no process yet", target, w.Pid(), cg)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("the command ran before it was let go")
		}
		w.goOn()
		select {
		case <-w.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the command did not end once let go")
		}
		if w.Err() != nil {
			t.Errorf("the command: %v", w.Err())
		}
		if b, _ := os.ReadFile(out); string(b) != "started\nchild\n" {
			t.Errorf("output %q", b)
		}
		if d := w.Describe(); strings.Contains(d, "children") == noInherit {
			t.Errorf("Describe() = %q (NoInherit %v)", d, noInherit)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
		if cg != "" {
			if _, err := os.Stat(cg); !os.IsNotExist(err) {
				t.Errorf("cgroup %s left behind: %v", cg, err)
			}
		}
	}
}

// TestWorkloadAbandon: a hunt that ends before its first reading kills a
// traced command and does not start one waiting for its cgroup.
func TestWorkloadAbandon(t *testing.T) {
	needRoot(t)
	for _, noInherit := range []bool{false, true} {
		w := &Workload{Cmd: helperCommand("sleep"), NoInherit: noInherit}
		if _, err := w.start("tracepoint"); err != nil {
			t.Fatal(err)
		}
		w.abandon()
		select {
		case <-w.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("an abandoned command is still waited for")
		}
		if noInherit && (w.Err() == nil || !strings.Contains(w.Err().Error(), "killed")) || !noInherit && !errors.Is(w.Err(), ErrNotStarted) {
			t.Errorf("NoInherit %v: %v", noInherit, w.Err())
		}
		w.goOn() // too late: nothing happens
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestWorkloadStartUnderGC starts commands both ways many times (20 with
// -short) while another goroutine collects garbage all along: a command
// held before its execve inside Go's fork (a frozen cgroup did that)
// deadlocks the first collection that starts meanwhile.
func TestWorkloadStartUnderGC(t *testing.T) {
	needRoot(t)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	n := 100
	if testing.Short() {
		n = 20 // each start is a Go program's under the emulator
	}
	for i := 0; i < n; i++ {
		w := &Workload{Cmd: helperCommand("true"), NoInherit: i%2 == 1}
		if _, err := w.start("fentry"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%3) * time.Millisecond)
		w.goOn()
		select {
		case <-w.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("start %d (NoInherit %v) did not end", i, w.NoInherit)
		}
		if err := w.Close(); err != nil || w.Err() != nil {
			t.Fatalf("start %d: %v, %v", i, w.Err(), err)
		}
	}
}

// TestWorkloadNeverStarted: a hunt that failed before it prepared its
// command (the instruments could not be opened) leaves nothing to wait for.
func TestWorkloadNeverStarted(t *testing.T) {
	w := &Workload{Cmd: exec.Command("true")}
	select {
	case <-w.Done():
	case <-time.After(time.Second):
		t.Fatal("Done of a command never started does not close")
	}
	if w.Err() != nil || w.Close() != nil {
		t.Error("a command never started has an error")
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making cgroups and tracing commands needs root")
	}
}
