package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/leakcheck"
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
			cmd := exec.Command(os.Args[0], "-test.run=^TestUIHelper$")
			cmd.Env = append(os.Environ(), "AUTOPROF_HELPER=ui", "AUTOPROF_HELPER_ARGS=ui --dir "+dir+" --listen "+c.listen)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := bufio.NewScanner(out)
			var url string
			var said []string
			for lines.Scan() {
				said = append(said, lines.Text())
				if strings.HasPrefix(lines.Text(), "http://") {
					url = lines.Text()
					break
				}
			}
			if url == "" {
				t.Fatalf("autoprof ui printed no URL: %q", said)
			}
			if warned := len(said) > 1 && strings.Contains(said[0], "not loopback") && strings.Contains(said[0], "token"); warned != (c.listen != "127.0.0.1:0") {
				t.Errorf("autoprof ui --listen %s said %q", c.listen, said)
			}
			base, token, _ := strings.Cut(url, "/?token=")
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
