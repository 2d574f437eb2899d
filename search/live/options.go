//go:build linux

package live

import (
	"errors"
	"fmt"
	"time"
)

// MinRound is the shortest round a hunt accepts: below it, reading the
// instruments would take most of the round.
const MinRound = 10 * time.Millisecond

// Check refuses the options no hunt can run with, the one rule that the
// command line and the GUI both apply: a budget outside (0, 100] percent,
// a threshold outside (0, 100), a negative duration, a round shorter than
// MinRound. Each error names the option as its flag does, without the
// dashes ("budget 0: …"); all of them are joined.
func (o *Options) Check() error {
	var errs []error
	if o.BudgetPct <= 0 || o.BudgetPct > 100 {
		errs = append(errs, fmt.Errorf("budget %v: want a percentage in (0, 100]", o.BudgetPct))
	}
	if o.ThresholdPct <= 0 || o.ThresholdPct >= 100 {
		errs = append(errs, fmt.Errorf("threshold %v: want a percentage in (0, 100)", o.ThresholdPct))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration %v: must not be negative", o.Duration))
	}
	switch {
	case o.Round < 0:
		errs = append(errs, fmt.Errorf("round %v: must not be negative", o.Round))
	case o.Round > 0 && o.Round < MinRound:
		errs = append(errs, fmt.Errorf("round %v: want at least %v", o.Round, MinRound))
	}
	return errors.Join(errs...)
}
