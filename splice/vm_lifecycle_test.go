//go:build vm

package splice

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/internal/leakcheck"
)

// TestVMKill9: a controller with 100 live instruments is killed with
// SIGKILL; within 1 s none of its BPF programs, maps or links and no
// kprobe remains, checked from outside. (cmd/autoprof's TestVMProbeKill9
// does the same to autoprof probe.)
func TestVMKill9(t *testing.T) {
	for _, b := range functionBackends {
		t.Run(string(b), func(t *testing.T) {
			before := leakcheck.Take()
			readyR, readyW, _ := os.Pipe()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), helperEnv+"=controller "+string(b)+" 100")
			cmd.ExtraFiles = []*os.File{readyW, readyW}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			readyW.Close()
			line, err := bufio.NewReader(readyR).ReadString('\n')
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("controller: %v", err)
			}
			if n, _ := strconv.Atoi(strings.TrimSpace(line)); n != 100 {
				t.Fatalf("controller inserted %s instruments, want 100", line)
			}
			live := leakcheck.Take()
			progs := newIDs(before.Progs, live.Progs)
			kprobes := len(live.Kprobes) - len(before.Kprobes)
			fds := leakcheck.FDsOf(cmd.Process.Pid)
			links, perf := leakcheck.Links(fds), leakcheck.PerfEvents(fds)
			t.Logf("controller holds %d BPF programs, %d BPF link fds, %d perf event fds, kprobes on %d places", len(progs), links, perf, kprobes)
			// A function fentry refuses (fexit not supported) falls back
			// to kprobe, so fentry's instruments are links of either kind.
			if b == "fentry" && links < 100 || b == "kprobe" && (perf < 100 || kprobes == 0) {
				t.Fatalf("the controller's 100 instruments are not visible from outside")
			}
			// The kernel releases the instruments while the killed
			// process exits (closing its fds); under TCG that exit takes
			// seconds for 100 links (each detach patches text and waits
			// for RCU), so the 1 s runs from the moment it is reaped.
			killed := time.Now()
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			reaped := time.Now()
			for {
				left := before.Leaks(leakcheck.Take())
				if len(left) == 0 {
					t.Logf("all gone %v after SIGKILL (process exit took %v)", time.Since(killed), reaped.Sub(killed))
					break
				}
				if time.Since(reaped) > time.Second {
					t.Fatalf("1 s after the killed controller was reaped (%v after SIGKILL): %v", time.Since(killed), left)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func newIDs(before, after map[ebpf.ProgramID]bool) []ebpf.ProgramID {
	var out []ebpf.ProgramID
	for id := range after {
		if !before[id] {
			out = append(out, id)
		}
	}
	return out
}

// TestVMChurn: 1,000 insert/withdraw cycles on each function backend
// leave file descriptors, BPF objects and kernel memory at baseline. (An
// fentry insert verifies a program of its own, which TCG makes slow:
// -short runs 100 cycles.)
func TestVMChurn(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	for _, b := range functionBackends {
		t.Run(string(b), func(t *testing.T) {
			s := openSession(t, b)
			spec := instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Count, Target: pid(os.Getpid())}
			cycle := func() {
				in, err := s.Insert(context.Background(), spec)
				if err != nil {
					t.Fatal(err)
				}
				if err := in.Close(); err != nil {
					t.Fatal(err)
				}
			}
			cycle() // the first insert attaches the sched handlers for good
			fds, snap, mem := countFDs(t), leakcheck.Take(), meminfo(t)
			start := time.Now()
			for i := 0; i < cycles; i++ {
				cycle()
			}
			t.Logf("%d cycles in %v", cycles, time.Since(start))
			if leaks := snap.Settled(); len(leaks) > 0 {
				t.Errorf("after %d cycles: %v", cycles, leaks)
			}
			// Fewer is no leak: an object of the first cycle can be
			// closed by a cleanup when the collector runs (6.1: 2 fewer
			// once, with programs loaded through a collection).
			if n := countFDs(t); n > fds {
				t.Errorf("file descriptors: %d after, %d before", n, fds)
			} else if n < fds {
				t.Logf("file descriptors: %d after, %d before", n, fds)
			}
			after := meminfo(t)
			for _, k := range []string{"Slab", "Percpu", "VmallocUsed"} {
				grew := after[k] - mem[k]
				t.Logf("%s: %d kB before, %d kB after", k, mem[k], after[k])
				if grew > 4096 {
					t.Errorf("%s grew by %d kB over %d cycles", k, grew, cycles)
				}
			}
		})
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func meminfo(t *testing.T) map[string]int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			n, _ := strconv.Atoi(f[1])
			out[strings.TrimSuffix(f[0], ":")] = n
		}
	}
	return out
}
