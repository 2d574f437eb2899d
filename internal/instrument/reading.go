package instrument

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// HistBuckets is the number of log2 latency buckets: bucket i counts calls
// whose inclusive wall time t in ns has bits.Len64(t) == i, so bucket 0 holds
// t = 0 and bucket 40 holds t in [2^39, 2^40) ns (about 9 to 18 minutes);
// longer calls are counted in the last bucket.
const HistBuckets = 41

// Path is a calling context: the instrumented points from the outermost
// (root) to the innermost. Only instrumented functions appear in it.
type Path []Point

// String joins the points with ";", the folded-stack form.
func (p Path) String() string {
	s := make([]string, len(p))
	for i, pt := range p {
		s[i] = pt.String()
	}
	return strings.Join(s, ";")
}

// ContextReading is what the instruments measured in one calling context.
// Path's last point is the instrumented point itself.
type ContextReading struct {
	Path Path `json:"path"`
	Kind Kind `json:"kind"`
	// Calls counts entries (Count, Timer) or returns (ExitCount).
	Calls uint64 `json:"calls"`
	// The rest are for Timer readings only. Inclusive time runs from
	// entry to return; exclusive time is inclusive time less the
	// inclusive time of instrumented callees. Off-CPU time is time the
	// thread spent switched out: inclusive off-CPU time counts it in every
	// frame on the stack, exclusive off-CPU time only in the frame on top
	// when the thread blocked. On-CPU time is wall less off-CPU time.
	InclNs       uint64 `json:"incl_ns"`
	ExclNs       uint64 `json:"excl_ns"`
	InclOffCPUNs uint64 `json:"incl_offcpu_ns"`
	ExclOffCPUNs uint64 `json:"excl_offcpu_ns"`
	// Hist counts calls by inclusive wall time (see HistBuckets).
	Hist [HistBuckets]uint64 `json:"hist"`
}

// TargetReading counts how often an indirect call site called one target
// in one calling context.
type TargetReading struct {
	Path   Path   `json:"path"`   // the calling context and, last, the call site
	Target uint64 `json:"target"` // the address called
	Func   string `json:"func"`   // its symbol, "" where unknown
	Calls  uint64 `json:"calls"`
}

// Misses counts events the instruments could not measure. They are always
// reported: a reading with misses is a lower bound.
type Misses struct {
	Recursion  uint64 `json:"recursion"`   // an instrument hit while one was running on the CPU (IRQ, NMI, nesting)
	StackDepth uint64 `json:"stack_depth"` // the shadow stack was full
	MapFull    uint64 `json:"map_full"`    // no room for a new calling context or target
	Unmatched  uint64 `json:"unmatched"`   // a return without its entry, or an entry without its return
	Kernel     uint64 `json:"kernel"`      // misses the kernel itself reported (kprobe nmissed, BPF recursion_misses)
}

// UnmarshalJSON reads Misses as MarshalJSON writes them, and as runs saved
// before the fields had names of their own did ("StackDepth").
func (m *Misses) UnmarshalJSON(b []byte) error {
	var v map[string]uint64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	for k, n := range v {
		switch strings.ToLower(strings.ReplaceAll(k, "_", "")) {
		case "recursion":
			m.Recursion = n
		case "stackdepth":
			m.StackDepth = n
		case "mapfull":
			m.MapFull = n
		case "unmatched":
			m.Unmatched = n
		case "kernel":
			m.Kernel = n
		}
	}
	return nil
}

// Total sums all misses.
func (m Misses) Total() uint64 {
	return m.Recursion + m.StackDepth + m.MapFull + m.Unmatched + m.Kernel
}

// sub is m less o, field by field, 0 where a count went down.
func (m Misses) sub(o Misses) Misses {
	return Misses{
		Recursion:  less(m.Recursion, o.Recursion),
		StackDepth: less(m.StackDepth, o.StackDepth),
		MapFull:    less(m.MapFull, o.MapFull),
		Unmatched:  less(m.Unmatched, o.Unmatched),
		Kernel:     less(m.Kernel, o.Kernel),
	}
}

// less is x − y for two readings of a counter, 0 where the counter went
// down (it was reset, or another instrument now counts there), never a
// wrapped-around difference.
func less(x, y uint64) uint64 { return x - min(x, y) }

// Reading is a cumulative snapshot of every instrument of an Instrumenter.
type Reading struct {
	At       time.Time
	Contexts []ContextReading
	Targets  []TargetReading
	Misses   Misses
	// Hits counts, by Spec.String(), every time an instrument's program
	// ran for an entry, whatever task ran it: what the instrument
	// costs, where Contexts count only the target's calls. Nil where the
	// backend does not count them.
	Hits map[string]uint64
}

// Sub returns the change from prev to r: the activity of one interval.
// Contexts and targets missing from prev count from zero; those with no
// activity in the interval are left out. Counts are unsigned, so a count
// that went down (an instrument withdrawn, and another on the same point
// counting from zero) would wrap around to an enormous difference: a
// context whose calls or inclusive time went down gives no activity for
// the interval, and every other count that went down gives 0 (see less).
// The interval is undercounted rather than overcounted.
func (r *Reading) Sub(prev *Reading) *Reading {
	if prev == nil {
		prev = &Reading{}
	}
	d := &Reading{At: r.At, Misses: r.Misses.sub(prev.Misses)}
	if r.Hits != nil {
		d.Hits = make(map[string]uint64, len(r.Hits))
		for k, n := range r.Hits {
			d.Hits[k] = less(n, prev.Hits[k])
		}
	}
	before := make(map[string]*ContextReading, len(prev.Contexts))
	for i := range prev.Contexts {
		c := &prev.Contexts[i]
		before[contextKey(c.Path, c.Kind)] = c
	}
	for _, c := range r.Contexts {
		if p := before[contextKey(c.Path, c.Kind)]; p != nil {
			if p.Calls > c.Calls || p.InclNs > c.InclNs {
				continue
			}
			c = c.sub(p)
		}
		if c.Calls != 0 || c.InclNs != 0 {
			d.Contexts = append(d.Contexts, c)
		}
	}
	targets := make(map[string]uint64, len(prev.Targets))
	for _, t := range prev.Targets {
		targets[targetKey(t)] = t.Calls
	}
	for _, t := range r.Targets {
		t.Calls = less(t.Calls, targets[targetKey(t)])
		if t.Calls != 0 {
			d.Targets = append(d.Targets, t)
		}
	}
	return d
}

func (c ContextReading) sub(p *ContextReading) ContextReading {
	c.Calls = less(c.Calls, p.Calls)
	c.InclNs = less(c.InclNs, p.InclNs)
	c.ExclNs = less(c.ExclNs, p.ExclNs)
	c.InclOffCPUNs = less(c.InclOffCPUNs, p.InclOffCPUNs)
	c.ExclOffCPUNs = less(c.ExclOffCPUNs, p.ExclOffCPUNs)
	for i := range c.Hist {
		c.Hist[i] = less(c.Hist[i], p.Hist[i])
	}
	return c
}

func contextKey(p Path, k Kind) string { return p.String() + ":" + k.String() }

func targetKey(t TargetReading) string {
	return t.Path.String() + ">" + strconv.FormatUint(t.Target, 16)
}
