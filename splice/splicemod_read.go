package splice

import (
	"fmt"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/splicer"
)

// read returns the cumulative readings of every instrument inserted so
// far, withdrawn ones included. A counter's hits in the root context,
// counted by the fast path in a per-CPU slot, join the context its slow
// path interned there.
func (s *moduleSession) read() (*instrument.Reading, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, instrument.ErrClosed
	}
	specs := make(map[uint32]instrument.Spec, len(s.specs))
	ids := make([]uint32, 0, len(s.specs))
	for id, in := range s.specs {
		specs[id] = in.spec
		ids = append(ids, id)
	}
	s.mu.Unlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	insts, misses, err := s.dev.Instruments(ids)
	if err != nil {
		return nil, err
	}
	ctxs, err := s.dev.Contexts()
	if err != nil {
		return nil, err
	}
	r := &instrument.Reading{At: time.Now(), Misses: instrument.Misses{
		Recursion: misses[splicer.MissRecursion], StackDepth: misses[splicer.MissDepth],
		MapFull: misses[splicer.MissMapFull], Unmatched: misses[splicer.MissUnmatched],
	}}
	paths := contextPaths{
		context: func(id uint32) (uint32, uint32, bool) {
			if id == 0 || int(id) > len(ctxs) {
				return 0, 0, false
			}
			c := ctxs[id-1] // context id i+1 at index i
			return c.Inst, c.Parent, true
		},
		point: func(inst uint32) (instrument.Point, bool) {
			spec, ok := specs[inst]
			return spec.Point, ok
		},
		maxDepth: splicer.MaxDepth, done: map[uint32]instrument.Path{},
	}
	roots := map[uint32]int{} // instrument -> index of its root context in r.Contexts
	for i, c := range ctxs {
		spec, ok := specs[c.Inst]
		if !ok {
			continue // an id lost to a race, or from a failed insert
		}
		st, err := s.dev.Stats(uint32(i + 1))
		if err != nil {
			return nil, err
		}
		if c.Parent == 0 {
			roots[c.Inst] = len(r.Contexts)
		}
		r.Contexts = append(r.Contexts, instrument.ContextReading{
			Path: paths.of(uint32(i + 1)), Kind: spec.Kind, Calls: st.Calls,
			InclNs: st.Incl, ExclNs: st.Excl, InclOffCPUNs: st.OffIncl, ExclOffCPUNs: st.OffExcl,
			Hist: st.Hist,
		})
	}
	for k, id := range ids {
		spec, ok := specs[id]
		fast := insts[k].Fast
		if !ok || spec.Kind != instrument.Count || fast == 0 {
			continue
		}
		if at, ok := roots[id]; ok {
			r.Contexts[at].Calls += fast
			continue
		}
		r.Contexts = append(r.Contexts, instrument.ContextReading{Path: instrument.Path{spec.Point}, Kind: instrument.Count, Calls: fast})
	}
	return r, nil
}

// State returns the module's state of an instrument of this session:
// live, withdrawn, withdrawn by the dead-man or the overhead switch, or
// broken (its site changed underneath, so it was left in place).
func (s *moduleSession) State(in instrument.Instrument) (splicer.State, error) {
	si, ok := in.(*splicedInst)
	if !ok || si.s != s {
		return 0, fmt.Errorf("%s: not an instrument of this splice session", in.Spec())
	}
	insts, _, err := s.dev.Instruments([]uint32{si.id})
	if err != nil {
		return 0, err
	}
	return insts[0].State, nil
}
