package splice

import (
	"errors"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
)

// TestCheckOn asks every backend about a syscall timer and a function
// timer: a backend the kernel lacks refuses with caps' reason, the
// tracepoint backend takes the syscall only, and the splice module's
// rules are left to its own session.
func TestCheckOn(t *testing.T) {
	s := openSession(t, "tracepoint")
	syscall := instrument.Spec{Point: instrument.Point{Func: "__x64_sys_getppid"}, Kind: instrument.Timer}
	fn := instrument.Spec{Point: instrument.Point{Func: "vfs_read"}, Kind: instrument.Timer}
	for _, b := range instrument.Backends {
		err := s.CheckOn(b, syscall)
		switch have := features.Backend(string(b)); {
		case have != nil:
			var u *features.Unavailable
			if !errors.Is(err, instrument.ErrNotSupported) || !errors.As(have, &u) || !strings.Contains(err.Error(), u.Reason) {
				t.Errorf("%s on %s: %v; want caps' reason (%v)", b, syscall, err, have)
			}
		case b == "splice":
			if !errors.Is(err, ErrNotChecked) {
				t.Errorf("%s on %s: %v; want ErrNotChecked", b, syscall, err)
			}
		case b == "tracepoint":
			if err != nil {
				t.Errorf("%s on %s: %v", b, syscall, err)
			}
		}
	}
	if err := s.CheckOn("tracepoint", fn); !errors.Is(err, instrument.ErrNotSupported) {
		t.Errorf("tracepoint on %s: %v; want ErrNotSupported", fn, err)
	}
	if err := s.CheckOn("nosuch", fn); err == nil || !strings.Contains(err.Error(), "want one of") {
		t.Errorf("an unknown backend: %v", err)
	}
}
