package reports

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/search"
)

func liveProgress(r int) search.Progress {
	return search.Progress{Round: r, Elapsed: time.Duration(r) * time.Second, Live: 1, PredictedPct: 0.5, MeasuredPct: -1,
		ControllerPct: 1.5, Best: []search.Candidate{{Path: "vfs_read", Excl: search.Interval{Mean: 0.4, Low: math.NaN(), High: math.NaN(), N: 1}}},
		Nodes: []search.Node{{ID: 0, Parent: -1, Point: instrument.Point{Func: "vfs_read"}, Kind: search.NodeFunction, Path: []string{"vfs_read"},
			Calls: 10, InclNs: 1000, ExclNs: 1000, TargetNs: 2000}},
		Events: []search.Event{{Round: r, Action: "insert", Spec: "vfs_read:timer"}}}
}

// TestLiveWriter: the live file appears at the first round, holds the
// rounds and the tree as they stand when it is rewritten (at most once an
// interval), reads back with its unbounded intervals as NaN, and goes on
// Close, which may come twice.
func TestLiveWriter(t *testing.T) {
	dir := t.TempDir()
	w := NewLiveWriter(dir, []string{"hunt", "-o", dir})
	if _, err := LoadLive(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a live file before the first round: %v", err)
	}
	w.Progress(liveProgress(1))
	w.Progress(liveProgress(2)) // within the interval: not written
	l, err := LoadLive(dir)
	if err != nil || w.Err() != nil {
		t.Fatal(err, w.Err())
	}
	if l.PID != os.Getpid() || len(l.Rounds) != 1 || l.Rounds[0].Round != 1 || len(l.Command) != 3 || l.Updated.Before(l.Started) {
		t.Errorf("after round 1: %+v", l)
	}
	if c := l.Rounds[0].Best[0].Excl; c.Mean != 0.4 || !math.IsNaN(float64(c.Low)) || float64(l.Rounds[0].MeasuredPct) != -1 {
		t.Errorf("a candidate read back: %+v", l.Rounds[0])
	}
	var tree struct {
		Nodes []json.RawMessage `json:"nodes"`
		Trace []json.RawMessage `json:"trace"`
	}
	if err := json.Unmarshal(l.Tree, &tree); err != nil || len(tree.Nodes) != 1 || len(tree.Trace) != 1 {
		t.Errorf("tree after round 1: %v %s", err, l.Tree)
	}
	w.interval = 0
	w.Progress(liveProgress(3))
	if l, err = LoadLive(dir); err != nil || len(l.Rounds) != 3 {
		t.Fatalf("after round 3: %v %+v", err, l)
	}
	if err := json.Unmarshal(l.Tree, &tree); err != nil || len(tree.Trace) != 3 {
		t.Errorf("the tree's decisions after round 3: %v, %d", err, len(tree.Trace))
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*tmp")); len(m) > 0 {
		t.Errorf("temporary files left: %q", m)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LiveFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the live file after Close: %v", err)
	}
}

// TestLiveWriterFails: a directory it cannot write in makes Err say so
// once, and the hunt's progress is still taken in.
func TestLiveWriterFails(t *testing.T) {
	w := NewLiveWriter(filepath.Join(t.TempDir(), "nosuch"), nil)
	w.Progress(liveProgress(1))
	if w.Err() == nil {
		t.Fatal("no error writing in a missing directory")
	}
	w.Progress(liveProgress(2))
	if len(w.track.Rounds) != 2 {
		t.Errorf("%d rounds taken in", len(w.track.Rounds))
	}
}
