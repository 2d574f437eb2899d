//go:build vm

package splice

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
)

// pid returns a target of one process.
func pid(p int) instrument.Target { return instrument.Target{PIDs: []int{p}} }

// timer returns a timer spec of fn for target.
func timer(fn string, tg instrument.Target) instrument.Spec {
	return instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer, Target: tg}
}

// insert inserts specs, failing the test on any error; the instruments are
// withdrawn at the end of the test.
func insert(t *testing.T, s *Session, specs ...instrument.Spec) []instrument.Instrument {
	t.Helper()
	var out []instrument.Instrument
	for _, sp := range specs {
		in, err := s.Insert(context.Background(), sp)
		if err != nil {
			t.Fatalf("insert %s: %v", sp, err)
		}
		out = append(out, in)
		t.Cleanup(func() { in.Close() })
	}
	return out
}

// byPath indexes a reading's contexts by "path:kind".
func byPath(r *instrument.Reading) map[string]instrument.ContextReading {
	m := map[string]instrument.ContextReading{}
	for _, c := range r.Contexts {
		m[c.Path.String()+":"+c.Kind.String()] = c
	}
	return m
}

func logReading(t *testing.T, r *instrument.Reading) {
	t.Helper()
	for _, c := range r.Contexts {
		t.Logf("  %-60s %-6s calls %7d incl %10d excl %10d off-cpu incl %10d excl %10d", c.Path, c.Kind, c.Calls, c.InclNs, c.ExclNs, c.InclOffCPUNs, c.ExclOffCPUNs)
	}
	for _, tr := range r.Targets {
		t.Logf("  %-60s -> %#x %s: %d", tr.Path, tr.Target, tr.Func, tr.Calls)
	}
	t.Logf("  misses %+v", r.Misses)
}

// directCallee returns the first direct callee of fn, among want (in
// order of preference), that the session could instrument with backend: so
// that tests do not depend on one kernel's inlining. It fails the test
// where there is none.
func directCallee(t *testing.T, s *Session, fn string, want ...string) string {
	t.Helper()
	f, err := s.Graph().Function(fn)
	if err != nil {
		t.Fatal(err)
	}
	callees := map[string]bool{}
	for _, site := range f.Calls() {
		callees[site.Target] = true
	}
	for _, w := range want {
		if callees[w] && s.Check(timer(w, instrument.Target{})) == nil {
			return w
		}
	}
	t.Fatalf("%s calls none of %v directly here (or none can be timed): the test needs one", fn, want)
	return ""
}

// tmpFile makes a small file to read.
func tmpFile(t *testing.T) string {
	t.Helper()
	p := t.TempDir() + "/data"
	if err := os.WriteFile(p, []byte(strings.Repeat("autoprof ", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// indirectSites returns the indirect call sites (not jumps) of fn.
func indirectSites(t *testing.T, g *callgraph.Graph, fn string) []callgraph.Site {
	t.Helper()
	f, err := g.Function(fn)
	if err != nil {
		t.Fatal(err)
	}
	var out []callgraph.Site
	for _, s := range f.Sites {
		if s.Kind == callgraph.Indirect && !s.Jump {
			out = append(out, s)
		}
	}
	return out
}

// helper is a started helper process, blocked until Go.
type helper struct {
	cmd   *exec.Cmd
	start *os.File
	Pid   int
	tid   string // the thread that runs the workload
}

// inSyscall reports whether the helper's workload thread is in the
// syscall whose /proc line starts with nr ("35 ": nanosleep).
func (h *helper) inSyscall(nr string) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", h.Pid, h.tid))
	return strings.HasPrefix(string(b), nr)
}

// waitSyscall waits, up to 10 s, until the helper's workload thread is in
// syscall nr (see inSyscall), name for the failure.
func (h *helper) waitSyscall(t *testing.T, nr, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !h.inSyscall(nr); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the helper's thread never entered %s", name)
		}
	}
}

// timeable returns those of fns that take a timer here, in their order.
func timeable(s *Session, fns ...string) []string {
	var ok []string
	for _, fn := range fns {
		if s.Check(timer(fn, instrument.Target{})) == nil {
			ok = append(ok, fn)
		}
	}
	return ok
}

// startHelper starts the workload and waits until it is blocked in its
// read of the start pipe, so that nothing it did before counts.
func startHelper(t *testing.T, work string) *helper {
	t.Helper()
	startR, startW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+work, "GOMAXPROCS=1", "GOGC=off")
	cmd.ExtraFiles = []*os.File{startR, readyW}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	startR.Close()
	readyW.Close()
	h := &helper{cmd: cmd, start: startW, Pid: cmd.Process.Pid}
	t.Cleanup(func() { h.cmd.Process.Kill(); h.cmd.Wait() })
	line, err := bufio.NewReader(readyR).ReadString('\n')
	readyR.Close()
	if err != nil {
		t.Fatalf("helper %q: %v", work, err)
	}
	h.tid = strings.TrimSpace(line)
	h.waitSyscall(t, "0 ", "read(2) of its start pipe")
	return h
}

// Go lets the helper run its workload and waits for it to exit.
func (h *helper) Go(t *testing.T) {
	t.Helper()
	h.start.Write([]byte{1})
	h.start.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}
