package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/leakcheck"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/splice"
)

// TestUIBadInput: arguments, a --dir that is not a directory and an
// address that cannot be listened on are usage errors.
func TestUIBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"ui", "extra"},
		{"ui", "--dir", filepath.Join(t.TempDir(), "nosuch")},
		{"ui", "--listen", "nonsense"},
	} {
		if code, stdout, stderr := runCmd(args...); code != 2 || stdout != "" || !strings.HasPrefix(stderr, "autoprof ui: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, stdout, stderr)
		}
	}
}

// TestUIHelper is autoprof ui in a process of its own, for TestUIKilled.
func TestUIHelper(t *testing.T) {
	if os.Getenv("AUTOPROF_HELPER") != "ui" {
		return // a helper, run by TestUIKilled: as a test, nothing to do (a pass, not a skip)
	}
	os.Exit(run(strings.Fields(os.Getenv("AUTOPROF_HELPER_ARGS")), os.Stdout, os.Stderr))
}

// TestUIKilled starts autoprof ui in a process of its own, starts an
// experiment through its API (a getppid timer with the tracepoint
// backend), and ends the server with SIGTERM, SIGINT and SIGKILL: nothing
// of it stays in the kernel, checked from outside, and a signal that lets
// it finish leaves the experiment's outputs written. Listening on a
// non-loopback address, it says that the token is all that guards it.
func TestUIKilled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("instruments need root")
	}
	featuretest.Require(t, features.HaveTracepoint())
	for _, c := range []struct {
		sig    syscall.Signal
		listen string
	}{{syscall.SIGTERM, "127.0.0.1:0"}, {syscall.SIGINT, "0.0.0.0:0"}, {syscall.SIGKILL, "127.0.0.1:0"}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			before := leakcheck.Take()
			cmd, base, token, said := startUIProcess(t, "ui", "--dir", dir, "--listen", c.listen)
			if warned := len(said) > 1 && strings.Contains(said[0], "not loopback") && strings.Contains(said[0], "token"); warned != (c.listen != "127.0.0.1:0") {
				t.Errorf("autoprof ui --listen %s said %q", c.listen, said)
			}
			body := `{"backend": "tracepoint", "out": "run", "experiment": {"interval": "200ms", "instruments": [{"spec": "__x64_sys_getppid:timer"}]}}`
			req, _ := http.NewRequest("POST", base+"/api/experiments", strings.NewReader(body))
			req.Header.Set("X-Autoprof-Token", token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var reply bytes.Buffer
			reply.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("starting the experiment: %s %s", resp.Status, reply.String())
			}
			for deadline := time.Now().Add(time.Minute); leakcheck.Links(leakcheck.FDsOf(cmd.Process.Pid)) == 0; {
				if time.Now().After(deadline) {
					t.Fatal("autoprof ui holds no BPF link a minute after the experiment started")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(before.Added(leakcheck.Take())) == 0 {
				t.Fatal("the experiment's instruments are not visible from outside")
			}
			time.Sleep(500 * time.Millisecond) // a reading or two
			cmd.Process.Signal(c.sig)
			err = cmd.Wait()
			if c.sig != syscall.SIGKILL && err != nil {
				t.Errorf("autoprof ui after %v: %v; want exit 0", c.sig, err)
			}
			// Only what no process holds: the test binaries of other
			// packages make BPF objects of their own meanwhile.
			if left := before.Settled(); len(left) > 0 {
				t.Fatalf("5 s after %v, left in the kernel: %q", c.sig, left)
			}
			if c.sig == syscall.SIGKILL {
				return
			}
			data, err := os.ReadFile(filepath.Join(dir, "run", splice.SummaryFile))
			var sum splice.RunSummary
			if err == nil {
				err = json.Unmarshal(data, &sum)
			}
			if err != nil || len(sum.Instruments) != 1 {
				t.Errorf("the experiment's summary after %v: %v %s", c.sig, err, data)
			}
			if _, err := os.Stat(filepath.Join(dir, "run", splice.SeriesFile)); err != nil {
				t.Errorf("the experiment's series after %v: %v", c.sig, err)
			}
		})
	}
}

// startUIProcess starts autoprof with args (ui ...) in a process of its
// own and returns it, its base URL and token, and the lines it printed up
// to its URL; the process is stopped at the test's end if still running.
func startUIProcess(t *testing.T, args ...string) (cmd *exec.Cmd, base, token string, said []string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^TestUIHelper$")
	cmd.Env = append(os.Environ(), "AUTOPROF_HELPER=ui", "AUTOPROF_HELPER_ARGS="+strings.Join(args, " "))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		said = append(said, lines.Text())
		if strings.HasPrefix(lines.Text(), "http://") {
			base, token, _ = strings.Cut(lines.Text(), "/?token=")
			go func() { // the rest, so that the server never blocks writing
				for lines.Scan() {
				}
			}()
			return cmd, base, token, said
		}
	}
	t.Fatalf("autoprof ui printed no URL: %q", said)
	return nil, "", "", nil
}

