package features

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/autoprof/autoprof/kmod/textread"
)

var (
	kcoreProbe   = newProbe(probeKcore)
	bpfReadProbe = newProbe(probeBPFRead)
)

// HaveKcore reports whether /proc/kcore can read kernel text
// (CONFIG_PROC_KCORE, root, and not lockdown confidentiality).
func HaveKcore() error { return kcoreProbe.result() }

// HaveBPFRead reports whether kernel text can be read with
// bpf_probe_read_kernel from a program run with BPF_PROG_TEST_RUN (raw
// tracepoint test runs, Linux 5.10).
func HaveBPFRead() error { return bpfReadProbe.result() }

// textProbeSymbol is read by both text probes: every x86-64 kernel has it.
const textProbeSymbol = "_stext"

func probeKcore() error {
	s := ReadSystem()
	f, err := os.Open("/proc/kcore")
	if err != nil {
		reason := fmt.Sprintf("opening /proc/kcore: %v", err)
		switch {
		case errors.Is(err, os.ErrNotExist):
			reason = "no /proc/kcore (CONFIG_PROC_KCORE is not set)"
		case s.Lockdown == "confidentiality":
			reason = "lockdown is confidentiality, which hides /proc/kcore"
		case errors.Is(err, os.ErrPermission):
			reason = "/proc/kcore needs CAP_SYS_RAWIO (run as root)"
		}
		return &Unavailable{Feature: "kcore", Reason: reason, Err: err}
	}
	defer f.Close()
	addr, err := kallsymsAddr(textProbeSymbol)
	if err != nil {
		return &Unavailable{Feature: "kcore", Reason: err.Error(), Err: err}
	}
	core, err := elf.NewFile(f)
	if err != nil {
		return &Unavailable{Feature: "kcore", Reason: fmt.Sprintf("/proc/kcore is not an ELF core file: %v", err), Err: err}
	}
	for _, p := range core.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr <= addr && addr+16 <= p.Vaddr+p.Memsz {
			buf := make([]byte, 16)
			if _, err := f.ReadAt(buf, int64(p.Off+addr-p.Vaddr)); err != nil {
				return &Unavailable{Feature: "kcore", Reason: fmt.Sprintf("reading %s through /proc/kcore: %v", textProbeSymbol, err), Err: err}
			}
			return checkText(buf)
		}
	}
	return &Unavailable{Feature: "kcore", Reason: fmt.Sprintf("/proc/kcore maps no segment holding %s at %#x", textProbeSymbol, addr)}
}

func probeBPFRead() error {
	s := ReadSystem()
	addr, err := kallsymsAddr(textProbeSymbol)
	if err != nil {
		return &Unavailable{Feature: "bpf-read", Reason: err.Error(), Err: err}
	}
	r, err := textread.Open()
	if err != nil {
		return bpfRefusal(s, "bpf-read", "loading the text reader", err)
	}
	defer r.Close()
	buf := make([]byte, 16)
	if err := r.ReadAt(buf, addr); err != nil {
		reason := err.Error()
		if s.Lockdown == "confidentiality" {
			reason = "lockdown is confidentiality, which forbids BPF reads of kernel memory"
		}
		return &Unavailable{Feature: "bpf-read", Reason: reason, Err: err}
	}
	return checkText(buf)
}

// checkText rejects a read that returned only zeros: a reader that hides
// memory rather than failing.
func checkText(b []byte) error {
	if bytes.Count(b, []byte{0}) == len(b) {
		return &Unavailable{Feature: "text", Reason: "kernel text read back as zeros"}
	}
	return nil
}

// kallsymsAddr returns the address of a symbol from /proc/kallsyms.
func kallsymsAddr(name string) (uint64, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/kallsyms: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == name {
			v, err := strconv.ParseUint(fields[0], 16, 64)
			if err != nil || v == 0 {
				return 0, errors.New("/proc/kallsyms hides addresses (kptr_restrict; run as root)")
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s is not in /proc/kallsyms", name)
}
