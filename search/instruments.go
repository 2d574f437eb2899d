package search

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/autoprof/autoprof/internal/instrument"
)

// inserted is one spec the hunt inserted, live or withdrawn.
type inserted struct {
	spec    instrument.Spec
	key     string
	live    instrument.Instrument // nil once withdrawn
	backend instrument.Backend
	// fallback says why the backends tried before backend refused the
	// spec ("" where the first one serves it).
	fallback string
	nodes    []*node // nodes whose own point it measures
	owner    *node   // for a target recorder: the node whose site it watches
	root     bool
	// rate is the instrument's hits per second in the last round it was
	// live (every task's where the backend counts them), estimated until
	// measured; it is kept once the instrument is withdrawn, so that a
	// costly spec is not inserted again on an estimate.
	rate     float64
	measured bool
	// since is the first round the instrument was live for all of.
	since int
	// inserts counts its insertions; evictions its withdrawals for the
	// budget, evictedValue its value at the last of them.
	inserts, evictions int
	evictedValue       float64
}

// wanted reports whether a node the instrument serves is still wanted.
func (in *inserted) wanted() bool {
	if in.owner != nil {
		return in.owner.state != StateWithdrawn
	}
	for _, n := range in.nodes {
		if n.state != StateWithdrawn {
			return true
		}
	}
	return false
}

var (
	errLiveCap    = errors.New("live instrument cap reached")
	errHysteresis = errors.New("inserted twice already, with nothing new to learn")
)

// maxInserts is how often one spec may be inserted in a hunt unless the
// evidence changed (see mayInsert).
const maxInserts = 2

// mayInsert applies the hysteresis: a spec goes in at most maxInserts
// times, unless what it is worth now is more than twice what it was worth
// when the budget last took it out (a new context needs it); the trace
// says why it went in again.
func (h *hunter) mayInsert(n *node, in *inserted) error {
	if in == nil || in.inserts < maxInserts {
		return nil
	}
	v := 0.0
	if n != nil {
		v = n.incl.Mean
		if n.incl.N < 2 {
			v = 0
		}
	}
	if in.evictions > 0 && v > 2*in.evictedValue {
		h.event("insert-again", n, in.key, nil, fmt.Sprintf("inserted %d times; worth %s now, %s when withdrawn for the budget",
			in.inserts, pct(v), pct(in.evictedValue)))
		return nil
	}
	return errHysteresis
}

// busyRounds is how many rounds the hunt inserts nothing after a backend
// said it was busy (instrument.ErrBusy).
const busyRounds = 4

// errBusy stands for instrument.ErrBusy while the hunt waits it out.
var errBusy = fmt.Errorf("waiting for the backend: %w", instrument.ErrBusy)

// insert makes spec live for node n (the node that asked for it).
func (h *hunter) insert(n *node, spec instrument.Spec, rate float64) (*inserted, error) {
	key := spec.String()
	if h.liveCount() >= h.cfg.MaxLive {
		h.event("budget", n, key, nil, fmt.Sprintf("not inserted: %d instruments live, the cap", h.cfg.MaxLive))
		return nil, errLiveCap
	}
	in := h.specs[key]
	if err := h.mayInsert(n, in); err != nil {
		return nil, err
	}
	if h.round < h.busyUntil {
		return nil, errBusy
	}
	li, err := h.in.Insert(h.ctx, spec)
	if errors.Is(err, instrument.ErrBusy) {
		// Not a refusal: the backend is short of something that comes
		// back. No insert is tried for a few rounds, then this one again.
		h.busyUntil = h.round + busyRounds
		h.event("busy", n, key, nil, "inserting: "+err.Error())
		return nil, err
	}
	if err != nil {
		h.refused[key] = err
		h.event("refuse", n, key, nil, "inserting: "+err.Error())
		return nil, err
	}
	if in == nil {
		in = &inserted{spec: spec, key: key}
		h.specs[key] = in
	}
	in.live, in.since = li, h.nextFull()
	in.inserts++
	if !in.measured {
		in.rate = rate
	}
	in.backend, in.fallback = h.backendOf(spec), ""
	if p, ok := li.(placed); ok {
		in.backend, in.fallback = p.Backend(), p.Fallback()
	}
	if in.fallback != "" {
		h.fellBack(in)
	}
	h.run.Overhead.Inserted++
	h.run.Overhead.MaxLive = max(h.run.Overhead.MaxLive, h.liveCount())
	reason := "root"
	if n != nil {
		reason = "refining " + n.key
	}
	if in.fallback != "" {
		reason += "; with " + string(in.backend) + ": " + in.fallback
	}
	h.event("insert", n, key, nil, reason)
	h.textChange()
	return in, nil
}

