package features

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/autoprof/autoprof/internal/kernel"
	"github.com/autoprof/autoprof/internal/kernelbtf"
)

// probeFunc is the kernel function the fentry and kprobe probes attach to:
// a function that exists for BPF's own self tests and that nothing calls
// in normal operation, so attaching to it disturbs nothing.
const probeFunc = "bpf_fentry_test1"

var (
	tracepointProbe = newProbe(probeTracepoint)
	fentryProbe     = newProbe(probeFentry)
	kprobeProbe     = newProbe(probeKprobe)
)

// HaveTracepoint reports whether BPF programs can be attached to
// BTF-typed raw tracepoints (tp_btf: BPF_PROG_TYPE_TRACING with
// BPF_TRACE_RAW_TP, Linux 5.5, and kernel BTF), which is how the
// measurement model (kmod/measure) attaches to sys_enter, sys_exit and the
// sched events for every backend.
func HaveTracepoint() error { return tracepointProbe.result() }

// HaveFentry reports whether fentry/fexit programs (BPF trampolines, Linux
// 5.5, CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS and BTF) can be loaded and
// attached to a kernel function.
func HaveFentry() error { return fentryProbe.result() }

// HaveKprobe reports whether BPF kprobes can be attached through the perf
// kprobe PMU (fd-owned, Linux 4.17, CONFIG_KPROBES). autoprof never falls
// back to tracefs kprobe_events, whose entries would outlive it.
func HaveKprobe() error { return kprobeProbe.result() }

// noBTF is why fentry and tp_btf programs cannot load without kernel BTF.
const noBTF = "no kernel BTF (/sys/kernel/btf/vmlinux missing: CONFIG_DEBUG_INFO_BTF is off)"

// returnZero is the body of every probe program.
var returnZero = asm.Instructions{asm.LoadImm(asm.R0, 0, asm.DWord), asm.Return()}

func loadProbeProgram(spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	rlimit.RemoveMemlock()
	spec.Instructions = returnZero
	spec.License = "GPL"
	opts := ebpf.ProgramOptions{LogDisabled: true}
	if types, err := kernelbtf.Cache().Kernel(); err == nil {
		opts.KernelTypes = types // else the load says why it needed them
	}
	return ebpf.NewProgramWithOptions(spec, opts)
}

func probeTracepoint() error {
	const feature = "tracepoint"
	s := ReadSystem()
	if !s.BTF {
		return &Unavailable{Feature: feature, Reason: noBTF}
	}
	prog, err := loadProbeProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sys_enter",
	})
	if err != nil {
		return bpfRefusal(s, feature, "loading a tp_btf program for sys_enter", err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return bpfRefusal(s, feature, "attaching tp_btf to sys_enter", err)
	}
	return l.Close()
}

func probeFentry() error {
	const feature = "fentry"
	s := ReadSystem()
	if !s.BTF {
		return &Unavailable{Feature: feature, Reason: noBTF}
	}
	if s.configOff("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS") {
		return &Unavailable{Feature: feature, Reason: "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS is not set (no BPF trampolines)"}
	}
	prog, err := loadProbeProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: probeFunc,
	})
	if err != nil {
		return bpfRefusal(s, feature, "loading an fentry program for "+probeFunc, err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return bpfRefusal(s, feature, "attaching fentry to "+probeFunc, err)
	}
	return l.Close()
}

func probeKprobe() error {
	const feature = "kprobe"
	s := ReadSystem()
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
		reason := "no perf kprobe PMU in /sys/bus/event_source/devices"
		if s.configOff("CONFIG_KPROBES") {
			reason = "CONFIG_KPROBES is not set (" + reason + ")"
		}
		return &Unavailable{Feature: feature, Reason: reason, Err: err}
	}
	prog, err := loadProbeProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe})
	if err != nil {
		return bpfRefusal(s, feature, "loading a kprobe program", err)
	}
	defer prog.Close()
	l, err := link.Kprobe(probeFunc, prog, nil)
	if err != nil {
		return bpfRefusal(s, feature, "attaching a kprobe to "+probeFunc, err)
	}
	return l.Close()
}

// bpfRefusal turns the kernel's refusal of a BPF operation into a reason
// that names what is missing.
func bpfRefusal(s *System, feature, op string, err error) error {
	reason := fmt.Sprintf("%s: %v", op, err)
	switch {
	case s.bpfCapsMissing() != "":
		reason = s.bpfCapsMissing()
	case errors.Is(err, kernel.EPERM) || errors.Is(err, kernel.EACCES):
		reason = fmt.Sprintf("%s: the kernel refused (%s)%s", op, kernel.ErrnoName(err), refusalContext(s))
	case errors.Is(err, ebpf.ErrNotSupported):
		reason = fmt.Sprintf("%s: the kernel does not support it (%v)", op, err)
	}
	return &Unavailable{Feature: feature, Reason: reason, Err: err}
}

// refusalContext adds what is known to make the kernel refuse a privileged
// tracing operation although the capabilities are held.
func refusalContext(s *System) string {
	var why []string
	if s.Lockdown != "" && s.Lockdown != "none" {
		why = append(why, "lockdown is "+s.Lockdown)
	}
	if lsm, err := os.ReadFile(kernel.Securityfs.Path + "/lsm"); err == nil {
		why = append(why, "active LSMs "+strings.TrimSpace(string(lsm)))
	}
	if len(why) == 0 {
		return " with the capabilities held"
	}
	return " with the capabilities held; " + strings.Join(why, ", ")
}
