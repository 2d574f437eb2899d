//go:build vm

package live

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/splice"
)

// realCase is a real workload of apload, whose truth is a stack-sampling
// profile of the same workload taken without any instrument.
type realCase struct {
	name string
	args []string // apload's arguments, run until killed
}

var realCases = []realCase{
	{"stat", []string{"stat", "24", "1000000000"}},
	{"find", []string{"find", "3", "4", "1000000000"}},
	{"tar", []string{"tar", "3", "3", "1000000000"}},
	{"pingpong", []string{"pingpong", "1000000000"}},
	{"tcp", []string{"tcp", "1000000000"}},
}

// realCISubset is what TestVMRealTruth hunts (-short: the first);
// `make truth` hunts them all.
var realCISubset = []string{"stat", "find"}

// realSampleFor is how long the workload is sampled without instruments.
const realSampleFor = 6 * time.Second

// realScore is how a hunt of a real workload agrees with the samples.
type realScore struct {
	name, first, sampledTop  string
	firstShare, sampledShare float64 // the first finding's share, hunted and sampled
	topShare                 float64 // the sampled share of the node the samples rank first
	// named: the first finding is the samples' first context, or one
	// within 5 points of it; agree: named, and its share within 5 points
	// of the samples'.
	named, agree bool
	samples      uint64
}

// huntReal runs one real workload: stack samples of it without any
// instrument, then a hunt as a user would, and attributes the samples to
// the hunt's calling-context tree (search.Run.ContextOf): the first
// finding must be the node the samples rank first, or one the samples
// put within 5 points of it, and its share within 5 points of its
// sampled share.
func huntReal(t testing.TB, c realCase) realScore {
	dir := t.TempDir()
	bin, err := filepath.Abs(apload)
	if err != nil {
		t.Fatal(err)
	}
	load := exec.Command(bin, c.args...)
	load.Dir, load.Stderr = dir, os.Stderr
	done, stop := startLoad(t, load)
	defer stop()
	time.Sleep(500 * time.Millisecond)
	target := instrument.Target{PIDs: []int{load.Process.Pid}}
	stacks, sampledNs := sampleQuietly(t, target)
	run, err := Hunt(context.Background(), Options{Settings: search.Settings{Target: target, Duration: 100 * time.Second}, Done: done})
	if err != nil {
		t.Fatal(err)
	}
	logRun(t, run)
	if len(run.Findings) == 0 {
		t.Fatalf("%s: no findings", c.name)
	}
	byNode := map[int]float64{}
	var n uint64
	for _, s := range stacks {
		if i := run.ContextOf(s.Frames); i >= 0 {
			byNode[i] += s.WeightNs / sampledNs
		}
		n += s.Count
	}
	top := -1
	for i, w := range byNode {
		if top < 0 || w > byNode[top] || w == byNode[top] && i < top {
			top = i
		}
	}
	f := run.Findings[0]
	sc := realScore{name: c.name, first: strings.Join(f.Path, ";"), firstShare: f.ExclShare.Mean - f.InstrumentShare, sampledShare: byNode[f.Node], samples: n}
	if top >= 0 {
		sc.sampledTop, sc.topShare = strings.Join(run.Nodes[top].Path, ";"), byNode[top]
	}
	sc.named = f.Node == top || sc.sampledShare >= sc.topShare-0.05
	sc.agree = sc.named && math.Abs(sc.firstShare-sc.sampledShare) <= 0.05
	if !sc.agree {
		logTree(t, run)
		for i, w := range byNode {
			if w >= 0.01 {
				t.Logf("sampled: node %d %.1f%%", i, 100*w)
			}
		}
	}
	t.Logf("%s: first finding %.1f%% (sampled %.1f%%) %s; the samples' first %.1f%% %s; %d samples",
		c.name, 100*sc.firstShare, 100*sc.sampledShare, sc.first, 100*sc.topShare, sc.sampledTop, n)
	return sc
}

// sampleQuietly takes stack samples of the target for realSampleFor with
// no instrument in the kernel, and returns them with the target's time
// over the period.
func sampleQuietly(t testing.TB, target instrument.Target) ([]search.Stack, float64) {
	sess, err := splice.Open(context.Background(), splice.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	s, err := OpenSampler(context.Background(), sess, SamplerOptions{Target: target})
	if err != nil {
		t.Fatalf("stack sampler: %v", err)
	}
	defer s.Close()
	stacks, err := s.Sample(context.Background(), target, realSampleFor)
	if err != nil {
		t.Fatal(err)
	}
	threads, err := (Population{Target: target}).Threads()
	if err != nil {
		t.Fatal(err)
	}
	return stacks, float64(realSampleFor) * float64(threads)
}

// TestVMRealTruth hunts real workloads (see realCISubset) and requires
// the first finding to name the first context of a stack-sampling profile
// of the same workload taken without instruments (or one within 5 points
// of it). Its share within 5 points of the samples' is the benchmark's
// bar (BenchmarkVMRealTruth's "agree"); a miss is logged: 6.1's stat
// storm named memset_erms first, at 25.2% against the samples' 35.8%.
func TestVMRealTruth(t *testing.T) {
	subset := realCISubset
	if testing.Short() {
		subset = subset[:1]
	}
	for _, c := range realCases {
		if !containsString(subset, c.name) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			sc := huntReal(t, c)
			switch {
			case !sc.named:
				t.Errorf("the first finding %s (%.1f%%, sampled %.1f%%) is not the samples' first %s (%.1f%%)",
					sc.first, 100*sc.firstShare, 100*sc.sampledShare, sc.sampledTop, 100*sc.topShare)
			case !sc.agree:
				t.Logf("below the truth bar: the first finding's share %.1f%% is more than 5 points from the samples' %.1f%%", 100*sc.firstShare, 100*sc.sampledShare)
			}
		})
	}
}

// BenchmarkVMRealTruth is the real-workload half of `make truth`.
func BenchmarkVMRealTruth(b *testing.B) {
	for range b.N {
		var rows []string
		right := 0
		for _, c := range realCases {
			sc := huntReal(b, c)
			if sc.agree {
				right++
			}
			rows = append(rows, fmt.Sprintf("%-9s %-6v %6.1f %6.1f %6.1f %7d  %s / %s", sc.name, sc.agree, 100*sc.firstShare, 100*sc.sampledShare,
				100*sc.topShare, sc.samples, lastElem(sc.first), lastElem(sc.sampledTop)))
		}
		fmt.Printf("kernel %s: real workloads against samples taken without instruments\n%-9s %-6s %6s %6s %6s %7s  %s\n%s\nworkloads %d, first finding agrees %d\n",
			release(), "workload", "agree", "first", "sampl", "top", "samples", "first finding / samples' first", strings.Join(rows, "\n"), len(realCases), right)
	}
}

func lastElem(path string) string {
	if i := strings.LastIndexByte(path, ';'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
