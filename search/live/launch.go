//go:build linux

package live

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice"
)

// Workload is a command that a hunt measures from its first instruction,
// with the processes it starts, as perf record does with a command.
//
// Where cgroup v2 works, the hunt's target is a fresh, empty cgroup: the
// hunt attaches its first instruments (the syscall census, the --root
// timers) to it, and the first reading of them starts the command in it
// (clone3 with CLONE_INTO_CGROUP), so that they see its first
// instruction and the processes it starts, which are in the cgroup too.
//
// Where the target must be the command's process (NoInherit, or the
// splice backend, which filters by process only) or no cgroup can be
// made, the command is started traced (PTRACE_TRACEME): it stops at its
// execve before its first instruction, the hunt attaches to its pid, and
// the first reading detaches it. Where that fails too, it starts at once
// and Limitation says what is lost.
//
// (Freezing the cgroup before starting the command in it would stop the
// child before execve; but Go's fork holds its P until the child execs,
// and a garbage collection in that window waits for it for ever.)
type Workload struct {
	// Cmd is the command, not started; start sets its SysProcAttr.
	Cmd *exec.Cmd
	// NoInherit measures the command's process only, not its children.
	NoInherit bool

	// Limitation says what could not be done, "" when nothing.
	Limitation string

	cgroup  string // the fresh cgroup, "" without one
	pid     int
	release func() error // lets the command run (start it, or detach it)
	once    sync.Once
	done    chan struct{}
	waitErr error
	startAt time.Time
	endAt   time.Time
}

// ErrNotStarted is what Err returns for a command the hunt ended before
// it started it (interrupted while it attached its first instruments).
var ErrNotStarted = errors.New("not started: the hunt ended before")

// start prepares the command and returns the target to hunt; backend is
// the session's function backend. The command runs once go is called.
func (w *Workload) start(backend instrument.Backend) (instrument.Target, error) {
	w.done = make(chan struct{})
	byPid := w.NoInherit || backend == instrument.Splice
	var why error
	if !byPid {
		cg, err := newCgroup()
		if err == nil {
			w.cgroup = cg
			w.release = w.startInCgroup
			return instrument.Target{Cgroup: cg}, nil
		}
		why = err
	}
	if err := w.startTraced(); err == nil {
		if backend == instrument.Splice && !w.NoInherit {
			w.Limitation = "the command's children are not measured: the splice backend filters by process, not by cgroup (--backend fentry or kprobe follows them)"
		}
		if why != nil {
			w.Limitation = fmt.Sprintf("the command's children are not measured: %v", why)
		}
		return instrument.Target{PIDs: []int{w.pid}}, nil
	} else if why == nil {
		why = err
	}
	w.Limitation = fmt.Sprintf("the command's start is not measured and its children are not followed: %v", why)
	if err := w.Cmd.Start(); err != nil {
		return instrument.Target{}, fmt.Errorf("starting %s: %w", w.Cmd.Path, err)
	}
	w.pid = w.Cmd.Process.Pid
	w.once.Do(func() {}) // it runs already: nothing to let go or abandon
	w.launched()
	return instrument.Target{PIDs: []int{w.pid}}, nil
}

// startInCgroup starts the command in the cgroup.
func (w *Workload) startInCgroup() error {
	dir, err := os.Open(w.cgroup)
	if err != nil {
		return fmt.Errorf("opening the command's cgroup: %w", err)
	}
	defer dir.Close()
	if w.Cmd.SysProcAttr == nil {
		w.Cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	w.Cmd.SysProcAttr.UseCgroupFD, w.Cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	if err := w.Cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", w.Cmd.Path, err)
	}
	w.pid = w.Cmd.Process.Pid
	w.launched()
	return nil
}

