package live

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/callgraph"
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

// routedInstrumenter is fentry for function entries and kprobe for call
// sites, as a session over a kernel with BPF trampolines routes them: a
// timer adds entry ns a call to the loop at a function's entry, site ns
// at a call site, of which inside ns fall between its clock reads (what
// it measures of getppid's call).
type routedInstrumenter struct {
	live                map[instrument.Point]bool
	hits                map[instrument.Point]uint64
	ns                  map[instrument.Point]uint64
	entry, site, inside time.Duration
}

type routedInstrument struct {
	r  *routedInstrumenter
	pt instrument.Point
}

func (r *routedInstrumenter) Backend() instrument.Backend { return instrument.Fentry }
func (r *routedInstrumenter) BackendOf(s instrument.Spec) instrument.Backend {
	if s.IsCallSite() || s.Offset != 0 {
		return instrument.Kprobe
	}
	return instrument.Fentry
}
func (r *routedInstrumenter) Check(s instrument.Spec) error {
	if s.Kind != instrument.Timer {
		return instrument.ErrNotSupported
	}
	return nil
}
func (r *routedInstrumenter) Close() error { return nil }
func (r *routedInstrumenter) Insert(_ context.Context, s instrument.Spec) (instrument.Instrument, error) {
	r.live[s.Point] = true
	return &routedInstrument{r, s.Point}, nil
}
func (i *routedInstrument) Spec() instrument.Spec {
	return instrument.Spec{Point: i.pt, Kind: instrument.Timer}
}
func (i *routedInstrument) Close() error { delete(i.r.live, i.pt); return nil }
func (r *routedInstrumenter) Read() (*instrument.Reading, error) {
	out := &instrument.Reading{At: time.Now()}
	for pt, n := range r.hits {
		out.Contexts = append(out.Contexts, instrument.ContextReading{Path: instrument.Path{pt}, Kind: instrument.Timer, Calls: n, InclNs: r.ns[pt]})
	}
	return out, nil
}

// TestCalibrateCallSites: beside fentry, the call-site timers of the
// kprobe backend are calibrated on their own (key "kprobe", and the part
// inside their window "kprobe:inside", from a call on getppid's path),
// not taken to cost what fentry's timers or a kprobe counter do.
func TestCalibrateCallSites(t *testing.T) {
	const (
		pread   uint64 = 0xffffffff81000000
		ksys    uint64 = 0xffffffff81000010
		getppid uint64 = 0xffffffff81000020
		tgid    uint64 = 0xffffffff81000030
	)
	syms, err := callgraph.ParseKallsyms(strings.NewReader(fmt.Sprintf(`%x T _stext
%x T %s
%x T ksys_pread64
%x T %s
%x T task_tgid_vnr
%x T _etext
`, pread, pread, calibrationSyscall, ksys, getppid, insideSyscall, tgid, tgid+0x10)))
	if err != nil {
		t.Fatal(err)
	}
	// Each of the two syscalls' entries calls its helper at +0 and
	// returns; the helpers return.
	call := func(from, to uint64) []byte {
		rel := int32(to - (from + 5))
		b := []byte{0xe8, byte(rel), byte(rel >> 8), byte(rel >> 16), byte(rel >> 24), 0xc3}
		return append(b, bytes.Repeat([]byte{0xcc}, 10)...)
	}
	text := &callgraph.MemText{}
	text.Add(pread, call(pread, ksys))
	text.Add(ksys, append([]byte{0xc3}, bytes.Repeat([]byte{0xcc}, 15)...))
	text.Add(getppid, call(getppid, tgid))
	text.Add(tgid, append([]byte{0xc3}, bytes.Repeat([]byte{0xcc}, 15)...))
	g := callgraph.NewGraph(syms, text, false)

	r := &routedInstrumenter{live: map[instrument.Point]bool{}, hits: map[instrument.Point]uint64{}, ns: map[instrument.Point]uint64{},
		entry: 300 * time.Nanosecond, site: 900 * time.Nanosecond, inside: 400 * time.Nanosecond}
	site := instrument.Point{Func: calibrationSyscall, Callee: "ksys_pread64"}
	getppidSite := instrument.Point{Func: insideSyscall, Callee: "task_tgid_vnr"}
	c := Calibrator{Graph: g, N: 1000, preads: func(n int) time.Duration {
		per := 1000 * time.Nanosecond
		for pt := range r.live {
			r.hits[pt] += uint64(n)
			if pt == site {
				per += r.site
			} else {
				per += r.entry
			}
		}
		return time.Duration(n) * per
	}, getppids: func(n int) { // getppid's call site, timed: what its timer measures a call
		if r.live[getppidSite] {
			r.hits[getppidSite] += uint64(n)
			r.ns[getppidSite] += uint64(n) * uint64(r.inside)
		}
	}}
	costs, err := c.Calibrate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if costs["fentry"] != 300 || costs["kprobe"] != 900 || costs["kprobe:inside"] != 400 {
		t.Errorf("costs %v; want fentry 300, kprobe (its call-site timers) 900, kprobe:inside 400", costs)
	}
}
