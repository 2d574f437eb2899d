// Package features probes what the running kernel lets autoprof do: which
// instrument backends work, which kernel text readers work, and why not.
//
// Every probe tries the real operation (load and attach a tiny program,
// open a perf event, hand the kernel a module) rather than guessing from
// version numbers, leaves nothing behind, and caches its answer for the
// life of the process. A probe returns nil when the feature works, and
// otherwise an *Unavailable naming the missing thing.
package features

import (
	"errors"
	"fmt"
	"sync"
)

// ErrUnavailable is matched by errors.Is on every *Unavailable.
var ErrUnavailable = errors.New("unavailable")

// Unavailable says why a feature does not work here.
type Unavailable struct {
	Feature string // "fentry", "kprobe", ...
	Reason  string // names the missing thing: a config option, a lockdown level, a capability, the kernel's errno
	Err     error  // the error of the operation that was tried, if any
}

func (u *Unavailable) Error() string {
	return fmt.Sprintf("%s unavailable: %s", u.Feature, u.Reason)
}

// Unwrap returns the underlying error.
func (u *Unavailable) Unwrap() error { return u.Err }

// Is makes errors.Is(err, ErrUnavailable) true.
func (u *Unavailable) Is(target error) bool { return target == ErrUnavailable }

// probe caches the result of one feature test.
type probe struct {
	once sync.Once
	fn   func() error
	err  error
}

func (p *probe) result() error {
	p.once.Do(func() { p.err = p.fn() })
	return p.err
}

func newProbe(fn func() error) *probe { return &probe{fn: fn} }