// fellBack notes an instrument served by a backend other than the first
// candidate, for the limitations (see fallbackLimits).
func (h *hunter) fellBack(in *inserted) {
	if h.fallbacks == nil {
		h.fallbacks, h.fallbackWhy = map[instrument.Backend][]string{}, map[instrument.Backend]string{}
	}
	fn := in.spec.Point.String()
	if !slices.Contains(h.fallbacks[in.backend], fn) {
		h.fallbacks[in.backend] = append(h.fallbacks[in.backend], fn)
	}
	if h.fallbackWhy[in.backend] == "" {
		h.fallbackWhy[in.backend] = in.fallback
	}
}

// fallbackLimits says, once per backend, which functions it served
// because the session's backend refused them, with the first refusal.
func (h *hunter) fallbackLimits() {
	backends := make([]instrument.Backend, 0, len(h.fallbacks))
	for b := range h.fallbacks {
		backends = append(backends, b)
	}
	slices.Sort(backends)
	for _, b := range backends {
		fns := h.fallbacks[b]
		sort.Strings(fns)
		h.limit("%d instruments were placed with %s where %s refused them (%s), e.g. %s", len(fns), b, h.in.Backend(), strings.Join(fns, ", "), h.fallbackWhy[b])
	}
}

// placed is implemented by live instruments that say which backend
// serves them (splice's: a function that fentry refused is timed with a
// kprobe) and why the ones before it refused.
type placed interface {
	Backend() instrument.Backend
	Fallback() string
}

// firstClause is the first clause of a refusal, for a limitation that
// names a kind of refusal once.
func firstClause(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == ';' || s[i] == '(' {
			return s[:i]
		}
	}
	return s
}

// close withdraws one instrument.
func (h *hunter) close(in *inserted, reason string) {
	if in.live == nil {
		return
	}
	if err := in.live.Close(); err != nil && !errors.Is(err, instrument.ErrClosed) {
		h.limit("withdrawing %s: %v", in.key, err)
	}
	in.live = nil
	h.event("withdraw", in.owner, in.key, nil, "instrument removed: "+reason)
	h.textChange()
}

// withdrawAll withdraws every live instrument (the end of the hunt).
func (h *hunter) withdrawAll() {
	for _, in := range h.sortedSpecs() {
		if in.live != nil {
			if err := in.live.Close(); err != nil && !errors.Is(err, instrument.ErrClosed) {
				h.limit("withdrawing %s: %v", in.key, err)
			}
			in.live = nil
		}
	}
}

