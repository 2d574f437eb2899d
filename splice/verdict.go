package splice

import (
	"errors"
	"fmt"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
)

// ErrNotChecked says a backend works here but its placement rules were not
// applied: they need a session of that backend (the splice module's rules
// need the module loaded).
var ErrNotChecked = errors.New("not checked")

// CheckOn reports whether backend b alone could insert spec, without
// touching the kernel: caps' reason where b does not work on this kernel,
// else the refusal of its placement rules, as Check gives them. The ui
// shows it for every backend of every function it lists.
func (s *Session) CheckOn(b instrument.Backend, spec instrument.Spec) error {
	if _, err := instrument.ParseBackend(string(b)); err != nil {
		return err
	}
	if bs, ok := s.eng.(*bpfSession); ok {
		if _, ok := backends[b]; ok {
			return bs.checkWith(b, spec)
		}
	}
	if b == s.backend {
		return s.eng.check(spec)
	}
	if err := features.Backend(string(b)); err != nil {
		return fmt.Errorf("%s: %w: %s: %w", spec, instrument.ErrNotSupported, b, err)
	}
	return fmt.Errorf("%s: %w: the %s backend checks its places in a session of its own", spec, ErrNotChecked, b)
}
