package bpfmaps

import (
	"testing"

	"github.com/autoprof/autoprof/internal/cdefines"
)

// TestTargetFlags holds the filter flags to kmod/include/target.h.
func TestTargetFlags(t *testing.T) {
	c, err := cdefines.File("../../kmod/include/target.h")
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]uint64{"F_PIDS": filterPIDs, "F_CGROUP": filterCgroup} {
		if got, ok := c[name]; !ok || got != v {
			t.Errorf("%s: target.h has %d (defined %v), Go has %d", name, got, ok, v)
		}
	}
}
