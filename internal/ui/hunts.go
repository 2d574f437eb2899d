package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/autoprof/autoprof/internal/debuginfo"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/search/live"
	"github.com/autoprof/autoprof/splice"
)

// hunt is one hunt started from the page: live.Hunt, as autoprof hunt
// runs it, its outputs written by reports.WriteWith.
type hunt struct {
	id      int
	out     string
	req     huntRequest
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex
	state string // running, done, stopped, failed
	err   string
	files []string
	// track follows the rounds and the tree as it grows; tree is the
	// flame graph's data of the finished run once it ends, else nil.
	track reports.LiveTracker
	tree  json.RawMessage
	// watched is a hunt that another process runs (autoprof hunt in a
	// terminal), followed through its reports.LiveFile: the page cannot
	// stop it.
	watched bool
	command []string // a watched hunt's autoprof arguments
}

// huntRequest is POST /api/hunts' body: autoprof hunt's flags, for a
// running target (the page starts no command).
type huntRequest struct {
	Backend      string                  `json:"backend"`
	Target       splice.ExperimentTarget `json:"target"`
	Duration     splice.Duration         `json:"duration"` // default 2m, as hunt's without a command
	Round        splice.Duration         `json:"round"`
	BudgetPct    float64                 `json:"budget_pct"`
	ThresholdPct float64                 `json:"threshold_pct"`
	// Out names the output directory inside the server's directory.
	Out string `json:"out"`
}

// huntView is a hunt in /api/hunts and in the "hunt" events.
type huntView struct {
	ID      int                 `json:"id"`
	Out     string              `json:"out"`
	State   string              `json:"state"`
	Error   string              `json:"error,omitempty"`
	Started time.Time           `json:"started"`
	Request huntRequest         `json:"request"`
	Rounds  []reports.LiveRound `json:"rounds"`
	// Files are the outputs written, served under /runs/OUT/.
	Files []string `json:"files,omitempty"`
	// Tree is the calling-context tree as it stands, with the decisions
	// so far: the flame graph's data (reports.FlameJSON).
	Tree json.RawMessage `json:"tree,omitempty"`
	// Watched is a hunt another process runs (see watchHunt), started
	// with Command; the page can stop watching it, not stop it.
	Watched bool     `json:"watched,omitempty"`
	Command []string `json:"command,omitempty"`
}

func (h *hunt) view() huntView {
	h.mu.Lock()
	defer h.mu.Unlock()
	tree := h.tree
	if tree == nil {
		tree = h.track.Tree()
	}
	return huntView{ID: h.id, Out: h.out, State: h.state, Error: h.err, Started: h.started, Request: h.req,
		Rounds: append([]reports.LiveRound{}, h.track.Rounds...), Files: h.files, Tree: tree, Watched: h.watched, Command: h.command}
}

// defaultHuntDuration bounds a hunt started from the page, as autoprof
// hunt bounds one without a command.
const defaultHuntDuration = 2 * time.Minute

// options turns the request into live.Options, refusing what autoprof
// hunt refuses.
func (req huntRequest) options() (live.Options, error) {
	o := live.Options{Backend: instrument.Backend(req.Backend), Settings: search.Settings{
		Target:   instrument.Target{PIDs: req.Target.PIDs, Cgroup: req.Target.Cgroup},
		Duration: time.Duration(req.Duration), Round: time.Duration(req.Round), BudgetPct: req.BudgetPct, ThresholdPct: req.ThresholdPct}}
	if o.BudgetPct == 0 {
		o.BudgetPct = search.DefaultBudget
	}
	if o.ThresholdPct == 0 {
		o.ThresholdPct = search.DefaultThreshold
	}
	if o.Duration == 0 {
		o.Duration = defaultHuntDuration
	}
	if err := o.Check(); err != nil {
		return o, err
	}
	if o.Backend != "" {
		if _, err := instrument.ParseBackend(req.Backend); err != nil {
			return o, err
		}
	}
	if err := splice.CheckTarget(o.Target); err != nil {
		return o, fmt.Errorf("target %w", err)
	}
	return o, nil
}

