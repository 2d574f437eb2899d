package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/search"
)

// TestHuntBadInput: each bad input gives exit status 2 and a one-line
// error naming it, and writes nothing.
func TestHuntBadInput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, reports.RunFile), []byte(`{"meta": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--compare", "/nonexistent/base"}, "--compare: stat /nonexistent/base"},
		{[]string{"--compare", corrupt}, "--compare: " + filepath.Join(corrupt, reports.RunFile)},
		{[]string{"--pid", "1", "--cgroup", "/sys/fs/cgroup"}, "one target"},
		{[]string{"--pid", "999999999"}, "--pid 999999999: no such process"},
		{[]string{"--pid", "1,999999999"}, "--pid 999999999: no such process"},
		{[]string{"--pid", "1", "--", "true"}, "one target"},
		{[]string{"--no-inherit"}, "--no-inherit: applies to a command"},
		{[]string{"--include-idle", "--pid", "1"}, "--include-idle: applies to a whole-system hunt only"},
		{[]string{"--root", "no_such_fn"}, "--root no_such_fn: no such kernel function"},
		{[]string{"--cgroup", "/nonexistent"}, "--cgroup /nonexistent"},
		{[]string{"--budget", "0"}, "--budget 0"},
		{[]string{"--threshold", "100"}, "--threshold 100"},
		{[]string{"--backend", "magic"}, `--backend "magic"`},
		{[]string{"--root", "vfs_read+0x10"}, `--root "vfs_read+0x10"`},
		{[]string{"--round", "1ms"}, "--round 1ms"},
		{[]string{"--duration", "-1s"}, "--duration -1s"},
		{[]string{"-o", "/nonexistent/dir"}, "-o /nonexistent/dir"},
		{[]string{"-o", "/sys/kernel"}, "-o /sys/kernel: cannot write in it"}, // refused even to root
		{[]string{"-o", "/proc/version"}, "-o /proc/version: not a directory"},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"--debuginfo", "/nonexistent/debug"}, `--debuginfo "/nonexistent/debug": not a directory`},
		{[]string{"--debuginfo", "/tmp:/proc/version"}, `--debuginfo "/proc/version": not a directory`},
		{[]string{"--", "/nonexistent/command"}, "/nonexistent/command"},
		{[]string{"--bogus"}, "bogus"},
		// (a command that exists in the test VM, which has no true)
		{[]string{"--cpuprofile", corrupt, "--", os.Args[0], "-test.run=^$"}, "--cpuprofile " + fmt.Sprintf("%q", corrupt) + ": is a directory"},
		{[]string{"--cpuprofile", "/nonexistent/cpu.pprof", "--", os.Args[0], "-test.run=^$"}, `--cpuprofile "/nonexistent/cpu.pprof"`},
	} {
		args := append([]string{"hunt"}, c.args...)
		if !strings.HasPrefix(strings.Join(c.args, " "), "-o") {
			args = append([]string{"hunt", "-o", out}, c.args...)
		}
		checkUsageError(t, args, c.want, out)
	}
}

// checkUsageError runs the command args and checks that it exits with
// status 2, prints nothing on stdout and one error line naming want last
// on stderr, and writes nothing at out.
func checkUsageError(t *testing.T, args []string, want, out string) {
	t.Helper()
	code, stdout, stderr := runCmd(args...)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 2 || !strings.Contains(lines[len(lines)-1], want) || stdout != "" {
		t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and an error naming %q", args, code, stderr, stdout, want)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatalf("%q wrote %s", args, out)
	}
}

// TestHuntCommand hunts a busy helper process with whatever backends this
// kernel allows (on the locked-down development machines: tracepoint and
// sample only) and checks the outputs: a valid profile, the reports, the
// run, and limitations that say what could not be done.
func TestHuntCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hunting needs root")
	}
	featuretest.Require(t, features.HaveSample())
	out := filepath.Join(t.TempDir(), "out")
	os.Setenv("AUTOPROF_HELPER", "busy")
	// Long enough for rounds after the hunt's start-up (the helper starts
	// once the instruments are calibrated; the deep-start sample and the
	// roots follow) on an idle emulated VM; on a loaded one (16 s seen)
	// the helper can exit first, and the findings then come from Deep
	// Start's samples.
	os.Setenv("AUTOPROF_HELPER_SECONDS", "15")
	defer os.Unsetenv("AUTOPROF_HELPER")
	defer os.Unsetenv("AUTOPROF_HELPER_SECONDS")
	cpuprof := filepath.Join(t.TempDir(), "cpu.pprof")
	code, stdout, stderr := runCmd("hunt", "--json", "-o", out, "--cpuprofile", cpuprof, "--round", "100ms", "--", os.Args[0], "-test.run=^TestHelperProcess$")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum huntJSON
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	t.Logf("stop: %s; %d findings; limitations: %q", sum.Meta.StopReason, len(sum.Findings), sum.Limitations)
	for _, f := range sum.Findings {
		t.Logf("%5.1f%% %s", 100*f.ExclShare.Mean, f.Verdict)
	}
	if len(sum.Findings) == 0 {
		t.Error("no findings for a process that spends its time in read and write")
	}
	// The syscall tracepoints' slow path runs only because the hunt's
	// syscall timers are on: the instruments' cost, never a finding.
	for _, f := range sum.Findings {
		for _, fn := range []string{"syscall_trace_enter", "syscall_exit_work", "__traceiter_sys_enter", "__traceiter_sys_exit"} {
			if strings.Contains(f.Verdict, " "+fn) {
				t.Errorf("a finding is the instruments' own cost: %s", f.Verdict)
			}
		}
	}
	if features.HaveFentry() != nil && features.HaveKprobe() != nil && !strings.Contains(strings.Join(sum.Limitations, "\n"), "no function instruments") {
		t.Errorf("no function instruments here, and the limitations do not say so: %q", sum.Limitations)
	}
	f, err := os.Open(sum.Profile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckValid(); err != nil || len(p.Sample) == 0 {
		t.Errorf("profile: %v, %d samples", err, len(p.Sample))
	}
	addressed := 0
	for _, l := range p.Location {
		if l.Address != 0 && l.Address >= l.Mapping.Start && l.Address < l.Mapping.Limit {
			addressed++
		}
	}
	if addressed == 0 || p.Mapping[0].Limit == 0 {
		t.Errorf("profile: %d of %d locations with an address, kernel mapping %+v", addressed, len(p.Location), p.Mapping[0])
	}
	if _, err := reports.Load(filepath.Join(out, reports.RunFile)); err != nil {
		t.Error(err)
	}
	// autoprof's own cost: measured, and its CPU profile written.
	if o := sum.Overhead; o.ControllerPct <= 0 || o.StartupWallSec <= 0 || o.StartupCPUSec <= 0 {
		t.Errorf("autoprof's own cost not measured: %.3f%% of CPU, start-up %.2fs wall, %.2fs CPU", o.ControllerPct, o.StartupWallSec, o.StartupCPUSec)
	}
	checkCPUProfile(t, cpuprof)
	for _, name := range []string{reports.TextFile, reports.HTMLFile, reports.FindingsFile, reports.TraceFile, reports.AddressesFile} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
}

// TestHuntCommandFails hunts a command that fails: the outputs are
// written, and autoprof exits with the command's status, naming it.
func TestHuntCommandFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hunting needs root")
	}
	featuretest.Require(t, features.HaveSample())
	out := filepath.Join(t.TempDir(), "out")
	os.Setenv("AUTOPROF_HELPER", "exit7")
	defer os.Unsetenv("AUTOPROF_HELPER")
	code, _, stderr := runCmd("hunt", "-o", out, "--round", "100ms", "--", os.Args[0], "-test.run=^TestHelperProcess$")
	if code != 7 || !strings.Contains(stderr, ": exit status 7 (the outputs describe that run)") {
		t.Errorf("exit %d, stderr %q; want 7 and the command's status named", code, stderr)
	}
	if _, err := reports.Load(filepath.Join(out, reports.RunFile)); err != nil {
		t.Errorf("the outputs of the failed command's hunt: %v", err)
	}
}

// TestHuntInterrupt sends SIGTERM to a hunt in progress: it withdraws
// everything, writes its outputs with the reason, stops the command it
// started, and exits with status 0.
func TestHuntInterrupt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hunting needs root")
	}
	featuretest.Require(t, features.HaveSample())
	out := filepath.Join(t.TempDir(), "out")
	os.Setenv("AUTOPROF_HELPER", "busy")
	os.Setenv("AUTOPROF_HELPER_SECONDS", "60")
	defer os.Unsetenv("AUTOPROF_HELPER")
	defer os.Unsetenv("AUTOPROF_HELPER_SECONDS")
	type result struct {
		code           int
		stdout, stderr string
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		code, stdout, stderr := runCmd("hunt", "--json", "-o", out, "--", os.Args[0], "-test.run=^TestHelperProcess$")
		res <- result{code, stdout, stderr}
	}()
	time.Sleep(4 * time.Second)
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	var r result
	select {
	case r = <-res:
	case <-time.After(60 * time.Second):
		t.Fatal("the hunt did not end after SIGTERM")
	}
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var sum huntJSON
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sum.Meta.StopReason, "interrupted") || time.Since(start) > 40*time.Second {
		t.Errorf("stop reason %q after %v", sum.Meta.StopReason, time.Since(start))
	}
	if _, err := reports.Load(filepath.Join(out, reports.RunFile)); err != nil {
		t.Error(err)
	}
}

// TestHelperProcess is the workload of the hunt tests: one-byte reads of
// /dev/zero and writes to /dev/null for AUTOPROF_HELPER_SECONDS (default
// 6) seconds; with AUTOPROF_HELPER=exit7, a second's sleep and exit status
// 7; with AUTOPROF_HELPER=parent, the busy workload in a child process,
// waited for.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("AUTOPROF_HELPER") {
	case "exit7": // TestHuntCommandFails: a workload that fails
		time.Sleep(time.Second)
		os.Exit(7)
	case "quick": // TestHuntExitsBeforeFirstRound
		return
	case "sleep": // TestHuntWholeSystem: a process asleep all along
		time.Sleep(time.Minute)
		return
	case "parent":
		child := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		child.Env = append(os.Environ(), "AUTOPROF_HELPER=busy")
		if err := child.Run(); err != nil {
			t.Fatal(err)
		}
		return
	case "getppid": // TestHuntCountsFromStart: exactly AUTOPROF_HELPER_CALLS getppid calls
		n, _ := strconv.Atoi(os.Getenv("AUTOPROF_HELPER_CALLS"))
		for i := 0; i < n; i++ {
			syscall.Getppid()
		}
		return
	case "busy":
	default:
		return // a helper, run by TestHuntCommand: as a test, nothing to do (a pass, not a skip)
	}
	secs, _ := strconv.Atoi(os.Getenv("AUTOPROF_HELPER_SECONDS"))
	if secs == 0 {
		secs = 6
	}
	zero, err := syscall.Open("/dev/zero", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	null, err := syscall.Open("/dev/null", syscall.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	for end := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(end); {
		for i := 0; i < 1000; i++ {
			syscall.Read(zero, buf)
			syscall.Write(null, buf)
		}
	}
}

// childWorkload is a command whose work is done by a child process: the
// busy helper started by sh -c (which forks, as "; true" keeps it from
// exec'ing), or by the helper itself where there is no sh (the VM).
func childWorkload(t *testing.T, seconds int) []string {
	t.Helper()
	t.Setenv("AUTOPROF_HELPER_SECONDS", fmt.Sprint(seconds))
	if sh, err := exec.LookPath("sh"); err == nil {
		t.Setenv("AUTOPROF_HELPER", "busy")
		return []string{sh, "-c", `"$0" -test.run='^TestHelperProcess$'; true`, os.Args[0]}
	}
	// No sh: the test VM, whose Deep Start (the census of some 360
	// syscalls) takes about 20 s under TCG; the child must outlast it.
	t.Setenv("AUTOPROF_HELPER_SECONDS", fmt.Sprint(3*seconds))
	t.Setenv("AUTOPROF_HELPER", "parent")
	return []string{os.Args[0], "-test.run=^TestHelperProcess$"}
}

// huntRun hunts args and returns the saved run.
func huntRun(t *testing.T, args ...string) *search.Run {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	code, _, stderr := runCmd(append([]string{"hunt", "-o", out}, args...)...)
	if code != 0 {
		t.Fatalf("hunt %q: exit %d: %s", args, code, stderr)
	}
	run, err := reports.Load(filepath.Join(out, reports.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// rootCalls sums the calls of the root nodes of fn.
func rootCalls(run *search.Run, fn string) uint64 {
	var n uint64
	for _, nd := range run.Nodes {
		if nd.Parent < 0 && nd.Point.Func == fn {
			n += nd.Calls
		}
	}
	return n
}

// TestHuntCountsFromStart (issue 15, item 5): a hunted command is
// measured from its first instruction: a helper that makes exactly n
// getppid calls and exits has all n counted (the command is held until
// the roots are in): over Deep Start's census, where a command this short
// is over (before, it was counted nowhere), and the hunt's rounds.
func TestHuntCountsFromStart(t *testing.T) {
	needHunt(t)
	n := uint64(20000)
	if s := os.Getenv("AUTOPROF_TEST_CALLS"); s != "" {
		n, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Setenv("AUTOPROF_HELPER", "getppid")
	t.Setenv("AUTOPROF_HELPER_CALLS", strconv.FormatUint(n, 10))
	run := huntRun(t, "--root", "__x64_sys_getppid", "--", os.Args[0], "-test.run=^TestHelperProcess$")
	var rounds, deep uint64
	for _, nd := range run.Nodes {
		if nd.Parent < 0 && nd.Point.Func == "__x64_sys_getppid" {
			for _, r := range nd.Rounds {
				rounds += r.Calls
			}
			deep += nd.DeepStartCalls
		}
	}
	m := run.Meta
	t.Logf("stop %q; %d rounds; the root's calls: %d over the rounds, %d before them; target operations %d, %d during Deep Start", m.StopReason, m.Rounds, rounds, deep, m.TargetOps, m.DeepStartOps)
	if rounds+deep != n {
		t.Errorf("the getppid root counted %d calls over the rounds and %d before them, want all %d the command made", rounds, deep, n)
	}
	if m.DeepStartOps < deep || m.TargetOps < rounds {
		t.Errorf("the run's operations (%d, %d during Deep Start) leave out the root's", m.TargetOps, m.DeepStartOps)
	}
}

// TestHuntFollowsChildren: a command's children are hunted with it (the
// reads and writes of the busy helper that sh -c starts), unless
// --no-inherit, which hunts the command's own process only.
func TestHuntFollowsChildren(t *testing.T) {
	needHunt(t)
	// The read root is given: Deep Start may be over before the child
	// has started (under TCG, the parent's own start-up is all it sees).
	// Rounds of 500 ms keep the hunt from converging before the child
	// reads.
	run := huntRun(t, append([]string{"--round", "500ms", "--root", "__x64_sys_read", "--"}, childWorkload(t, 15)...)...)
	t.Logf("target %q, stop %q, read root %d calls, limitations %q", run.Meta.Target, run.Meta.StopReason, rootCalls(run, "__x64_sys_read"), run.Limitations)
	if strings.Contains(strings.Join(run.Limitations, ";"), "children are not followed") {
		featuretest.Require(t, fmt.Errorf("no cgroup here: %q", run.Limitations))
	}
	if rootCalls(run, "__x64_sys_read") < 1000 || !strings.Contains(run.Meta.Target, "and its children") {
		t.Errorf("the child's reads were not hunted: target %q, %d calls of the read root", run.Meta.Target, rootCalls(run, "__x64_sys_read"))
	}
	run = huntRun(t, append([]string{"--round", "500ms", "--root", "__x64_sys_read", "--no-inherit", "--"}, childWorkload(t, 6)...)...)
	if n := rootCalls(run, "__x64_sys_read"); n >= 1000 || strings.Contains(run.Meta.Target, "children") {
		t.Errorf("--no-inherit: target %q, %d calls of the read root; want the parent only", run.Meta.Target, n)
	}
}

// TestHuntExitsBeforeFirstRound: a command that is over before the first
// round is said to be, not reported as "nothing measurable"; one that
// ends in the first round gets its Deep Start samples as findings.
func TestHuntExitsBeforeFirstRound(t *testing.T) {
	needHunt(t)
	out := filepath.Join(t.TempDir(), "out")
	t.Setenv("AUTOPROF_HELPER", "quick")
	code, stdout, stderr := runCmd("hunt", "-o", out, "--", os.Args[0], "-test.run=^TestHelperProcess$")
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	run, err := reports.Load(filepath.Join(out, reports.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.Contains(stdout, "no findings: the target exited before the first round"):
		if !strings.Contains(strings.Join(run.Limitations, ";"), "the target exited before the first round") {
			t.Errorf("limitations %q", run.Limitations)
		}
	case run.Meta.Rounds == 1 && run.Meta.StopReason == "the target exited" && len(run.Findings) > 0:
		// On a slow machine (TCG with the other guest busy) the
		// helper's start outlasted Deep Start: the first round ended
		// with it, and Deep Start's samples name where it ran.
		t.Logf("the helper outlived Deep Start; %d findings from its samples, the first %s", len(run.Findings), run.Findings[0].Verdict)
	default:
		t.Fatalf("neither 'exited before the first round' nor findings from one round: %d rounds, stop %q, stdout %q", run.Meta.Rounds, run.Meta.StopReason, stdout)
	}
}

// TestHuntPidExit: a hunt of --pid P ends when P exits, not at its
// deadline, and says why. Rounds of 1 s keep it from converging first
// (that takes 12 rounds of a stable tree).
func TestHuntPidExit(t *testing.T) {
	needHunt(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	helper.Env = append(os.Environ(), "AUTOPROF_HELPER=busy", "AUTOPROF_HELPER_SECONDS=4")
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	go helper.Wait()
	defer helper.Process.Kill()
	// The stop reason tells the exit noticed from the 3-minute deadline,
	// whatever the machine's speed (under -race on a loaded host the hunt
	// took 2m38s to notice a 4 s helper's exit: its start-up outlasted it).
	run := huntRun(t, "--pid", fmt.Sprint(helper.Process.Pid), "--duration", "3m", "--round", "1s")
	if run.Meta.StopReason != "the target exited" {
		t.Errorf("stop %q; want the target's exit noticed", run.Meta.StopReason)
	}
}

// needHunt skips a test where this machine cannot hunt.
func needHunt(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("hunting needs root")
	}
	featuretest.Require(t, features.HaveSample())
	featuretest.Require(t, features.HaveTracepoint())
}

// TestHuntWholeSystem: a whole-system hunt counts on-CPU time (threads
// asleep in futex or nanosleep all along, as this process's idle Go
// threads are, do not make "blocked in" findings or shares over 100%);
// with --include-idle their waits count, over all threads' time.
func TestHuntWholeSystem(t *testing.T) {
	needHunt(t)
	sleeper := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	sleeper.Env = append(os.Environ(), "AUTOPROF_HELPER=sleep")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	for _, args := range [][]string{{"--duration", "4s"}, {"--duration", "4s", "--include-idle"}} {
		run := huntRun(t, args...)
		lim := strings.Join(run.Limitations, ";")
		if len(args) == 2 && !strings.Contains(lim, "on-CPU time only") || len(args) == 3 && !strings.Contains(lim, "--include-idle") {
			t.Errorf("%q: limitations %q", args, run.Limitations)
		}
		for _, n := range run.Nodes {
			if n.Incl.Mean > 1.02 || n.Excl.Mean > 1.02 {
				t.Errorf("%q: %s has %.1f%% inclusive, %.1f%% exclusive", args, strings.Join(n.Path, ";"), 100*n.Incl.Mean, 100*n.Excl.Mean)
			}
			if len(args) == 2 && n.ExclOffCPUNs > 0 {
				t.Errorf("%q: %s has %d ns off-CPU", args, strings.Join(n.Path, ";"), n.ExclOffCPUNs)
			}
		}
		for _, f := range run.Findings {
			t.Logf("%q: %.1f%% %s", args, 100*f.ExclShare.Mean, f.Verdict)
			if len(args) == 2 && strings.HasPrefix(f.Verdict, "blocked") {
				t.Errorf("%q: an idle wait is a finding: %s", args, f.Verdict)
			}
		}
	}
}

// checkCPUProfile checks that path holds a CPU profile of autoprof with
// samples, and that no temporary file is left beside it.
func checkCPUProfile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("--cpuprofile: %v", err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("--cpuprofile %s: %v", path, err)
	}
	if len(p.Sample) == 0 || len(p.SampleType) < 2 || p.SampleType[1].Type != "cpu" {
		t.Errorf("--cpuprofile %s: %d samples of %v, want CPU samples", path, len(p.Sample), p.SampleType)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"))
	if len(left) > 0 {
		t.Errorf("--cpuprofile left %q", left)
	}
}
