package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice"
)

// experiment is one experiment started from the page: a splice.Run on a
// session of its own.
type experiment struct {
	id      int
	name    string
	backend string
	out     string
	file    *splice.Experiment
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	state    string // running, done, stopped, failed
	err      string
	launched []string
	summary  *splice.RunSummary
	// reach is splice.ReachWarnings of the plan, worked out in the
	// background once the instruments are live, as probe does.
	reach map[string]string
}

// experimentView is an experiment in /api/experiments and in the
// "experiment" events.
type experimentView struct {
	ID         int                `json:"id"`
	Name       string             `json:"name"`
	Backend    string             `json:"backend"`
	Out        string             `json:"out,omitempty"`
	State      string             `json:"state"`
	Error      string             `json:"error,omitempty"`
	Started    time.Time          `json:"started"`
	Launched   []string           `json:"launched"`
	Experiment *splice.Experiment `json:"experiment"`
	Summary    *splice.RunSummary `json:"summary,omitempty"`
	// Warnings are what probe warns of the launched instruments: an
	// entry whose function's code runs elsewhere (splice.ReachWarning).
	Warnings []string `json:"warnings,omitempty"`
}

func (e *experiment) view() experimentView {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := experimentView{ID: e.id, Name: e.name, Backend: e.backend, Out: e.out, State: e.state, Error: e.err,
		Started: e.started, Launched: append([]string{}, e.launched...), Experiment: e.file, Summary: e.summary}
	for _, name := range e.launched {
		if w := e.reach[name]; w != "" {
			v.Warnings = append(v.Warnings, w)
		}
	}
	return v
}

// reading is one interval of one experiment, as the "reading" events
// carry it: splice.Run's summaries without their per-context detail.
type reading struct {
	ID        int              `json:"id"`
	ElapsedS  float64          `json:"elapsed_s"`
	Time      time.Time        `json:"time"`
	IntervalS float64          `json:"interval_s"`
	Sums      []splice.Summary `json:"instruments"`
	// OverheadCPU is the CPU time the instruments' programs took in the
	// interval, in CPUs (0.01: 1% of one CPU), as the kernel's BPF
	// run-time statistics measured it; absent where it measured nothing
	// (the splice backend runs no BPF program).
	OverheadCPU *float64 `json:"overhead_cpu,omitempty"`
}

// event is one server-sent event.
type event struct {
	name string
	data any
}

// experiments holds the server's experiments and the pages listening to
// their events.
type experiments struct {
	s      *Server
	mu     sync.Mutex
	nextID int
	list   []*experiment
	hunts  []*hunt
	subs   map[chan event]bool
	closed bool
	// orphan stops every experiment when no page has listened for
	// Options.Orphaned.
	orphan *time.Timer
}

func (x *experiments) init(s *Server) {
	x.s, x.subs = s, map[chan event]bool{}
}

