package splice

import (
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// The helper process: the test binary re-executed with AUTOPROF_HELPER set
// runs one workload, so that instruments filtered to its pid see exactly
// that workload. It reports its tid on fd 4, blocks reading fd 3 until the
// test has inserted its instruments, runs, and exits.
const helperEnv = "AUTOPROF_HELPER"

func TestHelperProcess(t *testing.T) {
	work := os.Getenv(helperEnv)
	if work == "" {
		return // run as a test: nothing to do (a pass, not a skip)
	}
	args := strings.Fields(work)
	if args[0] == "controller" {
		runController(args[1:])
	}
	if args[0] == "spin0" { // spin0: run on CPU 0 until killed (TestPreemptedNotOffCPU)
		runtime.LockOSThread()
		var cpu0 unix.CPUSet
		cpu0.Set(0)
		if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
			os.Exit(1)
		}
		for i := uint64(0); ; i++ {
			spinSink = i
		}
	}
	if args[0] == "linger" { // linger MS: live MS ms, then exit (TestWatchExit)
		ms, _ := strconv.Atoi(args[1])
		time.Sleep(time.Duration(ms) * time.Millisecond)
		os.Exit(0)
	}
	runtime.LockOSThread()
	prep := helperPrep(args)
	ready := os.NewFile(4, "ready")
	fmt.Fprintf(ready, "%d\n", syscall.Gettid())
	ready.Close()
	var b [1]byte
	syscall.Read(3, b[:])
	prep()
	os.Exit(0)
}

// helperPrep sets up the workload of args and returns it.
func helperPrep(args []string) func() {
	n, _ := strconv.Atoi(args[1])
	switch args[0] {
	case "pread": // pread N FILE
		fd, err := syscall.Open(args[2], syscall.O_RDONLY, 0)
		if err != nil {
			panic(err)
		}
		buf := make([]byte, 64)
		return func() {
			for i := 0; i < n; i++ {
				syscall.Pread(fd, buf, 0)
			}
		}
	case "sleep": // sleep N MS: N nanosleeps of MS ms
		ms, _ := strconv.Atoi(args[2])
		return func() {
			for i := 0; i < n; i++ {
				ts := syscall.NsecToTimespec(int64(ms) * 1e6)
				syscall.Nanosleep(&ts, nil)
			}
		}
	case "sleeppread": // sleeppread MS N FILE: a nanosleep of MS ms, then N preads
		ts := syscall.NsecToTimespec(int64(n) * 1e6)
		reads, _ := strconv.Atoi(args[2])
		fd, err := syscall.Open(args[3], syscall.O_RDONLY, 0)
		if err != nil {
			panic(err)
		}
		buf := make([]byte, 64)
		return func() {
			syscall.Nanosleep(&ts, nil)
			for i := 0; i < reads; i++ {
				syscall.Pread(fd, buf, 0)
			}
		}
	case "pipe": // pipe N MS: N reads of a pipe a slow writer fills every MS ms
		ms, _ := strconv.Atoi(args[2])
		var p [2]int
		syscall.Pipe(p[:])
		return func() {
			go func() {
				for i := 0; i < n; i++ {
					time.Sleep(time.Duration(ms) * time.Millisecond)
					syscall.Write(p[1], []byte{1})
				}
			}()
			b := make([]byte, 1)
			for i := 0; i < n; i++ {
				syscall.Read(p[0], b)
			}
		}
	}
	panic("unknown helper workload " + args[0])
}

// runController is a controller with live instruments: it inserts n
// function-entry counters over the traceable functions near vfs_read and
// vfs_write, says "ready" on fd 4, and waits to be killed.
func runController(args []string) {
	n, _ := strconv.Atoi(args[1])
	s, err := Open(context.Background(), Options{Backend: instrument.Backend(args[0])})
	if err != nil {
		panic(err)
	}
	live := 0
	for _, sp := range controllerSpecs(s, 2*n) {
		if live == n {
			break
		}
		// The kernel may still refuse a place the rules allow (an ftrace
		// site it cannot patch): skip it.
		if _, err := s.Insert(context.Background(), sp); err == nil {
			live++
		}
	}
	ready := os.NewFile(4, "ready")
	fmt.Fprintf(ready, "%d\n", live)
	ready.Close()
	time.Sleep(time.Hour)
}

// controllerSpecs spreads n counters over functions that pass Check, at
// most 30 on one function (a BPF trampoline holds 38 programs).
func controllerSpecs(s *Session, n int) []instrument.Spec {
	var fns []string
	for _, root := range []string{"vfs_read", "vfs_write"} {
		fns = append(fns, root)
		if f, err := s.Graph().Function(root); err == nil {
			for _, c := range f.Calls() {
				fns = append(fns, c.Target)
			}
		}
	}
	var ok []string
	seen := map[string]bool{}
	for _, fn := range fns {
		sp := instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Count}
		if !seen[fn] && s.Check(sp) == nil {
			ok = append(ok, fn)
		}
		seen[fn] = true
	}
	var specs []instrument.Spec
	for i := 0; len(specs) < n && i < 30*len(ok); i++ {
		specs = append(specs, instrument.Spec{Point: instrument.Point{Func: ok[i%len(ok)]}, Kind: instrument.Count})
	}
	return specs
}

// spinSink keeps the spin0 helper's loop from being an empty one.
var spinSink uint64
