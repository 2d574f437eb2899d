package splice

import (
	"errors"
	"fmt"

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
// for the first time, in one batch. opened names the functions whose
// windows went live here; failed says why the others could not be timed.
// err is set only where the module took nothing.
func (s *SpliceSession) openExits(specs []Spec) (opened []string, failed map[string]error, err error) {
	failed = map[string]error{}
	var batch []splicer.Splice
	var owner []string
	wanted := map[string][]*patch.Window{}
	for _, spec := range specs {
		if spec.Kind != Timer && spec.Kind != ExitCount || wanted[spec.Func] != nil || failed[spec.Func] != nil {
			continue
		}
		s.mu.Lock()
		live := s.exits[spec.Func] != nil
		s.mu.Unlock()
		if live {
			continue
		}
		if _, err := s.plan(Spec{Point: spec.Point, Kind: Count, Target: spec.Target}); err != nil {
			failed[spec.Func] = err // the place itself is refused
			continue
		}
		ws, err := s.returnRequests(spec, &batch, &owner)
		if err != nil {
			failed[spec.Func] = err
			continue
		}
		wanted[spec.Func] = ws
	}
	if len(batch) == 0 {
		return nil, failed, nil
	}
	if taken, err := s.insertBatch(batch); !taken {
		return nil, nil, err
	}
	var strays []uint64 // live windows of functions that cannot be timed
	for i, sp := range batch {
		if sp.Err != 0 && failed[owner[i]] == nil {
			failed[owner[i]] = fmt.Errorf("%s: its return at %#x: %w", owner[i], sp.Addr, spliceErr(Spec{Point: Point{Func: owner[i]}, Kind: Timer}, sp))
		}
	}
	for i, sp := range batch {
		if sp.Err == 0 && failed[owner[i]] != nil {
			strays = append(strays, sp.Addr)
		}
	}
	for fn, ws := range wanted {
		if failed[fn] == nil {
			s.mu.Lock()
			s.exits[fn] = &exitSet{windows: ws}
			s.mu.Unlock()
			opened = append(opened, fn)
		}
	}
	if len(strays) > 0 {
		if _, err := s.dev.Withdraw(strays); err != nil && !errors.Is(err, splicer.ErrRemoved) {
			return opened, failed, fmt.Errorf("withdrawing the returns of functions that could not be timed: %w", err)
		}
	}
	return opened, failed, nil
}

// returnRequests adds the module's requests for the return windows of
// spec's function to batch.
func (s *SpliceSession) returnRequests(spec Spec, batch *[]splicer.Splice, owner *[]string) ([]*patch.Window, error) {
	ws, err := s.cat.exits(spec)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if other := s.overlapping(w, w.Addr()); other != "" {
			return nil, refuse(spec, ErrUnsafe, "its return at %s+%#x overlaps the window of %s", w.Func.Name, w.Off, other)
		}
		var sp splicer.Splice
		if err := s.newRequest(w, &sp); err != nil {
			return nil, refuse(spec, ErrNotSupported, "%w", err)
		}
		*batch = append(*batch, sp)
		*owner = append(*owner, spec.Func)
	}
	return ws, nil
}

// closeExits withdraws the return windows of the functions among fns
// that no live timer or exit counter needs.
func (s *SpliceSession) closeExits(fns []string) {
	for _, fn := range fns {
		s.releaseExits(fn, 0)
	}
}

// releaseExits takes n users off fn's return windows, and withdraws them
// when none is left. A failure leaves them spliced: they end nothing, and
// the session's end withdraws them.
func (s *SpliceSession) releaseExits(fn string, n int) error {
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
	s.mu.Unlock()
	addrs := make([]uint64, len(set.windows))
	for i, w := range set.windows {
		addrs[i] = w.Addr()
	}
	if _, err := s.dev.Withdraw(addrs); err != nil && !errors.Is(err, splicer.ErrRemoved) {
		return fmt.Errorf("withdrawing the returns of %s: %w", fn, err)
	}
	return nil
}
