package splice

import (
	"fmt"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/measure"
)

// DefaultBackend returns the best function backend this kernel allows:
// fentry, else kprobe, else tracepoint.
func DefaultBackend() instrument.Backend {
	if (fentryBackend{}).available() == nil {
		return instrument.Fentry
	}
	if (kprobeBackend{}).available() == nil {
		return instrument.Kprobe
	}
	return instrument.Tracepoint
}

// read returns the cumulative readings of every instrument inserted so far.
func (s *bpfSession) read() (*instrument.Reading, error) {
	s.mu.Lock()
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
	paths := contextPaths{
		context: func(id uint32) (uint32, uint32, bool) { c, ok := ctxs[id]; return c.Inst, c.Parent, ok },
		point: func(inst uint32) (instrument.Point, bool) {
			if in := specs[inst]; in != nil {
				return in.spec.Point, true
			}
			return instrument.Point{}, false
		},
		maxDepth: measure.MaxDepth, done: map[uint32]instrument.Path{},
	}
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
func (s *bpfSession) readHits(specs map[uint32]*bpfInst) (map[string]uint64, error) {
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

func (s *bpfSession) readTargets(paths contextPaths) ([]instrument.TargetReading, error) {
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

func (s *bpfSession) readMisses() (instrument.Misses, error) {
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

// contextPaths turns context ids into paths, memoized. Both models keep
// a context as its instrument and its parent context (0 at a root);
// context looks one up, and point names an instrument's place. A context
// or an instrument it cannot find stands in the path as ?ctxN or ?instN.
type contextPaths struct {
	context  func(id uint32) (inst, parent uint32, ok bool)
	point    func(inst uint32) (instrument.Point, bool)
	maxDepth int
	done     map[uint32]instrument.Path
}

func (b contextPaths) of(id uint32) instrument.Path {
	if p, ok := b.done[id]; ok {
		return p
	}
	var rev instrument.Path
	for cur, n := id, 0; cur != 0 && n <= b.maxDepth+1; n++ {
		inst, parent, ok := b.context(cur)
		if !ok {
			rev = append(rev, instrument.Point{Func: fmt.Sprintf("?ctx%d", cur)})
			break
		}
		pt, ok := b.point(inst)
		if !ok {
			pt = instrument.Point{Func: fmt.Sprintf("?inst%d", inst)}
		}
		rev = append(rev, pt)
		cur = parent
	}
	p := make(instrument.Path, len(rev))
	for i, pt := range rev {
		p[len(rev)-1-i] = pt
	}
	b.done[id] = p
	return p
}