// start checks the experiment file's plan, opens a session of backend and
// runs the plan in the background.
func (x *experiments) start(req startRequest) (*experiment, error) {
	e, plan, err := splice.ParseExperiment(req.Experiment)
	if err != nil {
		return nil, badRequest(err)
	}
	tg := instrument.Target{PIDs: e.Target.PIDs, Cgroup: e.Target.Cgroup}
	if err := splice.CheckTarget(tg); err != nil {
		return nil, badRequest(fmt.Errorf("target %w", err))
	}
	var backend instrument.Backend
	if req.Backend != "" {
		if backend, err = instrument.ParseBackend(req.Backend); err != nil {
			return nil, badRequest(err)
		}
	}
	out := ""
	if req.Out != "" {
		if out, err = x.s.path(req.Out); err != nil {
			return nil, badRequest(err)
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	sess, err := splice.Open(ctx, splice.Options{Backend: backend, Graph: x.s.graph})
	if err != nil {
		cancel()
		return nil, err
	}
	if err := splice.CheckPlan(sess, plan); err != nil {
		cancel()
		sess.Close()
		return nil, badRequest(err)
	}
	ex := &experiment{name: req.Name, backend: string(sess.Backend()), out: req.Out, file: e, started: time.Now(), cancel: cancel, done: make(chan struct{}), state: "running"}
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		cancel()
		sess.Close()
		return nil, errors.New("the server is closing")
	}
	x.nextID++
	ex.id = x.nextID
	if ex.name == "" {
		ex.name = "experiment " + strconv.Itoa(ex.id)
	}
	x.list = append(x.list, ex)
	if len(x.subs) == 0 {
		x.armOrphan()
	}
	x.mu.Unlock()
	interval := time.Duration(e.Interval)
	if interval <= 0 {
		interval = time.Second
	}
	specs := make([]instrument.Spec, len(plan))
	for i, p := range plan {
		specs[i] = p.Spec
	}
	reached := make(chan map[string]string, 1)
	run := &splice.Run{Plan: plan, PIDs: tg.PIDs, Duration: time.Duration(e.Duration), Interval: interval, Out: out, MaxOverheadPct: e.MaxOverheadPct,
		Started: func() { // it takes the CPUs for seconds: once the instruments are live
			go func() {
				w := splice.ReachWarnings(x.s.graph, specs)
				ex.mu.Lock()
				ex.reach = w
				ex.mu.Unlock()
				reached <- w
				x.publish(event{"experiment", ex.view()})
			}()
		},
		Notes: func(_ []string, total []splice.Summary) []string { return splice.IdleNotes(total, <-reached) },
		Waiting: func(launched []string) {
			ex.mu.Lock()
			changed := len(launched) != len(ex.launched)
			ex.launched = launched
			ex.mu.Unlock()
			if changed {
				x.publish(event{"experiment", ex.view()})
			}
		},
		Each: func(iv splice.Interval) error {
			r := reading{ID: ex.id, ElapsedS: iv.Elapsed.Seconds(), Time: iv.At, IntervalS: iv.Length.Seconds(), Sums: brief(iv.Sums)}
			if iv.OverheadCPU >= 0 {
				r.OverheadCPU = &iv.OverheadCPU
			}
			x.publish(event{"reading", r})
			return nil
		},
	}
	x.publish(event{"experiment", ex.view()})
	go func() {
		defer close(ex.done)
		sum, err := run.Do(ctx, sess)
		err = errors.Join(err, sess.Close())
		ex.mu.Lock()
		switch {
		case err != nil:
			ex.state, ex.err = "failed", err.Error()
		case ctx.Err() != nil:
			ex.state = "stopped"
		default:
			ex.state = "done"
		}
		ex.summary = sum
		if sum != nil {
			x.s.targets.add(sum.Instruments)
			sum.Instruments = brief(sum.Instruments)
		}
		ex.mu.Unlock()
		cancel()
		x.publish(event{"experiment", ex.view()})
	}()
	return ex, nil
}

// brief drops the per-context detail of sums.
func brief(sums []splice.Summary) []splice.Summary {
	out := make([]splice.Summary, len(sums))
	for i, s := range sums {
		s.Contexts, s.Targets = nil, nil
		out[i] = s
	}
	return out
}

// stop stops one experiment and waits until everything it inserted is
// withdrawn.
func (x *experiments) stop(id int) error {
	x.mu.Lock()
	var ex *experiment
	for _, e := range x.list {
		if e.id == id {
			ex = e
		}
	}
	x.mu.Unlock()
	if ex == nil {
		return fmt.Errorf("no experiment %d", id)
	}
	ex.cancel()
	<-ex.done
	return nil
}

// stopAll stops every experiment and hunt and waits until all are
// withdrawn.
func (x *experiments) stopAll() {
	x.mu.Lock()
	list := append([]*experiment(nil), x.list...)
	hunts := append([]*hunt(nil), x.hunts...)
	x.mu.Unlock()
	for _, e := range list {
		e.cancel()
	}
	for _, h := range hunts {
		h.cancel()
	}
	for _, e := range list {
		<-e.done
	}
	for _, h := range hunts {
		<-h.done
	}
}

// close refuses new experiments and stops the others; it returns false
// when already closed.
func (x *experiments) close() bool {
	x.mu.Lock()
	was := x.closed
	x.closed = true
	if x.orphan != nil {
		x.orphan.Stop()
	}
	x.mu.Unlock()
	x.stopAll()
	return !was
}

func (x *experiments) views() []experimentView {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := []experimentView{}
	for _, e := range x.list {
		out = append(out, e.view())
	}
	return out
}

// subscribe adds a listener of events; the returned function removes it.
// When the last listener goes, the experiments are orphaned.
func (x *experiments) subscribe() (<-chan event, func()) {
	c := make(chan event, 64)
	x.mu.Lock()
	x.subs[c] = true
	if x.orphan != nil {
		x.orphan.Stop()
		x.orphan = nil
	}
	x.mu.Unlock()
	return c, func() {
		x.mu.Lock()
		delete(x.subs, c)
		if len(x.subs) == 0 {
			x.armOrphan()
		}
		x.mu.Unlock()
	}
}

// armOrphan stops every experiment unless a page listens again within
// Options.Orphaned. x.mu is held.
func (x *experiments) armOrphan() {
	if x.orphan != nil {
		x.orphan.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(x.s.orphaned, func() {
		x.mu.Lock()
		still := x.orphan == t && len(x.subs) == 0
		x.mu.Unlock()
		if still {
			x.stopAll()
		}
	})
	x.orphan = t
}

// publish sends ev to every listener; a listener too slow to take it
// misses it.
func (x *experiments) publish(ev event) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for c := range x.subs {
		select {
		case c <- ev:
		default:
		}
	}
}

// startRequest is POST /api/experiments' body.
type startRequest struct {
	Name    string `json:"name"`
	Backend string `json:"backend"` // "" for the best available, as probe
	Out     string `json:"out"`     // output name below the server's directory, "" for none
	// Experiment is the experiment as probe --experiment reads it.
	Experiment json.RawMessage `json:"experiment"`
}

// errBadRequest marks the user's mistakes (400).
type errBadRequest struct{ error }

func (e errBadRequest) Unwrap() error { return e.error }

func badRequest(err error) error { return errBadRequest{err} }

func statusOf(err error) int {
	var bad errBadRequest
	if errors.As(err, &bad) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	var req startRequest
	if !decodeRequest(w, r, &req) {
		return
	}
	ex, err := s.exps.start(req)
	if err != nil {
		httpError(w, statusOf(err), err)
		return
	}
	writeJSON(w, ex.view())
}

func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err == nil {
		err = s.exps.stop(id)
	}
	if err != nil {
		httpError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, map[string]bool{"stopped": true})
}

