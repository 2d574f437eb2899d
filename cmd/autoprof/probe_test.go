package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/splice"
)

// TestProbeBadInput: each bad input gives exit status 2 and a one-line
// error naming it, opens nothing and writes no output, as hunt does for
// the same flags (one validation for both).
func TestProbeBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	badExp := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badExp, []byte("instruments:\n  - spec: vfs_read:sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	goneExp := filepath.Join(dir, "gone.yaml")
	if err := os.WriteFile(goneExp, []byte("target: {pids: [999999999]}\ninstruments:\n  - spec: vfs_read\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "magic", "vfs_read"}, `--backend "magic"`},
		{[]string{"--pid", "zero", "vfs_read"}, `--pid "zero"`},
		{[]string{"--pid", "999999999", "vfs_read"}, "--pid 999999999: no such process"},
		{[]string{"--pid", fmt.Sprintf("%d,999999999", os.Getpid()), "vfs_read"}, "--pid 999999999: no such process"},
		{[]string{"--cgroup", "/nonexistent", "vfs_read"}, "--cgroup /nonexistent: not a cgroup v2 directory"},
		{[]string{"--duration", "-5s", "vfs_read"}, "--duration -5s: must not be negative"},
		{[]string{"--interval", "0s", "vfs_read"}, "--interval 0s"},
		{[]string{"--max-overhead", "-1", "vfs_read"}, "--max-overhead -1: want a percentage"},
		{[]string{"--max-overhead", "150", "vfs_read"}, "--max-overhead 150: want a percentage"},
		{[]string{"vfs_read:sometimes"}, "vfs_read:sometimes"},
		{[]string{"vfs_read+zz"}, "vfs_read+zz"},
		{[]string{"no_such_fn:timer"}, "SPEC no_such_fn: no such kernel function"},
		{[]string{"--experiment", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"--experiment", badExp}, "bad.yaml"},
		{[]string{"--experiment", goneExp}, "pid 999999999: no such target"},
		{nil, "no instruments"},
	} {
		checkUsageError(t, append([]string{"probe", "-o", out}, c.args...), c.want, out)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd("probe", "-o", file, "__x64_sys_getpid")
	if code != 2 || !strings.Contains(stderr, "-o "+file+": not a directory") {
		t.Errorf("-o FILE: exit %d, %q", code, stderr)
	}
}

// TestProbeRuntimeErrors: what the kernel does not allow is a runtime
// error (status 1) in caps' words, not a usage error, in probe and hunt.
func TestProbeRuntimeErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("probing needs root")
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := features.HaveKprobe(); err != nil {
		var u *features.Unavailable
		if !errors.As(err, &u) {
			t.Fatal(err)
		}
		for _, cmd := range []string{"probe", "hunt"} {
			code, stdout, stderr := runCmd(cmd, "-o", out, "--backend", "kprobe", "--duration", "1s", "__x64_sys_getpid:timer")
			if cmd == "hunt" {
				code, stdout, stderr = runCmd(cmd, "-o", out, "--backend", "kprobe", "--duration", "1s")
			}
			if code != 1 || stdout != "" || !strings.Contains(stderr, "--backend kprobe: kprobe unavailable: "+u.Reason) {
				t.Errorf("%s --backend kprobe without kprobes: exit %d, stderr %q; want 1 and caps' reason %q", cmd, code, stderr, u.Reason)
			}
		}
	}
	if features.HaveFentry() != nil && features.HaveKprobe() != nil && features.HaveTracepoint() == nil {
		code, _, stderr := runCmd("probe", "-o", out, "--duration", "1s", "vfs_read:timer")
		if code != 1 || !strings.Contains(stderr, "only syscalls can be timed here") || !strings.Contains(stderr, "kprobe unavailable") || !strings.Contains(stderr, "fentry unavailable") {
			t.Errorf("vfs_read:timer with tracepoint only: exit %d, stderr %q; want 1 and why", code, stderr)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed probe left %s", out)
	}
}

// TestProbeSyscallTimer times two syscalls of a helper process with the
// tracepoint backend (which this machine's locked-down kernel allows as
// well as the VMs'): the helper makes exactly probeCalls getppid calls
// while the probe runs, this process makes others that the pid filter must
// leave out, and getpgrp is never called by the helper. The summary counts
// exactly the helper's calls, lists the idle instrument with zero calls,
// and the time series holds a record per instrument per interval.
func TestProbeSyscallTimer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("probing needs root")
	}
	featuretest.Require(t, features.HaveTracepoint())
	helper := exec.Command(os.Args[0], "-test.run=^TestProbeHelperProcess$")
	helper.Env = append(os.Environ(), "AUTOPROF_HELPER=getppid")
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	outDir := filepath.Join(t.TempDir(), "out")
	series := filepath.Join(outDir, seriesFile)
	before := bpfLinks(t)
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCmd("probe", "--backend", "tracepoint", "--pid", strconv.Itoa(helper.Process.Pid),
			"--duration", "4s", "--interval", "500ms", "-o", outDir, "--json",
			"__x64_sys_getppid:timer", "__x64_sys_getpgrp:timer")
		done <- result{code, stdout, stderr}
	}()
	// The first record of the series (written to a temporary file beside
	// it until the end) follows the first interval after the attach: once
	// it is there the instruments are live. Under emulation, with another
	// VM on the same cores, opening the session can take many seconds.
	for deadline := time.Now().Add(time.Minute); !seriesStarted(t, series); {
		if time.Now().After(deadline) {
			t.Fatalf("autoprof probe wrote no record in a minute (%d BPF links before, %d now)", before, bpfLinks(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 500; i++ {
		syscall.Getppid() // not the target: left out
	}
	stdin.Write([]byte{1})
	if err := helper.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	r := <-done
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var sum probeSummary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if saved, err := os.ReadFile(filepath.Join(outDir, summaryFile)); err != nil || string(saved) != r.stdout {
		t.Errorf("%s: %v; want what --json printed", summaryFile, err)
	}
	if len(sum.Warnings) != 1 || sum.Warnings[0] != "__x64_sys_getpgrp:timer counted no call all through the run" {
		t.Errorf("warnings %q; want the idle getpgrp timer named", sum.Warnings)
	}
	got := map[string]splice.Summary{}
	for _, s := range sum.Instruments {
		got[s.Instrument] = s
	}
	if s := got["__x64_sys_getppid:timer"]; s.Calls != probeCalls || s.MeanNs <= 0 || s.P99Ns < s.P50Ns {
		t.Errorf("getppid: %+v; want exactly %d calls with a mean and p50 <= p99", s, probeCalls)
	}
	if s, ok := got["__x64_sys_getpgrp:timer"]; !ok || s.Calls != 0 {
		t.Errorf("getpgrp: %+v (listed %v); want a row with 0 calls", s, ok)
	}
	data, err := os.ReadFile(series)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(series); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("series %s: mode %v (%v), want 0644 like the other outputs", series, st.Mode(), err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var calls uint64
	var covered float64 // seconds the getppid records cover
	var last time.Time
	for _, l := range lines {
		var rec record
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("series line %q: %v", l, err)
		}
		if rec.Instrument != "__x64_sys_getppid:timer" {
			continue
		}
		calls += rec.Calls
		covered += rec.Interval
		if !last.IsZero() && math.Abs(rec.Time.Sub(last).Seconds()-rec.Interval) > 0.001 {
			t.Errorf("record at %v: interval_s %.4f, but %.4fs since the last record", rec.Time, rec.Interval, rec.Time.Sub(last).Seconds())
		}
		last = rec.Time
	}
	// The probe ends when the helper has exited (WatchExit), before its
	// 4 s: the records cover the whole probe but its attach (60 ms under
	// TCG).
	if calls != probeCalls || len(lines)%2 != 0 || len(lines) < 2 {
		t.Errorf("series: %d records, %d getppid calls; want two per interval and %d calls", len(lines), calls, probeCalls)
	}
	if covered > sum.DurationS+0.01 || covered < 0.8*sum.DurationS || sum.DurationS > 3.9 {
		t.Errorf("series: the getppid records cover %.2fs of the %.2fs probe, which should end when the helper exits", covered, sum.DurationS)
	}
}

// probeCalls is how many getppid calls the helper makes.
const probeCalls = 2000

// TestProbeHelperProcess waits for a byte on stdin, then calls getppid
// probeCalls times.
func TestProbeHelperProcess(t *testing.T) {
	if os.Getenv("AUTOPROF_HELPER") != "getppid" {
		return // a helper, run by TestProbeSyscallTimer: as a test, nothing to do (a pass, not a skip)
	}
	var b [1]byte
	os.Stdin.Read(b[:])
	for i := 0; i < probeCalls; i++ {
		syscall.Getppid()
	}
}

// bpfLinks counts this process's open BPF links.
// seriesStarted reports whether the probe writing the series at path has
// written its first record into the temporary file it renames at the end.
func seriesStarted(t *testing.T, path string) bool {
	tmp, err := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tmp {
		if st, err := os.Stat(f); err == nil && st.Size() > 0 {
			return true
		}
	}
	return false
}

func bpfLinks(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(l, "bpf-link") {
			n++
		}
	}
	return n
}
