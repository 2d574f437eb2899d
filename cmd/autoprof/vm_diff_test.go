//go:build vm

package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/testenv"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/search"
)

// apload is the bundled workload (internal/workload, built for the VM by
// vmtest.json): `apload read SIZE N` makes N preads of SIZE bytes of a
// 1 MiB file in its working directory. Its absolute path is taken when
// the test binary starts, before any test changes directory.
var apload = func() string {
	p, err := filepath.Abs("../../internal/workload/apload")
	if err != nil {
		panic(err)
	}
	return p
}()

// readsFor returns how many SIZE-byte preads take about d without
// instruments, timing 20,000 of them.
func readsFor(t *testing.T, size int, d time.Duration) int {
	t.Helper()
	const probe = 20000
	start := time.Now()
	cmd := exec.Command(apload, "read", strconv.Itoa(size), strconv.Itoa(probe))
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apload read: %v\n%s", err, out)
	}
	return int(float64(probe) * d.Seconds() / time.Since(start).Seconds())
}

// vmHunt hunts `apload read SIZE N` until it exits and returns the saved
// run's directory.
func vmHunt(t *testing.T, name string, size, n int) string {
	t.Helper()
	dir := filepath.Join(vmOut(t), name)
	t.Chdir(t.TempDir()) // apload's file goes in its working directory
	start := time.Now()
	// Under TCG every instrument costs tens of times what it costs on
	// hardware: at the default 2% budget the syscall roots alone exceed
	// it and nothing below them stays (as in make demo).
	// A 10% threshold keeps the hunt from refining into the callees
	// whose share is mostly their instruments' cost (under TCG a 64 KiB
	// read's 30 calls of __cond_resched reach 8%), so that it converges
	// and keeps a window of rounds with the same instruments to compare.
	// --no-blocks: under TCG a block counter's kprobe cost 3.6 µs a hit in
	// one hunt (an int3, never optimized in its window) and 0.5 µs in the
	// next (a jump), which moved vfs_read's exclusive time from 10 µs to
	// 53 µs per pread64 between two hunts of one workload and, in a 64 KiB
	// hunt, made 700 of shmem_file_read_iter's 1,239 µs; function timers
	// cost both hunts alike. (diff allows for block counters as far as
	// their calibration and the runs' timings bound them:
	// TestDiffBlockCounters.) --raw-costs: runs compared time for time
	// that instrumented the same places are better off with the cost
	// left in, equal on both sides, than with two calibrations' errors
	// (compensated, two 4 KiB hunts on 6.12 disagreed on vfs_read's
	// exclusive time, 0 and 19 µs, where one had withdrawn its callees).
	code, out, errs := runCmd("hunt", "--duration", "3m", "--budget", "50", "--threshold", "10", "--no-blocks", "--raw-costs", "-o", dir, "--", apload, "read", strconv.Itoa(size), strconv.Itoa(n))
	if code != 0 {
		t.Fatalf("hunt %s: exit %d\n%s\n%s", name, code, out, errs)
	}
	t.Logf("hunt %s (%d preads of %d bytes) took %v:\n%s", name, n, size, time.Since(start).Round(time.Second), firstLines(out, 12))
	return dir
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// vmOut is where the runs go: under AUTOPROF_VM_OUT (brought back to the
// host, for the cross-kernel comparison), by kernel release.
func vmOut(t *testing.T) string {
	if dir, ok := testenv.VMOut(t, "runs"); ok {
		return dir
	}
	return t.TempDir()
}

// workloadTime is how long each hunted workload runs without instruments.
const workloadTime = 25 * time.Second

// TestVMDiffReads is issue 7's in-VM check: three runs of one workload
// (4 KiB preads) compare without a significant difference (three pairs:
// the false-positive rate measured, not assumed), and 64 KiB preads
// against 4 KiB ones put the read path, and in it the copy to user space,
// first.
func TestVMDiffReads(t *testing.T) {
	// The 64 KiB hunt refines deeper (the copy loop's callees): its
	// workload runs longer, for rounds after it converges.
	small, large := readsFor(t, 4096, workloadTime), readsFor(t, 65536, 2*workloadTime)
	runs := []string{vmHunt(t, "read4k-a", 4096, small), vmHunt(t, "read4k-b", 4096, small), vmHunt(t, "read4k-c", 4096, small)}
	big := vmHunt(t, "read64k", 65536, large)
	load := func(dir string) *search.Run {
		r, err := reports.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Under TCG, with the other kernel's VM on the same two cores, one
	// run's speed differs from the next by far more than any per-round
	// statistic within a run can see (the VM guide says to compare only
	// ratios within one run). Measured on 6.1 in CI: 61 µs of target
	// time per pread64 in one hunt of this workload against 26 µs and
	// 34 µs in the next two, vfs_read's exclusive time 8.96 µs against
	// 3.2 µs (2.8x), with the same instruments; earlier, 51 µs against
	// 40 µs. The tests keep the default false discovery rate and ask for
	// changes beyond 200% of the base (a tripling), what a run on real
	// hardware would not need; the 64 KiB change (shmem_file_read_iter's
	// exclusive time about 13x) is far beyond it.
	opts := reports.DiffOptions{MinRelative: 2}
	falsePos := 0
	for i := range runs {
		for j := i + 1; j < len(runs); j++ {
			c, err := reports.Diff(load(runs[i]), load(runs[j]), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s vs %s: %d of %d contexts matched, %d significant", filepath.Base(runs[i]), filepath.Base(runs[j]), c.Matched, c.BaseNodes, c.Significant)
			if c.Significant > 0 {
				falsePos++
				var b strings.Builder
				reports.WriteDiffText(&b, c)
				t.Logf("significant changes between runs of one workload:\n%s", firstLines(b.String(), 40))
			}
		}
	}
	if falsePos > 0 {
		t.Errorf("%d of 3 same-workload pairs had significant changes", falsePos)
	}
	c, err := reports.Diff(load(runs[0]), load(big), opts)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	reports.WriteDiffText(&b, c)
	t.Logf("4 KiB vs 64 KiB:\n%s", firstLines(b.String(), 30))
	// The read path's functions come first: the first three significant
	// changes lie under the pread64 root, and one of them is a function
	// that holds the copy to user space (the copy routines themselves are
	// notrace: their time is in the exclusive time of the read_iter that
	// calls them, where they cannot be timed).
	copyFns := map[string]bool{"copy_user_enhanced_fast_string": true, "copy_user_generic_string": true,
		"copy_user_generic_unrolled": true, "rep_movs_alternative": true, "copy_page_to_iter": true, "_copy_to_iter": true,
		"shmem_file_read_iter": true, "filemap_read": true, "generic_file_read_iter": true, "filemap_get_pages": true}
	// With the cost left in, a context whose time per call is within
	// twice its timer's calibrated cost is its timer's time, and its
	// change is its change of calls (6.1's 64 KiB hunt timed
	// __rcu_read_lock 86 times a read against 12 at 4 KiB: +202 µs a
	// read, ranked above the copy): those are passed over, and logged.
	newRun := load(big)
	var ranked []reports.NodeDiff
	for _, n := range c.Nodes[:c.Significant] {
		node := newRun.Nodes[n.New.Node]
		if cost := newRun.Overhead.CostPerHitNs[node.Backend]; cost > 0 && n.New.MeanNs <= 2*cost {
			t.Logf("passed over: %s, %.0f ns a call against its timer's %.0f ns", strings.Join(n.Path, ";"), n.New.MeanNs, cost)
			continue
		}
		ranked = append(ranked, n)
	}
	top := min(3, len(ranked))
	copyFirst := false
	for _, n := range ranked[:top] {
		if !strings.Contains(n.Path[0], "sys_pread64") {
			t.Errorf("4 KiB vs 64 KiB: %s ranked among the first %d, not on the read path", strings.Join(n.Path, ";"), top)
		}
		if copyFns[reports.CanonicalName(n.Path[len(n.Path)-1])] {
			copyFirst = true
		}
	}
	// Where the 64 KiB hunt found the copy where the 4 KiB one saw
	// nothing to time (a context of stack samples, say, under a read_iter
	// whose exclusive time then shrank), the diff lists it as added: it
	// counts where it is among the first three added, with a tenth of the
	// new run's time or more.
	for _, u := range c.Added[:min(3, len(c.Added))] {
		if u.InclShare >= 0.1 && strings.Contains(u.Path[0], "sys_pread64") && copyFns[reports.CanonicalName(u.Path[len(u.Path)-1])] {
			t.Logf("added: %s, %.1f%% of the new run's time", strings.Join(u.Path, ";"), 100*u.InclShare)
			copyFirst = true
		}
	}
	if !copyFirst {
		t.Errorf("4 KiB vs 64 KiB: %d significant; want a function holding the copy to user space among the first %d, or among the first 3 added", c.Significant, top)
	}
}
