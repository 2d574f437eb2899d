package search

import (
	"math"
	"testing"
)

// TestNewInterval compares with reference values: for 1..5 the mean is 3,
// s = √2.5, and t(0.975; 4) = 2.7764451 (any t table), so the half-width
// is 2.7764451·√2.5/√5 = 1.9632432.
func TestNewInterval(t *testing.T) {
	iv := NewInterval([]float64{1, 2, 3, 4, 5}, 0.95)
	if iv.N != 5 || iv.Mean != 3 || math.Abs(iv.High-3-1.9632432) > 1e-6 || math.Abs(3-iv.Low-1.9632432) > 1e-6 {
		t.Errorf("interval of 1..5 = %+v, want 3 ± 1.9632432", iv)
	}
	// t(0.995; 9) = 3.2498355 for 99%.
	xs := []float64{2, 2, 2, 2, 2, 4, 4, 4, 4, 4}
	iv = NewInterval(xs, 0.99)
	half := 3.2498355 * math.Sqrt(10.0/9) / math.Sqrt(10)
	if math.Abs(iv.High-3-half) > 1e-6 {
		t.Errorf("99%% interval = %+v, want 3 ± %.7f", iv, half)
	}
	if iv := NewInterval([]float64{7}, 0.95); !math.IsInf(iv.Low, -1) || !math.IsInf(iv.High, 1) || iv.Above(0) || iv.Below(100) {
		t.Errorf("one value gives %+v: want an unbounded interval that decides nothing", iv)
	}
	if iv := NewInterval([]float64{0.5, 0.5, 0.5}, 0.95); !iv.Above(0.4) || !iv.Below(0.6) || iv.Above(0.5) {
		t.Errorf("constant values give %+v", iv)
	}
	if iv := NewInterval(nil, 0.95); iv != (Interval{}) {
		t.Errorf("no values give %+v", iv)
	}
}
