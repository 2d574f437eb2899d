package splice

import (
	"fmt"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// tracepointBackend times whole syscalls from the raw_syscalls
// tracepoints (tp_btf sys_enter/sys_exit, Linux 5.5 with BTF): a
// __x64_sys_* timer opens a root frame on the thread's shadow stack at
// sys_enter, so that function instruments below nest under it
// (__x64_sys_read;vfs_read;...), and closes it at sys_exit. The syscall's
// number comes from the kernel's own sys_call_table. One root per
// syscall is live at a time. It also attaches sched_switch (off-CPU time)
// and sched_process_exit (shadow stack cleanup), which every timer needs.
//
// Nothing is patched: tracepoints are static jump labels the kernel
// flips, so there is no placement rule beyond "is a syscall".
type tracepointBackend struct{}

func (tracepointBackend) available() error { return features.HaveTracepoint() }

func (tracepointBackend) attach(s *bpfSession, in *bpfInst, kin measure.Instrument) error {
	nr, ok := s.sysTable.Number(in.spec.Func)
	if !ok {
		return fmt.Errorf("%s is not in the syscall table", in.spec.Func)
	}
	s.mu.Lock()
	if other, busy := s.byNr[nr]; busy {
		s.mu.Unlock()
		return fmt.Errorf("%w: syscall %d already has a live root timer (instrument %d)", instrument.ErrNotSupported, nr, other)
	}
	s.byNr[nr] = in.id
	s.mu.Unlock()
	in.undo = append(in.undo, func() error {
		s.mu.Lock()
		delete(s.byNr, nr)
		s.mu.Unlock()
		return s.res.model.SetSyscall(nr, 0)
	})
	if err := s.res.model.SetInstrument(in.id, kin); err != nil {
		return err
	}
	if err := s.res.model.AttachSyscalls(); err != nil {
		return err
	}
	return s.res.model.SetSyscall(nr, in.id)
}
