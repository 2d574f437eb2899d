package live

import (
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/search"
)

// TestOptionsCheck: the hunt's ranges, each refusal naming its option.
func TestOptionsCheck(t *testing.T) {
	ok := Options{Settings: search.Settings{BudgetPct: 2, ThresholdPct: 5}}
	if err := ok.Check(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	for _, c := range []struct {
		set  func(*Options)
		want string
	}{
		{func(o *Options) { o.BudgetPct = 0 }, "budget 0: want a percentage in (0, 100]"},
		{func(o *Options) { o.BudgetPct = 100.5 }, "budget 100.5:"},
		{func(o *Options) { o.ThresholdPct = 100 }, "threshold 100: want a percentage in (0, 100)"},
		{func(o *Options) { o.ThresholdPct = -1 }, "threshold -1:"},
		{func(o *Options) { o.Duration = -time.Second }, "duration -1s: must not be negative"},
		{func(o *Options) { o.Round = -time.Second }, "round -1s: must not be negative"},
		{func(o *Options) { o.Round = time.Millisecond }, "round 1ms: want at least 10ms"},
	} {
		o := ok
		c.set(&o)
		err := o.Check()
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", o, err, c.want)
		}
	}
	o := Options{Settings: search.Settings{Round: MinRound, BudgetPct: 100, ThresholdPct: 99.9}}
	if err := o.Check(); err != nil {
		t.Errorf("the bounds themselves: %v", err)
	}
}
