package measure

import (
	"bufio"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestConstants compares the numeric #defines of measure.bpf.c with their
// Go mirrors, and fails on a K_, F_ or M_ constant that has none.
func TestConstants(t *testing.T) {
	f, err := os.Open("measure.bpf.c")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := cDefines(f)
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

var defineLine = regexp.MustCompile(`^#define\s+([A-Z][A-Z0-9_]*)\s+(\d+)\s*(//.*)?$`)

// cDefines returns the #defines of C source whose value is a decimal
// number.
func cDefines(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := defineLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		v, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			return nil, err
		}
		out[m[1]] = v
	}
	return out, sc.Err()
}

func TestCDefines(t *testing.T) {
	src := "#define A 1\n#define B_2 41 // comment\n#define C (1ULL << 63)\n#define lower 3\n  #define D 7\n#define E 0x10\n"
	got, err := cDefines(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"A": 1, "B_2": 41, "D": 7}
	if len(got) != len(want) {
		t.Fatalf("cDefines = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}
