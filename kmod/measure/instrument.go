package measure

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Kind is what an instrument measures; the values are the K_* constants of
// measure.bpf.c.
type Kind uint32

// Instrument kinds.
const (
	Count   Kind = 1 // count entries per context
	Exit    Kind = 2 // count returns per context
	Timer   Kind = 3 // push a frame at entry, time it at return
	Targets Kind = 4 // count (context, indirect-call target) pairs
	Syscall Kind = 5 // a syscall root timer, opened by sys_enter
)

// Operand is where a Targets instrument reads the call target: the
// register Base (Mem false) or the 8 bytes at Disp+Base+Index*Scale.
// Registers are pt_regs slots (see RegSlot), -1 for none.
type Operand struct {
	Mem         bool
	Base, Index int
	Scale       uint8
	Disp        int64
}

// regSlots are the x86-64 struct pt_regs slots of the general registers.
var regSlots = map[string]int{
	"r15": 0, "r14": 1, "r13": 2, "r12": 3, "rbp": 4, "rbx": 5, "r11": 6, "r10": 7,
	"r9": 8, "r8": 9, "rax": 10, "rcx": 11, "rdx": 12, "rsi": 13, "rdi": 14, "rsp": 19,
}

// RegSlot returns the pt_regs slot of a 64-bit general register ("rax"),
// or -1 for "" (no register). Other names are an error.
func RegSlot(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if s, ok := regSlots[name]; ok {
		return s, nil
	}
	return 0, fmt.Errorf("register %q cannot be read from pt_regs", name)
}

// Instrument is the kernel side's view of one instrument.
type Instrument struct {
	Kind    Kind
	PIDs    []uint32 // thread-group ids; none means all
	Cgroup  int      // an open cgroup v2 directory's fd, or -1 for none
	Operand Operand  // Targets only
}

// The filter flags of an instrument: F_* in measure.bpf.c.
const (
	filterPIDs   = 1
	filterCgroup = 2
)

// SetInstrument makes instrument id live with its filter. Call it before
// attaching the instrument's programs.
func (m *Model) SetInstrument(id uint32, in Instrument) error {
	if int(id) > m.cfg.MaxInstruments || id == 0 {
		return fmt.Errorf("instrument id %d out of range 1..%d", id, m.cfg.MaxInstruments)
	}
	v := measureInst{Live: 1, Kind: uint32(in.Kind), Scale: in.Operand.Scale, Disp: in.Operand.Disp}
	if in.Operand.Mem {
		v.Mem = 1
	}
	v.Base, v.Index = uint8(in.Operand.Base+1), uint8(in.Operand.Index+1)
	if in.Kind != Targets {
		v.Base, v.Index = 0, 0
	}
	for _, pid := range in.PIDs {
		k := measurePidKey{Inst: id, Tgid: pid}
		if err := m.objs.Pids.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("setting the pid filter of instrument %d: %w", id, err)
		}
		v.Filter |= filterPIDs
	}
	if in.Cgroup >= 0 {
		if err := m.objs.Cgroups.Update(id, uint32(in.Cgroup), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("setting the cgroup filter of instrument %d: %w", id, err)
		}
		v.Filter |= filterCgroup
	}
	if err := m.objs.Insts.Update(id, v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("setting instrument %d: %w", id, err)
	}
	return nil
}

// Kill marks instrument id dead: its programs ignore it from now on, its
// open frames are dropped as stale, and its filter entries are freed. Its
// counters stay readable.
func (m *Model) Kill(id uint32, pids []uint32) error {
	var errs []error
	errs = append(errs, m.objs.Insts.Update(id, measureInst{}, ebpf.UpdateAny))
	for _, pid := range pids {
		if err := m.objs.Pids.Delete(measurePidKey{Inst: id, Tgid: pid}); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	if err := m.objs.Cgroups.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("withdrawing instrument %d: %w", id, err)
	}
	return nil
}

// SetSyscall makes sys_enter open a frame of instrument id (a Syscall
// instrument) for syscall nr; id 0 clears it.
func (m *Model) SetSyscall(nr int, id uint32) error {
	if nr < 0 || nr >= syscallSlots {
		return fmt.Errorf("syscall number %d out of range", nr)
	}
	if err := m.objs.Syscalls.Update(uint32(nr), id, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("setting syscall %d: %w", nr, err)
	}
	return nil
}
