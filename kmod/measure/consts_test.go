//go:build !vm

package measure

import (
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/cdefines"
)

// TestConstants compares the numeric #defines of measure.bpf.c with their
// Go mirrors, and fails on a K_, F_ or M_ constant that has none.
func TestConstants(t *testing.T) {
	c, err := cdefines.File("measure.bpf.c")
	if err != nil {
		t.Fatal(err)
	}
	mirrors := map[string]uint64{
		"MAX_DEPTH": MaxDepth,
		"HIST":      HistBuckets,
		"K_COUNT":   uint64(Count), "K_EXIT": uint64(Exit), "K_TIMER": uint64(Timer),
		"K_TARGETS": uint64(Targets), "K_SYSCALL": uint64(Syscall),
		"F_PIDS": filterPIDs, "F_CGROUP": filterCgroup,
		"M_RECURSION": missRecursion, "M_DEPTH": missDepth, "M_MAPFULL": missMapFull,
		"M_UNMATCHED": missUnmatched, "M_N": missN,
	}
	for name, goValue := range mirrors {
		v, ok := c[name]
		switch {
		case !ok:
			t.Errorf("%s: not defined in measure.bpf.c", name)
		case v != goValue:
			t.Errorf("%s: measure.bpf.c has %d, Go has %d", name, v, goValue)
		}
	}
	for name := range c {
		_, mirrored := mirrors[name]
		if !mirrored && (strings.HasPrefix(name, "K_") || strings.HasPrefix(name, "F_") || strings.HasPrefix(name, "M_")) {
			t.Errorf("%s: defined in measure.bpf.c with no Go mirror checked here", name)
		}
	}
}
