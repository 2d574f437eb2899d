package vmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// Tally counts the results of one go test run. Every test and subtest
// counts once, as go test -json reports it: a parent whose subtest fails
// fails too. Benchmarks count only where they fail or skip: test2json
// reports no pass for them.
type Tally struct {
	Passed, Failed, Skipped int
	// Skips are the tests that skipped, each with its reason.
	Skips []TestResult
	// Failures are the tests that failed, and the packages that failed
	// with no test failing (a build error, a guest that went down between
	// tests), with Test "".
	Failures []TestResult
}

// TestResult names a test that did not pass.
type TestResult struct {
	Package string
	Test    string
	// Reason is the last message the test logged (t.Skip's and t.Fatal's
	// are the last), its lines joined with " / "; "" where it logged none.
	Reason string
}

func (t *Tally) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", t.Passed, t.Failed, t.Skipped)
}

// Details lists the failures and then the skips, a line each ("FAIL
// splice TestVMChurn/kprobe: vm_test.go:30: ..."), with modulePath and a
// slash cut from the front of package paths.
func (t *Tally) Details(modulePath string) []string {
	var lines []string
	add := func(how string, rs []TestResult) {
		for _, r := range rs {
			line := how + " " + strings.TrimPrefix(r.Package, modulePath+"/")
			if r.Test != "" {
				line += " " + r.Test
			}
			if r.Reason != "" {
				line += ": " + r.Reason
			}
			lines = append(lines, line)
		}
	}
	add("FAIL", t.Failures)
	add("skip", t.Skips)
	return lines
}

// Relay is an io.Writer for the output of `go test -json` (cmd/test2json's
// events, one a line). It writes the text to its own writer as go test
// would have printed it and tallies the tests. Verbose, it writes every
// line, as go test -v does; otherwise the lines of the top-level tests
// that fail, of every benchmark, and of the packages themselves ("ok",
// "FAIL", build errors). Lines that are not events pass through as they
// are. Only one goroutine may write at a time.
type Relay struct {
	w       io.Writer
	verbose bool
	buf     []byte
	tally   Tally
	tests   map[testKey]*testState // started, not ended
	failed  map[string]bool        // packages with a failed test
}

type testKey struct{ pkg, test string }

type testState struct {
	out     []string // a top-level test's lines and its subtests', held back until it ends
	lastLog []string // the last message the test logged
}

// NewRelay returns a Relay that writes to w.
func NewRelay(w io.Writer, verbose bool) *Relay {
	return &Relay{w: w, verbose: verbose, tests: map[testKey]*testState{}, failed: map[string]bool{}}
}

// testEvent is what Relay reads of cmd/test2json's TestEvent, and of the
// build events go test -json writes since Go 1.24.
type testEvent struct {
	Action      string
	Package     string
	Test        string
	Output      string
	FailedBuild string
}

// Write takes whole lines; a last line without its newline waits for
// Flush.
func (r *Relay) Write(b []byte) (int, error) {
	r.buf = append(r.buf, b...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := r.buf[:i+1]
		r.buf = r.buf[i+1:]
		if err := r.line(line); err != nil {
			return len(b), err
		}
	}
}

// Flush handles what is left of a last line and ends the tests left
// running as their package would have: it returns the tally.
func (r *Relay) Flush() (*Tally, error) {
	if len(r.buf) > 0 {
		line := append(r.buf, '\n')
		r.buf = nil
		if err := r.line(line); err != nil {
			return &r.tally, err
		}
	}
	for _, pkg := range r.runningPackages() {
		if err := r.packageEnd(testEvent{Action: "fail", Package: pkg}); err != nil {
			return &r.tally, err
		}
	}
	return &r.tally, nil
}

func (r *Relay) line(line []byte) error {
	var e testEvent
	if line[0] != '{' || json.Unmarshal(line, &e) != nil || e.Action == "" {
		_, err := r.w.Write(line)
		return err
	}
	switch e.Action {
	case "build-output":
		return r.write(e.Output)
	case "output":
		return r.output(e)
	case "run":
		r.state(e.Package, e.Test)
	case "bench": // a benchmark's report of what it logged: it has ended
		delete(r.tests, testKey{e.Package, e.Test})
	case "pass", "fail", "skip":
		if e.Test == "" {
			return r.packageEnd(e)
		}
		return r.testEnd(e.Package, e.Test, e.Action, "")
	}
	return nil
}

