//go:build linux

package live

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/autoprof/autoprof/internal/instrument"
)

// procRoot is where proc(5) is mounted.
var procRoot = "/proc"

// parseStack parses a /proc/PID/stack file ("[<0>] func+0x74/0xf0" per
// line, innermost first) into function names, outermost first.
func parseStack(r io.Reader) ([]string, error) {
	var frames []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "] "); i >= 0 {
			line = line[i+2:]
		}
		fn, _, _ := strings.Cut(line, "+")
		if fn = strings.TrimSpace(fn); fn != "" {
			frames = append(frames, fn)
		}
	}
	for i, j := 0, len(frames)-1; i < j; i, j = i+1, j-1 {
		frames[i], frames[j] = frames[j], frames[i]
	}
	return frames, sc.Err()
}

// parseState returns the state letter of a /proc/PID/stat line: the field
// after the parenthesized command, which may itself hold spaces and
// parentheses.
func parseState(b []byte) (byte, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("stat line %q: no state field", b)
	}
	return b[i+2], nil
}

// blocked reports whether a task state letter says the task sleeps in the
// kernel: S (interruptible) or D (uninterruptible).
func blocked(state byte) bool { return state == 'S' || state == 'D' }

// tasks lists the thread directories (/proc/PID/task/TID) of a target:
// every thread of each PID, the threads of a cgroup and its descendants,
// or every thread of the system.
func tasks(t instrument.Target) ([]string, error) {
	switch {
	case t.Cgroup != "":
		tids, err := cgroupThreads(t.CgroupDir())
		if err != nil {
			return nil, err
		}
		out := make([]string, len(tids))
		for i, tid := range tids {
			out[i] = filepath.Join(procRoot, strconv.Itoa(tid), "task", strconv.Itoa(tid))
		}
		return out, nil
	case len(t.PIDs) > 0:
		var out []string
		for _, pid := range t.PIDs {
			m, _ := filepath.Glob(filepath.Join(procRoot, strconv.Itoa(pid), "task", "[0-9]*"))
			out = append(out, m...)
		}
		return out, nil
	}
	return filepath.Glob(filepath.Join(procRoot, "[0-9]*", "task", "[0-9]*"))
}

// cgroupThreads reads cgroup.threads of a cgroup v2 directory and of
// every directory below it.
func cgroupThreads(dir string) ([]int, error) {
	var tids []int
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "cgroup.threads" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		ids, err := parseIDs(f)
		tids = append(tids, ids...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the threads of cgroup %s: %w", dir, err)
	}
	return tids, nil
}

// parseIDs parses one decimal id per line.
func parseIDs(r io.Reader) ([]int, error) {
	var ids []int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		id, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("id %q: %w", s, err)
		}
		ids = append(ids, id)
	}
	return ids, sc.Err()
}

// Population counts a target's threads (search.Population).
type Population struct{ Target instrument.Target }

// Threads implements search.Population. A target that has gone has no
// threads; the hunt then sees zero target time.
func (p Population) Threads() (int, error) {
	ts, err := tasks(p.Target)
	if err != nil {
		return 0, err
	}
	return len(ts), nil
}

// taskStack returns the kernel stack of a blocked task, outermost first,
// or nil when the task runs (a running task's stack is the on-CPU
// sampler's business) or has gone.
func taskStack(dir string) []string {
	st, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return nil
	}
	if s, err := parseState(st); err != nil || !blocked(s) {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, "stack"))
	if err != nil {
		return nil
	}
	defer f.Close()
	frames, _ := parseStack(f)
	return frames
}
