package splice

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"syscall"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// insert checks spec and makes it live.
func (s *moduleSession) insert(ctx context.Context, spec instrument.Spec) (instrument.Instrument, error) {
	ins, err := s.InsertAll(ctx, []instrument.Spec{spec})
	if err != nil {
		return nil, err
	}
	return ins[0], nil
}

// spliceSite is a spliced block or entry window and the live instruments
// its trampoline runs, in order (see siteOrder).
type spliceSite struct {
	w     *patch.Window
	insts []*splicedInst
	req   splicer.Splice // the module's answer: where the trampoline went, what it decided
}

// siteOrder orders a site's instruments: timers, then counters, then exit
// counters, so that the function's own timer frame is open for both
// counts, as for the counters of its other blocks (see patch.Build).
func siteOrder(k instrument.Kind) int {
	switch k {
	case instrument.Timer:
		return 0
	case instrument.Count:
		return 1
	}
	return 2
}

// siteChange is a site as a batch would leave it.
type siteChange struct {
	addr  uint64
	w     *patch.Window
	keep  []*splicedInst    // live instruments that stay
	added []instrument.Spec // new instruments
	index []int             // added[i] is specs[index[i]]
	req   splicer.Splice
}

// InsertAll inserts specs in one batch: the module waits for one RCU-tasks
// grace period for all of them, where Insert waits for one each. The
// instrument of a spec that failed is nil, and the error joins every
// failure. Up to splicer.SiteInsts instruments share one place. The return
// windows of the functions timed here for the first time go in first, in
// a batch of their own: a timer goes live only once every return of its
// function will end its frames.
func (s *moduleSession) InsertAll(ctx context.Context, specs []instrument.Spec) ([]instrument.Instrument, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.alive(); err != nil {
		return nil, err
	}
	s.op.Lock()
	defer s.op.Unlock()
	out := make([]instrument.Instrument, len(specs))
	opened, failed, err := s.openExits(specs)
	if err != nil {
		return nil, err
	}
	errs := []error{}
	for _, e := range failed {
		errs = append(errs, e)
	}
	changes := map[uint64]*siteChange{}
	var order []uint64
	for i, spec := range specs {
		if failed[spec.Func] != nil && (spec.Kind == instrument.Timer || spec.Kind == instrument.ExitCount) {
			continue
		}
		c, err := s.stage(changes, spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(c.added) == 0 {
			order = append(order, c.addr)
		}
		c.added = append(c.added, spec)
		c.index = append(c.index, i)
	}
	var batch []splicer.Splice
	var staged []*siteChange
	for _, addr := range order {
		c := changes[addr]
		if err := s.request(c); err != nil {
			errs = append(errs, err)
			continue
		}
		batch = append(batch, c.req)
		staged = append(staged, c)
	}
	if len(batch) > 0 {
		if taken, err := s.insertBatch(batch); !taken {
			s.closeExits(opened)
			if errors.Is(err, syscall.ENOSPC) { // the module's wait for a grace period ran out
				err = fmt.Errorf("%w: %w", instrument.ErrBusy, err)
			}
			return nil, errors.Join(append(errs, err)...)
		} else if err != nil {
			errs = append(errs, err) // the retried splices are refused, the others are live
		}
	}
	for k, c := range staged {
		c.req = batch[k]
		if c.req.Err != 0 {
			for _, spec := range c.added {
				errs = append(errs, spliceErr(spec, c.req))
			}
			continue
		}
		s.commit(c, out)
	}
	s.closeExits(opened)
	return out, errors.Join(errs...)
}

// stage adds spec to the change of its site.
func (s *moduleSession) stage(changes map[uint64]*siteChange, spec instrument.Spec) (*siteChange, error) {
	w, err := s.plan(spec)
	if err != nil {
		return nil, err
	}
	addr := w.Addr()
	c := changes[addr]
	if c == nil {
		c = &siteChange{addr: addr, w: w}
		s.mu.Lock()
		site := s.sites[addr]
		s.mu.Unlock()
		if site != nil {
			c.w, c.keep = site.w, site.insts
		}
		if other := s.overlapping(w, addr); other != "" {
			return nil, refuse(spec, instrument.ErrUnsafe, "its window overlaps the one of %s", other)
		}
		changes[addr] = c
	}
	if w.Entry && !c.w.Entry {
		if len(c.keep) > 0 {
			return nil, refuse(spec, instrument.ErrNotSupported, "a block counter holds the same place, spliced without the entry's guarantees")
		}
		c.w = w
	}
	if len(c.keep)+len(c.added) >= splicer.SiteInsts {
		return nil, refuse(spec, instrument.ErrNotSupported, "%d instruments hold this place already, the most one place takes", splicer.SiteInsts)
	}
	return c, nil
}

// overlapping names what holds a window of this session that w, at addr,
// overlaps: another site's instrument, or a timed function's return.
func (s *moduleSession) overlapping(w *patch.Window, addr uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	meets := func(a uint64, n int) bool { return a < addr+uint64(w.Len()) && addr < a+uint64(n) }
	for a, site := range s.sites {
		if a != addr && meets(a, site.w.Len()) {
			return site.insts[0].spec.String()
		}
	}
	for fn, set := range s.exits {
		for _, rw := range set.windows {
			if meets(rw.Addr(), rw.Len()) && !(w.Return && rw.Addr() == addr) {
				return "the return at " + fmt.Sprintf("%s+%#x", rw.Func.Name, rw.Off) + " of the timed " + fn
			}
		}
	}
	return ""
}

// newRequest fills the module's request for window w: where, in which
// function (by kallsyms' name), what it holds and its role.
func (s *moduleSession) newRequest(w *patch.Window, sp *splicer.Splice) error {
	sp.Addr, sp.Func = w.Addr(), w.Func.Addr
	s.mu.Lock()
	name, ok := s.kname[w.Func.Addr]
	s.mu.Unlock()
	if !ok {
		name = w.Func.Name
	}
	if err := sp.SetName(name); err != nil {
		return err
	}
	sp.Len, sp.Role = uint8(w.Len()), splicer.Role(w.Role())
	copy(sp.Orig[:], w.Orig())
	return nil
}

// request fills the module's request for a site change: the window and its
// instruments, timers first.
func (s *moduleSession) request(c *siteChange) error {
	type member struct {
		spec instrument.Spec
		id   uint32
	}
	var all []member
	first := instrument.Spec{Point: instrument.Point{Func: c.w.Func.Name, Offset: uint64(c.w.Off)}}
	if len(c.added) > 0 {
		first = c.added[0]
	}
	for _, in := range c.keep {
		all = append(all, member{in.spec, in.id})
	}
	for _, spec := range c.added {
		all = append(all, member{spec, 0})
	}
	sort.SliceStable(all, func(i, j int) bool { return siteOrder(all[i].spec.Kind) < siteOrder(all[j].spec.Kind) })
	sp := &c.req
	if err := s.newRequest(c.w, sp); err != nil {
		return refuse(first, instrument.ErrNotSupported, "%w", err)
	}
	if len(c.keep) > 0 {
		sp.Flags = splicer.FlagReplace
	}
	sp.NInst = uint32(len(all))
	for i, m := range all {
		r := &sp.Insts[i]
		r.Kind, r.ID, r.NPIDs = splicer.Kind(m.spec.Kind), m.id, uint32(len(m.spec.Target.PIDs))
		for k, p := range m.spec.Target.PIDs {
			r.PIDs[k] = int32(p)
		}
	}
	return nil
}

// commit records a site the module made live, and its new instruments.
func (s *moduleSession) commit(c *siteChange, out []instrument.Instrument) {
	site := &spliceSite{w: c.w, req: c.req}
	byID := map[uint32]*splicedInst{}
	for _, in := range c.keep {
		byID[in.id] = in
	}
	taken := make([]bool, len(c.added))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := uint32(0); i < c.req.NInst; i++ {
		r := c.req.Insts[i]
		in := byID[r.ID]
		if in == nil {
			// New ones of a kind come back in the order they were added
			// (request's sort is stable).
			for k, spec := range c.added {
				if !taken[k] && instrument.Kind(r.Kind) == spec.Kind {
					taken[k] = true
					in = &splicedInst{s: s, id: r.ID, spec: spec, addr: c.addr}
					out[c.index[k]] = in
					if spec.Kind == instrument.Timer || spec.Kind == instrument.ExitCount {
						s.exits[spec.Func].users++
					}
					break
				}
			}
		}
		if in == nil {
			continue
		}
		s.specs[in.id] = in
		site.insts = append(site.insts, in)
	}
	s.sites[c.addr] = site
}

// insertBatch hands the batch to the module; a splice refused because
// kallsyms names its function by an alias is retried with that name.
// taken says whether the module took the batch: then each splice's Err
// says whether it is live, even when err reports that the retry failed
// (the retried splices keep their first refusal).
func (s *moduleSession) insertBatch(batch []splicer.Splice) (taken bool, err error) {
	if err := s.cat.refreshKprobes(); err != nil {
		return false, err
	}
	if _, err := s.dev.Insert(batch); err != nil {
		return false, err
	}
	var retry []int
	for i := range batch {
		sp := &batch[i]
		if sp.Err != -int32(syscall.ENOENT) || !s.isAlias(sp.Func, sp.FoundName()) {
			continue
		}
		s.mu.Lock()
		s.kname[sp.Func] = sp.FoundName()
		s.mu.Unlock()
		sp.SetName(sp.FoundName())
		retry = append(retry, i)
	}
	if len(retry) == 0 {
		return true, nil
	}
	again := make([]splicer.Splice, len(retry))
	for k, i := range retry {
		again[k] = batch[i]
		for j := range again[k].Insts {
			if again[k].Insts[j].ID != 0 && batch[i].Flags&splicer.FlagReplace == 0 {
				again[k].Insts[j].ID = 0 // ids handed out by the refused try are not ours
			}
		}
	}
	if _, err := s.dev.Insert(again); err != nil {
		return true, fmt.Errorf("splicing again under kallsyms' names: %w", err)
	}
	for k, i := range retry {
		batch[i] = again[k]
	}
	return true, nil
}

// isAlias reports whether name is a symbol at addr.
func (s *moduleSession) isAlias(addr uint64, name string) bool {
	for _, a := range s.graph.Symbols().Aliases(addr) {
		if a.Name == name {
			return true
		}
	}
	return false
}

// spliceErr explains the module's refusal of a splice.
func spliceErr(spec instrument.Spec, sp splicer.Splice) error {
	errno := syscall.Errno(-sp.Err)
	why := ""
	if w := sp.Why(); w != "" {
		why = " (the module: " + w + ")"
	}
	switch errno {
	case syscall.EBUSY, syscall.EPERM, syscall.EILSEQ, syscall.ENOEXEC:
		return fmt.Errorf("%s: %w: the module refuses the site%s, nothing written: %w", spec, instrument.ErrUnsafe, why, errno)
	case syscall.ENOENT, syscall.ERANGE:
		return fmt.Errorf("%s: %w: kallsyms does not place the window inside %s (found %q): %w", spec, instrument.ErrUnsafe, spec.Func, sp.FoundName(), errno)
	case syscall.ENOSPC:
		return fmt.Errorf("%s: %w: the module's trampoline slots or instrument ids are all used until a grace period gives withdrawn ones back: %w", spec, instrument.ErrBusy, errno)
	}
	return fmt.Errorf("%s: splicing%s: %w", spec, why, errno)
}

// Spec returns the instrument's spec.
func (in *splicedInst) Spec() instrument.Spec { return in.spec }

// Close withdraws the instrument: the site is spliced out, or, where
// other instruments share it, its trampoline is replaced by one without
// this instrument. A second call returns ErrClosed.
func (in *splicedInst) Close() error {
	s := in.s
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	if in.closed || s.closed {
		s.mu.Unlock()
		return instrument.ErrClosed
	}
	in.closed = true
	site := s.sites[in.addr]
	s.mu.Unlock()
	if site == nil {
		return nil // withdrawn with its site already
	}
	var keep []*splicedInst
	for _, o := range site.insts {
		if o != in {
			keep = append(keep, o)
		}
	}
	if len(keep) == 0 {
		if _, err := s.dev.Withdraw([]uint64{in.addr}); err != nil && !errors.Is(err, splicer.ErrRemoved) {
			return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, err))
		}
		s.mu.Lock()
		delete(s.sites, in.addr)
		s.mu.Unlock()
		return in.ended()
	}
	c := &siteChange{addr: in.addr, w: site.w, keep: keep}
	if err := s.request(c); err != nil {
		return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, err))
	}
	batch := []splicer.Splice{c.req}
	if _, err := s.insertBatch(batch); errors.Is(err, splicer.ErrRemoved) {
		return nil // the module withdrew everything as it went
	} else if err != nil {
		return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, err))
	}
	if batch[0].Err != 0 {
		return in.stillLive(fmt.Errorf("withdrawing %s: %w", in.spec, spliceErr(in.spec, batch[0])))
	}
	c.req = batch[0]
	s.commit(c, nil)
	return in.ended()
}

