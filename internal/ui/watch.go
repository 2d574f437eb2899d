package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/autoprof/autoprof/reports"
)

// watchPeriod is how often a watched hunt's live file is read: the hunt
// rewrites it at most every reports.LiveInterval.
const watchPeriod = 250 * time.Millisecond

// watchHunt follows the hunt under way in the run directory name, which
// another process runs (autoprof hunt in a terminal, or another server),
// through its reports.LiveFile: it becomes one of the page's hunts, its
// rounds and tree published as they are written, until the file goes
// (the hunt ended: its outputs, where it wrote them, are the hunt's
// files) or its process does (killed before it could say). Watching a
// hunt already watched returns that one.
func (x *experiments) watchHunt(name string) (*hunt, error) {
	dir, err := x.s.path(name)
	if err != nil {
		return nil, badRequest(err)
	}
	l, err := reports.LoadLive(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, badRequest(fmt.Errorf("no hunt under way in %s (no %s there)", name, reports.LiveFile))
	case err != nil:
		return nil, err
	case !hunting(l):
		return nil, badRequest(fmt.Errorf("no hunt under way in %s: its process %d is gone", name, l.PID))
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &hunt{out: name, started: l.Started, cancel: cancel, done: make(chan struct{}), state: "running", watched: true, command: l.Command}
	h.track.Rounds, h.tree = l.Rounds, l.Tree
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		cancel()
		return nil, errors.New("the server is closing")
	}
	if i := slices.IndexFunc(x.hunts, func(o *hunt) bool { return o.watched && o.out == name && o.view().State == "running" }); i >= 0 {
		o := x.hunts[i]
		x.mu.Unlock()
		cancel()
		return o, nil
	}
	x.addHunt(h)
	x.mu.Unlock()
	x.publish(event{"hunt", h.view()})
	go x.follow(ctx, h, dir, l)
	return h, nil
}

// follow reads the live file of a watched hunt every watchPeriod and
// publishes what changed, until the hunt ends or ctx is done (Stop on the
// page stops watching, not the hunt).
func (x *experiments) follow(ctx context.Context, h *hunt, dir string, last *reports.Live) {
	defer close(h.done)
	defer h.cancel()
	t := time.NewTicker(watchPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.state = "stopped"
			h.err = "no longer watched: the hunt goes on in its process"
			h.mu.Unlock()
			x.publish(event{"hunt", h.view()})
			return
		case <-t.C:
		}
		l, err := reports.LoadLive(dir)
		switch {
		case err == nil && hunting(l):
			if l.Updated.Equal(last.Updated) {
				continue
			}
			last = l
			h.mu.Lock()
			h.track.Rounds, h.tree = l.Rounds, l.Tree
			h.mu.Unlock()
			x.publish(event{"hunt", h.view()})
			continue
		case err != nil && !errors.Is(err, os.ErrNotExist):
			continue // a file being replaced; the next read sees it whole
		}
		x.ended(h, dir, last, err == nil)
		return
	}
}

// ended settles a watched hunt whose live file went (or whose process is
// gone, killed: the file stayed): done with the run it wrote, else failed.
func (x *experiments) ended(h *hunt, dir string, last *reports.Live, killed bool) {
	h.mu.Lock()
	defer func() {
		h.mu.Unlock()
		x.publish(event{"hunt", h.view()})
	}()
	run, err := reports.Load(dir)
	if !killed && err == nil && !run.Meta.Start.Before(last.Started.Add(-time.Second)) {
		h.state, h.files = "done", runFiles(dir)
		if tree, err := reports.FlameJSON(run); err == nil {
			h.tree = tree
		}
		return
	}
	h.state = "failed"
	if killed {
		h.err = fmt.Sprintf("the hunting process %d is gone without ending its hunt (killed?)", last.PID)
	} else {
		h.err = "the hunt ended without writing its outputs (see its terminal)"
	}
}

// hunting reports whether the process that wrote l is still there: a
// process of that pid that started before the hunt did (a pid used again
// by a later process is not the hunt's).
func hunting(l *reports.Live) bool {
	if l.PID <= 0 {
		return false
	}
	start, err := processStart(l.PID)
	return err == nil && !start.After(l.Started.Add(2*time.Second))
}

// processStart is when process pid started: its start time in clock ticks
// after boot (/proc/PID/stat, field 22; USER_HZ is 100 on Linux) after
// the boot time (/proc/stat btime).
func processStart(pid int) (time.Time, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return time.Time{}, fmt.Errorf("reading /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return time.Time{}, fmt.Errorf("reading /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64) // field 22
	if err != nil {
		return time.Time{}, fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
	}
	boot, err := bootTime()
	if err != nil {
		return time.Time{}, err
	}
	return boot.Add(time.Duration(ticks) * time.Second / 100), nil
}

// bootTime is /proc/stat's btime: when the machine booted, to the second.
func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("reading /proc/stat: btime: %w", err)
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, errors.New("reading /proc/stat: no btime")
}

// handleWatch starts watching the hunt under way in a run directory
// (POST /api/runs/{name}/watch) and answers with it.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	h, err := s.exps.watchHunt(r.PathValue("name"))
	if err != nil {
		httpError(w, statusOf(err), err)
		return
	}
	writeJSON(w, h.view())
}
