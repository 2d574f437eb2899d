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
// sites and counters, as a session over a kernel with BPF trampolines
// routes them: a timer adds entry ns a call to the loop at a function's
// entry, site ns at a call site, of which inside ns fall between its
// clock reads (what it measures of getppid's call); a counter adds count
// ns (none: counters refused).
type routedInstrumenter struct {
	live                       map[routedKey]bool
	hits, ns                   map[routedKey]uint64
	entry, site, inside, count time.Duration
	// entryInside is what an entry timer on getppid measures a call.
	entryInside time.Duration
}

type routedKey struct {
	pt   instrument.Point
	kind instrument.Kind
}

type routedInstrument struct {
	r *routedInstrumenter
	k routedKey
}

func (r *routedInstrumenter) Backend() instrument.Backend { return instrument.Fentry }
func (r *routedInstrumenter) BackendOf(s instrument.Spec) instrument.Backend {
	if s.IsCallSite() || s.Kind == instrument.Count {
		return instrument.Kprobe
	}
	return instrument.Fentry
}
func (r *routedInstrumenter) Check(s instrument.Spec) error {
	if s.Kind != instrument.Timer && (s.Kind != instrument.Count || r.count == 0) {
		return instrument.ErrNotSupported
	}
	return nil
}
func (r *routedInstrumenter) Close() error { return nil }
func (r *routedInstrumenter) Insert(_ context.Context, s instrument.Spec) (instrument.Instrument, error) {
	k := routedKey{s.Point, s.Kind}
	r.live[k] = true
	return &routedInstrument{r, k}, nil
}
func (i *routedInstrument) Spec() instrument.Spec {
	return instrument.Spec{Point: i.k.pt, Kind: i.k.kind}
}
func (i *routedInstrument) Close() error { delete(i.r.live, i.k); return nil }
func (r *routedInstrumenter) Read() (*instrument.Reading, error) {
	out := &instrument.Reading{At: time.Now()}
	for k, n := range r.hits {
		out.Contexts = append(out.Contexts, instrument.ContextReading{Path: instrument.Path{k.pt}, Kind: k.kind, Calls: n, InclNs: r.ns[k]})
	}
	return out, nil
}

// TestCalibrateCallSites: beside fentry, the call-site timers of the
// kprobe backend are calibrated on their own (key "kprobe", and the part
// inside their window "kprobe:inside", from a call on getppid's path),
// not taken to cost what fentry's timers or a kprobe counter do; and a
// timer the loop's noise makes cheaper than a counter of its backend is
// taken to cost the counter's, which Calibrate says.
func TestCalibrateCallSites(t *testing.T) {
	for _, c := range []struct {
		site, count, entryInside time.Duration
		wantFentry, wantKprobe   float64
		wantCount, wantInside    float64
		floored                  string // what Calibrate says of a cost raised
	}{
		{site: 900 * time.Nanosecond, wantFentry: 300, wantKprobe: 900, wantInside: 400},
		{site: 900 * time.Nanosecond, count: 500 * time.Nanosecond, wantFentry: 300, wantKprobe: 900, wantCount: 500, wantInside: 400},
		{site: 100 * time.Nanosecond, count: 500 * time.Nanosecond, wantFentry: 300, wantKprobe: 500, wantCount: 500, wantInside: 400,
			floored: "less than a counter's"},
		// An entry timer that measures more of getppid's call than the
		// loop said it costs: the loop's noise.
		{site: 900 * time.Nanosecond, entryInside: 700 * time.Nanosecond, wantFentry: 700, wantKprobe: 900, wantInside: 400,
			floored: "less than the 700 ns it times"},
	} {
		costs, err := calibrateRouted(t, c.site, c.count, c.entryInside)
		if c.floored == "" && err != nil || c.floored != "" && (err == nil || !strings.Contains(err.Error(), c.floored)) {
			t.Errorf("site %v, counter %v, entry inside %v: Calibrate said %v", c.site, c.count, c.entryInside, err)
		}
		if costs["fentry"] != c.wantFentry || costs["kprobe"] != c.wantKprobe || costs["kprobe:count"] != c.wantCount || costs["kprobe:inside"] != c.wantInside {
			t.Errorf("site %v, counter %v, entry inside %v: costs %v; want fentry %v, kprobe %v, kprobe:count %v, kprobe:inside %v",
				c.site, c.count, c.entryInside, costs, c.wantFentry, c.wantKprobe, c.wantCount, c.wantInside)
		}
	}
}

// calibrateRouted calibrates a routedInstrumenter whose call-site timers
// add site ns a call, and whose counters count ns (0: none), over a
// kernel of two syscalls that each call a helper.
func calibrateRouted(t *testing.T, site, count, entryInside time.Duration) (map[string]float64, error) {
	t.Helper()
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
	// returns.
	call := func(from, to uint64) []byte {
		rel := int32(to - (from + 5))
		b := []byte{0xe8, byte(rel), byte(rel >> 8), byte(rel >> 16), byte(rel >> 24), 0xc3}
		return append(b, bytes.Repeat([]byte{0xcc}, 10)...)
	}
	text := &callgraph.MemText{}
	text.Add(pread, call(pread, ksys))
	// ksys_pread64: test edi,edi; je +1; nop; ret (blocks at +4 and +5).
	text.Add(ksys, append([]byte{0x85, 0xff, 0x74, 0x01, 0x90, 0xc3}, bytes.Repeat([]byte{0xcc}, 10)...))
	text.Add(getppid, call(getppid, tgid))
	text.Add(tgid, append([]byte{0xc3}, bytes.Repeat([]byte{0xcc}, 15)...))
	g := callgraph.NewGraph(syms, text, false)

	r := &routedInstrumenter{live: map[routedKey]bool{}, hits: map[routedKey]uint64{}, ns: map[routedKey]uint64{},
		entry: 300 * time.Nanosecond, site: site, inside: 400 * time.Nanosecond, count: count, entryInside: entryInside}
	getppidSite := routedKey{instrument.Point{Func: insideSyscall, Callee: "task_tgid_vnr"}, instrument.Timer}
	getppidEntry := routedKey{instrument.Point{Func: insideSyscall}, instrument.Timer}
	c := Calibrator{Graph: g, N: 1000, preads: func(n int) time.Duration {
		per := 1000 * time.Nanosecond
		for k := range r.live {
			if k == getppidSite || k == getppidEntry {
				continue
			}
			r.hits[k] += uint64(n)
			switch {
			case k.kind == instrument.Count:
				per += r.count
			case k.pt.IsCallSite():
				per += r.site
			default:
				per += r.entry
			}
		}
		return time.Duration(n) * per
	}, getppids: func(n int) { // getppid's call site, timed: what its timer measures a call
		if r.live[getppidSite] {
			r.hits[getppidSite] += uint64(n)
			r.ns[getppidSite] += uint64(n) * uint64(r.inside)
		}
		if r.live[getppidEntry] && r.entryInside > 0 {
			r.hits[getppidEntry] += uint64(n)
			r.ns[getppidEntry] += uint64(n) * uint64(r.entryInside)
		}
	}}
	return c.Calibrate(context.Background(), r)
}
