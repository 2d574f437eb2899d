package instrument

import (
	"fmt"
	"slices"
	"strings"
)

// Backend names a mechanism that measures the kernel. Each has one file
// in package splice behind its one Session.
type Backend string

// The backends. Function instruments go to Fentry, Kprobe or Splice;
// Tracepoint serves syscall roots (raw_syscalls) and off-CPU time
// (sched_switch); Sample is stack sampling, which estimates and inserts
// nothing: a node measured by it alone says so.
const (
	Fentry     Backend = "fentry"
	Kprobe     Backend = "kprobe"
	Splice     Backend = "splice"
	Tracepoint Backend = "tracepoint"
	Sample     Backend = "sample"
)

// Backends lists the backends a session can be opened with, by name.
var Backends = []Backend{Fentry, Kprobe, Splice, Tracepoint}

// ParseBackend returns the backend of that name, or an error that lists
// the names.
func ParseBackend(name string) (Backend, error) {
	if b := Backend(name); slices.Contains(Backends, b) {
		return b, nil
	}
	names := make([]string, len(Backends))
	for i, b := range Backends {
		names[i] = string(b)
	}
	return "", fmt.Errorf("backend %q: want one of %s", name, strings.Join(names, ", "))
}