func (s *Server) handleExperiments(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.exps.views())
}

// handleEvents streams the experiments' events (server-sent events):
// "experiment" with an experimentView on every change of state, "reading"
// every interval. A comment every 15 s finds a page that went away.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, errors.New("no streaming"))
		return
	}
	events, unsubscribe := s.exps.subscribe()
	defer unsubscribe()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	for _, v := range s.exps.views() {
		writeEvent(w, event{"experiment", v})
	}
	for _, v := range s.exps.huntViews() {
		writeEvent(w, event{"hunt", v})
	}
	fl.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-events:
			if writeEvent(w, ev) != nil {
				return
			}
		case <-ping.C:
			if _, err := io.WriteString(w, ": ping\n\n"); err != nil {
				return
			}
		}
		fl.Flush()
	}
}

// writeEvent writes one event; one that cannot be encoded becomes a
// "problem" event saying why, and the stream goes on.
func writeEvent(w io.Writer, ev event) error {
	data, err := json.Marshal(ev.data)
	if err != nil {
		data, _ = json.Marshal(map[string]string{"error": fmt.Sprintf("%s event: %v", ev.name, err)})
		ev.name = "problem"
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, data)
	return err
}

// plainName is what the user may type as a file or output name: no
// directory, nothing hidden.
var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// path returns name below the server's directory, refusing anything but
// a plain name.
func (s *Server) path(name string) (string, error) {
	if !plainName.MatchString(name) {
		return "", fmt.Errorf("name %q: want letters, digits, '.', '_' or '-', no directory", name)
	}
	return filepath.Join(s.dir, name), nil
}

// fileRequest is POST /api/experiment-file's body, and GET's answer.
type fileRequest struct {
	Name       string          `json:"name"`
	Experiment json.RawMessage `json:"experiment"`
}

// handleSave checks an experiment as probe --experiment would and saves it
// under the name given, as JSON.
func (s *Server) handleSave(w http.ResponseWriter, r *http.Request) {
	var req fileRequest
	if !decodeRequest(w, r, &req) {
		return
	}
	path, err := s.path(req.Name)
	if err == nil {
		_, _, err = splice.ParseExperiment(req.Experiment)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	var pretty any
	json.Unmarshal(req.Experiment, &pretty)
	data, _ := json.MarshalIndent(pretty, "", "  ")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, map[string]string{"saved": req.Name})
}

// handleLoad reads an experiment file (JSON or YAML, as probe
// --experiment reads it) and answers it as JSON.
func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	path, err := s.path(name)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		httpError(w, http.StatusNotFound, err)
		return
	}
	e, _, err := splice.ParseExperiment(data)
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("%s: %w", name, err))
		return
	}
	js, _ := json.Marshal(e)
	writeJSON(w, fileRequest{Name: name, Experiment: js})
}

// handleFiles lists the experiment files (*.json, *.yaml, *.yml) of the
// server's directory.
func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	var names []string
	for _, pat := range []string{"*.json", "*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(s.dir, pat))
		for _, p := range m {
			if b := filepath.Base(p); plainName.MatchString(b) {
				names = append(names, b)
			}
		}
	}
	sort.Strings(names)
	writeJSON(w, map[string][]string{"files": append([]string{}, names...)})
}
