package live

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/leakcheck"
)

func TestMain(m *testing.M) {
	if what := os.Getenv(launchHelperEnv); what != "" {
		launchHelper(what)
		os.Exit(0)
	}
	for env, run := range processHelpers {
		if os.Getenv(env) != "" {
			os.Exit(run())
		}
	}
	os.Exit(leakcheck.Main(m))
}

// processHelpers are what the test binary runs instead of its tests
// where their environment variable is set: a test that needs a process of
// its own (a hunt with nothing of an earlier hunt in memory) runs the
// binary again with it. Files built with the vm tag add theirs.
var processHelpers = map[string]func() int{}

// launchHelperEnv makes the test binary a command for the Workload tests
// (the test VMs have no shell, sleep or true).
const launchHelperEnv = "AUTOPROF_LAUNCH_HELPER"

// helperCommand returns a command that runs the test binary as what:
// "write FILE" appends "started" to FILE, then runs a child that appends
// "child"; "sleep" sleeps a minute; "true" exits at once.
func helperCommand(what string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), launchHelperEnv+"="+what)
	return cmd
}

// preads reads 4 KiB from /dev/zero n times (arg "N"): a syscall-bound
// workload.
func preads(arg string) {
	n, err := strconv.Atoi(arg)
	f, err2 := os.Open("/dev/zero")
	if err != nil || err2 != nil {
		os.Exit(2)
	}
	buf := make([]byte, 4096)
	for range n {
		f.ReadAt(buf, 0)
	}
}

func launchHelper(what string) {
	appendLine := func(file, line string) {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			os.Exit(2)
		}
		f.WriteString(line + "\n")
		f.Close()
	}
	switch {
	case what == "sleep":
		time.Sleep(time.Minute)
	case len(what) > len("write ") && what[:len("write ")] == "write ":
		file := what[len("write "):]
		appendLine(file, "started")
		if err := helperCommand("child " + file).Run(); err != nil {
			os.Exit(3)
		}
	case len(what) > len("child ") && what[:len("child ")] == "child ":
		appendLine(what[len("child "):], "child")
	case strings.HasPrefix(what, "preads "):
		preads(strings.TrimPrefix(what, "preads "))
	}
}
