package features

import (
	"os"
	"strings"
	"testing"
)

// TestQEMUTCGAgreesWithCpuinfo: where /proc/cpuinfo has no "hypervisor"
// flag, CPUID's hypervisor leaf cannot be TCG's; where it says QEMU's TCG
// model name, the leaf must be TCG's.
func TestQEMUTCGAgreesWithCpuinfo(t *testing.T) {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	info := string(data)
	switch {
	case strings.Contains(info, "QEMU TCG CPU") && !QEMUTCG():
		t.Error("cpuinfo names QEMU's TCG CPU, QEMUTCG says no")
	case !strings.Contains(info, " hypervisor") && QEMUTCG():
		t.Error("no hypervisor flag in cpuinfo, QEMUTCG says TCG")
	}
	_, b, c, d := cpuid(0x40000000, 0)
	t.Logf("hypervisor leaf %q, QEMUTCG %v", cpuidString(b, c, d), QEMUTCG())
}

func TestCpuidString(t *testing.T) {
	// "TCGT" "CGTC" "GTCG" as QEMU's target/i386/cpu.c puts them in EBX, ECX, EDX.
	if got := cpuidString(0x54474354, 0x43544743, 0x47435447); got != tcgSignature {
		t.Errorf("cpuidString = %q, want %q", got, tcgSignature)
	}
}
