package splice

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/autoprof/autoprof/internal/instrument"
)

// progRes are the kernel objects of a tool built on one BPF program.
type progRes interface {
	program() *ebpf.Program
	close() error
}

// progTool is what OffCPU and Sampler share: their kernel objects behind
// a lock, released once, by Close or, for a tool dropped unclosed, by the
// cleanup its constructor registers (clean).
type progTool[R progRes] struct {
	mu     sync.Mutex
	res    R
	clean  runtime.Cleanup
	closed bool
	what   string // what the tool does, for its errors
}

// RunTime is the kernel time the program has taken so far, on every CPU
// (the sampler's runs in the sampling interrupt, the off-CPU program at
// every context switch, the target's or not); 0 where the kernel keeps no
// BPF run-time statistics (kernel.bpf_stats_enabled off).
func (t *progTool[R]) RunTime() (time.Duration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, instrument.ErrClosed
	}
	st, err := t.res.program().Stats()
	if err != nil {
		return 0, fmt.Errorf("%s: reading the program's statistics: %w", t.what, err)
	}
	return st.Runtime, nil
}

// Close detaches the program and releases everything. A second call
// returns instrument.ErrClosed.
func (t *progTool[R]) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return instrument.ErrClosed
	}
	t.closed = true
	t.clean.Stop()
	return t.res.close()
}
