package splice

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
)

// Instruments is an open session of any backend, as the commands and the
// hunt use it: Session serves fentry, kprobe and tracepoint through BPF,
// SpliceSession serves splice through autoprof's own module. Both record
// into the same measurement model, so a reader cannot tell them apart
// except by what they cost.
type Instruments interface {
	instrument.Instrumenter
	// Graph returns the session's call graph.
	Graph() *callgraph.Graph
	// Syscalls returns the running kernel's syscall table, nil where it
	// could not be read.
	Syscalls() *SyscallTable
	// Overhead reports what the kernel measured of the instruments' own
	// run time; Enabled is false where it measured nothing.
	Overhead() (Overhead, error)
}

var (
	_ Instruments = (*Session)(nil)
	_ Instruments = (*SpliceSession)(nil)
)

// OpenInstruments opens the session that serves opts.Backend: the splice
// module for "splice" (opts.Graph is shared; the BPF-only options do not
// apply), the BPF backends otherwise.
//
// The hunt keeps the instruments' cost under its own budget from what
// Overhead reports; the splice module's kill switch is the backstop for a
// controller that stops doing so, and gets opts.MaxOverhead (0: the whole
// of the CPUs, so that it never overrides the hunt's budget).
func OpenInstruments(ctx context.Context, opts Options) (Instruments, error) {
	if opts.Backend == "splice" {
		max := opts.MaxOverhead
		if max == 0 {
			max = 1
		}
		s, err := OpenSplice(ctx, SpliceOptions{Graph: opts.Graph, MaxOverhead: max})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// BackendNames lists every backend by the name Options.Backend takes.
var BackendNames = []string{"fentry", "kprobe", "splice", "tracepoint"}

// CheckBackend refuses a name that is not a backend.
func CheckBackend(name string) error {
	if slices.Contains(BackendNames, name) {
		return nil
	}
	return fmt.Errorf("backend %q: want one of %s", name, strings.Join(BackendNames, ", "))
}
