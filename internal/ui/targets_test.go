package ui

import (
	"testing"

	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice"
)

// TestObservedTargets: the targets two experiments captured at a call
// site add up by target, most called first, by the site's offset; a
// target with no symbol is named by its address.
func TestObservedTargets(t *testing.T) {
	site := instrument.Path{{Func: "ksys_read"}, {Func: "vfs_read", Offset: 0x54}}
	sum := func(calls ...uint64) []splice.Summary {
		return []splice.Summary{{Instrument: "vfs_read+0x54:targets", Targets: []instrument.TargetReading{
			{Path: site, Target: 0xffffffff81500000, Func: "read_zero", Calls: calls[0]},
			{Path: site, Target: 0xffffffff81600000, Func: "pipe_read", Calls: calls[1]},
			{Path: site, Target: 0xffffffffc0001000, Calls: calls[2]},
		}}}
	}
	var o observedTargets
	o.add(sum(3000, 10, 1))
	o.add(sum(1000, 5000, 1))
	got := o.of("vfs_read")["84"]
	want := []observedTarget{{"pipe_read", 5010}, {"read_zero", 4000}, {"0xffffffffc0001000", 2}}
	if len(got) != len(want) {
		t.Fatalf("targets at vfs_read+0x54: %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d: %v, want %v", i, got[i], want[i])
		}
	}
	if o.of("ksys_read") != nil {
		t.Error("a function with no indirect site captured has targets")
	}
}
