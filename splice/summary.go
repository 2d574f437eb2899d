package splice

import (
	"math"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// Summary is one instrument's activity over an interval (or a whole run):
// its contexts added up.
type Summary struct {
	Instrument  string  `json:"instrument"` // the spec, "vfs_read:timer"
	Calls       uint64  `json:"calls"`
	CallsPerSec float64 `json:"calls_per_s"`
	MeanNs      float64 `json:"mean_ns,omitempty"`
	// P50Ns and P99Ns are HistQuantile's, 0 (and left out) where the
	// histogram counts nothing.
	P50Ns        float64                     `json:"p50_ns,omitempty"`
	P99Ns        float64                     `json:"p99_ns,omitempty"`
	InclNs       uint64                      `json:"incl_ns,omitempty"`
	ExclNs       uint64                      `json:"excl_ns,omitempty"`
	OnCPUShare   float64                     `json:"oncpu_share,omitempty"`  // of inclusive time
	OffCPUShare  float64                     `json:"offcpu_share,omitempty"` // of inclusive time
	Contexts     []instrument.ContextReading `json:"contexts"`
	Targets      []instrument.TargetReading  `json:"targets,omitempty"`
	MissesInRead uint64                      `json:"misses"` // misses of all instruments in the interval
}

// Summarize groups a reading (usually an interval's, from Sub) by
// instrument: the last point of each path and its kind. over is the
// interval's length, for rates.
func Summarize(r *instrument.Reading, over time.Duration) []Summary {
	by := map[string]*Summary{}
	var merged = map[string]*instrument.ContextReading{}
	get := func(key string) *Summary {
		s := by[key]
		if s == nil {
			s = &Summary{Instrument: key, MissesInRead: r.Misses.Total()}
			by[key] = s
		}
		return s
	}
	for _, c := range r.Contexts {
		key := instrument.Spec{Point: c.Path[len(c.Path)-1], Kind: c.Kind}.String()
		s := get(key)
		s.Contexts = append(s.Contexts, c)
		m := merged[key]
		if m == nil {
			m = &instrument.ContextReading{Kind: c.Kind}
			merged[key] = m
		}
		m.Calls += c.Calls
		m.InclNs += c.InclNs
		m.ExclNs += c.ExclNs
		m.InclOffCPUNs += c.InclOffCPUNs
		for i, h := range c.Hist {
			m.Hist[i] += h
		}
	}
	for _, t := range r.Targets {
		key := instrument.Spec{Point: t.Path[len(t.Path)-1], Kind: instrument.Targets}.String()
		s := get(key)
		s.Targets = append(s.Targets, t)
		s.Calls += t.Calls
	}
	out := make([]Summary, 0, len(by))
	for key, s := range by {
		if m := merged[key]; m != nil {
			s.Calls, s.InclNs, s.ExclNs = m.Calls, m.InclNs, m.ExclNs
			if m.Kind == instrument.Timer && m.Calls > 0 {
				s.MeanNs = float64(m.InclNs) / float64(m.Calls)
				s.P50Ns, s.P99Ns = absentAsZero(instrument.HistQuantile(&m.Hist, 0.5)), absentAsZero(instrument.HistQuantile(&m.Hist, 0.99))
			}
			if m.InclNs > 0 {
				s.OffCPUShare = float64(m.InclOffCPUNs) / float64(m.InclNs)
				s.OnCPUShare = 1 - s.OffCPUShare
			}
		}
		if over > 0 {
			s.CallsPerSec = float64(s.Calls) / over.Seconds()
		}
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instrument < out[j].Instrument })
	return out
}

// absentAsZero turns a quantile of no data (NaN) into 0, which the
// Summary's omitempty leaves out of its JSON.
func absentAsZero(q float64) float64 {
	if math.IsNaN(q) {
		return 0
	}
	return q
}
