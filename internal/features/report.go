package features

import "errors"

// Capability is one line of `autoprof caps`.
type Capability struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // "backend" or "text reader"
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// Use says what autoprof uses it for.
	Use string `json:"use"`
}

// Report is everything `autoprof caps` prints.
type Report struct {
	System       *System      `json:"system"`
	Capabilities []Capability `json:"capabilities"`
}

// checks lists every probe in the order caps prints them.
var checks = []struct {
	name, kind, use string
	have            func() error
}{
	{"fentry", "backend", "function timers and counters through BPF trampolines", HaveFentry},
	{"kprobe", "backend", "function timers, basic-block counters and indirect-call targets through BPF kprobes", HaveKprobe},
	{"splice", "backend", "autoprof's own code splicing through its kernel module", HaveSplice},
	{"tracepoint", "backend", "per-syscall time (raw_syscalls) and off-CPU time (sched_switch)", HaveTracepoint},
	{"sample", "backend", "cpu-clock stack sampling with kernel call chains", HaveSample},
	{"kcore", "text reader", "reading live kernel text through /proc/kcore", HaveKcore},
	{"bpf-read", "text reader", "reading live kernel text through bpf_probe_read_kernel", HaveBPFRead},
}

// Probe runs every probe (each once per process) and returns the report.
func Probe() *Report {
	r := &Report{System: ReadSystem()}
	for _, c := range checks {
		capa := Capability{Name: c.name, Kind: c.kind, Use: c.use, Available: true}
		if err := c.have(); err != nil {
			capa.Available = false
			capa.Reason = err.Error()
			var u *Unavailable
			if errors.As(err, &u) {
				capa.Reason = u.Reason
			}
		}
		r.Capabilities = append(r.Capabilities, capa)
	}
	return r
}

// Backend returns the probe of the backend or text reader named as caps
// names it: nil where it works here, an *Unavailable saying why not, and
// an error for a name caps does not know.
func Backend(name string) error {
	for _, c := range checks {
		if c.name == name {
			return c.have()
		}
	}
	return errors.New("no capability named " + name)
}
