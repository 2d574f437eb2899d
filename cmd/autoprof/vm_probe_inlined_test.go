//go:build vm

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// TestVMProbeInlined is issue 15's item 11: on Debian's 6.12 the compiler
// inlined ksys_pread64 into __x64_sys_pread64 (its out-of-line copy is
// left for the compat syscalls), so that an entry counter on it counts
// nothing for a 64-bit program's preads while the syscall's timer counts
// them all. probe must warn that its code runs in __x64_sys_pread64 (on
// stderr when it is attached, in the summary's warnings) and say in the
// summary that it counted nothing. The callers index the warning needs
// takes about 150 s to build under TCG. Where the kernel calls the
// out-of-line copy (no warning), the counter must count the preads.
func TestVMProbeInlined(t *testing.T) {
	featuretest.Require(t, features.HaveFentry())
	helper := exec.Command(os.Args[0], "-test.run=^TestPreadHelperProcess$")
	helper.Env = append(os.Environ(), "AUTOPROF_HELPER=pread")
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	go helper.Wait()
	code, stdout, stderr := runCmd("probe", "--backend", "fentry", "--pid", fmt.Sprint(helper.Process.Pid), "--duration", "5s", "--json",
		"ksys_pread64:entry", "__x64_sys_pread64:timer")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum probeSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	calls := map[string]uint64{}
	for _, s := range sum.Instruments {
		calls[s.Instrument] = s.Calls
	}
	warnings := strings.Join(sum.Warnings, "\n")
	t.Logf("ksys_pread64 %d calls, __x64_sys_pread64 %d; warnings:\n%s\nstderr:\n%s", calls["ksys_pread64:entry"], calls["__x64_sys_pread64:timer"], warnings, stderr)
	if calls["__x64_sys_pread64:timer"] < 100 {
		t.Fatalf("the helper's preads were not counted: %v", calls)
	}
	inlined := strings.Contains(warnings, "inlined ksys_pread64, probably into") && strings.Contains(warnings, "__x64_sys_pread64")
	switch {
	case inlined && calls["ksys_pread64:entry"] == 0 && !strings.Contains(warnings, "ksys_pread64:entry counted no call all through the run"):
		t.Errorf("ksys_pread64 counted nothing, and the summary does not say so")
	case !inlined && calls["ksys_pread64:entry"] < calls["__x64_sys_pread64:timer"]/2:
		t.Errorf("ksys_pread64 counted %d of %d preads, and nothing warned that its code runs elsewhere", calls["ksys_pread64:entry"], calls["__x64_sys_pread64:timer"])
	}
	// The same warning when the instrument goes in, on stderr: a user
	// watching the counts live need not wait for the summary.
	if inlined && !(strings.Contains(stderr, "inlined ksys_pread64, probably into") && strings.Contains(stderr, "__x64_sys_pread64")) {
		t.Errorf("the summary warns that ksys_pread64 was inlined, stderr did not when it was attached:\n%s", stderr)
	}
}

// TestPreadHelperProcess preads /dev/zero for two minutes (until killed).
func TestPreadHelperProcess(t *testing.T) {
	if os.Getenv("AUTOPROF_HELPER") != "pread" {
		return // a helper, run by TestVMProbeInlined: as a test, nothing to do (a pass, not a skip)
	}
	fd, err := syscall.Open("/dev/zero", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); {
		for i := 0; i < 100; i++ {
			syscall.Pread(fd, buf, 0)
		}
		time.Sleep(time.Millisecond)
	}
}
