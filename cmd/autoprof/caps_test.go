package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/features"
)

// TestCapsCommand runs autoprof caps and caps --json on the running
// kernel: the table and the JSON list the same seven backends and text
// readers, each row says yes with a use or no with a reason, and each
// agrees with the probe that decides it (HaveX).
func TestCapsCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the probes need root")
	}
	code, out, errs := runCmd("caps")
	if code != 0 {
		t.Fatalf("caps: exit %d: %s", code, errs)
	}
	t.Logf("\n%s", out)
	code, js, errs := runCmd("caps", "--json")
	if code != 0 {
		t.Fatalf("caps --json: exit %d: %s", code, errs)
	}
	var r features.Report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("caps --json: %v", err)
	}
	have := map[string]func() error{
		"fentry": features.HaveFentry, "kprobe": features.HaveKprobe, "splice": features.HaveSplice,
		"tracepoint": features.HaveTracepoint, "sample": features.HaveSample,
		"kcore": features.HaveKcore, "bpf-read": features.HaveBPFRead,
	}
	if len(r.Capabilities) != len(have) {
		t.Errorf("caps --json lists %d capabilities, want %d", len(r.Capabilities), len(have))
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && have[f[0]] != nil {
			rows[f[0]] = line
		}
	}
	for _, c := range r.Capabilities {
		probe := have[c.Name]
		if probe == nil {
			t.Errorf("unknown capability %q", c.Name)
			continue
		}
		if err := probe(); (err == nil) != c.Available {
			t.Errorf("%s: caps says available %v, the probe says %v", c.Name, c.Available, err)
		}
		status, note := "yes", c.Use
		if !c.Available {
			status, note = "no", c.Reason
		}
		if note == "" || !strings.Contains(rows[c.Name], " "+status+" ") || !strings.HasSuffix(rows[c.Name], note) {
			t.Errorf("%s: table row %q, want %s and %q", c.Name, rows[c.Name], status, note)
		}
	}
	if !strings.HasPrefix(out, "kernel "+r.System.Release+", lockdown ") {
		t.Errorf("first line does not give the kernel release %s and lockdown: %.100q", r.System.Release, out)
	}
}
