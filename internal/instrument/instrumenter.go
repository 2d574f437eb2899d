package instrument

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// ErrClosed is returned by a second Close, and by methods of a closed
// Instrumenter; errors.Is matches it with os.ErrClosed too.
var ErrClosed = fmt.Errorf("instrument already withdrawn: %w", os.ErrClosed)

// ErrNotSupported says a backend cannot do what a Spec asks on this kernel;
// errors.Is matches it on errors that carry the precise reason.
var ErrNotSupported = errors.New("not supported")

// ErrBusy says a backend could not take an instrument now, for want of
// a resource that comes back (the splice module's trampoline slots, freed
// after an RCU-tasks grace period): trying again later may work, and the
// place is not refused.
var ErrBusy = errors.New("busy: try again later")

// ErrUnsafe says a place is refused by a placement rule (blacklist, not an
// instruction boundary, entry text, ...). Nothing was written to the kernel.
var ErrUnsafe = errors.New("unsafe place")

// Instrumenter inserts, reads and withdraws instruments of one backend.
type Instrumenter interface {
	// Backend names the backend: fentry, kprobe, splice, tracepoint.
	Backend() Backend
	// Check reports whether spec could be inserted, without touching the
	// kernel. Refusals wrap ErrUnsafe or ErrNotSupported.
	Check(spec Spec) error
	// Insert checks spec and makes it live.
	Insert(ctx context.Context, spec Spec) (Instrument, error)
	// Read returns the cumulative readings of every instrument inserted
	// so far, withdrawn ones included (their counts stop growing).
	Read() (*Reading, error)
	// Close withdraws every live instrument and releases the backend.
	Close() error
}

// Instrument is one live instrument.
type Instrument interface {
	Spec() Spec
	// Close withdraws the instrument. A second call returns ErrClosed.
	Close() error
}
