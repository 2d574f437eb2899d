package reports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/autoprof/autoprof/reports/internal/synth"
	"github.com/autoprof/autoprof/search"
)

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestWriteFiles(t *testing.T) {
	run := synth.Generate(synth.Fsync(9))
	dir := filepath.Join(t.TempDir(), "out")
	if err := Write(dir, run); err != nil {
		t.Fatal(err)
	}
	want := []string{FindingsFile, TraceFile, ProfileFile, HTMLFile, TextFile, RunFile}
	sort.Strings(want)
	if got := listDir(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("files %v, want %v", got, want)
	}
	// hunt.jsonl: one Event per line, in order.
	f, err := os.Open(filepath.Join(dir, TraceFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var n int
	for sc.Scan() {
		var e search.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		if e.Action != run.Trace[n].Action || e.Round != run.Trace[n].Round {
			t.Errorf("line %d: %+v, want %+v", n+1, e, run.Trace[n])
		}
		n++
	}
	if n != len(run.Trace) {
		t.Errorf("%d lines for %d events", n, len(run.Trace))
	}
	var s Summary
	data, _ := os.ReadFile(filepath.Join(dir, FindingsFile))
	if err := json.Unmarshal(data, &s); err != nil || len(s.Findings) != len(run.Findings) || s.Findings[0].Verdict == "" {
		t.Errorf("findings.json: %v, %+v", err, s.Findings)
	}
}

// TestWriteNothingOnError checks that an invalid run writes nothing, and
// that a failing rename leaves no temporary file behind and the other
// outputs as they were.
func TestWriteNothingOnError(t *testing.T) {
	dir := t.TempDir()
	run := synth.Generate(synth.Read(4096, "6.1", 1))
	if err := Write(dir, run); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, TextFile))

	bad := *run
	bad.Nodes = append([]search.Node(nil), run.Nodes...)
	bad.Nodes[4].Parent = 10
	bad.Meta.Kernel = "changed"
	if err := Write(dir, &bad); err == nil {
		t.Fatal("invalid run written")
	}
	after, _ := os.ReadFile(filepath.Join(dir, TextFile))
	if !bytes.Equal(before, after) {
		t.Error("an invalid run changed report.txt")
	}

	// A directory where report.html belongs makes its rename fail.
	fresh := t.TempDir()
	if err := os.Mkdir(filepath.Join(fresh, HTMLFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, HTMLFile, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(fresh, run); err == nil {
		t.Fatal("rename over a directory succeeded")
	}
	for _, name := range listDir(t, fresh) {
		if strings.HasSuffix(name, ".tmp") {
			t.Errorf("temporary file %s left behind", name)
		}
	}
}

// TestWriteNoPartialFile checks that the file names only ever hold complete
// content: a reader never sees a name with a truncated file, since each is
// renamed into place whole.
func TestWriteNoPartialFile(t *testing.T) {
	dir := t.TempDir()
	runs := []*search.Run{synth.Generate(synth.Read(4096, "6.1", 1)), synth.Generate(synth.Fsync(2))}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			if err := Write(dir, runs[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		if _, err := os.Stat(filepath.Join(dir, RunFile)); err != nil {
			continue
		}
		if _, err := Load(dir); err != nil {
			t.Fatalf("reader saw a broken run.json: %v", err)
		}
	}
}

// TestWriteAddresses: a run written with its addresses keeps them in
// addresses.json, and a re-rendering (in place or elsewhere) puts them in
// the profile again; the kernel's build ID parses from ELF notes.
func TestWriteAddresses(t *testing.T) {
	run := fixture(t, "read4k-6.1")
	addrs := &Addresses{Kernel: Range{0xffffffff81000000, 0xffffffff82000000}, Funcs: map[string]Range{"__x64_sys_read": {0xffffffff81234560, 0xffffffff81234600}}}
	dir := t.TempDir()
	if err := WriteWith(dir, run, addrs); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "again")
	for _, to := range []string{dir, other} {
		if _, err := Rerender(dir, to); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(to, ProfileFile))
		if err != nil {
			t.Fatal(err)
		}
		p, err := profile.Parse(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range p.Location {
			found = found || l.Address == 0xffffffff81234560 && l.Line[0].Function.Name == "__x64_sys_read"
		}
		if !found {
			t.Errorf("%s: no location at __x64_sys_read's address", to)
		}
	}
}
