package main

import (
	"errors"
	"strings"
	"testing"

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
