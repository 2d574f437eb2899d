package ui

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/search"
)

// watchNodes is a tree of two nodes after round r, the child measured
// from round 2 on.
func watchNodes(r int) []search.Node {
	nodes := []search.Node{{ID: 0, Parent: -1, Point: instrument.Point{Func: "__x64_sys_read"}, Kind: search.NodeFunction,
		Path: []string{"__x64_sys_read"}, Calls: uint64(100 * r), InclNs: uint64(1e6 * r), ExclNs: uint64(4e5 * r), TargetNs: uint64(1e6 * r)}}
	if r >= 2 {
		nodes = append(nodes, search.Node{ID: 1, Parent: 0, Point: instrument.Point{Func: "vfs_read"}, Kind: search.NodeFunction,
			Path: []string{"__x64_sys_read", "vfs_read"}, Calls: 100, InclNs: 6e5, ExclNs: 6e5, TargetNs: 1e6})
	}
	return nodes
}

// writeLive writes dir's live file as a hunt of pid started at started
// would after round r.
func writeLive(t *testing.T, dir string, pid int, started time.Time, r int) {
	t.Helper()
	l := reports.Live{PID: pid, Started: started, Updated: time.Now(), Command: []string{"hunt", "-o", filepath.Base(dir)}}
	var track reports.LiveTracker
	for i := 1; i <= r; i++ {
		p := search.Progress{Round: i, Elapsed: time.Duration(i) * time.Second, Nodes: watchNodes(i),
			Best: []search.Candidate{{Path: "__x64_sys_read", Excl: search.Interval{Mean: 0.4, Low: 0.3, High: 0.5, N: i}}}}
		if i == 2 {
			p.Events = []search.Event{{Round: 2, Action: "insert", Spec: "vfs_read:timer", Node: 1}}
		}
		track.Add(p)
	}
	l.Rounds, l.Tree = track.Rounds, track.Tree()
	b, err := json.Marshal(&l)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, reports.LiveFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// apiJSON sends a request to the server's API and decodes its answer.
func apiJSON(t *testing.T, s *Server, hs string, method, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, hs+path, nil)
	req.Header.Set("X-Autoprof-Token", s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// waitHunt polls /api/hunts until hunt id satisfies ok, for at most 10 s.
func waitHunt(t *testing.T, s *Server, hs string, id int, ok func(huntView) bool) huntView {
	t.Helper()
	var last huntView
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var hunts []huntView
		apiJSON(t, s, hs, "GET", "/api/hunts", &hunts)
		for _, h := range hunts {
			if h.ID == id {
				if last = h; ok(h) {
					return h
				}
			}
		}
	}
	t.Fatalf("hunt %d never got there: %+v", id, last)
	return last
}

// TestWatchHunt follows a hunt that another process runs, through its
// live file as autoprof hunt writes it: /api/runs lists it while it runs,
// watching it makes it one of the page's hunts (once, however often the
// page asks), each new round of the file is published, and when the file
// goes with the run written beside it the hunt is done with its files and
// the run's tree.
func TestWatchHunt(t *testing.T) {
	s, hs := fixtureServer(t)
	dir := filepath.Join(s.dir, "cli")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	writeLive(t, dir, os.Getpid(), started, 1)
	var runs []savedRun
	apiJSON(t, s, hs.URL, "GET", "/api/runs", &runs)
	if len(runs) != 1 || runs[0].Name != "cli" || runs[0].Hunting == nil || runs[0].Hunting.PID != os.Getpid() || runs[0].Hunting.Rounds != 1 {
		t.Fatalf("/api/runs: %+v; want cli with its hunt under way", runs)
	}
	var h huntView
	if code := apiJSON(t, s, hs.URL, "POST", "/api/runs/cli/watch", &h); code != http.StatusOK {
		t.Fatalf("watch: %d", code)
	}
	if !h.Watched || h.State != "running" || len(h.Rounds) != 1 || h.Tree == nil || !slices.Equal(h.Command, []string{"hunt", "-o", "cli"}) {
		t.Fatalf("watched hunt: %+v", h)
	}
	var again huntView
	apiJSON(t, s, hs.URL, "POST", "/api/runs/cli/watch", &again)
	if again.ID != h.ID {
		t.Errorf("watching again made hunt %d beside %d", again.ID, h.ID)
	}
	writeLive(t, dir, os.Getpid(), started, 2)
	h = waitHunt(t, s, hs.URL, h.ID, func(h huntView) bool { return len(h.Rounds) == 2 })
	if h.State != "running" || !strings.Contains(string(h.Tree), "vfs_read") {
		t.Errorf("after round 2: state %s, tree %s", h.State, h.Tree)
	}
	run := &search.Run{Meta: search.Meta{Start: started.Add(time.Second), End: time.Now(), Rounds: 2, StopReason: "converged", Confidence: 0.95, Threshold: 5}, Nodes: watchNodes(2)}
	if err := reports.Write(dir, run); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, reports.LiveFile)); err != nil {
		t.Fatal(err)
	}
	h = waitHunt(t, s, hs.URL, h.ID, func(h huntView) bool { return h.State != "running" })
	if h.State != "done" || !slices.Contains(h.Files, reports.RunFile) || !strings.Contains(string(h.Tree), "vfs_read") {
		t.Errorf("ended: state %s (%s), files %q", h.State, h.Error, h.Files)
	}
	runs = nil // a decoder fills the elements there
	apiJSON(t, s, hs.URL, "GET", "/api/runs", &runs)
	if len(runs) != 1 || runs[0].Hunting != nil {
		t.Errorf("/api/runs after the hunt: %+v", runs)
	}
}

