package reports

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/internal/instrument"
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
	path := saveProfile(t, p)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	back, err := profile.ParseData(data)
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
	if got := strings.Join(types, " "); got != "wall/nanoseconds cpu/nanoseconds offcpu/nanoseconds sampled_wall/nanoseconds samples/count" {
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
		if s.Value[valWall] != int64(n.ExclNs) || s.Value[valCPU]+s.Value[valOffCPU] != s.Value[valWall] || s.NumLabel["calls"][0] != int64(n.Calls) {
			t.Errorf("node %d: values %v, calls %v for excl %d calls %d", i, s.Value, s.NumLabel["calls"], n.ExclNs, n.Calls)
		}
		if s.Value[valSampledWall] != 0 || s.Value[valSamples] != 0 || s.Label["values"][0] != "exact" {
			t.Errorf("node %d: a timed node with estimates: %v %v", i, s.Value, s.Label["values"])
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
					cum += s.Value[valWall]
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
// calling contexts; calls are a label, which -sample_index refuses, so
// that pprof never adds them up into cum.
func TestPprofTool(t *testing.T) {
	pprof := pprofTool(t)
	run := fixture(t, "read4k-6.1")
	_, path := writeProfile(t, run)
	top := pprof(path, "-top", "-unit=ns", "-nodecount=3")
	rows := topRows(top)
	if len(rows) < 3 || rows[0][1] != "copy_user_enhanced_fast_string" || rows[1][1] != "filemap_read" {
		t.Fatalf("-top order:\n%s", top)
	}
	if rows[0][0] != itoa64(run.Nodes[12].ExclNs)+"ns" {
		t.Errorf("-top flat of %s: %s, want %dns", rows[0][1], rows[0][0], run.Nodes[12].ExclNs)
	}
	cum := topRows(pprof(path, "-top", "-cum", "-unit=ns", "-nodecount=2"))
	if len(cum) < 1 || cum[0][1] != "__x64_sys_read" || cum[0][2] != itoa64(run.Nodes[0].InclNs)+"ns" {
		t.Errorf("-top -cum: %v, want __x64_sys_read with %dns", cum, run.Nodes[0].InclNs)
	}
	// Block counters have calls but no time: their samples, with the
	// calls label, are found by kind.
	blocks := pprof(path, "-traces", "-tagfocus=kind=block")
	if !strings.Contains(blocks, "0   filemap_read+0x1a6") || !strings.Contains(blocks, "calls:  2915982") {
		t.Errorf("-traces -tagfocus=kind=block lacks filemap_read+0x1a6 and its calls:\n%s", blocks)
	}
	traces := pprof(path, "-traces")
	if !strings.Contains(traces, "backend:  tracepoint") || !strings.Contains(traces, "calls:  2915982") || strings.Count(traces, "-----------+") < len(run.Nodes)-1 {
		t.Errorf("-traces:\n%s", traces)
	}
	if out, err := pprofErr(path, "-top", "-sample_index=calls"); err == nil || !strings.Contains(out, `sample_index "calls" must be one of`) {
		t.Errorf("-sample_index=calls: %v\n%s", err, out)
	}
}

// TestPprofExactApart: where stack samples estimate what no instrument
// timed (the development hosts), the estimates are their own sample type:
// wall's cum of a timed root is its exact inclusive time, the sampled
// contexts have no wall at all, sampled_wall's cum of a sampled context is
// its estimated inclusive time, and samples' cum its stack samples. With
// nothing timed below the roots, pprof shows the estimates by default.
func TestPprofExactApart(t *testing.T) {
	pprof := pprofTool(t)
	run := fixture(t, "sampled-host")
	p, path := writeProfile(t, run)
	if p.DefaultSampleType != "sampled_wall" {
		t.Errorf("default sample type %q", p.DefaultSampleType)
	}
	root := run.Nodes[0]
	cum := topRows(pprof(path, "-top", "-cum", "-unit=ns", "-nodecount=1", "-sample_index=wall"))
	if len(cum) < 1 || cum[0][1] != "__x64_sys_read" || cum[0][2] != itoa64(root.InclNs)+"ns" || cum[0][0] != itoa64(root.InclNs)+"ns" {
		t.Errorf("-sample_index=wall -top -cum: %v, want __x64_sys_read flat and cum %dns (nothing below it timed)", cum, root.InclNs)
	}
	for _, n := range run.Nodes[1:] {
		var wall, est, samples int64
		for _, s := range p.Sample {
			if hasSuffixPath(s, n.Path) {
				wall += s.Value[valWall] + s.Value[valCPU] + s.Value[valOffCPU]
				est += s.Value[valSampledWall]
				samples += s.Value[valSamples]
			}
		}
		if wall != 0 || uint64(samples) != n.Samples {
			t.Errorf("%s: exact values %d (want none), cum samples %d (want %d)", n.Point, wall, samples, n.Samples)
		}
		if uint64(est) != n.InclNs {
			t.Errorf("%s: cum sampled_wall %d, estimated inclusive %d", n.Point, est, n.InclNs)
		}
	}
	top := pprof(path, "-top", "-nodecount=3")
	if !strings.Contains(top, "Type: sampled_wall") {
		t.Errorf("default -top:\n%s", top)
	}
}

// TestPprofAddresses: with the addresses of the run's functions, locations
// carry them (go tool pprof -addresses shows them) within their mappings,
// the kernel's mapping carries its build ID, and the duration is the last
// window's, which the values cover (pprof's total share of it is the
// target's busy share, not diluted by the set-up).
func TestPprofAddresses(t *testing.T) {
	pprof := pprofTool(t)
	run := fixture(t, "read4k-6.1")
	addrs := &Addresses{Kernel: Range{0xffffffff81000000, 0xffffffff82000000}, BuildID: "0123abcd", Funcs: map[string]Range{},
		Modules: map[string]Range{"ext4": {0xffffffffc0100000, 0xffffffffc0200000}}}
	next := map[bool]Hex{false: 0xffffffff81001000, true: 0xffffffffc0101000}
	for _, n := range run.Nodes {
		mod, _ := splitModule(n.Point.Func)
		if _, ok := addrs.Funcs[n.Point.Func]; !ok {
			addrs.Funcs[n.Point.Func] = Range{next[mod != ""], next[mod != ""] + 0x800}
			next[mod != ""] += 0x1000
		}
	}
	p, err := ProfileWith(run, addrs)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range p.Location {
		name := l.Line[0].Function.Name
		if l.Address == 0 || l.Address < l.Mapping.Start || l.Address >= l.Mapping.Limit {
			t.Errorf("%s: address %#x outside its mapping %s [%#x, %#x)", name, l.Address, l.Mapping.File, l.Mapping.Start, l.Mapping.Limit)
		}
	}
	if p.Mapping[0].File != KernelMapping || p.Mapping[0].BuildID != "0123abcd" {
		t.Errorf("kernel mapping %+v", p.Mapping[0])
	}
	if want := int64(run.Meta.WindowRounds) * run.Meta.Round.Nanoseconds(); p.DurationNanos != want {
		t.Errorf("duration %d ns, want the window's %d ns", p.DurationNanos, want)
	}
	path := saveProfile(t, p)
	top := pprof(path, "-top", "-addresses", "-nodecount=1")
	fa := addrs.Funcs["copy_user_enhanced_fast_string"].Start
	if !strings.Contains(top, fmt.Sprintf("%x", uint64(fa))) {
		t.Errorf("-top -addresses lacks copy_user_enhanced_fast_string's address %#x:\n%s", uint64(fa), top)
	}
}

// TestConfidenceNeverNegative: a share's interval is shown from 0 when
// Student's t reaches below it.
func TestConfidenceNeverNegative(t *testing.T) {
	iv := search.Interval{Mean: 0.012, Low: -0.00081, High: 0.032, N: 5}
	if got := confidenceLabel(iv, 0.95); got != "95% CI of exclusive share: 1.2% [0.0%, 3.2%], 5 rounds" {
		t.Errorf("label %q", got)
	}
	if got := ciText(iv, 0.95); got != "[0.0%, 3.2%] (95% CI, 5 rounds)" {
		t.Errorf("text %q", got)
	}
}

// saveProfile writes p to a file of the test's and returns its path.
func saveProfile(t *testing.T, p *profile.Profile) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), ProfileFile)
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pprofTool returns a runner of go tool pprof on a profile file.
func pprofTool(t *testing.T) func(path string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool pprof: no go command in PATH")
	}
	return func(path string, args ...string) string {
		t.Helper()
		out, err := pprofErr(path, args...)
		if err != nil {
			t.Fatalf("go tool pprof %v: %v\n%s", args, err, out)
		}
		return out
	}
}

