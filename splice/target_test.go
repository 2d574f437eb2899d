package splice

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

func TestTargetCheck(t *testing.T) {
	if err := CheckTarget(instrument.Target{PIDs: []int{os.Getpid()}}); err != nil {
		t.Errorf("own pid: %v", err)
	}
	for _, tg := range []instrument.Target{{PIDs: []int{999999999}}, {PIDs: []int{0}}, {Cgroup: "/nonexistent"}, {Cgroup: os.TempDir()}} {
		if err := CheckTarget(tg); !errors.Is(err, ErrNoTarget) {
			t.Errorf("%v: %v, want ErrNoTarget", tg, err)
		}
	}
	if root, err := Cgroup2Root(); err == nil {
		if err := CheckTarget(instrument.Target{Cgroup: root}); err != nil {
			t.Errorf("the cgroup v2 root %s: %v", root, err)
		}
	}
}

func TestParsePIDs(t *testing.T) {
	if p, err := ParsePIDs("12, 34"); err != nil || len(p) != 2 || p[1] != 34 {
		t.Errorf("12, 34: %v %v", p, err)
	}
	for _, bad := range []string{"", "x", "1,,2", "-3", "0"} {
		if _, err := ParsePIDs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestParseCgroup2Mount: hybrid (v1 controllers and v2 at unified) and
// unified layouts, an escaped mount point, and none at all.
func TestParseCgroup2Mount(t *testing.T) {
	const hybrid = `25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
`
	for in, want := range map[string]string{
		hybrid: "/sys/fs/cgroup/unified",
		"30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n": "/sys/fs/cgroup",
		"30 1 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n":             "/mnt/my cg",
	} {
		got, err := parseCgroup2Mount(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := parseCgroup2Mount(strings.NewReader("27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")); err == nil {
		t.Error("no cgroup2 mount: no error")
	}
}

// TestWatchExit: WatchExit closes its channel once the process has gone, not
// before.
func TestWatchExit(t *testing.T) {
	// The test binary itself (the test VMs have no sleep), for 1 s: its
	// start takes a few hundred ms under the emulator.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=linger 1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := WatchExit(t.Context(), []int{cmd.Process.Pid})
	select {
	case <-done:
		t.Fatal("closed while the process runs")
	case <-time.After(100 * time.Millisecond):
	}
	go cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after the process exited")
	}
}