// startHunt starts a hunt; one runs at a time.
func (x *experiments) startHunt(req huntRequest) (*hunt, error) {
	o, err := req.options()
	if err != nil {
		return nil, badRequest(err)
	}
	if req.Out == "" {
		return nil, badRequest(errors.New("a hunt needs an output name"))
	}
	out, err := x.s.path(req.Out)
	if err != nil {
		return nil, badRequest(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &hunt{out: req.Out, req: req, started: time.Now(), cancel: cancel, done: make(chan struct{}), state: "running"}
	x.mu.Lock()
	switch {
	case x.closed:
		x.mu.Unlock()
		cancel()
		return nil, errors.New("the server is closing")
	case slices.ContainsFunc(x.hunts, func(h *hunt) bool { return !h.watched && h.view().State == "running" }):
		x.mu.Unlock()
		cancel()
		return nil, badRequest(errors.New("a hunt is running: one at a time"))
	}
	x.addHunt(h)
	x.mu.Unlock()
	o.ProgressTree = true
	o.Progress = func(p search.Progress) {
		h.mu.Lock()
		h.track.Add(p)
		h.mu.Unlock()
		x.publish(event{"hunt", h.view()})
	}
	x.publish(event{"hunt", h.view()})
	go func() {
		defer close(h.done)
		run, err := live.Hunt(ctx, o)
		if err == nil {
			err = reports.WriteWith(out, run, x.s.addresses(run))
		}
		h.mu.Lock()
		if run != nil {
			h.setTree(run)
		}
		switch {
		case err != nil:
			h.state, h.err = "failed", err.Error()
		case ctx.Err() != nil:
			h.state = "stopped"
		default:
			h.state = "done"
		}
		h.files = runFiles(out)
		h.mu.Unlock()
		cancel()
		x.publish(event{"hunt", h.view()})
	}()
	return h, nil
}

// addHunt numbers h and lists it; x.mu is held. With no page listening,
// it is orphaned as an experiment would be.
func (x *experiments) addHunt(h *hunt) {
	x.nextID++
	h.id = x.nextID
	x.hunts = append(x.hunts, h)
	if len(x.subs) == 0 {
		x.armOrphan()
	}
}

// setTree sets the tree the page draws; h.mu is held.
func (h *hunt) setTree(run *search.Run) {
	if t, err := reports.FlameJSON(run); err == nil {
		h.tree = t
	}
}

// addresses places the run's functions in the running kernel, for the
// profile, as autoprof hunt does.
func (s *Server) addresses(run *search.Run) *reports.Addresses {
	rel, _ := kernel.Release()
	a, _ := live.Addresses(run, s.graph.Symbols(), debuginfo.DefaultSearch(rel, nil))
	return a
}

// servedFiles are the files of a run that /runs/ serves: what
// reports.WriteWith writes.
var servedFiles = []string{reports.HTMLFile, reports.TextFile, reports.FindingsFile, reports.TraceFile, reports.RunFile, reports.ProfileFile}

// runFiles lists the served files present in dir.
func runFiles(dir string) []string {
	out := []string{}
	for _, f := range servedFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			out = append(out, f)
		}
	}
	return out
}

func (x *experiments) stopHunt(id int) error {
	x.mu.Lock()
	i := slices.IndexFunc(x.hunts, func(h *hunt) bool { return h.id == id })
	var h *hunt
	if i >= 0 {
		h = x.hunts[i]
	}
	x.mu.Unlock()
	if h == nil {
		return fmt.Errorf("no hunt %d", id)
	}
	h.cancel()
	<-h.done
	return nil
}

func (x *experiments) huntViews() []huntView {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := []huntView{}
	for _, h := range x.hunts {
		out = append(out, h.view())
	}
	return out
}

func (s *Server) handleHunt(w http.ResponseWriter, r *http.Request) {
	var req huntRequest
	if !decodeRequest(w, r, &req) {
		return
	}
	h, err := s.exps.startHunt(req)
	if err != nil {
		httpError(w, statusOf(err), err)
		return
	}
	writeJSON(w, h.view())
}

func (s *Server) handleHunts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.exps.huntViews())
}

func (s *Server) handleStopHunt(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err == nil {
		err = s.exps.stopHunt(id)
	}
	if err != nil {
		httpError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, map[string]bool{"stopped": true})
}

// savedRun is a run in /api/runs.
type savedRun struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
	// Hunting is set where a hunt is under way in the directory (its
	// reports.LiveFile, its process alive): the page can watch it.
	Hunting *huntingRun `json:"hunting,omitempty"`
}

// huntingRun is the hunt under way in a run directory.
type huntingRun struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Command []string  `json:"command"`
	Rounds  int       `json:"rounds"`
}

// handleRuns lists the runs in the server's directory: the directories
// that hold a run.json, or a hunt under way.
func (s *Server) handleRuns(w http.ResponseWriter, r *http.Request) {
	saved, _ := filepath.Glob(filepath.Join(s.dir, "*", reports.RunFile))
	live, _ := filepath.Glob(filepath.Join(s.dir, "*", reports.LiveFile))
	out := []savedRun{}
	seen := map[string]bool{}
	for _, p := range append(saved, live...) {
		dir := filepath.Dir(p)
		name := filepath.Base(dir)
		if seen[name] || !plainName.MatchString(name) {
			continue
		}
		run := savedRun{Name: name, Files: runFiles(dir)}
		if l, err := reports.LoadLive(dir); err == nil && hunting(l) {
			run.Hunting = &huntingRun{PID: l.PID, Started: l.Started, Command: l.Command, Rounds: len(l.Rounds)}
		}
		if len(run.Files) > 0 || run.Hunting != nil {
			seen[name] = true
			out = append(out, run)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, out)
}

// handleRunTree serves a saved run's tree as a hunt's (reports.FlameJSON).
func (s *Server) handleRunTree(w http.ResponseWriter, r *http.Request) {
	dir, err := s.path(r.PathValue("name"))
	var run *search.Run
	if err == nil {
		run, err = reports.Load(dir)
	}
	var tree []byte
	if err == nil {
		tree, err = reports.FlameJSON(run)
	}
	if err != nil {
		httpError(w, http.StatusNotFound, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(tree)
}

// handleRunFile serves one of a saved run's files (servedFiles).
// report.html is self-contained, with inline script and style, so it gets
// a policy of its own: nothing but itself.
func (s *Server) handleRunFile(w http.ResponseWriter, r *http.Request) {
	name, file := r.PathValue("name"), r.PathValue("file")
	dir, err := s.path(name)
	if err != nil || !slices.Contains(servedFiles, file) {
		httpError(w, http.StatusNotFound, fmt.Errorf("no run file %s/%s", name, file))
		return
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeFile(w, r, filepath.Join(dir, file))
}
