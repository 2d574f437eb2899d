package features

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

func TestParseLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"none [integrity] confidentiality\n": "integrity",
		"[none] integrity confidentiality\n": "none",
		"garbage":                            "",
	} {
		if got := parseLockdown(in); got != want {
			t.Errorf("parseLockdown(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	m, err := parseConfig(strings.NewReader("CONFIG_KPROBES=y\n# CONFIG_MODULES is not set\nCONFIG_LSM=\"lockdown,bpf\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := &System{config: m}
	if v, ok := s.Config("CONFIG_KPROBES"); !ok || v != "y" {
		t.Errorf("CONFIG_KPROBES = %q, %v", v, ok)
	}
	if !s.configOff("CONFIG_MODULES") || s.configOff("CONFIG_KPROBES") {
		t.Error("configOff is wrong")
	}
	if v, _ := s.Config("CONFIG_LSM"); v != "lockdown,bpf" {
		t.Errorf("CONFIG_LSM = %q", v)
	}
	if (&System{}).configOff("CONFIG_MODULES") {
		t.Error("an unknown config reads as off")
	}
}

func TestUnavailableIs(t *testing.T) {
	err := error(&Unavailable{Feature: "kprobe", Reason: "CONFIG_KPROBES is not set", Err: os.ErrNotExist})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Error("errors.Is does not see through Unavailable")
	}
	if err.Error() != "kprobe unavailable: CONFIG_KPROBES is not set" {
		t.Errorf("Error() = %q", err.Error())
	}
}

// TestProbesAgreeWithKernel checks each probe against what the kernel's
// config and files say, on whatever kernel runs the test.
func TestProbesAgreeWithKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the probes need root")
	}
	s := ReadSystem()
	r := Probe()
	byName := map[string]Capability{}
	for _, c := range r.Capabilities {
		byName[c.Name] = c
		if !c.Available && c.Reason == "" {
			t.Errorf("%s is unavailable without a reason", c.Name)
		}
		t.Logf("%-10s available=%v %s", c.Name, c.Available, c.Reason)
	}
	if len(byName) != 7 {
		t.Fatalf("caps lists %d features, want 7", len(byName))
	}
	if s.configOff("CONFIG_KPROBES") {
		if c := byName["kprobe"]; c.Available || !strings.Contains(c.Reason, "CONFIG_KPROBES") {
			t.Errorf("CONFIG_KPROBES is off but kprobe says %+v", c)
		}
	}
	if _, err := os.Stat("/proc/modules"); err != nil {
		if c := byName["splice"]; c.Available || !strings.Contains(c.Reason, "CONFIG_MODULES") {
			t.Errorf("no /proc/modules but splice says %+v", c)
		}
	}
	if _, err := os.Stat("/proc/kcore"); err != nil {
		if c := byName["kcore"]; c.Available || !strings.Contains(c.Reason, "kcore") {
			t.Errorf("no /proc/kcore but kcore says %+v", c)
		}
	}
	// Tracepoints and sampling work on every kernel autoprof supports
	// when run as root outside lockdown confidentiality.
	if s.Lockdown != "confidentiality" {
		for _, name := range []string{"tracepoint", "sample", "bpf-read"} {
			if !byName[name].Available {
				t.Errorf("%s unavailable as root: %s", name, byName[name].Reason)
			}
		}
	}
	// Probes are cached: a second run returns the same answers.
	for i, c := range Probe().Capabilities {
		if c != r.Capabilities[i] {
			t.Errorf("second probe of %s differs: %+v vs %+v", c.Name, c, r.Capabilities[i])
		}
	}
}

// TestBackend: Backend answers what Probe reports for the same name.
func TestBackend(t *testing.T) {
	for _, c := range Probe().Capabilities {
		err := Backend(c.Name)
		if (err == nil) != c.Available {
			t.Errorf("%s: Backend says %v, Probe says available=%v", c.Name, err, c.Available)
		}
	}
	if err := Backend("magic"); err == nil {
		t.Error("an unknown name has no error")
	}
}
