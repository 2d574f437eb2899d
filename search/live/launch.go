package live

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/autoprof/autoprof/splice"
)

// Workload is a command that a hunt measures from its first instruction,
// with the processes it starts, as perf record does with a command.
//
// Where cgroup v2 works, the command is started in a fresh cgroup (clone3
// with CLONE_INTO_CGROUP) that is frozen first: it stops before its
// first instruction (before execve), the hunt attaches its first
// instruments (the syscall census, the --root timers) with the cgroup as
// the target, and the first reading of them thaws it. Its children are
// in the cgroup too, so they are measured (unless NoInherit, or with the
// splice backend, which filters by process only: then the target is the
// command's process). Where no cgroup can be made, the command is started
// as it is, with its process as the target, and Limitation says what is
// lost.
type Workload struct {
	// Cmd is the command, not started; its SysProcAttr is set by start.
	Cmd *exec.Cmd
	// NoInherit measures the command's process only, not its children.
	NoInherit bool

	// Limitation says what could not be done, "" when nothing.
	Limitation string

	cgroup   string // the fresh cgroup, "" without one
	pid      int
	thawOnce sync.Once
	started  chan error // Cmd.Start's result (it returns once the child has called execve)
	done     chan struct{}
	waitErr  error
	startAt  time.Time
	endAt    time.Time
}

// start creates the cgroup, starts the command in it frozen and returns
// the target to hunt; backend is the session's function backend.
func (w *Workload) start(backend string) (splice.Target, error) {
	w.done = make(chan struct{})
	cg, err := newCgroup()
	if err != nil {
		return w.startPlain(fmt.Sprintf("the command's start is not measured and its children are not followed: %v", err))
	}
	w.cgroup = cg
	pid, err := w.startFrozen()
	if err != nil {
		w.removeCgroup()
		return splice.Target{}, err
	}
	w.pid = pid
	switch {
	case w.NoInherit:
		return splice.Target{PIDs: []int{pid}}, nil
	case backend == "splice":
		w.Limitation = "the command's children are not measured: the splice backend filters by process, not by cgroup (--backend fentry or kprobe follows them)"
		return splice.Target{PIDs: []int{pid}}, nil
	}
	return splice.Target{Cgroup: cg}, nil
}

// startPlain starts the command without a cgroup: its process is the
// target, from whenever the instruments come.
func (w *Workload) startPlain(why string) (splice.Target, error) {
	w.Limitation = why
	if err := w.Cmd.Start(); err != nil {
		return splice.Target{}, fmt.Errorf("starting %s: %w", w.Cmd.Path, err)
	}
	w.pid, w.startAt = w.Cmd.Process.Pid, time.Now()
	w.thawOnce.Do(func() {})
	go w.wait()
	return splice.Target{PIDs: []int{w.pid}}, nil
}

