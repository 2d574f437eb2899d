package vmtest

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// relayRun relays testdata/gotest/run.json (see testdata/README.md),
// chunk bytes at a time.
func relayRun(t *testing.T, verbose bool, chunk int) (*Tally, string) {
	t.Helper()
	in, err := os.ReadFile("testdata/gotest/run.json")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r := NewRelay(&out, verbose)
	for len(in) > 0 {
		n := min(chunk, len(in))
		if _, err := r.Write(in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	tally, err := r.Flush()
	if err != nil {
		t.Fatal(err)
	}
	return tally, out.String()
}

// TestRelayTally: the counts and the reasons of a recorded run. The
// benchmark is not counted; the test the binary died in failed; the
// package that did not build failed with no test.
func TestRelayTally(t *testing.T) {
	const pkg = "example.com/gotest/"
	want := &Tally{
		Passed: 6, Failed: 2, Skipped: 3,
		Skips: []TestResult{
			{pkg + "mixed", "TestSkips", "mixed_test.go:14: kprobe unavailable: CONFIG_KPROBES is not set"},
			{pkg + "mixed", "TestSkipsMultiline", "mixed_test.go:18: first line of the reason / second line"},
			{pkg + "mixed", "TestSubtests/kprobe", "mixed_test.go:26: no kprobe here"},
		},
		Failures: []TestResult{
			{pkg + "mixed", "TestFails", "mixed_test.go:9: opening a fentry session: invalid argument"},
			{pkg + "crash", "TestCrash", "did not finish: crash_test.go:14: inserting the timers"},
			{pkg + "broken", "", "build failed: example.com/gotest/broken [example.com/gotest/broken.test]"},
		},
	}
	for _, verbose := range []bool{false, true} {
		for _, chunk := range []int{1, 100, 1 << 20} {
			got, _ := relayRun(t, verbose, chunk)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("verbose %v, chunks of %d: tally\n%+v\nwant\n%+v", verbose, chunk, got, want)
			}
		}
	}
	if got, want := want.String(), "6 passed, 2 failed, 3 skipped"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	wantLines := []string{
		"FAIL mixed TestFails: mixed_test.go:9: opening a fentry session: invalid argument",
		"FAIL crash TestCrash: did not finish: crash_test.go:14: inserting the timers",
		"FAIL broken: build failed: example.com/gotest/broken [example.com/gotest/broken.test]",
		"skip mixed TestSkips: mixed_test.go:14: kprobe unavailable: CONFIG_KPROBES is not set",
		"skip mixed TestSkipsMultiline: mixed_test.go:18: first line of the reason / second line",
		"skip mixed TestSubtests/kprobe: mixed_test.go:26: no kprobe here",
	}
	if got := want.Details("example.com/gotest"); !reflect.DeepEqual(got, wantLines) {
		t.Errorf("Details:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
}

// TestRelayOutput: without -v, the lines of the failed tests, the
// benchmarks and the packages; with -v, every line.
func TestRelayOutput(t *testing.T) {
	always := []string{
		"--- FAIL: TestFails (0.00s)\n",
		"    mixed_test.go:9: opening a fentry session: invalid argument\n",
		"    crash_test.go:14: inserting the timers\nvmtest: kernel 6.1.0-57-amd64: kernel panic\n",
		"broken/broken_test.go:5:34: undefined: undefined\n",
		"BenchmarkNop-2   \t       1\t",
		"ok  \texample.com/gotest/pass\t",
		"FAIL\texample.com/gotest/mixed\t",
	}
	verboseOnly := []string{
		"pass_test.go:5: quiet unless verbose\n",
		"--- SKIP: TestSkips (0.00s)\n",
		"    mixed_test.go:28: fentry runs\n",
		"--- PASS: TestBefore (0.00s)\n",
	}
	for _, verbose := range []bool{false, true} {
		_, out := relayRun(t, verbose, 4096)
		for _, w := range always {
			if !strings.Contains(out, w) {
				t.Errorf("verbose %v: the output lacks %q", verbose, w)
			}
		}
		for _, w := range verboseOnly {
			if strings.Contains(out, w) != verbose {
				t.Errorf("verbose %v: the output holds %q: %v", verbose, w, !verbose)
			}
		}
	}
}

// TestRelayPassThrough: lines that are not events, and a last line
// without its newline, come out as they went in; a test left running when
// the input ends failed, and its lines come out then.
func TestRelayPassThrough(t *testing.T) {
	var out strings.Builder
	r := NewRelay(&out, false)
	in := "go: downloading example.com/x v1.0.0\n{not json\n" +
		`{"Action":"run","Package":"p","Test":"TestHang"}` + "\n" +
		`{"Action":"output","Package":"p","Test":"TestHang","Output":"    hang_test.go:3: waiting\n"}` + "\n" +
		"qemu-system-x86_64: terminating on signal 15"
	if _, err := r.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	tally, err := r.Flush()
	if err != nil {
		t.Fatal(err)
	}
	want := "go: downloading example.com/x v1.0.0\n{not json\nqemu-system-x86_64: terminating on signal 15\n    hang_test.go:3: waiting\n"
	if got := out.String(); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	wantTally := &Tally{Failed: 1, Failures: []TestResult{{"p", "TestHang", "did not finish: hang_test.go:3: waiting"}}}
	if !reflect.DeepEqual(tally, wantTally) {
		t.Errorf("tally %+v, want %+v", tally, wantTally)
	}
}
