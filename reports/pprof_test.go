package reports

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/search"
)

// writeProfile converts run, checks the profile, writes it to a file in a
// temporary directory, and returns the parsed file and its path.
func writeProfile(t *testing.T, run *search.Run) (*profile.Profile, string) {
	t.Helper()
	p, err := Profile(run)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckValid(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), ProfileFile)
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := profile.ParseData(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := back.CheckValid(); err != nil {
		t.Fatal(err)
	}
	return back, path
}

func TestProfileShape(t *testing.T) {
	run := fixture(t, "fsync-6.1")
	p, _ := writeProfile(t, run)
	// One sample per node of the last window, in order; the withdrawn
	// node has none.
	var nodes []search.Node
	for _, n := range run.Nodes {
		if n.InWindow {
			nodes = append(nodes, n)
		}
	}
	if len(p.Sample) != len(nodes) || len(nodes) != len(run.Nodes)-1 {
		t.Fatalf("%d samples for %d nodes in the window, %d in all", len(p.Sample), len(nodes), len(run.Nodes))
	}
	var types []string
	for _, st := range p.SampleType {
		types = append(types, st.Type+"/"+st.Unit)
	}
	if got := strings.Join(types, " "); got != "calls/count wall/nanoseconds cpu/nanoseconds offcpu/nanoseconds samples/count" {
		t.Errorf("sample types %s", got)
	}
	files := map[string]bool{}
	for _, m := range p.Mapping {
		files[m.File] = true
	}
	for _, f := range []string{KernelMapping, "[ext4]", "[jbd2]"} {
		if !files[f] {
			t.Errorf("no mapping %s among %v", f, files)
		}
	}
	for i, s := range p.Sample {
		n := nodes[i]
		if len(s.Location) != len(n.Path) {
			t.Fatalf("node %d: stack of %d for a path of %d", i, len(s.Location), len(n.Path))
		}
		leaf := s.Location[0]
		_, bare := splitModule(n.Point.Func)
		if got := leaf.Line[0].Function.Name; got != pointName(bare, n.Point.Offset) {
			t.Errorf("node %d: leaf %q, want %q", i, got, n.Point)
		}
		if mod, _ := splitModule(n.Point.Func); mod != "" && leaf.Mapping.File != "["+mod+"]" {
			t.Errorf("node %d: mapping %s for module %s", i, leaf.Mapping.File, mod)
		}
		if s.Value[1] != int64(n.ExclNs) || s.Value[2]+s.Value[3] != s.Value[1] || s.Value[0] != int64(n.Calls) {
			t.Errorf("node %d: values %v for excl %d calls %d", i, s.Value, n.ExclNs, n.Calls)
		}
		if s.Label["backend"][0] != n.Backend || !strings.Contains(s.Label["confidence"][0], "95% CI") {
			t.Errorf("node %d: labels %v", i, s.Label)
		}
	}
	// A block-level node is named func+0xoff.
	found := false
	for _, f := range p.Function {
		found = found || f.Name == "ext4_writepages+0x2c4"
	}
	if !found {
		t.Error("no function ext4_writepages+0x2c4 for the block node")
	}
}

// TestProfileCumulativeIsInclusive checks that pprof's cumulative value of
// a calling context (the sum over samples whose stack ends with that
// context's path) is the node's inclusive time.
func TestProfileCumulativeIsInclusive(t *testing.T) {
	for _, name := range []string{"read4k-6.1", "fsync-6.1"} {
		run := fixture(t, name)
		p, _ := writeProfile(t, run)
		for i, n := range run.Nodes {
			if !n.InWindow {
				continue
			}
			var cum int64
			for _, s := range p.Sample {
				if hasSuffixPath(s, n.Path) {
					cum += s.Value[1]
				}
			}
			if uint64(cum) != n.InclNs {
				t.Errorf("%s node %d %s: cum %d, incl %d", name, i, n.Point, cum, n.InclNs)
			}
		}
	}
}

// hasSuffixPath reports whether the stack's outermost frames are path.
func hasSuffixPath(s *profile.Sample, path []string) bool {
	if len(s.Location) < len(path) {
		return false
	}
	for i, want := range path {
		loc := s.Location[len(s.Location)-1-i]
		mod, bare := splitModule(want)
		if mod != "" {
			want = bare
		}
		if loc.Line[0].Function.Name != want {
			return false
		}
	}
	return true
}

// TestPprofTool runs go tool pprof on a written profile: -top must list
// functions by exclusive time with the exact values, -top -cum must put the
// root first with the whole time, and -tree and -traces must show the
// calling contexts.
func TestPprofTool(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool pprof: no go command in PATH")
	}
	run := fixture(t, "read4k-6.1")
	_, path := writeProfile(t, run)
	pprof := func(args ...string) string {
		out, err := exec.Command(goTool, append([]string{"tool", "pprof"}, append(args, path)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool pprof %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	top := pprof("-top", "-unit=ns", "-nodecount=3")
	rows := topRows(top)
	if len(rows) < 3 || rows[0][1] != "copy_user_enhanced_fast_string" || rows[1][1] != "filemap_read" {
		t.Fatalf("-top order:\n%s", top)
	}
	if rows[0][0] != itoa64(run.Nodes[12].ExclNs)+"ns" {
		t.Errorf("-top flat of %s: %s, want %dns", rows[0][1], rows[0][0], run.Nodes[12].ExclNs)
	}
	cum := topRows(pprof("-top", "-cum", "-unit=ns", "-nodecount=2"))
	if len(cum) < 1 || cum[0][1] != "__x64_sys_read" || cum[0][2] != itoa64(run.Nodes[0].InclNs)+"ns" {
		t.Errorf("-top -cum: %v, want __x64_sys_read with %dns", cum, run.Nodes[0].InclNs)
	}
	// Block counters have calls but no time: look for them by calls.
	tree := pprof("-tree", "-sample_index=calls", "-nodecount=40")
	for _, want := range []string{"copy_page_to_iter", "ext4_file_read_iter", "filemap_read+0x1a6"} {
		if !strings.Contains(tree, want) {
			t.Errorf("-tree lacks %s:\n%s", want, tree)
		}
	}
	traces := pprof("-traces")
	if !strings.Contains(traces, "backend:  tracepoint") || strings.Count(traces, "-----------+") < len(run.Nodes)-1 {
		t.Errorf("-traces:\n%s", traces)
	}
	calls := topRows(pprof("-top", "-sample_index=calls", "-cum", "-nodecount=1"))
	if len(calls) < 1 || calls[0][1] != "__x64_sys_read" {
		t.Errorf("-sample_index=calls -cum: %v", calls)
	}
}

var topRow = regexp.MustCompile(`^\s*(\S+)\s+\S+%\s+\S+%\s+(\S+)\s+\S+%\s+(\S+)`)

// topRows returns [flat, function, cum] of each row of pprof -top.
func topRows(out string) [][3]string {
	var rows [][3]string
	for _, l := range strings.Split(out, "\n") {
		if m := topRow.FindStringSubmatch(l); m != nil {
			rows = append(rows, [3]string{m[1], m[3], m[2]})
		}
	}
	return rows
}

func itoa64(v uint64) string { return strconv.FormatUint(v, 10) }
