package features

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/autoprof/autoprof/internal/kernel"
)

// System describes the running kernel and what autoprof is allowed there.
type System struct {
	Release string `json:"release"`
	// Lockdown is none, integrity or confidentiality; "" where unknown.
	Lockdown string `json:"lockdown"`
	// PerfEventParanoid is /proc/sys/kernel/perf_event_paranoid.
	PerfEventParanoid int `json:"perf_event_paranoid"`
	// KptrRestrict is /proc/sys/kernel/kptr_restrict; KallsymsVisible
	// says whether /proc/kallsyms shows real addresses to this process.
	KptrRestrict    int  `json:"kptr_restrict"`
	KallsymsVisible bool `json:"kallsyms_visible"`
	// BTF says whether /sys/kernel/btf/vmlinux exists.
	BTF bool `json:"btf"`
	// Caps are the capabilities autoprof's backends need, as held.
	Caps map[string]bool `json:"capabilities"`
	// ConfigSource is where the kernel config was read ("" if nowhere).
	ConfigSource string `json:"config_source,omitempty"`
	config       map[string]string
}

// Capability numbers from include/uapi/linux/capability.h.
var capNumbers = map[string]uint{
	"CAP_SYS_MODULE": 16,
	"CAP_SYS_ADMIN":  21,
	"CAP_PERFMON":    38,
	"CAP_BPF":        39,
}

var sysOnce = sync.OnceValue(readSystem)

// ReadSystem returns the description of the running kernel (cached).
func ReadSystem() *System { return sysOnce() }

func readSystem() *System {
	s := &System{Caps: map[string]bool{}}
	s.Release, _ = kernel.Release()
	s.Lockdown = readLockdown()
	s.PerfEventParanoid = readInt("/proc/sys/kernel/perf_event_paranoid", -99)
	s.KptrRestrict = readInt("/proc/sys/kernel/kptr_restrict", -1)
	s.KallsymsVisible = kallsymsVisible()
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	s.BTF = err == nil
	eff := effectiveCaps()
	for name, bit := range capNumbers {
		s.Caps[name] = eff&(1<<bit) != 0
	}
	s.config, s.ConfigSource = readConfig(s.Release)
	return s
}

// Config returns a kernel config option's value ("y", "m", a number), ""
// when it is not set, and ok=false when the config could not be read.
func (s *System) Config(option string) (value string, ok bool) {
	if s.config == nil {
		return "", false
	}
	return s.config[option], true
}

// configOff reports whether option is known to be off.
func (s *System) configOff(option string) bool {
	v, ok := s.Config(option)
	return ok && v == ""
}

// readLockdown reads the active lockdown level, mounting securityfs where
// it is not (as minimal systems leave it).
func readLockdown() string {
	kernel.Securityfs.Ensure()
	b, err := os.ReadFile(kernel.Securityfs.Path + "/lockdown")
	if err != nil {
		return ""
	}
	return parseLockdown(string(b))
}

// parseLockdown picks the bracketed level out of "none [integrity] confidentiality".
func parseLockdown(s string) string {
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return ""
	}
	return s[i+1 : j]
}

func readInt(path string, def int) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return def
	}
	return v
}

// kallsymsVisible reports whether the first text symbol of /proc/kallsyms
// has a non-zero address for this process. (Per-CPU symbols at the top of
// the file have address 0 even where addresses are shown.)
func kallsymsVisible() bool {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "T" && fields[1] != "t") {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 16, 64)
		return err == nil && v != 0
	}
	return false
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return caps
		}
	}
	return 0
}

// readConfig reads the kernel config from /proc/config.gz or
// /boot/config-RELEASE.
func readConfig(release string) (map[string]string, string) {
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if zr, err := gzip.NewReader(f); err == nil {
			if m, err := parseConfig(zr); err == nil {
				return m, "/proc/config.gz"
			}
		}
	}
	path := "/boot/config-" + release
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		if m, err := parseConfig(f); err == nil {
			return m, path
		}
	}
	return nil, ""
}

// parseConfig reads a kernel .config: CONFIG_X=value lines; "# CONFIG_X is
// not set" and absent options read as "".
func parseConfig(r io.Reader) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			m[k] = strings.Trim(v, `"`)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kernel config: %w", err)
	}
	return m, nil
}

// missingCaps lists the capabilities of names this process lacks.
func (s *System) missingCaps(names ...string) []string {
	var missing []string
	for _, n := range names {
		if !s.Caps[n] {
			missing = append(missing, n)
		}
	}
	return missing
}

// bpfCapsMissing says which capabilities tracing BPF needs and this process
// lacks: CAP_BPF and CAP_PERFMON (5.8+), or CAP_SYS_ADMIN.
func (s *System) bpfCapsMissing() string {
	if s.Caps["CAP_SYS_ADMIN"] {
		return ""
	}
	if m := s.missingCaps("CAP_BPF", "CAP_PERFMON"); len(m) > 0 {
		return "missing capability " + strings.Join(m, " and ") + " (run as root)"
	}
	return ""
}