// uiRequest sends one API request to an autoprof ui and decodes its answer.
func uiRequest(t *testing.T, base, token, method, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, nil)
	req.Header.Set("X-Autoprof-Token", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, b.String())
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// TestUIWatchesHunt runs autoprof hunt -o DIR/cli on a busy helper, with
// autoprof ui over DIR in another process: the ui lists the hunt while it
// runs, follows it when asked (rounds and the tree as they grow), and
// when the hunt ends shows it done with its outputs and the final tree.
// The hunt's live file is gone after it.
func TestUIWatchesHunt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hunting needs root")
	}
	featuretest.Require(t, features.HaveSample())
	dir := t.TempDir()
	_, base, token, _ := startUIProcess(t, "ui", "--dir", dir)
	t.Setenv("AUTOPROF_HELPER", "busy")
	// Long enough for rounds after the start-up, which under TCG (the
	// test VMs) takes ten times as long.
	t.Setenv("AUTOPROF_HELPER_SECONDS", "10")
	if features.QEMUTCG() {
		t.Setenv("AUTOPROF_HELPER_SECONDS", "60")
	}
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCmd("hunt", "-o", filepath.Join(dir, "cli"), "--round", "200ms", "--", os.Args[0], "-test.run=^TestHelperProcess$")
		done <- result{code, stdout, stderr}
	}()
	type view struct {
		ID      int               `json:"id"`
		State   string            `json:"state"`
		Error   string            `json:"error"`
		Watched bool              `json:"watched"`
		Rounds  []json.RawMessage `json:"rounds"`
		Files   []string          `json:"files"`
		Tree    *struct {
			Nodes []json.RawMessage `json:"nodes"`
		} `json:"tree"`
	}
	var runs []struct {
		Name    string `json:"name"`
		Hunting *struct {
			PID     int      `json:"pid"`
			Command []string `json:"command"`
		} `json:"hunting"`
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		runs = nil
		uiRequest(t, base, token, "GET", "/api/runs", &runs)
		if len(runs) == 1 && runs[0].Hunting != nil {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("the hunt ended (exit %d) before the ui listed it: %s", r.code, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ui never listed the hunt: %+v", runs)
		}
	}
	if h := runs[0].Hunting; h.PID != os.Getpid() || len(h.Command) < 3 || h.Command[0] != "hunt" {
		t.Errorf("the hunt under way: %+v", h)
	}
	// Listen to the events as a page does: with no page listening, the
	// server stops watching after its orphan time, as it stops
	// experiments.
	req, _ := http.NewRequest("GET", base+"/api/events", nil)
	req.Header.Set("X-Autoprof-Token", token)
	events, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Body.Close()
	go io.Copy(io.Discard, events.Body)
	var v view
	uiRequest(t, base, token, "POST", "/api/runs/cli/watch", &v)
	if !v.Watched || v.State != "running" {
		t.Fatalf("watching: %+v", v)
	}
	most, grew := 0, 0 // rounds and tree nodes seen while it ran
	for deadline := time.Now().Add(3 * time.Minute); v.State == "running"; time.Sleep(200 * time.Millisecond) {
		var hunts []view
		uiRequest(t, base, token, "GET", "/api/hunts", &hunts)
		for _, h := range hunts {
			if h.ID == v.ID {
				v = h
			}
		}
		if v.State == "running" && v.Tree != nil {
			most, grew = max(most, len(v.Rounds)), max(grew, len(v.Tree.Nodes))
		}
		if time.Now().After(deadline) {
			t.Fatal("the watched hunt never ended")
		}
	}
	r := <-done
	if r.code != 0 {
		t.Fatalf("autoprof hunt: exit %d: %s", r.code, r.stderr)
	}
	if v.State != "done" || !slices.Contains(v.Files, reports.RunFile) || v.Tree == nil || len(v.Tree.Nodes) == 0 {
		t.Errorf("the watched hunt at its end: %s (%s), files %q", v.State, v.Error, v.Files)
	}
	if most < 2 || grew == 0 {
		t.Errorf("while it ran the ui showed %d rounds and %d nodes at most", most, grew)
	}
	if _, err := os.Stat(filepath.Join(dir, "cli", reports.LiveFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the live file after the hunt: %v", err)
	}
	t.Logf("watched %d rounds live, %d nodes; the run: %d nodes", most, grew, len(v.Tree.Nodes))
}
