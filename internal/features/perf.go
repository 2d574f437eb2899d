package features

import (
	"errors"
	"fmt"

	"github.com/autoprof/autoprof/internal/kernel"
)

var sampleProbe = newProbe(probeSample)

// HaveSample reports whether cpu-clock sampling can be opened for all tasks
// on a CPU the way the sample backend opens it (kernel.CPUClockEvent, for a
// BPF perf_event program that takes the kernel call chains): perf events
// since Linux 2.6.31, CAP_PERFMON (5.8) or CAP_SYS_ADMIN, or
// perf_event_paranoid <= 0, for system-wide samples.
func HaveSample() error { return sampleProbe.result() }

func probeSample() error {
	s := ReadSystem()
	f, err := kernel.CPUClockEvent(0, 99)
	if err == nil {
		return f.Close()
	}
	reason := fmt.Sprintf("opening a cpu-clock sampling event: %v", err)
	switch {
	case errors.Is(err, kernel.ENOSYS) || errors.Is(err, kernel.ENOENT):
		reason = "CONFIG_PERF_EVENTS is not set (perf_event_open: " + kernel.ErrnoName(err) + ")"
	case errors.Is(err, kernel.EACCES) || errors.Is(err, kernel.EPERM):
		switch {
		case !s.Caps["CAP_PERFMON"] && !s.Caps["CAP_SYS_ADMIN"]:
			reason = fmt.Sprintf("missing capability CAP_PERFMON with perf_event_paranoid %d (run as root)", s.PerfEventParanoid)
		case s.Lockdown == "confidentiality":
			reason = "lockdown is confidentiality, which forbids perf events"
		default:
			reason = fmt.Sprintf("the kernel refused perf_event_open (%s)%s", kernel.ErrnoName(err), refusalContext(s))
		}
	}
	return &Unavailable{Feature: "sample", Reason: reason, Err: err}
}
