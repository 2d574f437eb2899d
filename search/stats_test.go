package search

import (
	"encoding/json"
	"gonum.org/v1/gonum/stat/distuv"
	"math"
	"testing"
)

// TestNewInterval compares with reference values. For 1..5 the mean is 3,
// s = √2.5 and t(0.975; 4) = 2.7764451 (any t table), so the half-width
// is 2.7764451·√2.5/√5 = 1.9632432; for five 2s and five 4s at 99%,
// t(0.995; 9) = 3.2498355; the seven values' bounds are SciPy's
// (scipy.stats.t.interval(0.95, 6, loc=mean, scale=stats.sem(x))).
func TestNewInterval(t *testing.T) {
	for _, tc := range []struct {
		name            string
		xs              []float64
		level           float64
		mean, low, high float64
	}{
		{"1..5", []float64{1, 2, 3, 4, 5}, 0.95, 3, 3 - 1.9632432, 3 + 1.9632432},
		{"99%", []float64{2, 2, 2, 2, 2, 4, 4, 4, 4, 4}, 0.99, 3, 3 - 3.2498355/3, 3 + 3.2498355/3},
		{"SciPy", []float64{1.2, 3.4, 2.2, 5.1, 4.4, 3.3, 2.9}, 0.95, 3.214285714285714, 2.0091101263654143, 4.419461302206013},
		{"no spread", []float64{0.5, 0.5, 0.5}, 0.95, 0.5, 0.5, 0.5},
		{"one value: no spread information", []float64{7}, 0.95, 7, math.Inf(-1), math.Inf(1)},
		{"none", nil, 0.95, 0, 0, 0},
	} {
		iv := NewInterval(tc.xs, tc.level)
		if iv.N != len(tc.xs) || !near(iv.Mean, tc.mean) || !near(iv.Low, tc.low) || !near(iv.High, tc.high) {
			t.Errorf("%s: %+v, want %v [%v, %v]", tc.name, iv, tc.mean, tc.low, tc.high)
		}
	}
}

func near(a, b float64) bool { return a == b || math.Abs(a-b) <= 1e-7*math.Max(1, math.Abs(b)) }

// TestIntervalDecides checks that only an interval of two or more values
// decides anything.
func TestIntervalDecides(t *testing.T) {
	if iv := NewInterval([]float64{7}, 0.95); iv.Above(0) || iv.Below(100) {
		t.Errorf("one value %+v decides", iv)
	}
	if iv := NewInterval([]float64{0.5, 0.5, 0.5}, 0.95); !iv.Above(0.4) || !iv.Below(0.6) || iv.Above(0.5) {
		t.Errorf("constant values %+v", iv)
	}
}

// TestIntervalJSON checks that an interval survives run.json, where
// infinite bounds are null (reports writes NaN and infinities as null).
func TestIntervalJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Interval
	}{
		{`{"mean":0.2,"low":null,"high":null,"n":1}`, NewInterval([]float64{0.2}, 0.95)},
		{`{"mean":0.2,"low":0.1,"high":0.3,"n":4}`, Interval{Mean: 0.2, Low: 0.1, High: 0.3, N: 4}},
		{`{"mean":0,"low":0,"high":0,"n":0}`, Interval{}},
	} {
		var got Interval
		if err := json.Unmarshal([]byte(tc.in), &got); err != nil || got != tc.want {
			t.Errorf("%s reads as %+v (%v), want %+v", tc.in, got, err, tc.want)
		}
	}
	var f Finding
	if err := json.Unmarshal([]byte(`{"p50_ns":null,"p99_ns":1536}`), &f); err != nil || !math.IsNaN(f.P50Ns) || f.P99Ns != 1536 {
		t.Errorf("finding reads as p50 %v p99 %v (%v), want NaN and 1536", f.P50Ns, f.P99Ns, err)
	}
}

// TestTQuantile: the cached quantile is gonum's, for each level and
// degrees of freedom asked, the first time and after.
func TestTQuantile(t *testing.T) {
	for _, level := range []float64{0.9, 0.95, 0.99} {
		for _, df := range []int{1, 2, 5, 30, 200} {
			want := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(df)}.Quantile(1 - (1-level)/2)
			for range 2 {
				if got := tQuantile(level, df); got != want {
					t.Fatalf("tQuantile(%g, %d) = %g, want %g", level, df, got, want)
				}
			}
		}
	}
}

// BenchmarkNewInterval is one node's interval over a window of twelve
// rounds, as the hunt computes every node's twice a round.
func BenchmarkNewInterval(b *testing.B) {
	xs := []float64{0.51, 0.49, 0.5, 0.52, 0.48, 0.5, 0.51, 0.49, 0.5, 0.53, 0.47, 0.5}
	for b.Loop() {
		NewInterval(xs, 0.95)
	}
}