func pprofErr(path string, args ...string) (string, error) {
	out, err := exec.Command("go", append([]string{"tool", "pprof"}, append(args, path)...)...).CombinedOutput()
	return string(out), err
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

// TestPprofLines: with the source lines of the run's points, locations
// carry them, inlined frames included, and go tool pprof -list shows the
// source with the point's values on its line; -lines -top names
// file:line.
func TestPprofLines(t *testing.T) {
	pprof := pprofTool(t)
	run := fixture(t, "read4k-6.1")
	const leaf = "copy_user_enhanced_fast_string"
	src := filepath.Join(t.TempDir(), "copy.c")
	source := "static inline void step(void)\n{\n\tasm volatile(\"rep movsb\"); /* the inlined step */\n}\n\nvoid " + leaf + "(void)\n{\n\tstep(); /* the leaf's call */\n}\n"
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	lineOf := func(s string) int { return strings.Count(source[:strings.Index(source, s)], "\n") + 1 }
	addrs := &Addresses{Kernel: Range{0xffffffff81000000, 0xffffffff82000000}, Funcs: map[string]Range{},
		Lines: map[string][]SourceLine{leaf: {
			{Func: "step", File: src, Line: lineOf("rep movsb"), FuncLine: lineOf("step(void)")},
			{Func: leaf, File: src, Line: lineOf("step();"), FuncLine: lineOf(leaf)},
		}}}
	next := Hex(0xffffffff81001000)
	for _, n := range run.Nodes {
		if _, ok := addrs.Funcs[n.Point.Func]; !ok && !strings.Contains(n.Point.Func, ":") {
			addrs.Funcs[n.Point.Func] = Range{next, next + 0x800}
			next += 0x1000
		}
	}
	p, err := ProfileWith(run, addrs)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range p.Location {
		if l.Line[len(l.Line)-1].Function.Name != leaf {
			continue
		}
		found = true
		if len(l.Line) != 2 || l.Line[0].Function.Name != "step" || l.Line[0].Line != int64(lineOf("rep movsb")) ||
			l.Line[1].Line != int64(lineOf("step();")) || l.Line[1].Function.Filename != src || l.Line[1].Function.StartLine != int64(lineOf(leaf)) {
			t.Errorf("%s's location: %+v", leaf, l.Line)
		}
		if !l.Mapping.HasLineNumbers || !l.Mapping.HasInlineFrames {
			t.Errorf("%s's mapping does not say it has lines: %+v", leaf, l.Mapping)
		}
	}
	if !found {
		t.Fatalf("no location of %s", leaf)
	}
	path := saveProfile(t, p)
	list := pprof(path, "-list", "^("+leaf+"|step)$")
	if !strings.Contains(list, "the leaf's call") || !strings.Contains(list, "the inlined step") {
		t.Errorf("-list %s and step lack their source lines:\n%s", leaf, list)
	}
	top := pprof(path, "-top", "-lines")
	if !strings.Contains(top, fmt.Sprintf("copy.c:%d", lineOf("rep movsb"))) {
		t.Errorf("-top -lines lacks copy.c:%d:\n%s", lineOf("rep movsb"), top)
	}
}

// TestModuleOfBareName: a module's function that kallsyms names alone
// (as the hunt's points name them) is placed in its module's mapping by
// its address, not in the core kernel's.
func TestModuleOfBareName(t *testing.T) {
	a := &Addresses{Kernel: Range{0xffffffff81000000, 0xffffffff82000000},
		Modules: map[string]Range{"aptree": {0xffffffffc0a00000, 0xffffffffc0a10000}},
		Funcs:   map[string]Range{"gt1_f2": {0xffffffffc0a01000, 0xffffffffc0a01100}, "vfs_write": {0xffffffff81200000, 0xffffffff81200400}}}
	for fn, want := range map[string]string{"gt1_f2": "aptree", "vfs_write": "", "ext4:ext4_sync_file": "ext4", "absent": ""} {
		if got := a.ModuleOf(fn); got != want {
			t.Errorf("moduleOf(%s) = %q, want %q", fn, got, want)
		}
	}
	b := newProfileBuilder(&search.Run{}, a)
	l := b.location(instrument.Point{Func: "gt1_f2", Offset: 0x10})
	if l.Mapping.File != "[aptree]" || l.Address != 0xffffffffc0a01010 {
		t.Errorf("gt1_f2+0x10: mapping %s, address %#x", l.Mapping.File, l.Address)
	}
}