func (h *hunter) sortedSpecs() []*inserted {
	out := make([]*inserted, 0, len(h.specs))
	for _, in := range h.specs {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

func (h *hunter) liveCount() int {
	n := 0
	for _, in := range h.specs {
		if in.live != nil {
			n++
		}
	}
	return n
}

// backendOf names the backend that serves spec: the live instrument's
// where one says, else the Router's answer, else the Instrumenter's.
func (h *hunter) backendOf(spec instrument.Spec) instrument.Backend {
	if in := h.specs[spec.String()]; in != nil && in.backend != "" {
		return in.backend
	}
	if r, ok := h.in.(Router); ok {
		return r.BackendOf(spec)
	}
	return h.in.Backend()
}

// costOf returns a backend's cost per hit in ns.
func (h *hunter) costOf(backend instrument.Backend) float64 {
	if c, ok := h.costs[string(backend)]; ok {
		return c
	}
	if c, ok := h.costs[string(instrument.Kprobe)]; ok {
		return c
	}
	return DefaultCostNs[string(instrument.Kprobe)]
}

// costOfSpec returns the cost per hit of spec's instrument in ns: a
// counter's or a target recorder's where its backend's counters were
// calibrated apart ("BACKEND:count"), a call-site timer's as two
// counters (a kprobe at the call and one at its return), else its
// backend's.
func (h *hunter) costOfSpec(spec instrument.Spec) float64 {
	if v, ok := h.calibratedCost(spec); ok {
		return v
	}
	return h.costOf(h.backendOf(spec))
}

// calibratedCost is the calibrated cost per hit of spec's instrument, as
// costOfSpec chooses it; ok is false where nothing was calibrated for it.
func (h *hunter) calibratedCost(spec instrument.Spec) (float64, bool) {
	return h.perHit(spec, func(k string) string { return k })
}

// BPFCostKey is the key under which a Calibrator gives, beside a cost
// per hit (key "fentry", "kprobe:count", ...), the kernel's measure of the
// instrument's programs' run time per hit in the same loops (BPF run-time
// statistics). The programs are part of the cost, measured by the kernel
// in every round: their run time in a round against what the calibration
// predicts of it for the round's hits tells how much faster or slower the
// machine runs the instruments now than during the calibration, which
// compensate applies to the costs: a calibration taken on a busy machine,
// or an emulator whose host got busier, is off by a factor that the
// programs' run time shows (docs/search.md, "Compensation").
func BPFCostKey(key string) string { return "bpf:" + key }

// bpfOfSpec returns the programs' calibrated run time per hit of spec's
// instrument (see BPFCostKey), chosen as costOfSpec chooses the cost.
func (h *hunter) bpfOfSpec(spec instrument.Spec) (float64, bool) {
	return h.perHit(spec, BPFCostKey)
}

// perHit looks up a calibrated figure per hit of spec's instrument under
// key(name): its backend's counters' ("BACKEND:count") for a counter, a
// target recorder or a call-site timer (two counters), where calibrated,
// else its backend's; ok is false where neither was calibrated.
func (h *hunter) perHit(spec instrument.Spec, key func(string) string) (float64, bool) {
	b := string(h.backendOf(spec))
	if spec.Kind != instrument.Timer || spec.IsCallSite() {
		if v, ok := h.costs[key(b+":count")]; ok {
			if spec.IsCallSite() {
				return 2 * v, true
			}
			return v, true
		}
	}
	v, ok := h.costs[key(b)]
	return v, ok
}

// insideOf returns the part of a timer's cost per hit that falls inside
// its own window ("BACKEND:inside"), 0 where not calibrated.
func (h *hunter) insideOf(spec instrument.Spec) float64 {
	return h.costs[string(h.backendOf(spec))+":inside"]
}

// updateRates sets each live instrument's hits per second in the round
// that ended: every task's hits where the reading counts them, else the
// target's calls of the nodes it serves (or the calls its site recorded).
func (h *hunter) updateRates(elapsed float64, hits map[string]uint64, siteCalls map[string]uint64) {
	for _, in := range h.specs {
		// An instrument changed right after the reading that opened
		// the round was live for nearly all of it.
		if in.live == nil || in.since > h.round+1 {
			continue
		}
		var calls uint64
		switch n, ok := hits[in.key]; {
		case ok:
			calls = n
		case in.spec.Kind == instrument.Targets:
			calls = siteCalls[in.key]
		default:
			for _, n := range in.nodes {
				calls += n.cur.Calls
			}
		}
		in.rate = float64(calls) / elapsed
		in.measured = true
	}
}
