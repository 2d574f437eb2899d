package splice

import (
	"errors"
	"fmt"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// exitSet is the return windows of one function while it has live
// timers or exit counters: spliced once, shared by all of them.
type exitSet struct {
	windows []*patch.Window
	users   int // live timers and exit counters of the function
}

// openExits splices the return windows of the functions that specs time
// for the first time, in one batch; a window that is live already (the
// return of a function one of them tail-calls, timed itself) is shared.
// opened names the functions whose windows went live here; failed says
// why the others could not be timed. err is set only where the module
// took nothing.
func (s *moduleSession) openExits(specs []instrument.Spec) (opened []string, failed map[string]error, err error) {
	failed = map[string]error{}
	var batch []splicer.Splice
	requested := map[uint64]bool{}
	wanted := map[string][]*patch.Window{}
	var order []string
	for _, spec := range specs {
		if spec.Kind != instrument.Timer && spec.Kind != instrument.ExitCount || wanted[spec.Func] != nil || failed[spec.Func] != nil {
			continue
		}
		s.mu.Lock()
		live := s.exits[spec.Func] != nil
		s.mu.Unlock()
		if live {
			continue
		}
		if _, err := s.plan(instrument.Spec{Point: spec.Point, Kind: instrument.Count, Target: spec.Target}); err != nil {
			failed[spec.Func] = err // the place itself is refused
			continue
		}
		ws, err := s.returnRequests(spec, &batch, requested)
		if err != nil {
			failed[spec.Func] = err
			continue
		}
		wanted[spec.Func] = ws
		order = append(order, spec.Func)
	}
	if len(batch) == 0 {
		return s.keepExits(order, wanted, failed), failed, nil
	}
	if taken, err := s.insertBatch(batch); !taken {
		return nil, nil, err
	}
	refused := map[uint64]splicer.Splice{}
	for _, sp := range batch {
		if sp.Err != 0 {
			refused[sp.Addr] = sp
		}
	}
	for _, fn := range order {
		for _, w := range wanted[fn] {
			if sp, ok := refused[w.Addr()]; ok && failed[fn] == nil {
				failed[fn] = fmt.Errorf("%s: its return at %s+%#x: %w", fn, w.Func.Name, w.Off, spliceErr(instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer}, sp))
			}
		}
	}
	opened = s.keepExits(order, wanted, failed)
	var strays []uint64 // live windows only functions that cannot be timed wanted
	s.mu.Lock()
	for _, sp := range batch {
		if sp.Err == 0 && s.retUsers[sp.Addr] == 0 {
			strays = append(strays, sp.Addr)
		}
	}
	s.mu.Unlock()
	if len(strays) > 0 {
		if _, err := s.dev.Withdraw(strays); err != nil && !errors.Is(err, splicer.ErrRemoved) {
			return opened, failed, fmt.Errorf("withdrawing the returns of functions that could not be timed: %w", err)
		}
	}
	return opened, failed, nil
}

// keepExits records the exit sets of the functions in order that did not
// fail, and returns their names.
func (s *moduleSession) keepExits(order []string, wanted map[string][]*patch.Window, failed map[string]error) (opened []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fn := range order {
		if failed[fn] != nil {
			continue
		}
		s.exits[fn] = &exitSet{windows: wanted[fn]}
		for _, w := range wanted[fn] {
			s.retUsers[w.Addr()]++
		}
		opened = append(opened, fn)
	}
	return opened
}

// returnRequests adds to batch the module's requests for the return
// windows of spec's function that are neither live nor requested already.
func (s *moduleSession) returnRequests(spec instrument.Spec, batch *[]splicer.Splice, requested map[uint64]bool) ([]*patch.Window, error) {
	ws, err := s.cat.exits(spec)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if other := s.overlapping(w, w.Addr()); other != "" {
			return nil, refuse(spec, instrument.ErrUnsafe, "its return at %s+%#x overlaps the window of %s", w.Func.Name, w.Off, other)
		}
	}
	for _, w := range ws {
		s.mu.Lock()
		live := s.retUsers[w.Addr()] > 0
		s.mu.Unlock()
		if live || requested[w.Addr()] {
			continue
		}
		var sp splicer.Splice
		if err := s.newRequest(w, &sp); err != nil {
			return nil, refuse(spec, instrument.ErrNotSupported, "%w", err)
		}
		*batch = append(*batch, sp)
		requested[w.Addr()] = true
	}
	return ws, nil
}

// closeExits withdraws the return windows of the functions among fns
// that no live timer or exit counter needs.
func (s *moduleSession) closeExits(fns []string) {
	for _, fn := range fns {
		s.releaseExits(fn, 0)
	}
}

// releaseExits takes n users off fn's return windows, and withdraws them
// when none is left. A failure leaves them spliced: they end nothing, and
// the session's end withdraws them.
func (s *moduleSession) releaseExits(fn string, n int) error {
	s.mu.Lock()
	set := s.exits[fn]
	if set == nil {
		s.mu.Unlock()
		return nil
	}
	set.users -= n
	if set.users > 0 {
		s.mu.Unlock()
		return nil
	}
	delete(s.exits, fn)
	var addrs []uint64 // the windows no other function's set holds
	for _, w := range set.windows {
		if s.retUsers[w.Addr()]--; s.retUsers[w.Addr()] <= 0 {
			delete(s.retUsers, w.Addr())
			addrs = append(addrs, w.Addr())
		}
	}
	s.mu.Unlock()
	if len(addrs) == 0 {
		return nil
	}
	if _, err := s.dev.Withdraw(addrs); err != nil && !errors.Is(err, splicer.ErrRemoved) {
		return fmt.Errorf("withdrawing the returns of %s: %w", fn, err)
	}
	return nil
}
