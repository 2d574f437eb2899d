package splice

import (
	"fmt"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// DefaultBackend returns the best function backend this kernel allows:
// fentry, else kprobe, else tracepoint.
func DefaultBackend() string {
	if (fentryBackend{}).available() == nil {
		return "fentry"
	}
	if (kprobeBackend{}).available() == nil {
		return "kprobe"
	}
	return "tracepoint"
}

// Read returns the cumulative readings of every instrument inserted so far.
func (s *Session) Read() (*instrument.Reading, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, instrument.ErrClosed
	}
	specs := make(map[uint32]*bpfInst, len(s.specs))
	for id, in := range s.specs {
		specs[id] = in
	}
	s.mu.Unlock()
	m := s.res.model
	ctxs, err := m.Contexts()
	if err != nil {
		return nil, err
	}
	r := &instrument.Reading{At: time.Now()}
	paths := pathBuilder{ctxs: ctxs, specs: specs, done: map[uint32]instrument.Path{}}
	var top uint32
	for id := range ctxs {
		top = max(top, id)
	}
	stats, err := m.StatsUpTo(top + 1)
	if err != nil {
		return nil, err
	}
	for id, c := range ctxs {
		in := specs[c.Inst]
		if in == nil || in.spec.Kind == instrument.Targets {
			continue
		}
		st := stats[id]
		r.Contexts = append(r.Contexts, instrument.ContextReading{
			Path: paths.of(id), Kind: in.spec.Kind, Calls: st.Calls,
			InclNs: st.InclNs, ExclNs: st.ExclNs, InclOffCPUNs: st.InclOffCPUNs, ExclOffCPUNs: st.ExclOffCPUNs, Hist: st.Hist,
		})
	}
	if r.Targets, err = s.readTargets(paths); err != nil {
		return nil, err
	}
	if r.Misses, err = s.readMisses(); err != nil {
		return nil, err
	}
	if r.Hits, err = s.readHits(specs); err != nil {
		return nil, err
	}
	return r, nil
}

// readHits sums the hits of every instrument inserted so far by spec.
func (s *Session) readHits(specs map[uint32]*bpfInst) (map[string]uint64, error) {
	ids := make([]uint32, 0, len(specs))
	for id := range specs {
		ids = append(ids, id)
	}
	hits, err := s.res.model.Hits(ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(specs))
	for id, n := range hits {
		out[specs[id].spec.String()] += n
	}
	return out, nil
}

func (s *Session) readTargets(paths pathBuilder) ([]instrument.TargetReading, error) {
	ts, err := s.res.model.Targets()
	if err != nil {
		return nil, err
	}
	syms := s.graph.Symbols()
	out := make([]instrument.TargetReading, 0, len(ts))
	for _, t := range ts {
		tr := instrument.TargetReading{Path: paths.of(t.Ctx), Target: t.Target, Calls: t.Calls}
		if sym, off, err := syms.FuncAt(t.Target); err == nil && !sym.IsPadding() {
			tr.Func = sym.Name
			if off != 0 {
				tr.Func = syms.Format(t.Target)
			}
		}
		out = append(out, tr)
	}
	return out, nil
}

func (s *Session) readMisses() (instrument.Misses, error) {
	mm, err := s.res.model.Misses()
	if err != nil {
		return instrument.Misses{}, err
	}
	rs, err := s.res.model.RunStats()
	if err != nil {
		return instrument.Misses{}, err
	}
	return instrument.Misses{Recursion: mm.Recursion, StackDepth: mm.StackDepth, MapFull: mm.MapFull, Unmatched: mm.Unmatched, Kernel: rs.RecursionMisses}, nil
}

// pathBuilder turns context ids into paths, memoized.
type pathBuilder struct {
	ctxs  map[uint32]measure.Context
	specs map[uint32]*bpfInst
	done  map[uint32]instrument.Path
}

func (b pathBuilder) of(id uint32) instrument.Path {
	if p, ok := b.done[id]; ok {
		return p
	}
	var rev instrument.Path
	for cur, n := id, 0; cur != 0 && n <= measure.MaxDepth+1; n++ {
		c, ok := b.ctxs[cur]
		if !ok {
			rev = append(rev, instrument.Point{Func: fmt.Sprintf("?ctx%d", cur)})
			break
		}
		pt := instrument.Point{Func: fmt.Sprintf("?inst%d", c.Inst)}
		if in := b.specs[c.Inst]; in != nil {
			pt = in.spec.Point
		}
		rev = append(rev, pt)
		cur = c.Parent
	}
	p := make(instrument.Path, len(rev))
	for i, pt := range rev {
		p[len(rev)-1-i] = pt
	}
	b.done[id] = p
	return p
}