func (r *Relay) write(s string) error {
	_, err := io.WriteString(r.w, s)
	return err
}

func (r *Relay) state(pkg, test string) *testState {
	k := testKey{pkg, test}
	st := r.tests[k]
	if st == nil {
		st = &testState{}
		r.tests[k] = st
	}
	return st
}

// logLine matches the first line of a message a test logged, as the
// testing package prints it: "    file_test.go:12: text".
var logLine = regexp.MustCompile(`^\s+[\w./-]+\.go:\d+: `)

func (r *Relay) output(e testEvent) error {
	if e.Test == "" {
		return r.write(e.Output)
	}
	r.state(e.Package, e.Test).log(e.Output)
	top, _, _ := strings.Cut(e.Test, "/")
	if r.verbose || isBenchmark(top) {
		return r.write(e.Output)
	}
	st := r.state(e.Package, top)
	st.out = append(st.out, e.Output)
	return nil
}

// log keeps the last message the test logged.
func (st *testState) log(line string) {
	line = strings.TrimRight(line, "\n")
	switch {
	case strings.HasPrefix(line, "=== ") || strings.HasPrefix(line, "--- "):
	case logLine.MatchString(line):
		st.lastLog = []string{strings.TrimSpace(line)}
	case len(st.lastLog) > 0 && strings.TrimSpace(line) != "" && strings.TrimLeft(line, " \t") != line:
		st.lastLog = append(st.lastLog, strings.TrimSpace(line))
	}
}

// testEnd counts a test that ended with action (pass, fail or skip); a
// top-level test that failed has its lines written.
func (r *Relay) testEnd(pkg, test, action, why string) error {
	k := testKey{pkg, test}
	st := r.state(pkg, test)
	delete(r.tests, k)
	res := TestResult{Package: pkg, Test: test, Reason: strings.Join(st.lastLog, " / ")}
	if why != "" {
		res.Reason = strings.TrimSuffix(why+": "+res.Reason, ": ")
	}
	switch action {
	case "pass":
		r.tally.Passed++
	case "skip":
		r.tally.Skipped++
		r.tally.Skips = append(r.tally.Skips, res)
	case "fail":
		r.tally.Failed++
		r.tally.Failures = append(r.tally.Failures, res)
		r.failed[pkg] = true
	}
	if action == "fail" && !strings.Contains(test, "/") {
		return r.write(strings.Join(st.out, ""))
	}
	return nil
}

// packageEnd ends the tests of a package that ended with e: those still
// running passed with it or failed with it (the test binary died in them);
// benchmarks, which report no pass, are dropped. A package that failed
// with no test failing counts as a failure of its own.
func (r *Relay) packageEnd(e testEvent) error {
	var left []string
	for k := range r.tests {
		switch {
		case k.pkg != e.Package:
		case isBenchmark(k.test):
			delete(r.tests, k)
		default:
			left = append(left, k.test)
		}
	}
	// Subtests end before their parents: the longer name first.
	sort.Slice(left, func(i, j int) bool { return left[i] > left[j] })
	why := ""
	if e.Action == "fail" {
		why = "did not finish"
	}
	for _, test := range left {
		if err := r.testEnd(e.Package, test, e.Action, why); err != nil {
			return err
		}
	}
	if e.Action == "fail" && !r.failed[e.Package] {
		reason := "failed outside its tests"
		if e.FailedBuild != "" {
			reason = "build failed: " + e.FailedBuild
		}
		r.tally.Failures = append(r.tally.Failures, TestResult{Package: e.Package, Reason: reason})
	}
	delete(r.failed, e.Package)
	return nil
}

func isBenchmark(test string) bool { return strings.HasPrefix(test, "Benchmark") }

// runningPackages lists the packages with tests still running.
func (r *Relay) runningPackages() []string {
	seen := map[string]bool{}
	var pkgs []string
	for k := range r.tests {
		if !seen[k.pkg] {
			seen[k.pkg] = true
			pkgs = append(pkgs, k.pkg)
		}
	}
	sort.Strings(pkgs)
	return pkgs
}
