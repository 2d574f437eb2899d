package splice

import (
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

func TestParseExperiment(t *testing.T) {
	yamlDoc := `
duration: 30s
interval: 500ms
target: {pids: [42]}
instruments:
  - spec: vfs_read:timer
    launch: 5s
    splashdown: 20s
  - spec: __x64_sys_read
  - spec: vfs_read+0x1a
`
	jsonDoc := `{"duration": 30, "interval": "500ms", "target": {"pids": [42]}, "instruments": [
	 {"spec": "vfs_read:timer", "launch": "5s", "splashdown": 20}, {"spec": "__x64_sys_read"}, {"spec": "vfs_read+0x1a"}]}`
	for name, doc := range map[string]string{"yaml": yamlDoc, "json": jsonDoc} {
		e, plan, err := ParseExperiment([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if time.Duration(e.Duration) != 30*time.Second || time.Duration(e.Interval) != 500*time.Millisecond || len(plan) != 3 {
			t.Fatalf("%s: %+v %+v", name, e, plan)
		}
		// sorted by launch: the two at 0 first, in file order
		if plan[0].Spec.String() != "__x64_sys_read:timer" || plan[1].Spec.String() != "vfs_read+0x1a:entry" || plan[2].Spec.Kind != instrument.Timer {
			t.Errorf("%s: plan %+v", name, plan)
		}
		if p := plan[2]; p.Launch != 5*time.Second || p.Splashdown != 20*time.Second || p.Spec.Target.PIDs[0] != 42 {
			t.Errorf("%s: timed instrument %+v", name, p)
		}
	}
}

func TestParseExperimentErrors(t *testing.T) {
	for doc, want := range map[string]string{
		`instruments: []`: "no instruments",
		`{"instruments": [{"spec": "vfs_read", "launch": "5s", "splashdown": "2s"}]}`: "not after launch",
		`{"instruments": [{"spec": "vfs_read+zz"}]}`:                                  "not a number",
		`{"instruments": [{"spec": "f"}], "bogus": 1}`:                                "unknown field",
		`{"duration": "1s", "instruments": [{"spec": "f", "launch": "2s"}]}`:          "within the duration",
		`{"instruments": [{"spec": "f", "launch": "soon"}]}`:                          "duration",
		`: : :`: "experiment",
		`{"max_overhead_pct": -3, "instruments": [{"spec": "f"}]}`: "max_overhead_pct -3",
	} {
		_, _, err := ParseExperiment([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", doc, err, want)
		}
	}
}

func FuzzParseExperiment(f *testing.F) {
	f.Add([]byte(`{"instruments": [{"spec": "vfs_read:timer", "launch": "1s"}]}`))
	f.Add([]byte("instruments:\n  - spec: a+0x10:targets\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, plan, err := ParseExperiment(b)
		if err != nil {
			return
		}
		for _, p := range plan {
			if p.Splashdown != 0 && p.Splashdown <= p.Launch {
				t.Fatalf("accepted splashdown before launch: %+v", p)
			}
			if _, err := instrument.ParseSpec(p.Spec.String()); err != nil {
				t.Fatalf("spec %s does not round-trip: %v", p.Spec, err)
			}
		}
	})
}
