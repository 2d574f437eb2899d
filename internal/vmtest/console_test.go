package vmtest

import (
	"context"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/testenv"
)

func TestFirstProblem(t *testing.T) {
	// Headers as the kernel prints them (copied from real 6.1 logs).
	for _, c := range []struct{ log, want string }{
		{"[    1.0] ok\n[    2.5] WARNING: CPU: 1 PID: 77 at kernel/foo.c:12 foo+0x1/0x2\n", "WARNING: CPU: 1 PID: 77 at kernel/foo.c:12 foo+0x1/0x2"},
		{"[    3.1] BUG: kernel NULL pointer dereference, address: 0000000000000000\n", "BUG: kernel NULL pointer dereference, address: 0000000000000000"},
		{"[    3.2] Kernel panic - not syncing: sysrq triggered crash\n", "Kernel panic - not syncing: sysrq triggered crash"},
		{"[   22.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:1]\n", "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:1]"},
		{"[  130.0] INFO: task kworker:1 blocked for more than 120 seconds.\n", "INFO: task kworker:1 blocked for more than 120 seconds."},
		{"[    1.0] Invalid ELF header len 38\n[    1.1] clocksource: Switched to clocksource tsc\n", ""},
	} {
		if got := firstProblem(c.log); got != c.want {
			t.Errorf("firstProblem(%q) = %q, want %q", c.log, got, c.want)
		}
	}
}

func TestJudge(t *testing.T) {
	if err := judge(&Result{}, ""); err != nil {
		t.Errorf("a clean run failed: %v", err)
	}
	if err := judge(&Result{ExitCode: 3}, ""); err == nil || !strings.Contains(err.Error(), "status 3") {
		t.Errorf("exit 3: %v", err)
	}
	// Taint W (bit 9) with its report in the kernel log.
	err := judge(&Result{Tainted: 1 << 9, KernelLog: "[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f\n"}, "")
	if err == nil || !strings.Contains(err.Error(), "W (warning)") || !strings.Contains(err.Error(), "x.c:1") {
		t.Errorf("taint W: %v", err)
	}
	// Unsigned/out-of-tree module taints (E, O) are not failures.
	if err := judge(&Result{Tainted: 1<<13 | 1<<12}, ""); err != nil {
		t.Errorf("taint O|E failed the run: %v", err)
	}
	if err := judge(&Result{}, "no command to run"); err == nil {
		t.Error("a guest error passed")
	}
}

func TestModulesDepResolve(t *testing.T) {
	dep := "kernel/fs/a.ko: kernel/lib/b.ko kernel/lib/c.ko\nkernel/lib/b.ko: kernel/lib/c.ko\nkernel/lib/c.ko:\nkernel/drivers/block/loop.ko:\n"
	d, err := parseModulesDep(strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	order, err := d.resolve([]string{"a", "loop"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "kernel/lib/c.ko kernel/lib/b.ko kernel/fs/a.ko kernel/drivers/block/loop.ko" {
		t.Errorf("load order %s", got)
	}
	if _, err := d.resolve([]string{"nosuch"}); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("unknown module: %v", err)
	}
}

// TestModinfoDeps: without modules.dep (Debian ships none), a module's
// dependencies come from the modules' own .modinfo, compressed (6.12's
// .ko.xz) or not (6.1's .ko), and load first.
func TestModinfoDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that fetches Debian kernels")
	}
	for _, series := range []string{"6.1", "6.12"} {
		k := testenv.DebianKernel(t, context.Background(), series)
		d, err := modinfoDeps(k.ModulesDir, []string{"virtio_net"})
		if err != nil {
			t.Fatalf("%s: %v", series, err)
		}
		order, err := d.resolve([]string{"virtio_net"})
		if err != nil {
			t.Fatalf("%s: %v", series, err)
		}
		var names []string
		for _, m := range order {
			names = append(names, moduleName(m))
		}
		got := strings.Join(names, " ")
		if !strings.HasSuffix(got, "virtio_net") || !strings.Contains(got, "net_failover") || strings.Index(got, "failover") > strings.Index(got, "net_failover") {
			t.Errorf("%s: virtio_net's load order %q; want failover, then net_failover, then virtio_net", series, got)
		}
	}
}