// startFrozen freezes the cgroup, starts the command into it and returns
// its pid once it is there. Cmd.Start does not return before the child
// has called execve, which it cannot while frozen: it runs in a goroutine
// until thaw.
func (w *Workload) startFrozen() (int, error) {
	if err := writeCgroup(w.cgroup, "cgroup.freeze", "1"); err != nil {
		return 0, err
	}
	dir, err := os.Open(w.cgroup)
	if err != nil {
		return 0, fmt.Errorf("opening the command's cgroup: %w", err)
	}
	if w.Cmd.SysProcAttr == nil {
		w.Cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	w.Cmd.SysProcAttr.UseCgroupFD, w.Cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	w.started = make(chan error, 1)
	go func() {
		err := w.Cmd.Start()
		dir.Close()
		w.started <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		select {
		case err := <-w.started: // it failed before it was in the cgroup (a started one waits for the thaw)
			if err == nil {
				err = errors.New("it ran before it was frozen")
			}
			return 0, fmt.Errorf("starting %s: %w", w.Cmd.Path, err)
		default:
		}
		if pids, _ := cgroupProcs(w.cgroup); len(pids) > 0 {
			return pids[0], nil
		}
		if time.Now().After(deadline) {
			w.thaw()
			return 0, fmt.Errorf("starting %s: it did not appear in its cgroup in 10s", w.Cmd.Path)
		}
	}
}

// thaw lets the frozen command run (once; later calls do nothing).
func (w *Workload) thaw() {
	w.thawOnce.Do(func() {
		w.startAt = time.Now()
		if w.cgroup == "" {
			return
		}
		writeCgroup(w.cgroup, "cgroup.freeze", "0")
		go func() {
			if err := <-w.started; err != nil {
				w.waitErr, w.endAt = fmt.Errorf("starting %s: %w", w.Cmd.Path, err), time.Now()
				close(w.done)
				return
			}
			w.wait()
		}()
	})
}

func (w *Workload) wait() {
	w.waitErr = w.Cmd.Wait()
	w.endAt = time.Now()
	close(w.done)
}

// Done is closed when the command has exited (after Err is set), or at
// once where the hunt never started it.
func (w *Workload) Done() <-chan struct{} {
	if w.done == nil {
		return closedChan
	}
	return w.done
}

// closedChan is closed.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Err is what waiting for the command returned; read it after Done.
func (w *Workload) Err() error { return w.waitErr }

// Pid is the command's process id, 0 before the hunt started it.
func (w *Workload) Pid() int { return w.pid }

// Ran is how long the command ran, from when it was let run to its exit
// (or to now).
func (w *Workload) Ran() time.Duration {
	select {
	case <-w.done:
		return w.endAt.Sub(w.startAt)
	default:
		return time.Since(w.startAt)
	}
}

// Describe names the target for the run: the command, its pid and
// whether its children count.
func (w *Workload) Describe() string {
	s := fmt.Sprintf("%s (pid %d", strings.Join(w.Cmd.Args, " "), w.pid)
	if w.cgroup != "" && !w.NoInherit && !strings.Contains(w.Limitation, "children") {
		s += " and its children"
	}
	return s + ")"
}

// Signal sends sig to the command (and, with a cgroup, every process in
// it); a frozen command is thawed first so that it can act on sig.
func (w *Workload) Signal(sig syscall.Signal) {
	if w.pid == 0 {
		return
	}
	if w.cgroup != "" && sig == syscall.SIGKILL {
		writeCgroup(w.cgroup, "cgroup.kill", "1") // 5.14+; the loop below where it is missing
	}
	if sig != syscall.SIGKILL {
		w.thaw()
	}
	pids := []int{w.pid}
	if w.cgroup != "" {
		pids, _ = cgroupProcs(w.cgroup)
	}
	for _, p := range pids {
		syscall.Kill(p, sig)
	}
	if sig == syscall.SIGKILL {
		w.thaw()
	}
}

// Close removes the cgroup once the command has exited: processes it left
// behind (daemons) are moved to autoprof's own cgroup first.
func (w *Workload) Close() error {
	if w.cgroup == "" {
		return nil
	}
	w.thaw()
	return w.removeCgroup()
}

func (w *Workload) removeCgroup() error {
	defer func() { w.cgroup = "" }()
	writeCgroup(w.cgroup, "cgroup.freeze", "0")
	if pids, _ := cgroupProcs(w.cgroup); len(pids) > 0 {
		parent := filepath.Dir(w.cgroup)
		for _, p := range pids {
			writeCgroup(parent, "cgroup.procs", strconv.Itoa(p))
		}
	}
	if err := os.Remove(w.cgroup); err != nil {
		return fmt.Errorf("removing the command's cgroup: %w", err)
	}
	return nil
}

// newCgroup makes a fresh cgroup v2 directory beside autoprof's own: a
// child of autoprof's cgroup, which holds processes and so has no
// controllers delegated that would forbid it (the no-internal-processes
// rule), or of the root.
func newCgroup() (string, error) {
	root, err := splice.Cgroup2Root()
	if err != nil {
		return "", err
	}
	own, err := splice.OwnCgroup()
	if err != nil {
		return "", err
	}
	removeStale(filepath.Join(root, own))
	for i := 0; ; i++ {
		dir := filepath.Join(root, own, fmt.Sprintf("autoprof-%d-%d", os.Getpid(), i))
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("making a cgroup for the command: %w", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err != nil {
			os.Remove(dir)
			return "", errors.New("the cgroup v2 freezer is missing (Linux 5.2+)")
		}
		return dir, nil
	}
}

// removeStale removes the empty cgroups that autoprof processes which no
// longer run (killed before their Close) left in dir.
func removeStale(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, "autoprof-*-*"))
	for _, d := range stale {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "autoprof-"), "-")
		if _, err := os.Stat(filepath.Join(procRoot, pid)); errors.Is(err, os.ErrNotExist) {
			os.Remove(d) // fails where it holds processes
		}
	}
}

func writeCgroup(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("writing %s to %s: %w", value, file, err)
	}
	return nil
}

// cgroupProcs lists the processes of a cgroup (not of its descendants).
func cgroupProcs(dir string) ([]int, error) {
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseIDs(f)
}
