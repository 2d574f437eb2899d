//go:build vm

package features

import (
	"strings"
	"testing"
)

// TestDebianKernel checks the probes in the test VM, which boots Debian's
// stock kernels (6.1, 6.12) with no lockdown: every BPF backend and both
// text readers work there. (splice needs kernel headers in the guest; its
// reason is checked to name them.)
func TestDebianKernel(t *testing.T) {
	for _, c := range Probe().Capabilities {
		switch c.Name {
		case "splice":
			// The guest has no kernel headers and no built module
			// named: the reason must say so.
			if !c.Available && !strings.Contains(c.Reason, "no kernel headers") {
				t.Errorf("splice is unavailable for another reason than the missing headers: %s", c.Reason)
			}
			t.Logf("splice: available %v %s", c.Available, c.Reason)
		default:
			if !c.Available {
				t.Errorf("%s is unavailable on a stock Debian kernel: %s", c.Name, c.Reason)
			}
		}
	}
	if s := ReadSystem(); s.Lockdown != "none" || !s.BTF || !s.KallsymsVisible {
		t.Errorf("system %+v: want lockdown none, BTF, visible kallsyms", s)
	}
}

// TestQEMUTCGInVM: the test VM is QEMU's TCG (internal/vmtest boots it
// with -accel tcg), so the probe must say so there.
func TestQEMUTCGInVM(t *testing.T) {
	if !QEMUTCG() {
		_, b, c, d := cpuid(0x40000000, 0)
		t.Fatalf("QEMUTCG is false in the TCG test VM; hypervisor leaf says %q", cpuidString(b, c, d))
	}
}
