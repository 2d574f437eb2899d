package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/autoprof/autoprof/search"
)

// LiveFile is the file a hunt keeps in its output directory while it
// runs (LiveWriter), for a view started elsewhere to follow it: autoprof
// ui watches the hunts that `autoprof hunt` runs in a terminal through it.
// The hunt removes it when it ends, whether it wrote its outputs or not.
const LiveFile = "live.json"

// Live is a hunt under way as LiveFile holds it.
type Live struct {
	// PID is the hunting process, and Started when it started the hunt;
	// a reader that finds no such process knows the hunt was killed
	// before it could remove the file.
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Command is how the hunt was started: autoprof's arguments.
	Command []string    `json:"command"`
	Rounds  []LiveRound `json:"rounds"`
	// Tree is the calling-context tree as it stands, with the decisions
	// so far: the flame graph's data (FlameJSON).
	Tree json.RawMessage `json:"tree,omitempty"`
}

// LiveRound is one round's search.Progress, as a live view shows it.
type LiveRound struct {
	Round         int             `json:"round"`
	ElapsedS      float64         `json:"elapsed_s"`
	Live          int             `json:"live"`
	PredictedPct  Num             `json:"predicted_pct"`
	MeasuredPct   Num             `json:"measured_pct"`   // -1: not measured
	ControllerPct Num             `json:"controller_pct"` // -1: not measured
	Best          []LiveCandidate `json:"best"`
	// Nodes and Events count the tree's nodes after the round and the
	// decisions taken since the round before.
	Nodes  int `json:"nodes"`
	Events int `json:"events"`
}

// LiveCandidate is a search.Candidate: its exclusive share's interval.
type LiveCandidate struct {
	Path string `json:"path"`
	Excl struct {
		Mean Num `json:"mean"`
		Low  Num `json:"low"`
		High Num `json:"high"`
		N    int `json:"n"`
	} `json:"excl"`
}

// Num is a number that JSON writes as null where it is not finite (an
// interval of one round has no bounds yet) and reads back from null as
// NaN.
type Num float64

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Num(math.NaN())
		return nil
	}
	return json.Unmarshal(b, (*float64)(n))
}

// LiveRoundOf is p as a LiveRound.
func LiveRoundOf(p search.Progress) LiveRound {
	j := LiveRound{Round: p.Round, ElapsedS: p.Elapsed.Seconds(), Live: p.Live, PredictedPct: Num(p.PredictedPct),
		MeasuredPct: Num(p.MeasuredPct), ControllerPct: Num(p.ControllerPct), Best: []LiveCandidate{},
		Nodes: len(p.Nodes), Events: len(p.Events)}
	for _, c := range p.Best {
		cj := LiveCandidate{Path: c.Path}
		cj.Excl.Mean, cj.Excl.Low, cj.Excl.High, cj.Excl.N = Num(c.Excl.Mean), Num(c.Excl.Low), Num(c.Excl.High), c.Excl.N
		j.Best = append(j.Best, cj)
	}
	return j
}

// LiveTracker follows a hunt's progress (search.Config.ProgressTree on):
// the rounds so far, and the tree with every decision taken. It is not
// safe for concurrent use.
type LiveTracker struct {
	Rounds []LiveRound
	events []search.Event
	last   search.Progress
	tree   json.RawMessage // of last, nil until Tree encodes it
}

// Add takes one round's progress in.
func (t *LiveTracker) Add(p search.Progress) {
	t.Rounds = append(t.Rounds, LiveRoundOf(p))
	t.events = append(t.events, p.Events...)
	t.last, t.tree = p, nil
}

// Tree is the tree as it stands (FlameJSON), encoded when asked for, nil
// before the first round.
func (t *LiveTracker) Tree() json.RawMessage {
	if t.tree == nil && len(t.Rounds) > 0 {
		t.tree, _ = FlameJSON(&search.Run{Meta: search.Meta{Rounds: t.last.Round}, Nodes: t.last.Nodes, Trace: t.events})
	}
	return t.tree
}

// LiveWriter keeps LiveFile in a hunt's output directory up to date:
// rewritten whole (a temporary file renamed over it, so that a reader
// never sees half of it) after a round, at most once every interval, and
// removed by Close. It is not safe for concurrent use.
type LiveWriter struct {
	path     string
	interval time.Duration
	live     Live
	track    LiveTracker
	written  time.Time
	err      error
}

// LiveInterval is how often a LiveWriter rewrites its file at most: each
// rewrite encodes the whole tree, which a hunt's rounds pay for.
const LiveInterval = time.Second

// NewLiveWriter returns the writer of dir's LiveFile for the hunt that
// this process started now with the arguments command. Nothing is
// written before the first round.
func NewLiveWriter(dir string, command []string) *LiveWriter {
	now := time.Now()
	return &LiveWriter{path: filepath.Join(dir, LiveFile), interval: LiveInterval,
		live: Live{PID: os.Getpid(), Started: now, Command: command}}
}

// Progress takes one round's progress in and rewrites the file where
// the last write is interval old. The first error is kept (Err) and
// stops the writes: a hunt goes on without its live view.
func (w *LiveWriter) Progress(p search.Progress) {
	w.track.Add(p)
	if w.err != nil || time.Since(w.written) < w.interval {
		return
	}
	w.live.Rounds, w.live.Tree, w.live.Updated = w.track.Rounds, w.track.Tree(), time.Now()
	b, err := json.Marshal(&w.live)
	if err == nil {
		err = writeAtomic(w.path, b)
	}
	if err != nil {
		w.err = fmt.Errorf("writing the live view: %w", err)
		return
	}
	w.written = time.Now()
}

// Err is the first error a write met, nil if none.
func (w *LiveWriter) Err() error { return w.err }

// Close removes the file; it may be called more than once.
func (w *LiveWriter) Close() error {
	if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// writeAtomic writes b to path through a temporary file in its directory
// renamed over it. Unlike Write's files it is not synced: it is rewritten
// every second and is worth nothing after a crash.
func writeAtomic(path string, b []byte) error {
	t, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, werr := t.Write(b)
	if err := errors.Join(werr, t.Close(), os.Chmod(t.Name(), 0o644)); err != nil {
		os.Remove(t.Name())
		return err
	}
	if err := os.Rename(t.Name(), path); err != nil {
		os.Remove(t.Name())
		return err
	}
	return nil
}

// LoadLive reads dir's LiveFile; the error wraps os.ErrNotExist where
// there is none (no hunt under way there, or it has ended).
func LoadLive(dir string) (*Live, error) {
	b, err := os.ReadFile(filepath.Join(dir, LiveFile))
	if err != nil {
		return nil, err
	}
	var l Live
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, LiveFile), err)
	}
	return &l, nil
}
