package reports

import (
	"bytes"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/reports/internal/synth"
	"github.com/autoprof/autoprof/search"
)

// TestAnomalies: an underflowed time (a hunt bug seen in a VM run) is
// reported in plain words and kept out of the profile.
func TestAnomalies(t *testing.T) {
	run := synth.Generate(synth.Read(4096, "6.1", 1))
	run.Nodes[0].InclNs = 1<<64 - 3918039
	run.Nodes[0].ExclNs = 1<<64 - 3918039
	run.Nodes[2].ExclOffCPUNs = run.Nodes[2].ExclNs + 1
	var b strings.Builder
	if err := WriteText(&b, run); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"__x64_sys_read: a time is negative as a signed number (-3918039", "vfs_read: off-CPU time"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	p, err := Profile(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Sample {
		for _, v := range s.Value {
			if v < 0 {
				t.Fatalf("negative value %d in the profile", v)
			}
		}
	}
	if got := len(Anomalies(synth.Generate(synth.Fsync(1)))); got != 0 {
		t.Errorf("%d anomalies in a consistent run", got)
	}
}

// TestEstimatesApart: in a host hunt (syscall roots, everything below known
// only from stack samples), text and HTML keep estimates apart from exact
// values: the estimated contexts' values are in the estimated columns
// only, a finding of one says it is estimated, and nothing calls the
// sampled tree exact.
func TestEstimatesApart(t *testing.T) {
	run, err := Load(filepath.Join("testdata", "host-dd4k-a"))
	if err != nil {
		t.Fatal(err)
	}
	var txt, page bytes.Buffer
	if err := WriteText(&txt, run); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&page, run); err != nil {
		t.Fatal(err)
	}
	text := txt.String()
	// The read_zero finding, and its node's samples: what the text must
	// say of them comes from the run, not from this test.
	var f *search.Finding
	for i := range run.Findings {
		if p := run.Findings[i].Path; p[len(p)-1] == "read_zero" {
			f = &run.Findings[i]
		}
	}
	if f == nil {
		t.Fatal("the host run has no read_zero finding")
	}
	n := run.Nodes[f.Node]
	if !estimated(&n) || n.Samples == 0 {
		t.Fatalf("read_zero's node is not a sampled estimate: source %q, %d samples", n.Source, n.Samples)
	}
	if want := "time     estimated from stack samples: exclusive " + pct(f.ExclShare.Mean) + " of the target's time"; !strings.Contains(text, want) {
		t.Errorf("the read_zero finding is not said to be estimated (want %q):\n%s", want, text)
	}
	samples := inclusiveSamples(run)[n.ID]
	row := regexp.MustCompile(`(?m)^\s+—\s+—\s+—\s+—\s+—\s+\|\s+` + regexp.QuoteMeta(count(samples)) + `\s+\S+%\s+\S+%\s+read_zero \(sampled\)$`)
	if !row.MatchString(text) {
		t.Errorf("read_zero's row has exact values or no estimates (want %d samples):\n%s", samples, text)
	}
	for _, wrong := range []string{"Exact inclusive wall time", "values are exact"} {
		if strings.Contains(page.String(), wrong) || strings.Contains(text, wrong) {
			t.Errorf("a report calls estimates exact: %q", wrong)
		}
	}
	if !strings.Contains(page.String(), "estimated (stack samples)") || !strings.Contains(page.String(), "Stack samples (estimates") {
		t.Error("report.html does not mark the estimates")
	}
}

// TestSlowdownFirstScreen: the report's first lines give the workload's
// slowdown under the hunt against the census's rate and, where the hunt
// estimated it, against the rate with no instrument in; the figures are
// the run's own.
func TestSlowdownFirstScreen(t *testing.T) {
	run, err := Load(filepath.Join("testdata", "host-dd4k-a"))
	if err != nil {
		t.Fatal(err)
	}
	o := &run.Overhead
	o.BaseOpsPerSec, o.HuntOpsPerSec, o.SlowdownPct = 400000, 300000, 25
	o.BareOpsPerSec, o.BareSlowdownPct = 500000, 40
	var txt bytes.Buffer
	if err := WriteText(&txt, run); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(txt.String(), "\n", 12)
	want := "the workload ran 300000 operations/s under the hunt, 400000/s with its syscalls timed only (Deep Start): 25.0% slower; about 500000/s with no instrument in (the syscall timers' calibrated cost taken out): 40.0% slower"
	if !slices.Contains(lines, want) {
		t.Errorf("no slowdown line on the first screen; want %q in:\n%s", want, strings.Join(lines, "\n"))
	}
	o.BareOpsPerSec = 0
	txt.Reset()
	if err := WriteText(&txt, run); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(txt.String(), "no instrument in") {
		t.Error("a run without a bare rate claims one")
	}
}

// TestControllerLoop: the summary line of autoprof's own cost gives what a
// round's own work took, phase by phase, from the run's loop times; a run
// without them keeps the line as it was.
func TestControllerLoop(t *testing.T) {
	o := search.Overhead{ControllerPct: 5.5, StartupWallSec: 3.9, StartupCPUSec: 3.1}
	plain := Controller(o)
	if plain != "autoprof itself: 5.50% of CPU over the rounds; start-up to the first round 3.9s (3.1s of CPU)" {
		t.Errorf("without loop times: %q", plain)
	}
	o.Loop = &search.LoopPhases{Rounds: 10, ReadSec: 0.12, StatisticsSec: 0.03, ProgressSec: 0.5, DecisionsSec: 1.2}
	want := "autoprof itself: 5.50% of CPU over the rounds (a round's own work: reading 12ms, statistics 3ms, progress 50ms, decisions 120ms); start-up to the first round 3.9s (3.1s of CPU)"
	if got := Controller(o); got != want {
		t.Errorf("with loop times:\n got %q\nwant %q", got, want)
	}
}
