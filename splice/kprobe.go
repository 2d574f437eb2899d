package splice

import (
	"fmt"

	"github.com/cilium/ebpf/link"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// kprobeBackend instruments any instruction boundary with kprobes and
// function returns with kretprobes, created through the perf kprobe PMU so
// that the perf fd owns each probe (never through tracefs kprobe_events:
// where the PMU is missing the backend is unavailable, checked before
// cilium/ebpf could fall back to it). The instrument id is the BPF cookie.
//
// A Targets instrument sits on an indirect call site: its program
// evaluates the operand that callgraph decoded (a register, or memory at
// disp+base+index*scale; a retpoline thunk call through %rax means the
// target is in rax) from pt_regs before the call executes.
//
// A call-site timer (Point.Callee set) is two kprobes: one on the call
// instruction, which opens a frame, and one on the instruction the call
// returns to, whose BPF cookie has bit 63 set (COOKIE_RETURN in
// measure.bpf.c), which closes it; Placement.CallReturn says where the
// second goes.
//
// Placement: the debugfs kprobe blacklist, the forbidden sections, and
// instruction boundaries from callgraph's decode; the kernel then refuses
// what else it must before writing anything: a place that is not an
// instruction boundary with EILSEQ, jump-label and static-call sites,
// BUG sites and blacklisted functions with EINVAL
// (check_kprobe_address_safe).
type kprobeBackend struct{}

func (kprobeBackend) available() error { return features.HaveKprobe() }

func (kprobeBackend) attach(s *bpfSession, in *bpfInst, kin measure.Instrument) error {
	if in.spec.Kind == instrument.Targets {
		op, err := targetOperand(s, in.spec)
		if err != nil {
			return err
		}
		kin.Operand = op
	}
	if err := s.res.model.SetInstrument(in.id, kin); err != nil {
		return err
	}
	if in.spec.Kind == instrument.Timer {
		if err := s.res.model.AttachSched(); err != nil {
			return err
		}
	}
	if in.spec.IsCallSite() {
		return attachCallSite(s, in)
	}
	if in.spec.Kind == instrument.ExitCount || in.spec.Kind == instrument.Timer {
		if err := attachKprobe(s, in, measure.Kretprobe); err != nil {
			return err
		}
	}
	if in.spec.Kind != instrument.ExitCount {
		return attachKprobe(s, in, measure.Kprobe)
	}
	return nil
}

func attachKprobe(s *bpfSession, in *bpfInst, kind measure.ProgKind) error {
	prog, release, err := s.res.model.Program(kind, "", 0)
	if err != nil {
		return err
	}
	opts := &link.KprobeOptions{Cookie: uint64(in.id), Offset: in.spec.Offset}
	var l link.Link
	if kind == measure.Kretprobe {
		l, err = link.Kretprobe(in.spec.Func, prog, &link.KprobeOptions{Cookie: uint64(in.id)})
	} else {
		l, err = link.Kprobe(in.spec.Func, prog, opts)
	}
	if err != nil {
		release()
		return err
	}
	in.undo = append([]func() error{func() error { err := l.Close(); release(); return err }}, in.undo...)
	return nil
}

// cookieReturn marks the kprobe at a call site's return address
// (COOKIE_RETURN in measure.bpf.c).
const cookieReturn = 1 << 63

// attachCallSite times a call site with two kprobes: one on the
// instruction the call returns to, which closes the frame, then one on
// the call, which opens it (return first, so that every frame opened sees
// its close).
func attachCallSite(s *bpfSession, in *bpfInst) error {
	ret, err := s.place.CallReturn(in.spec.Point)
	if err != nil {
		return err
	}
	for _, half := range []struct {
		off    uint64
		cookie uint64
	}{{uint64(ret), uint64(in.id) | cookieReturn}, {in.spec.Offset, uint64(in.id)}} {
		prog, release, err := s.res.model.Program(measure.Kprobe, "", 0)
		if err != nil {
			return err
		}
		l, err := link.Kprobe(in.spec.Func, prog, &link.KprobeOptions{Cookie: half.cookie, Offset: half.off})
		if err != nil {
			release()
			return err
		}
		in.undo = append([]func() error{func() error { err := l.Close(); release(); return err }}, in.undo...)
	}
	return nil
}

// targetOperand converts the decoded operand of the call at spec's offset.
func targetOperand(s *bpfSession, spec instrument.Spec) (measure.Operand, error) {
	f, err := s.graph.Function(spec.Func)
	if err != nil {
		return measure.Operand{}, err
	}
	op, err := indirectOperand(f, uint32(spec.Offset))
	if err != nil {
		return measure.Operand{}, err
	}
	return convertOperand(op)
}

func convertOperand(op *callgraph.Operand) (measure.Operand, error) {
	base, err := measure.RegSlot(op.Base)
	if err != nil {
		return measure.Operand{}, fmt.Errorf("call operand %s: %w", op, err)
	}
	index, err := measure.RegSlot(op.Index)
	if err != nil {
		return measure.Operand{}, fmt.Errorf("call operand %s: %w", op, err)
	}
	return measure.Operand{Mem: op.Mem, Base: base, Index: index, Scale: op.Scale, Disp: op.Disp}, nil
}
