package search

import (
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// The syscall census: during Deep Start every syscall of Config.Syscalls
// is timed, so that the syscall roots are chosen by exact counts.

// census is the syscall timers of a census in progress.
type census struct {
	live  map[string]instrument.Instrument // by function
	start *instrument.Reading
	// calls are each syscall's calls over the census, which took took
	// (the roots' too, where a --root's timer was in already): the
	// target's operations with no function instrument.
	calls map[string]uint64
	took  time.Duration
	end   *instrument.Reading // the reading that closed it
}

// startCensus times every syscall of Config.Syscalls that the
// Instrumenter accepts; nil when there is nothing to time.
func (h *hunter) startCensus() *census {
	if len(h.cfg.Syscalls) == 0 {
		return nil
	}
	c := &census{live: map[string]instrument.Instrument{}}
	var refused error
	for _, fn := range h.cfg.Syscalls {
		spec := instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer, Target: h.cfg.Target}
		if h.roots[fn] {
			continue
		}
		if err := h.in.Check(spec); err != nil {
			refused = err
			continue
		}
		in, err := h.in.Insert(h.ctx, spec)
		if err != nil {
			refused = err
			continue
		}
		c.live[fn] = in
	}
	if len(c.live) == 0 {
		h.limit("no syscall census: no syscall could be timed (%v)", refused)
		return nil
	}
	var err error
	if c.start, err = h.in.Read(); err != nil {
		h.limit("no syscall census: %v", err)
		h.closeCensus(c)
		return nil
	}
	return c
}

// endCensus reads a census's timers and returns the target's time in
// each syscall.
func (h *hunter) endCensus(c *census) map[string]float64 {
	if c == nil {
		return nil
	}
	end, err := h.in.Read()
	if err != nil {
		h.limit("no syscall census: %v", err)
		return nil
	}
	c.end = merged(end)
	times := map[string]float64{}
	c.calls = map[string]uint64{}
	for _, ctx := range c.end.Sub(merged(c.start)).Contexts {
		if len(ctx.Path) != 1 || ctx.Kind != instrument.Timer {
			continue
		}
		switch fn := ctx.Path[0].Func; {
		case c.live[fn] != nil:
			times[fn] += float64(ctx.InclNs)
			c.calls[fn] += ctx.Calls
		case h.roots[fn]: // a --root's timer, live all along
			c.calls[fn] += ctx.Calls
		}
	}
	c.took = end.At.Sub(c.start.At)
	return times
}

// baseRate keeps the rate at which the target made the operations of the
// roots chosen during the census, when nothing but syscall timers was in
// the kernel: the workload's speed before the hunt's function
// instruments, against which the report gives its slowdown. The census's
// timers slowed the target too (a syscall tracepoint on every syscall of
// dd costs it a fifth of its time): where they were calibrated, their cost
// taken out of the target's time over the census estimates the rate with
// nothing in, BareOpsPerSec. The estimate holds for a target whose
// operations follow one another (each one's time, on or off the CPU, is
// its thread's); it is the upper bound of a target that overlaps them.
func (h *hunter) baseRate(c *census) {
	if c == nil || c.took <= 0 {
		return
	}
	var ops uint64
	for _, r := range h.rootNodes() {
		r.deepStartCalls += c.calls[r.fn()]
		ops += c.calls[r.fn()]
	}
	h.run.Meta.DeepStartOps += ops
	if ops == 0 {
		return
	}
	o := &h.run.Overhead
	o.BaseOpsPerSec = float64(ops) / c.took.Seconds()
	var costNs float64
	for fn, n := range c.calls {
		perHit, ok := h.calibratedCost(instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Timer, Target: h.cfg.Target})
		if !ok {
			return // not calibrated: nothing to take out
		}
		costNs += float64(n) * perHit
	}
	if share := costNs / h.sampleTargetNs(c.took); share < 0.9 {
		o.BareOpsPerSec = o.BaseOpsPerSec / (1 - share)
	}
}

// countUntilFirstRound adds to Meta.DeepStartOps the roots' operations
// between the census's last reading and the first round's opening one
// (first): the time Deep Start spent choosing roots and inserting the
// instruments of their hot paths, so that every operation of a target
// hunted from its start is counted once.
func (h *hunter) countUntilFirstRound(first *instrument.Reading) {
	if h.censusEnd == nil {
		return
	}
	roots := map[string]*node{}
	for _, r := range h.rootNodes() {
		if len(r.path) == 1 {
			roots[r.fn()] = r
		}
	}
	for _, ctx := range first.Sub(h.censusEnd).Contexts {
		if r := roots[ctx.Path.String()]; r != nil && ctx.Kind == instrument.Timer {
			r.deepStartCalls += ctx.Calls
			h.run.Meta.DeepStartOps += ctx.Calls
		}
	}
	h.censusEnd = nil
}

// closeCensus withdraws the census's timers that did not become roots.
func (h *hunter) closeCensus(c *census) {
	if c == nil {
		return
	}
	for _, in := range c.live {
		in.Close()
	}
	c.live = nil
}