// TestWatchHuntGone: a live file whose process is gone (killed before it
// could remove it) is no hunt to watch, and a watched hunt whose process
// dies fails, saying so; a directory without one is refused in one line.
func TestWatchHuntGone(t *testing.T) {
	s, hs := fixtureServer(t)
	for _, name := range []string{"dead", "dies", "none"} {
		if err := os.Mkdir(filepath.Join(s.dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exited := exec.Command(os.Args[0], "-test.run=^$")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	writeLive(t, filepath.Join(s.dir, "dead"), exited.Process.Pid, time.Now(), 1)
	child := exec.Command(os.Args[0], "-test.run=^TestWatchSleeper$")
	child.Env = append(os.Environ(), "AUTOPROF_WATCH_SLEEPER=1")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	writeLive(t, filepath.Join(s.dir, "dies"), child.Process.Pid, time.Now(), 1)

	var runs []savedRun
	apiJSON(t, s, hs.URL, "GET", "/api/runs", &runs)
	if len(runs) != 1 || runs[0].Name != "dies" {
		t.Errorf("/api/runs: %+v; want only the hunt whose process lives", runs)
	}
	for _, name := range []string{"dead", "none", "../x"} {
		if code := apiJSON(t, s, hs.URL, "POST", "/api/runs/"+name+"/watch", nil); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("watching %s: %d, want refused", name, code)
		}
	}
	var h huntView
	if code := apiJSON(t, s, hs.URL, "POST", "/api/runs/dies/watch", &h); code != http.StatusOK {
		t.Fatalf("watch: %d", code)
	}
	child.Process.Kill()
	child.Wait()
	h = waitHunt(t, s, hs.URL, h.ID, func(h huntView) bool { return h.State != "running" })
	if h.State != "failed" || !strings.Contains(h.Error, "gone") {
		t.Errorf("a watched hunt whose process died: %s (%s)", h.State, h.Error)
	}
}

// TestWatchSleeper is the process TestWatchHuntGone kills.
func TestWatchSleeper(t *testing.T) {
	if os.Getenv("AUTOPROF_WATCH_SLEEPER") == "" {
		return // a helper of TestWatchHuntGone: as a test, nothing to do (a pass, not a skip)
	}
	time.Sleep(time.Minute)
}
