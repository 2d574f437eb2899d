package splice

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// ErrNoTarget says a Target names a process or a cgroup that does not
// exist (or not as a cgroup v2 directory).
var ErrNoTarget = errors.New("no such target")

// CheckTarget reports whether every process and the cgroup of t exist, before
// anything is attached for it: a PID must be a live process and the
// cgroup a cgroup v2 directory (instruments filter with
// bpf_current_task_under_cgroup, which knows v2 only). The error wraps
// ErrNoTarget and names the input.
func CheckTarget(t instrument.Target) error {
	if err := t.CheckPIDs(); err != nil {
		return fmt.Errorf("%w: %w", ErrNoTarget, err)
	}
	for _, p := range t.PIDs {
		if _, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(p))); err != nil {
			return fmt.Errorf("pid %d: %w: no such process", p, ErrNoTarget)
		}
	}
	if dir := t.CgroupDir(); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err != nil {
			return fmt.Errorf("cgroup %s: %w: not a cgroup v2 directory", t.Cgroup, ErrNoTarget)
		}
	}
	return nil
}

// procRoot is where proc(5) is mounted.
const procRoot = "/proc"

// ParsePIDs parses a comma-separated list of process ids ("12,34"), the
// form --pid takes in every command.
func ParsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil {
			err = instrument.Target{PIDs: []int{n}}.CheckPIDs()
		}
		if err != nil {
			return nil, fmt.Errorf("%q: not a process id", strings.TrimSpace(f))
		}
		pids = append(pids, n)
	}
	return pids, nil
}

// Cgroup2Root returns where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo: /sys/fs/cgroup on a unified system,
// /sys/fs/cgroup/unified on a hybrid one.
func Cgroup2Root() (string, error) {
	f, err := os.Open(filepath.Join(procRoot, "self", "mountinfo"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseCgroup2Mount(f)
}

// parseCgroup2Mount returns the mount point of the first cgroup2 file
// system of a mountinfo file (proc(5): the mount point is field 5, the
// file system type follows the " - " separator).
func parseCgroup2Mount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 {
			continue
		}
		if fs, _, _ := strings.Cut(post, " "); fs == "cgroup2" {
			return unescapeMount(fields[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 file system is mounted")
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// OwnCgroup returns the cgroup v2 path of the calling process, relative
// to the hierarchy's root ("/" or "/user.slice/..."), from
// /proc/self/cgroup.
func OwnCgroup() (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "self", "cgroup"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")
}

// WatchExit returns a channel closed once none of pids is the process it was
// when WatchExit was called (each gone, or its pid reused: /proc/PID/stat's
// start time differs), polled every pollExit until ctx ends: a hunt of
// --pid processes, or a probe of them, ends when they have.
func WatchExit(ctx context.Context, pids []int) <-chan struct{} {
	start := make([]string, len(pids))
	for i, p := range pids {
		start[i] = startTime(p)
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(pollExit)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			alive := false
			for i, p := range pids {
				if s := startTime(p); s != "" && s == start[i] {
					alive = true
				}
			}
			if !alive {
				close(done)
				return
			}
		}
	}()
	return done
}

// pollExit is how often WatchExit looks.
const pollExit = 100 * time.Millisecond

// startTime returns field 22 of /proc/PID/stat (the start time in clock
// ticks after boot), "" where the process is gone or a zombie.
func startTime(pid int) string {
	f := statFields(pid)
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return ""
	}
	return f[19]
}

// statFields returns the fields of /proc/PID/stat after the command name
// (field 3, the state, first), nil where it cannot be read.
func statFields(pid int) []string {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// filterTarget gives a program's target filter (kmod/include/target.h)
// the target's tgids and cgroup, and returns the cgroup directory it
// opened (nil for none), which the caller keeps open while the filter
// serves.
func filterTarget(t instrument.Target, set func(tgids []uint32, cgroupFD int) error) (*os.File, error) {
	var tgids []uint32
	for _, p := range t.PIDs {
		tgids = append(tgids, uint32(p))
	}
	var cg *os.File
	fd := -1
	if t.Cgroup != "" {
		f, err := openCgroup(t.Cgroup)
		if err != nil {
			return nil, err
		}
		cg, fd = f, int(f.Fd())
	}
	if err := set(tgids, fd); err != nil {
		if cg != nil {
			cg.Close()
		}
		return nil, err
	}
	return cg, nil
}
