package live

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWorkloadFrozenStart: a command starts in a fresh cgroup, frozen
// before its first instruction (its output appears only after the thaw),
// with the cgroup as the target (its children are in it); with NoInherit
// the target is its process; Close removes the cgroup.
func TestWorkloadFrozenStart(t *testing.T) {
	needCgroup(t)
	for _, noInherit := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		w := &Workload{Cmd: exec.Command("sh", "-c", "echo started > "+out+"; sh -c 'echo child >> "+out+"'"), NoInherit: noInherit}
		target, err := w.start("fentry")
		if err != nil {
			t.Fatal(err)
		}
		cg := w.cgroup
		switch {
		case noInherit && (len(target.PIDs) != 1 || target.PIDs[0] != w.Pid()):
			t.Errorf("NoInherit: target %v, want pid %d", target, w.Pid())
		case !noInherit && target.Cgroup != cg:
			t.Errorf("target %v, want the cgroup %s", target, cg)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("the command ran before the thaw")
		}
		if ev, _ := os.ReadFile(filepath.Join(cg, "cgroup.events")); !strings.Contains(string(ev), "frozen 1") {
			t.Errorf("cgroup.events %q, want frozen", ev)
		}
		w.thaw()
		select {
		case <-w.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the command did not end after the thaw")
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
		if _, err := os.Stat(cg); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left behind: %v", cg, err)
		}
	}
}

// TestWorkloadKillFrozen: a hunt that fails before the thaw kills the
// frozen command, which then exits by SIGKILL, and removes the cgroup.
func TestWorkloadKillFrozen(t *testing.T) {
	needCgroup(t)
	w := &Workload{Cmd: exec.Command("sleep", "60")}
	if _, err := w.start("tracepoint"); err != nil {
		t.Fatal(err)
	}
	w.Signal(syscall.SIGKILL)
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the frozen command did not die")
	}
	if err := w.Close(); err != nil {
		t.Error(err)
	}
}

// TestWorkloadNeverStarted: a hunt that failed before it started its
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

// needCgroup skips a test where no cgroup can be made for a command.
func needCgroup(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root")
	}
	dir, err := newCgroup()
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	os.Remove(dir)
}
