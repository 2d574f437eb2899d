package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/debkernel"
	"github.com/autoprof/autoprof/internal/vmtest"
)

// TestReport: what the host run prints and returns for a failed guest,
// the way go test -exec shows it: the reason, the kernel log (or the
// console where there is no log), and the guest command's exit code.
func TestReport(t *testing.T) {
	k := &debkernel.Kernel{Release: "6.1.0-57-amd64"}
	for _, c := range []struct {
		name string
		err  error
		code int
		want []string
	}{
		{"failing test", &vmtest.GuestError{Reason: "guest command exited with status 3",
			Result: &vmtest.Result{ExitCode: 3, KernelLog: "[ 1.0] Run /init\n", Console: "console only"}},
			3, []string{"kernel 6.1.0-57-amd64: guest command exited with status 3", "--- guest kernel log (6.1.0-57-amd64) ---\n[ 1.0] Run /init\n--- end of kernel log ---"}},
		{"panic before the log was read", &vmtest.GuestError{Reason: "kernel panic",
			Result: &vmtest.Result{ExitCode: -1, Console: "Kernel panic - not syncing: sysrq triggered crash\n"}},
			1, []string{"kernel panic", "--- guest console (6.1.0-57-amd64) ---\nKernel panic - not syncing: sysrq triggered crash\n--- end of console ---"}},
		{"no VM", errors.New("qemu-system-x86_64: not found"), 1, []string{"qemu-system-x86_64: not found"}},
	} {
		var b strings.Builder
		code := report(&b, k, c.err)
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output %q lacks %q", c.name, b.String(), w)
			}
		}
		if code != c.code {
			t.Errorf("%s: exit code %d, want %d", c.name, code, c.code)
		}
	}
	if code := report(&strings.Builder{}, k, nil); code != 0 {
		t.Errorf("a passing run: exit code %d", code)
	}
}

// TestSummaryLine: a kernel's summary line counts the tests and lists the
// failed and the skipped ones under it, package paths cut to the module.
func TestSummaryLine(t *testing.T) {
	k := &debkernel.Kernel{Release: "6.12.57+deb13-amd64"}
	tally := &vmtest.Tally{Passed: 40, Failed: 1, Skipped: 1,
		Failures: []vmtest.TestResult{{Package: "github.com/autoprof/autoprof/splice", Test: "TestVMChurn/kprobe", Reason: "vm_lifecycle_test.go:102: opening a kprobe session: invalid argument"}},
		Skips:    []vmtest.TestResult{{Package: "github.com/autoprof/autoprof/splice", Test: "TestVMModuleUnload/fentry", Reason: "vm_module_test.go:134: aptest has no BTF here"}},
	}
	got := summaryLine("FAIL", k, 754*time.Second+300*time.Millisecond, tally, "github.com/autoprof/autoprof")
	want := "FAIL kernel 6.12.57+deb13-amd64  12m34s  40 passed, 1 failed, 1 skipped\n" +
		"       FAIL splice TestVMChurn/kprobe: vm_lifecycle_test.go:102: opening a kprobe session: invalid argument\n" +
		"       skip splice TestVMModuleUnload/fentry: vm_module_test.go:134: aptest has no BTF here"
	if got != want {
		t.Errorf("summary\n%s\nwant\n%s", got, want)
	}
}
