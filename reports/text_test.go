package reports

import (
	"strings"
	"testing"

	"github.com/autoprof/autoprof/reports/internal/synth"
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
