package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

	mu     sync.Mutex
	state  string // running, done, stopped, failed
	err    string
	rounds []progressJSON
	files  []string
	// events are the decisions so far; tree the flame graph's data of
	// the last snapshot of the tree (reports.FlameJSON), of the finished
	// run once it ends.
	events []search.Event
	tree   json.RawMessage
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

// progressJSON is search.Progress as the page gets it.
type progressJSON struct {
	Round         int             `json:"round"`
	ElapsedS      float64         `json:"elapsed_s"`
	Live          int             `json:"live"`
	PredictedPct  num             `json:"predicted_pct"`
	MeasuredPct   num             `json:"measured_pct"`   // -1: not measured
	ControllerPct num             `json:"controller_pct"` // -1: not measured
	Best          []candidateJSON `json:"best"`
	// Nodes and Events count the tree's nodes after the round and the
	// decisions taken since the round before.
	Nodes  int `json:"nodes"`
	Events int `json:"events"`
}

// candidateJSON is search.Candidate: its exclusive share's interval.
type candidateJSON struct {
	Path string `json:"path"`
	Excl struct {
		Mean num `json:"mean"`
		Low  num `json:"low"`
		High num `json:"high"`
		N    int `json:"n"`
	} `json:"excl"`
}

// num is a number that JSON writes as null where it is not finite (an
// interval of one round has no bounds yet).
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// huntView is a hunt in /api/hunts and in the "hunt" events.
type huntView struct {
	ID      int            `json:"id"`
	Out     string         `json:"out"`
	State   string         `json:"state"`
	Error   string         `json:"error,omitempty"`
	Started time.Time      `json:"started"`
	Request huntRequest    `json:"request"`
	Rounds  []progressJSON `json:"rounds"`
	// Files are the outputs written, served under /runs/OUT/.
	Files []string `json:"files,omitempty"`
	// Tree is the calling-context tree as it stands, with the decisions
	// so far: the flame graph's data (reports.FlameJSON).
	Tree json.RawMessage `json:"tree,omitempty"`
}

func (h *hunt) view() huntView {
	h.mu.Lock()
	defer h.mu.Unlock()
	return huntView{ID: h.id, Out: h.out, State: h.state, Error: h.err, Started: h.started, Request: h.req,
		Rounds: append([]progressJSON{}, h.rounds...), Files: h.files, Tree: h.tree}
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
	case slices.ContainsFunc(x.hunts, func(h *hunt) bool { return h.view().State == "running" }):
		x.mu.Unlock()
		cancel()
		return nil, badRequest(errors.New("a hunt is running: one at a time"))
	}
	x.nextID++
	h.id = x.nextID
	x.hunts = append(x.hunts, h)
	if len(x.subs) == 0 {
		x.armOrphan()
	}
	x.mu.Unlock()
	o.ProgressTree = true
	o.Progress = func(p search.Progress) {
		h.mu.Lock()
		h.rounds = append(h.rounds, progressOf(p))
		h.events = append(h.events, p.Events...)
		h.setTree(&search.Run{Meta: search.Meta{Rounds: p.Round}, Nodes: p.Nodes, Trace: h.events})
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

// setTree sets the tree the page draws; h.mu is held.
func (h *hunt) setTree(run *search.Run) {
	if t, err := reports.FlameJSON(run); err == nil {
		h.tree = t
	}
}

func progressOf(p search.Progress) progressJSON {
	j := progressJSON{Round: p.Round, ElapsedS: p.Elapsed.Seconds(), Live: p.Live, PredictedPct: num(p.PredictedPct),
		MeasuredPct: num(p.MeasuredPct), ControllerPct: num(p.ControllerPct), Best: []candidateJSON{},
		Nodes: len(p.Nodes), Events: len(p.Events)}
	for _, c := range p.Best {
		cj := candidateJSON{Path: c.Path}
		cj.Excl.Mean, cj.Excl.Low, cj.Excl.High, cj.Excl.N = num(c.Excl.Mean), num(c.Excl.Low), num(c.Excl.High), c.Excl.N
		j.Best = append(j.Best, cj)
	}
	return j
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
	var out []string
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
}

// handleRuns lists the saved runs in the server's directory: the
// directories that hold a run.json.
func (s *Server) handleRuns(w http.ResponseWriter, r *http.Request) {
	m, _ := filepath.Glob(filepath.Join(s.dir, "*", reports.RunFile))
	out := []savedRun{}
	for _, p := range m {
		dir := filepath.Dir(p)
		if name := filepath.Base(dir); plainName.MatchString(name) {
			out = append(out, savedRun{name, runFiles(dir)})
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
