// Package leakcheck finds kernel objects a test left behind: BPF programs,
// maps and links, BPF and perf file descriptors, kprobes, tracefs dynamic
// events and kernel modules. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
package leakcheck

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Snapshot is the set of kernel objects visible at one moment.
type Snapshot struct {
	Progs   map[ebpf.ProgramID]bool
	Maps    map[ebpf.MapID]bool
	Links   map[link.ID]bool
	FDs     map[string]int  // kind of fd ("anon_inode:bpf-prog", "anon_inode:[perf_event]") → count held by this process
	Kprobes map[string]bool // lines of debugfs kprobes/list
	Events  map[string]bool // lines of tracefs dynamic_events
	Modules map[string]bool // names in /proc/modules
}

// Take records the objects now.
func Take() Snapshot {
	s := Snapshot{
		Progs:   map[ebpf.ProgramID]bool{},
		Maps:    map[ebpf.MapID]bool{},
		Links:   map[link.ID]bool{},
		FDs:     kernelFDs(),
		Kprobes: lines("/sys/kernel/debug/kprobes/list"),
		Events:  lines("/sys/kernel/tracing/dynamic_events"),
		Modules: firstFields("/proc/modules"),
	}
	for id, err := ebpf.ProgramGetNextID(0); err == nil; id, err = ebpf.ProgramGetNextID(id) {
		s.Progs[id] = true
	}
	for id, err := ebpf.MapGetNextID(0); err == nil; id, err = ebpf.MapGetNextID(id) {
		s.Maps[id] = true
	}
	it := new(link.Iterator)
	for it.Next() {
		s.Links[it.ID] = true
	}
	it.Close()
	return s
}

// Leaks lists what after holds that s did not. A BPF object that another
// process holds a descriptor of is that process's (a test binary of
// another package, run in parallel by go test), not a leak.
func (s Snapshot) Leaks(after Snapshot) []string { return s.added(after, heldByOthers()) }

// Added lists every object after holds that s did not, whoever holds it:
// what another process made, seen from outside.
func (s Snapshot) Added(after Snapshot) []string { return s.added(after, nil) }

func (s Snapshot) added(after Snapshot, others map[string]map[uint32]bool) []string {
	var leaks []string
	for id := range after.Progs {
		if !s.Progs[id] && !others["prog_id"][uint32(id)] {
			leaks = append(leaks, describeProg(id))
		}
	}
	for id := range after.Maps {
		if !s.Maps[id] && !others["map_id"][uint32(id)] {
			leaks = append(leaks, fmt.Sprintf("BPF map id %d", id))
		}
	}
	for id := range after.Links {
		if !s.Links[id] && !others["link_id"][uint32(id)] {
			leaks = append(leaks, fmt.Sprintf("BPF link id %d", id))
		}
	}
	for kind, n := range after.FDs {
		if n > s.FDs[kind] {
			leaks = append(leaks, fmt.Sprintf("%d open %s file descriptors (had %d)", n, kind, s.FDs[kind]))
		}
	}
	for _, set := range []struct {
		name          string
		before, after map[string]bool
	}{{"kprobe", s.Kprobes, after.Kprobes}, {"tracefs dynamic event", s.Events, after.Events}, {"kernel module", s.Modules, after.Modules}} {
		for k := range set.after {
			if !set.before[k] {
				leaks = append(leaks, set.name+" "+k)
			}
		}
	}
	sort.Strings(leaks)
	return leaks
}

// Settled returns the leaks since s once the kernel has had time to free
// what was closed: links and programs are freed after an RCU grace period,
// so a closed object can stay visible for a moment. It waits up to 5 s.
// An object counts only if two checks in a row find it with no holder: a
// test binary of another package, run in parallel by go test, can close
// an object between the listing of ids and the reading of its fdinfo.
func (s Snapshot) Settled() []string {
	deadline := time.Now().Add(5 * time.Second)
	var seen map[string]bool
	for {
		leaks := s.Leaks(Take())
		if len(leaks) == 0 {
			return nil
		}
		var again []string
		for _, l := range leaks {
			if seen[l] {
				again = append(again, l)
			}
		}
		if time.Now().After(deadline) {
			return again
		}
		seen = map[string]bool{}
		for _, l := range leaks {
			seen[l] = true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Main runs the tests and fails the run when they left kernel objects
// behind.
func Main(m *testing.M) int {
	before := Take()
	code := m.Run()
	if leaks := before.Settled(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "leakcheck: the tests left %d kernel objects behind:\n", len(leaks))
		for _, l := range leaks {
			fmt.Fprintf(os.Stderr, "\t%s\n", l)
		}
		return 1
	}
	return code
}

func describeProg(id ebpf.ProgramID) string {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return fmt.Sprintf("BPF program id %d", id)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return fmt.Sprintf("BPF program id %d", id)
	}
	return fmt.Sprintf("BPF program id %d (%s %q)", id, info.Type, info.Name)
}

// heldByOthers returns the ids of the BPF programs, maps and links that
// processes other than this one hold descriptors of, by the fdinfo key
// that names them ("prog_id", "map_id", "link_id").
func heldByOthers() map[string]map[uint32]bool {
	out := map[string]map[uint32]bool{"prog_id": {}, "map_id": {}, "link_id": {}}
	self := strconv.Itoa(os.Getpid())
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if p.Name() == self || p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fdinfo")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			b, err := os.ReadFile(filepath.Join(dir, fd.Name()))
			if err != nil || !strings.Contains(string(b), "_id:") {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(line, ":")
				if set := out[k]; ok && set != nil {
					if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
						set[uint32(id)] = true
					}
				}
			}
		}
	}
	return out
}

// kernelFDs counts this process's file descriptors that own kernel
// objects: BPF objects and perf events.
func kernelFDs() map[string]int { return FDsOf(os.Getpid()) }

// FDsOf counts process pid's file descriptors that own kernel objects
// (BPF objects and perf events) by kind: "anon_inode:bpf-prog",
// "anon_inode:bpf_link", "anon_inode:[perf_event]", ...
func FDsOf(pid int) map[string]int {
	m := map[string]int{}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(target, "anon_inode:bpf") || strings.Contains(target, "perf_event") {
			m[target]++
		}
	}
	return m
}

// Links sums the BPF link descriptors of a count by kind from FDsOf.
func Links(fds map[string]int) int { return countKind(fds, "bpf_link") }

// PerfEvents sums the perf event descriptors of a count by kind from FDsOf.
func PerfEvents(fds map[string]int) int { return countKind(fds, "perf_event") }

func countKind(fds map[string]int, kind string) int {
	n := 0
	for k, c := range fds {
		if strings.Contains(k, kind) {
			n += c
		}
	}
	return n
}

func lines(path string) map[string]bool {
	m := map[string]bool{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			m[l] = true
		}
	}
	return m
}

func firstFields(path string) map[string]bool {
	m := map[string]bool{}
	for l := range lines(path) {
		m[strings.Fields(l)[0]] = true
	}
	return m
}
