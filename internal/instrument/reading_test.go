package instrument

import (
	"math"
	"reflect"
	"testing"
)

// TestReadingSub checks the difference of two readings, including counts
// that went down, which must not wrap around.
func TestReadingSub(t *testing.T) {
	p := Path{{Func: "__x64_sys_read"}, {Func: "vfs_read"}}
	timer := func(calls, incl, excl, off uint64, hist map[int]uint64) ContextReading {
		c := ContextReading{Path: p, Kind: Timer, Calls: calls, InclNs: incl, ExclNs: excl, InclOffCPUNs: off, ExclOffCPUNs: off}
		for i, n := range hist {
			c.Hist[i] = n
		}
		return c
	}
	target := func(calls uint64) TargetReading {
		return TargetReading{Path: p, Target: 0xffffffff81000000, Func: "pipe_read", Calls: calls}
	}
	for _, tc := range []struct {
		name      string
		cur, prev *Reading
		want      *Reading
	}{
		{"nil prev counts from zero",
			&Reading{Contexts: []ContextReading{timer(3, 300, 200, 10, map[int]uint64{7: 3})}},
			nil,
			&Reading{Contexts: []ContextReading{timer(3, 300, 200, 10, map[int]uint64{7: 3})}}},
		{"growth",
			&Reading{Contexts: []ContextReading{timer(10, 1000, 800, 50, map[int]uint64{7: 6, 8: 4})}},
			&Reading{Contexts: []ContextReading{timer(4, 400, 300, 20, map[int]uint64{7: 4})}},
			&Reading{Contexts: []ContextReading{timer(6, 600, 500, 30, map[int]uint64{7: 2, 8: 4})}}},
		{"no activity is left out",
			&Reading{Contexts: []ContextReading{timer(4, 400, 300, 20, nil)}},
			&Reading{Contexts: []ContextReading{timer(4, 400, 300, 20, nil)}},
			&Reading{}},
		{"calls that went down: no activity, not a wrapped count",
			&Reading{Contexts: []ContextReading{timer(2, 5000, 100, 0, nil)}},
			&Reading{Contexts: []ContextReading{timer(10, 1000, 800, 0, nil)}},
			&Reading{}},
		{"time that went down: no activity",
			&Reading{Contexts: []ContextReading{timer(12, 50, 40, 0, nil)}},
			&Reading{Contexts: []ContextReading{timer(10, 1000, 800, 0, nil)}},
			&Reading{}},
		{"other fields that went down give 0",
			&Reading{Contexts: []ContextReading{timer(12, 1200, 100, 5, map[int]uint64{7: 1, 8: 11})}},
			&Reading{Contexts: []ContextReading{timer(10, 1000, 800, 50, map[int]uint64{7: 10})}},
			&Reading{Contexts: []ContextReading{timer(2, 200, 0, 0, map[int]uint64{8: 11})}}},
		{"counters near the limit",
			&Reading{Contexts: []ContextReading{timer(math.MaxUint64, math.MaxUint64, 0, 0, nil)}},
			&Reading{Contexts: []ContextReading{timer(math.MaxUint64-1, math.MaxUint64-7, 0, 0, nil)}},
			&Reading{Contexts: []ContextReading{timer(1, 7, 0, 0, nil)}}},
		{"misses and hits that went down give 0",
			&Reading{Misses: Misses{Recursion: 5, MapFull: 1}, Hits: map[string]uint64{"a": 3, "b": 9}},
			&Reading{Misses: Misses{Recursion: 2, MapFull: 4}, Hits: map[string]uint64{"a": 1, "b": 10}},
			&Reading{Misses: Misses{Recursion: 3}, Hits: map[string]uint64{"a": 2, "b": 0}}},
		{"targets",
			&Reading{Targets: []TargetReading{target(7)}},
			&Reading{Targets: []TargetReading{target(5)}},
			&Reading{Targets: []TargetReading{target(2)}}},
		{"targets that went down: none",
			&Reading{Targets: []TargetReading{target(3)}},
			&Reading{Targets: []TargetReading{target(5)}},
			&Reading{}},
	} {
		if got := tc.cur.Sub(tc.prev); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
