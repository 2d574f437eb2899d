package instrument

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Kind says what an instrument measures.
type Kind uint8

const (
	// Count counts executions of one instruction boundary (a function
	// entry when Offset is 0, a basic block otherwise), per calling context.
	Count Kind = iota + 1
	// ExitCount counts returns from a function, per calling context.
	ExitCount
	// Timer times a function from entry to every return. It pushes a frame
	// on the thread's shadow stack, so that instruments below it are
	// charged to the calling context it opens. It measures calls,
	// inclusive and exclusive wall time, off-CPU time and a latency
	// histogram.
	Timer
	// Targets captures the actual targets of an indirect call site at
	// Offset, counting (site, target) pairs per calling context.
	Targets
)

var kindNames = map[Kind]string{Count: "entry", ExitCount: "exit", Timer: "timer", Targets: "targets"}

// String returns the name used in SPEC arguments: entry, exit, timer, targets.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// IsValid reports whether k is one of the kinds above.
func (k Kind) IsValid() bool {
	_, ok := kindNames[k]
	return ok
}

// MarshalText writes a Kind by its name, as JSON and YAML show it.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.IsValid() {
		return nil, fmt.Errorf("unknown instrument kind %d", k)
	}
	return []byte(k.String()), nil
}

// UnmarshalText is the inverse of MarshalText.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for k, name := range kindNames {
		if name == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("instrument kind %q: want entry, exit, timer or targets", s)
}

// Point is a place in kernel code: a function, and an offset from its start
// at an instruction boundary (0 for the entry). A call site is a Point
// with Callee set: the call instruction at Func+Offset, which calls
// Callee; a timer there times that one call site's calls, from the call
// to the instruction after it, so that a callee shared by many callers
// is measured where one caller calls it, at the cost of those calls only.
type Point struct {
	Func   string `json:"func"`
	Offset uint64 `json:"offset,omitempty"`
	Callee string `json:"callee,omitempty"`
}

// String returns "func" or "func+0x1a", the form kernel tools use, and
// "callee@func+0x1a" for a call site.
func (p Point) String() string {
	s := p.Func
	if p.Offset != 0 {
		s += "+0x" + strconv.FormatUint(p.Offset, 16)
	}
	if p.Callee != "" {
		s = p.Callee + "@" + s
	}
	return s
}

// Function is the function whose code the point measures: the callee of
// a call site, else Func.
func (p Point) Function() string {
	if p.Callee != "" {
		return p.Callee
	}
	return p.Func
}

// IsCallSite reports whether p is a call site.
func (p Point) IsCallSite() bool { return p.Callee != "" }

// ParsePoint parses "func", "func+OFF" (OFF decimal or 0x-prefixed hex)
// and the call site "callee@func+OFF". A function of a module is written
// MODULE:FUNC, as kprobes and callgraph.Symbols.Func take it.
func ParsePoint(s string) (Point, error) {
	var p Point
	where := s
	if callee, site, ok := strings.Cut(s, "@"); ok {
		if callee == "" {
			return Point{}, fmt.Errorf("instrument point %q: no callee before @", s)
		}
		p.Callee, where = callee, site
	}
	name, off, hasOff := strings.Cut(where, "+")
	if name == "" {
		return Point{}, fmt.Errorf("instrument point %q: no function name", s)
	}
	p.Func = name
	for _, fn := range []string{p.Callee, p.Func} {
		if err := checkFuncName(fn); fn != "" && err != nil {
			return Point{}, fmt.Errorf("instrument point %q: %w", s, err)
		}
	}
	if hasOff {
		v, err := strconv.ParseUint(off, 0, 32)
		if err != nil {
			return Point{}, fmt.Errorf("instrument point %q: offset %q is not a number", s, off)
		}
		p.Offset = v
	}
	if p.Callee != "" && p.Offset == 0 {
		return Point{}, fmt.Errorf("instrument point %q: a call site needs the call's offset (callee@func+OFF)", s)
	}
	return p, nil
}

// checkFuncName accepts FUNC and MODULE:FUNC, neither part empty.
func checkFuncName(fn string) error {
	module, bare, hasModule := strings.Cut(fn, ":")
	if hasModule && (module == "" || bare == "" || strings.Contains(bare, ":")) {
		return fmt.Errorf("function %q: want FUNC or MODULE:FUNC", fn)
	}
	return nil
}

