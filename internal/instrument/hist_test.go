package instrument

import (
	"math"
	"testing"
)

// TestHistQuantile checks HistQuantile against values worked out by hand
// from its formula: in bucket i ≥ 1, [2^(i−1), 2^i), the q-quantile of N
// calls with C below the bucket and n in it is 2^(i−1)·(1 + (q·N − C)/n).
func TestHistQuantile(t *testing.T) {
	hist := func(counts map[int]uint64) *[HistBuckets]uint64 {
		var h [HistBuckets]uint64
		for i, c := range counts {
			h[i] = c
		}
		return &h
	}
	last := HistBuckets - 1
	for _, tc := range []struct {
		name string
		h    *[HistBuckets]uint64
		q    float64
		want float64 // NaN: no quantile
	}{
		{"empty", hist(nil), 0.5, math.NaN()},
		{"empty p0", hist(nil), 0, math.NaN()},
		{"one bucket p50", hist(map[int]uint64{11: 100}), 0.5, 1536},
		{"one bucket p0", hist(map[int]uint64{11: 100}), 0, 1024},
		{"one bucket p100", hist(map[int]uint64{11: 100}), 1, 2048},
		{"one call", hist(map[int]uint64{5: 1}), 0.5, 24},
		{"bucket 0 holds 0 ns", hist(map[int]uint64{0: 10}), 0.5, 0},
		{"bucket 0 at p100", hist(map[int]uint64{0: 10}), 1, 0},
		{"past bucket 0", hist(map[int]uint64{0: 50, 1: 50}), 0.75, 1.5},
		{"bucket 1 is [1, 2)", hist(map[int]uint64{1: 4}), 0.25, 1.25},
		{"p99 in the fast bucket", hist(map[int]uint64{11: 100, 21: 1}), 0.99, 1024 * (1 + 99.99/100)},
		{"p99 in the slow bucket", hist(map[int]uint64{11: 98, 21: 2}), 0.99, (1 << 20) * 1.5},
		{"max", hist(map[int]uint64{11: 100, 21: 1}), 1, 1 << 21},
		{"empty buckets between", hist(map[int]uint64{3: 1, 30: 1}), 0.5, 4 * 2},
		{"overflow bucket: its lower bound", hist(map[int]uint64{last: 7}), 0.5, math.Ldexp(1, last-1)},
		{"overflow bucket at p100", hist(map[int]uint64{11: 1, last: 1}), 1, math.Ldexp(1, last-1)},
		{"below the overflow bucket", hist(map[int]uint64{last - 1: 2, last: 2}), 0.25, math.Ldexp(1, last-2) * 1.5},
		{"counts near the limit", hist(map[int]uint64{11: math.MaxUint64 - 2}), 0.5, 1536},
	} {
		got := HistQuantile(tc.h, tc.q)
		if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9*tc.want {
			t.Errorf("%s: q%v = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestHistQuantileBounds(t *testing.T) {
	for _, q := range []float64{-0.1, 1.1, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("q = %v did not panic", q)
				}
			}()
			HistQuantile(&[HistBuckets]uint64{11: 1}, q)
		}()
	}
}