// ended gives up what a withdrawn timer or exit counter held besides its
// site: its share of its function's return windows, withdrawn after its
// entry so that no frame begins that they would not end.
func (in *splicedInst) ended() error {
	if in.spec.Kind != instrument.Timer && in.spec.Kind != instrument.ExitCount {
		return nil
	}
	return in.s.releaseExits(in.spec.Func, 1)
}

// stillLive undoes Close's mark after the module refused to withdraw the
// instrument, which stays live and in its site (a later Close may try
// again; the session's end withdraws it in any case), and returns err.
func (in *splicedInst) stillLive(err error) error {
	in.s.mu.Lock()
	in.closed = false
	in.s.mu.Unlock()
	return err
}

// WithdrawAll withdraws instruments of the session in as few module calls
// as it can: every site all of whose instruments are among ins goes in one
// batch, with the return windows no instrument left needs in another; a
// site that other instruments still hold gets a trampoline without these,
// one call each (Close). The errors of instruments that stay live are
// joined; an instrument closed already is skipped.
func (s *moduleSession) WithdrawAll(ins []instrument.Instrument) error {
	whole, exits, partial := s.takeWhole(ins)
	var errs []error
	if len(whole) > 0 {
		s.op.Lock()
		_, err := s.dev.Withdraw(whole)
		s.op.Unlock()
		if err != nil && !errors.Is(err, splicer.ErrRemoved) {
			errs = append(errs, fmt.Errorf("withdrawing %d sites: %w", len(whole), err))
		}
	}
	s.op.Lock()
	for fn, n := range exits {
		errs = append(errs, s.releaseExits(fn, n))
	}
	s.op.Unlock()
	for _, in := range partial {
		if err := in.Close(); err != nil && !errors.Is(err, instrument.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// takeWhole marks closed the instruments among ins whose sites go whole,
// and forgets those sites: it returns their addresses, the timers and exit
// counters among them by function, and the instruments left to Close.
func (s *moduleSession) takeWhole(ins []instrument.Instrument) (whole []uint64, exits map[string]int, partial []*splicedInst) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byAddr := map[uint64][]*splicedInst{}
	for _, i := range ins {
		si, ok := i.(*splicedInst)
		if !ok || si == nil || si.s != s || si.closed || s.closed {
			continue
		}
		byAddr[si.addr] = append(byAddr[si.addr], si)
	}
	exits = map[string]int{}
	for addr, list := range byAddr {
		site := s.sites[addr]
		if site == nil || len(list) != len(site.insts) {
			partial = append(partial, list...)
			continue
		}
		whole = append(whole, addr)
		delete(s.sites, addr)
		for _, in := range list {
			in.closed = true
			if in.spec.Kind == instrument.Timer || in.spec.Kind == instrument.ExitCount {
				exits[in.spec.Func]++
			}
		}
	}
	return whole, exits, partial
}