// Target says whose execution an instrument measures. The zero value means
// the whole system.
type Target struct {
	// PIDs are thread-group ids (processes); every thread of each counts.
	PIDs []int
	// Cgroup is a cgroup v2 directory; tasks in it or below it count.
	Cgroup string
}

// CheckPIDs returns an error naming the first of t's pids that is no
// process id: 0 or negative, which a pid filter in the kernel would take
// for the idle task or for none. Every backend and every command asks it.
func (t Target) CheckPIDs() error {
	for _, p := range t.PIDs {
		if p <= 0 {
			return fmt.Errorf("pid %d: not a process id", p)
		}
	}
	return nil
}

// IsSystem reports whether t selects the whole system.
func (t Target) IsSystem() bool { return len(t.PIDs) == 0 && t.Cgroup == "" }

// String describes t for tables and errors.
func (t Target) String() string {
	var parts []string
	if len(t.PIDs) > 0 {
		s := make([]string, len(t.PIDs))
		for i, p := range t.PIDs {
			s[i] = strconv.Itoa(p)
		}
		parts = append(parts, "pid "+strings.Join(s, ","))
	}
	if t.Cgroup != "" {
		parts = append(parts, "cgroup "+t.Cgroup)
	}
	if len(parts) == 0 {
		return "system"
	}
	return strings.Join(parts, " and ")
}

// CgroupRoot is where cgroup v2 is mounted; Target.Cgroup paths that are
// not absolute are relative to it.
const CgroupRoot = "/sys/fs/cgroup"

// CgroupDir returns the cgroup directory of t as instruments open it: an
// absolute path as it is, a relative one below CgroupRoot; "" where t has
// no cgroup.
func (t Target) CgroupDir() string {
	if t.Cgroup == "" || filepath.IsAbs(t.Cgroup) {
		return t.Cgroup
	}
	return filepath.Join(CgroupRoot, t.Cgroup)
}

// Spec describes one instrument: where it goes, what it measures and for
// whom. A Spec is a plain value; only an Instrumenter turns it into a live
// instrument.
type Spec struct {
	Point
	Kind   Kind
	Target Target
}

// String returns the SPEC form "func[+off]:kind", which ParseSpec reads back.
func (s Spec) String() string { return s.Point.String() + ":" + s.Kind.String() }

// ParseSpec parses the command-line form FUNC[+OFF][:entry|:exit|:timer|:targets]
// and CALLEE@FUNC+OFF[:timer], where a function may be MODULE:FUNC. The
// kind is what follows the last colon, so a spec that names a module's
// function writes its kind ("ext4:ext4_file_read_iter:timer", as
// Spec.String does): "vfs_read:timr" is a misspelt kind, not a module's
// function. Without a colon the kind defaults to timer for a function
// entry or a call site and to entry (a count) for an offset inside a
// function.
func ParseSpec(s string) (Spec, error) {
	where, kind, hasKind := cutKind(s)
	if i := strings.LastIndexByte(s, ':'); !hasKind && i >= 0 {
		_, err := ParseKind(s[i+1:])
		return Spec{}, fmt.Errorf("instrument %q: %w (a module's function takes its kind: MODULE:FUNC:KIND)", s, err)
	}
	p, err := ParsePoint(where)
	if err != nil {
		return Spec{}, err
	}
	spec := Spec{Point: p, Kind: Timer}
	if p.Offset != 0 && !p.IsCallSite() {
		spec.Kind = Count
	}
	if hasKind {
		spec.Kind = kind
	}
	if err := spec.checkKind(); err != nil {
		return Spec{}, fmt.Errorf("instrument %q: %w", s, err)
	}
	return spec, nil
}

// checkKind refuses the kinds a point cannot take: a call site takes only
// a timer, and an offset inside a function neither a timer nor an exit count.
func (s Spec) checkKind() error {
	if s.IsCallSite() && s.Kind != Timer {
		return fmt.Errorf("a call site takes a timer, not a %s", s.Kind)
	}
	if s.Offset != 0 && !s.IsCallSite() && (s.Kind == Timer || s.Kind == ExitCount) {
		return fmt.Errorf("a %s needs a function entry or a call site, not an offset", s.Kind)
	}
	return nil
}

// cutKind splits s at its last colon when what follows names a kind.
func cutKind(s string) (where string, kind Kind, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0, false
	}
	k, err := ParseKind(s[i+1:])
	if err != nil {
		return s, 0, false
	}
	return s[:i], k, true
}
