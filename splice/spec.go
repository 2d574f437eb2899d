package splice

import (
	"fmt"
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

// MarshalText writes a Kind by its name, as JSON and YAML show it.
func (k Kind) MarshalText() ([]byte, error) {
	if _, ok := kindNames[k]; !ok {
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
// at an instruction boundary (0 for the entry).
type Point struct {
	Func   string `json:"func"`
	Offset uint64 `json:"offset,omitempty"`
}

// String returns "func" or "func+0x1a", the form kernel tools use.
func (p Point) String() string {
	if p.Offset == 0 {
		return p.Func
	}
	return p.Func + "+0x" + strconv.FormatUint(p.Offset, 16)
}

// ParsePoint parses "func" or "func+OFF" (OFF decimal or 0x-prefixed hex).
func ParsePoint(s string) (Point, error) {
	name, off, hasOff := strings.Cut(s, "+")
	if name == "" {
		return Point{}, fmt.Errorf("instrument point %q: no function name", s)
	}
	p := Point{Func: name}
	if hasOff {
		v, err := strconv.ParseUint(off, 0, 32)
		if err != nil {
			return Point{}, fmt.Errorf("instrument point %q: offset %q is not a number", s, off)
		}
		p.Offset = v
	}
	return p, nil
}

// Target says whose execution an instrument measures. The zero value means
// the whole system.
type Target struct {
	// PIDs are thread-group ids (processes); every thread of each counts.
	PIDs []int
	// Cgroup is a cgroup v2 directory; tasks in it or below it count.
	Cgroup string
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

// Spec describes one instrument: where it goes, what it measures and for
// whom. A Spec is a plain value; only an Instrumenter turns it into a live
// instrument.
type Spec struct {
	Point
	Kind   Kind
	Target Target
}

// String returns the SPEC form "func[+off]:kind".
func (s Spec) String() string { return s.Point.String() + ":" + s.Kind.String() }

// ParseSpec parses the command-line form FUNC[+OFF][:entry|:exit|:timer|:targets].
// The kind defaults to timer for a function entry and to entry (a count)
// for an offset inside a function.
func ParseSpec(s string) (Spec, error) {
	where, kind, hasKind := strings.Cut(s, ":")
	p, err := ParsePoint(where)
	if err != nil {
		return Spec{}, err
	}
	spec := Spec{Point: p, Kind: Timer}
	if p.Offset != 0 {
		spec.Kind = Count
	}
	if hasKind {
		if spec.Kind, err = ParseKind(kind); err != nil {
			return Spec{}, fmt.Errorf("instrument %q: %w", s, err)
		}
	}
	if p.Offset != 0 && (spec.Kind == Timer || spec.Kind == ExitCount) {
		return Spec{}, fmt.Errorf("instrument %q: a %s needs a function entry, not an offset", s, spec.Kind)
	}
	return spec, nil
}
