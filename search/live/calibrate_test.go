package live

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// quietInstrumenter serves one syscall timer whose hits the fake loop
// counts: it adds no time to the loop, and its programs run runPerHit a
// hit by the kernel's measure (Overhead).
type quietInstrumenter struct {
	live      *instrument.Spec
	hits      uint64
	runPerHit time.Duration
}

type quietInstrument struct {
	q    *quietInstrumenter
	spec instrument.Spec
}

func (q *quietInstrumenter) Backend() instrument.Backend { return instrument.Tracepoint }
func (q *quietInstrumenter) Check(s instrument.Spec) error {
	if s.Func != calibrationSyscall {
		return instrument.ErrNotSupported
	}
	return nil
}
func (q *quietInstrumenter) Close() error { return nil }
func (q *quietInstrumenter) Insert(_ context.Context, s instrument.Spec) (instrument.Instrument, error) {
	q.live = &s
	return &quietInstrument{q, s}, nil
}
func (i *quietInstrument) Spec() instrument.Spec { return i.spec }
func (i *quietInstrument) Close() error          { i.q.live = nil; return nil }
func (q *quietInstrumenter) Read() (*instrument.Reading, error) {
	pt := instrument.Point{Func: calibrationSyscall}
	return &instrument.Reading{At: time.Now(), Contexts: []instrument.ContextReading{
		{Path: instrument.Path{pt}, Kind: instrument.Timer, Calls: q.hits},
	}}, nil
}
func (q *quietInstrumenter) Overhead() (time.Duration, error) {
	return time.Duration(q.hits) * q.runPerHit, nil
}

// TestCalibrateUnmeasurable: an instrument that adds no time a loop can
// see (the noise is larger than its cost) is not calibrated at 1 ns, as
// it was: its programs' run time per hit stands in, and Calibrate says so
// (the hunt lists it among its limitations).
func TestCalibrateUnmeasurable(t *testing.T) {
	q := &quietInstrumenter{runPerHit: 300 * time.Nanosecond}
	c := Calibrator{N: 1000, preads: func(n int) time.Duration {
		if q.live != nil {
			q.hits += uint64(n)
		}
		return time.Millisecond // the same with the instrument and without
	}}
	costs, err := c.Calibrate(context.Background(), q)
	if err == nil || !strings.Contains(err.Error(), "added no measurable time") || !strings.Contains(err.Error(), "run time per hit assumed (300 ns)") {
		t.Errorf("Calibrate said %v; want that the timer added no measurable time and what stands in", err)
	}
	if costs["tracepoint"] != 300 {
		t.Errorf("tracepoint cost %v ns, want its programs' 300 ns a hit (costs %v)", costs["tracepoint"], costs)
	}
}

// TestCalibrateSyscallLinks: a syscall timer's links stay attached once
// the first goes in, and slow every syscall by 400 ns from then on; a live
// timer adds 100 ns more to each of its calls. The calibration charges the
// timer both (500 ns a hit), measured against the loop before anything was
// attached: alternating with and without the timer would see 100 ns.
func TestCalibrateSyscallLinks(t *testing.T) {
	q := &quietInstrumenter{runPerHit: 80 * time.Nanosecond}
	attached := false
	c := Calibrator{N: 1000, preads: func(n int) time.Duration {
		per := 1000 * time.Nanosecond
		if q.live != nil {
			attached = true
			q.hits += uint64(n)
			per += 100 * time.Nanosecond
		}
		if attached {
			per += 400 * time.Nanosecond
		}
		return time.Duration(n) * per
	}}
	costs, err := c.Calibrate(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if got := costs["tracepoint"]; got != 500 {
		t.Errorf("tracepoint cost %v ns a hit, want 500 (the links' 400 and the timer's 100); costs %v", got, costs)
	}
}
