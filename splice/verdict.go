package splice

import (
	"errors"
	"fmt"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
)

// ErrNotChecked says a backend works here but its placement rules were not
// applied: the splice module's rules need the module loaded (OpenSplice).
var ErrNotChecked = errors.New("not checked")

// CheckOn reports whether backend b alone could insert spec, without
// touching the kernel: caps' reason where b does not work on this kernel,
// else the refusal of its placement rules, as Check gives them. The ui
// shows it for every backend of every function it lists.
func (s *Session) CheckOn(b string, spec instrument.Spec) error {
	if err := CheckBackend(b); err != nil {
		return err
	}
	if _, ok := backends[b]; !ok { // splice: its own session's rules
		if err := features.Backend(b); err != nil {
			return fmt.Errorf("%s: %w: %s: %w", spec, instrument.ErrNotSupported, b, err)
		}
		return fmt.Errorf("%s: %w: the splice module checks its places once loaded", spec, ErrNotChecked)
	}
	return s.checkWith(b, spec)
}
