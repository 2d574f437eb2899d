//go:build vm

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/leakcheck"
	"github.com/autoprof/autoprof/splice"
)

// TestVMProbeKill9 is issue 4's lifecycle check on the command itself:
// autoprof probe with 100 live instruments is killed with SIGKILL, and
// within 1 s of its exit no BPF program, map or link and no kprobe of it
// remains, checked from outside.
func TestVMProbeKill9(t *testing.T) {
	for _, b := range []string{"fentry", "kprobe"} {
		t.Run(b, func(t *testing.T) {
			specs := probeable(t, instrument.Backend(b), 100)
			before := leakcheck.Take()
			cmd := exec.Command(os.Args[0], "-test.run=^TestProbeArgsHelper$")
			cmd.Env = append(os.Environ(), "AUTOPROF_HELPER=probe", "AUTOPROF_HELPER_ARGS="+
				strings.Join(append([]string{"probe", "--backend", b, "--pid", fmt.Sprint(os.Getpid()), "--duration", "0", "-o", t.TempDir() + "/series.jsonl"}, specs...), " "))
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			for deadline := time.Now().Add(2 * time.Minute); ; {
				fds := leakcheck.FDsOf(cmd.Process.Pid)
				links, perf := leakcheck.Links(fds), leakcheck.PerfEvents(fds)
				if b == "fentry" && links >= 100 || b == "kprobe" && perf >= 100 {
					t.Logf("autoprof probe holds %d BPF link and %d perf event descriptors", links, perf)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("autoprof probe did not make 100 instruments live: %d links, %d perf events", links, perf)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(before.Added(leakcheck.Take())) == 0 {
				t.Fatal("the probe's instruments are not visible from outside")
			}
			killed := time.Now()
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			reaped := time.Now()
			for {
				left := before.Leaks(leakcheck.Take())
				if len(left) == 0 {
					t.Logf("all gone %v after SIGKILL (the exit took %v)", time.Since(killed).Round(time.Millisecond), reaped.Sub(killed).Round(time.Millisecond))
					return
				}
				if time.Since(reaped) > time.Second {
					t.Fatalf("1 s after the killed probe was reaped: %d left: %v", len(left), left[:min(len(left), 10)])
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestProbeArgsHelper runs autoprof with the arguments in
// AUTOPROF_HELPER_ARGS, for TestVMProbeKill9 to kill.
func TestProbeArgsHelper(t *testing.T) {
	if os.Getenv("AUTOPROF_HELPER") != "probe" {
		return // a helper, run by TestVMProbeKill9: as a test, nothing to do (a pass, not a skip)
	}
	os.Exit(run(strings.Fields(os.Getenv("AUTOPROF_HELPER_ARGS")), os.Stdout, os.Stderr))
}

// probeable returns n entry-counter SPECs of distinct core-kernel
// functions that backend accepts.
func probeable(t *testing.T, backend instrument.Backend, n int) []string {
	t.Helper()
	s, err := splice.Open(context.Background(), splice.Options{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var specs []string
	for _, sym := range s.Graph().Symbols().Functions() { // by address: mostly cold code
		if len(specs) == n {
			break
		}
		sp := instrument.Spec{Point: instrument.Point{Func: sym.Name}, Kind: instrument.Count}
		if sym.Module == "" && s.Check(sp) == nil {
			specs = append(specs, sym.Name+":entry")
		}
	}
	if len(specs) < n {
		t.Fatalf("only %d functions take a %s counter", len(specs), backend)
	}
	return specs
}