// startTraced starts the command traced, stopped at its execve; release
// detaches it. Tracing belongs to the thread that started it: one locked
// goroutine starts, waits for the stop and detaches.
func (w *Workload) startTraced() error {
	if w.Cmd.SysProcAttr == nil {
		w.Cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	w.Cmd.SysProcAttr.Ptrace = true
	stopped, detach, detached := make(chan error, 1), make(chan struct{}), make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := w.Cmd.Start(); err != nil {
			stopped <- err
			return
		}
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(w.Cmd.Process.Pid, &ws, syscall.WALL, nil)
		if err == nil && !ws.Stopped() {
			err = fmt.Errorf("it did not stop at its execve (%v)", ws)
		}
		stopped <- err
		if err != nil {
			return
		}
		<-detach
		detached <- syscall.PtraceDetach(w.Cmd.Process.Pid)
	}()
	if err := <-stopped; err != nil {
		if w.Cmd.Process != nil {
			w.Cmd.Process.Kill()
			w.Cmd.Wait()
		}
		w.Cmd = rebuilt(w.Cmd)
		return fmt.Errorf("starting %s traced: %w", w.Cmd.Path, err)
	}
	w.pid = w.Cmd.Process.Pid
	w.release = func() error {
		close(detach)
		if err := <-detached; err != nil {
			return fmt.Errorf("letting %s run: %w", w.Cmd.Path, err)
		}
		w.launched()
		return nil
	}
	return nil
}

// rebuilt is a fresh copy of a command whose start failed (a Cmd starts
// once).
func rebuilt(c *exec.Cmd) *exec.Cmd {
	n := exec.Command(c.Path, c.Args[1:]...)
	n.Args, n.Env, n.Dir = c.Args, c.Env, c.Dir
	n.Stdin, n.Stdout, n.Stderr, n.ExtraFiles = c.Stdin, c.Stdout, c.Stderr, c.ExtraFiles
	return n
}

// launched notes that the command runs and waits for it.
func (w *Workload) launched() {
	w.startAt = time.Now()
	go func() {
		w.waitErr = w.Cmd.Wait()
		w.endAt = time.Now()
		close(w.done)
	}()
}

// goOn lets the command run, once: the first reading of the hunt's
// instruments calls it. A command that cannot be started ends the hunt
// as one that exited would (Err says why).
func (w *Workload) goOn() {
	w.once.Do(func() {
		if err := w.release(); err != nil {
			w.waitErr, w.startAt, w.endAt = err, time.Now(), time.Now()
			close(w.done)
		}
	})
}

// abandon ends a hunt's hold on a command it never let run: one traced
// is killed, one not started is not started (Err is ErrNotStarted).
func (w *Workload) abandon() {
	w.once.Do(func() {
		if w.Cmd.Process != nil { // traced, stopped at its execve
			w.Cmd.Process.Kill()
			if err := w.release(); err != nil {
				w.launched()
			}
			return
		}
		w.waitErr = ErrNotStarted
		close(w.done)
	})
}

// Done is closed when the command has exited (after Err is set), or at
// once where the hunt never prepared it.
func (w *Workload) Done() <-chan struct{} {
	if w.done == nil {
		return closedChan
	}
	return w.done
}

// closedChan is closed.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Err is what waiting for the command returned, nil while it runs.
func (w *Workload) Err() error {
	select {
	case <-w.Done():
		return w.waitErr
	default:
		return nil
	}
}

// Pid is the command's process id, 0 before it was started.
func (w *Workload) Pid() int { return w.pid }

// Ran is how long the command ran, from its start to its exit (or to
// now).
func (w *Workload) Ran() time.Duration {
	select {
	case <-w.Done():
		return w.endAt.Sub(w.startAt)
	default:
		return time.Since(w.startAt)
	}
}

// Describe names the target for the run (Meta.Command names the
// command): its pid and whether its children count.
func (w *Workload) Describe() string {
	if w.cgroup != "" {
		return fmt.Sprintf("pid %d and its children", w.pid)
	}
	return fmt.Sprintf("pid %d", w.pid)
}

// Signal sends sig to the command and, with a cgroup, to every process
// in it.
func (w *Workload) Signal(sig syscall.Signal) {
	pids := []int{w.pid}
	if w.cgroup != "" {
		pids, _ = cgroupProcs(w.cgroup)
	}
	for _, p := range pids {
		if p > 0 {
			syscall.Kill(p, sig)
		}
	}
}

// Close removes the cgroup once the command has exited: processes it left
// behind (daemons) are moved to autoprof's own cgroup first.
func (w *Workload) Close() error {
	if w.cgroup == "" {
		return nil
	}
	defer func() { w.cgroup = "" }()
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

// newCgroup makes a fresh cgroup v2 directory as a child of autoprof's
// own: one that holds processes, and so has no controllers delegated that
// would forbid it (the no-internal-processes rule), or the root.
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
