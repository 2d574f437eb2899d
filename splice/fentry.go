package splice

import (
	"github.com/cilium/ebpf/link"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// fentryBackend instruments function entries and returns with BPF
// trampolines: an fentry program for Count and Timer, an fexit program
// for ExitCount and Timer, one link each, the instrument id as the link's
// BPF cookie (Linux 5.19). Programs are loaded once per function and
// shared by its instruments.
//
// Placement: the function must be in available_filter_functions (ftrace
// can patch it: not notrace, not inlined away) and not on BPF's deny
// list; the trampoline protocol itself (text_poke_bp, RCU-tasks before
// freeing an image) is the kernel's.
type fentryBackend struct{}

func (fentryBackend) available() error { return features.HaveFentry() }

func (fentryBackend) attach(s *bpfSession, in *bpfInst, kin measure.Instrument) error {
	if err := s.res.model.SetInstrument(in.id, kin); err != nil {
		return err
	}
	if in.spec.Kind == instrument.Timer {
		if err := s.res.model.AttachSched(); err != nil {
			return err
		}
	}
	// Exit first, so that every frame pushed at entry sees its return.
	if in.spec.Kind == instrument.ExitCount || in.spec.Kind == instrument.Timer {
		if err := attachTracing(s, in, measure.Fexit); err != nil {
			return err
		}
	}
	if in.spec.Kind == instrument.Count || in.spec.Kind == instrument.Timer {
		if err := attachTracing(s, in, measure.Fentry); err != nil {
			return err
		}
	}
	return nil
}

func attachTracing(s *bpfSession, in *bpfInst, kind measure.ProgKind) error {
	prog, release, err := s.res.model.Program(kind, in.spec.Func, in.id)
	if err != nil {
		return err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		release()
		return err
	}
	// undo runs in reverse of attach order, see undoFirst.
	in.undo = append([]func() error{func() error { err := l.Close(); release(); return err }}, in.undo...)
	return nil
}
