package splice

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/autoprof/autoprof/internal/instrument"
)

// Schedule launches and splashes down an experiment's planned instruments
// (GILK's launch and splashdown times) on an Instrumenter.
type Schedule struct {
	in   instrument.Instrumenter
	plan []Planned
	live []instrument.Instrument // by plan index, nil when not live
	done []bool
}

// NewSchedule returns the schedule of plan on in; nothing is live until
// the first Step.
func NewSchedule(in instrument.Instrumenter, plan []Planned) *Schedule {
	return &Schedule{in: in, plan: plan, live: make([]instrument.Instrument, len(plan)), done: make([]bool, len(plan))}
}

// Step brings every instrument to its state at el since the start: those
// whose launch has come are inserted, those whose splashdown has come are
// withdrawn (an instrument is launched once).
func (sc *Schedule) Step(ctx context.Context, el time.Duration) error {
	for i, p := range sc.plan {
		switch {
		case sc.live[i] != nil && p.Splashdown > 0 && el >= p.Splashdown:
			if err := sc.live[i].Close(); err != nil {
				return err
			}
			sc.live[i], sc.done[i] = nil, true
		case sc.live[i] == nil && !sc.done[i] && el >= p.Launch:
			in, err := sc.in.Insert(ctx, p.Spec)
			if err != nil {
				return fmt.Errorf("launching %s: %w", p.Spec, err)
			}
			sc.live[i] = in
		}
	}
	return nil
}

// CloseAll withdraws every live instrument.
func (sc *Schedule) CloseAll() {
	for i, in := range sc.live {
		if in != nil {
			in.Close()
			sc.live[i], sc.done[i] = nil, true
		}
	}
}

// Launched names every instrument launched so far, as Summarize names
// them.
func (sc *Schedule) Launched() []string {
	var out []string
	for i, p := range sc.plan {
		if sc.live[i] != nil || sc.done[i] {
			out = append(out, instrument.Spec{Point: p.Spec.Point, Kind: p.Spec.Kind}.String())
		}
	}
	return out
}

// WithIdle adds a zero row for each launched instrument that the reading
// has no context of (it never fired), so that the table and the series
// show every instrument the user asked for.
func WithIdle(sums []Summary, launched []string) []Summary {
	have := map[string]bool{}
	for _, s := range sums {
		have[s.Instrument] = true
	}
	for _, name := range launched {
		if !have[name] {
			have[name] = true
			sums = append(sums, Summary{Instrument: name})
		}
	}
	sort.Slice(sums, func(i, j int) bool { return sums[i].Instrument < sums[j].Instrument })
	return sums
}
