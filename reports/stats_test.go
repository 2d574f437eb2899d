package reports

import (
	"math"
	"testing"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol || math.IsNaN(got) != math.IsNaN(want) {
		t.Errorf("%s = %.12g, want %.12g (±%g)", what, got, want, tol)
	}
}

// Reference values below were computed with SciPy 1.10.1 (Debian
// python3-scipy): stats.ttest_ind(new, base, equal_var=False), the
// Welch–Satterthwaite df and t.ppf for the interval, and stats.mannwhitneyu(new, base, method='asymptotic',
// use_continuity=False) for the rank test. Welch's first data set is
// Example 1 of the Wikipedia article "Welch's t-test".
func TestWelchTest(t *testing.T) {
	base := []float64{27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4}
	new := []float64{27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4}
	w := WelchTest(base, new, 0.95, 0)
	near(t, "t", w.T, 2.455356398286006, 1e-9)
	near(t, "p", w.P, 0.021378001462866985, 1e-9)
	near(t, "df", w.DF, 24.988529290231416, 1e-9)
	near(t, "low", w.Low, 0.34923706619240935, 1e-9)
	near(t, "high", w.High, 3.9840962671409264, 1e-9)

	base = []float64{17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8}
	new = []float64{21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5, 22.5, 23.6, 21.5, 22.5, 23.5, 21.5, 21.8}
	w = WelchTest(base, new, 0.95, 0)
	near(t, "t2", w.T, 1.5654335235985037, 1e-9)
	near(t, "p2", w.P, 0.14884169660532834, 1e-9)
	near(t, "df2", w.DF, 9.904741248650831, 1e-9)
	near(t, "low2", w.Low, -0.6484213253524262, 1e-9)
}

// TestWelchMargin checks the minimum-effect rule: p < α exactly when the
// (1−α) interval lies outside ±margin.
func TestWelchMargin(t *testing.T) {
	base := []float64{10, 11, 9, 10.5, 9.5, 10, 10.2, 9.8}
	new := []float64{12, 13, 11, 12.5, 11.5, 12, 12.2, 11.8} // Δ = 2
	for _, margin := range []float64{0, 0.5, 1, 1.5, 1.9, 2, 2.5, 3} {
		w := WelchTest(base, new, 0.95, margin)
		outside := w.Low > margin || w.High < -margin
		if (w.P < 0.05) != outside {
			t.Errorf("margin %v: p = %v but interval [%v, %v]", margin, w.P, w.Low, w.High)
		}
	}
	if w := WelchTest(base, new, 0.95, 3); w.P != 1 {
		t.Errorf("margin above the change: p = %v, want 1", w.P)
	}
}

func TestWelchDegenerate(t *testing.T) {
	if w := WelchTest([]float64{1}, []float64{2, 3}, 0.95, 0); !math.IsNaN(w.P) {
		t.Errorf("one value: p = %v, want NaN", w.P)
	}
	if w := WelchTest([]float64{1, 1}, []float64{2, 2}, 0.95, 0); w.P != 0 {
		t.Errorf("exact difference: p = %v, want 0", w.P)
	}
	if w := WelchTest([]float64{1, 1}, []float64{1, 1}, 0.95, 0); w.P != 1 {
		t.Errorf("exact equality: p = %v, want 1", w.P)
	}
}

// TestHistRankTest checks the binned Mann–Whitney test against SciPy's
// tie-corrected asymptotic test on the same data expanded to observations,
// with m equal to the real counts.
func TestHistRankTest(t *testing.T) {
	base := []uint64{0, 0, 5, 10, 3}
	new := []uint64{0, 0, 2, 8, 10}
	r := HistRankTest(base, new, 18, 20, 0)
	near(t, "A", r.A, 250.0/(18*20), 1e-12)
	near(t, "p", r.P, 0.026262723579746933, 1e-9)

	same := HistRankTest(base, base, 40, 40, 0)
	near(t, "A same", same.A, 0.5, 1e-12)
	near(t, "p same", same.P, 1, 1e-12)

	// Scaling every count keeps A and, with m fixed, p: calls are not
	// the replicates.
	big := HistRankTest([]uint64{0, 0, 5e6, 10e6, 3e6}, []uint64{0, 0, 2e6, 8e6, 10e6}, 18, 20, 0)
	near(t, "A scaled", big.A, r.A, 1e-12)
	near(t, "p scaled", big.P, r.P, 1e-9)

	if r := HistRankTest([]uint64{0, 0}, []uint64{1, 0}, 5, 5, 0); !math.IsNaN(r.P) {
		t.Errorf("empty base: p = %v, want NaN", r.P)
	}
}

// TestBenjaminiHochberg checks the adjusted values against the step-up
// computation done by hand (and R's p.adjust(p, "BH")).
func TestBenjaminiHochberg(t *testing.T) {
	p := []float64{0.01, 0.04, 0.03, 0.005, 0.20, 0.5, math.NaN()}
	want := []float64{0.03, 0.06, 0.06, 0.03, 0.24, 0.5, math.NaN()}
	q := BenjaminiHochberg(p)
	for i := range want {
		near(t, "q", q[i], want[i], 1e-12)
	}
}

// TestEstimateTest checks the normal test of two estimates against the
// normal distribution's values: Δ = 10 with SE 5 (3 and 4) is z = 2,
// p = 2·Q(2); with a margin of 5, p = 2·Q(1).
func TestEstimateTest(t *testing.T) {
	w := EstimateTest(Estimate{Mean: 10, SE: 3}, Estimate{Mean: 20, SE: 4}, 0.95, 0)
	near(t, "z", w.T, 2, 1e-12)
	near(t, "p", w.P, 0.04550026389635842, 1e-12)
	near(t, "low", w.Low, 10-1.959963984540054*5, 1e-9)
	near(t, "high", w.High, 10+1.959963984540054*5, 1e-9)
	w = EstimateTest(Estimate{Mean: 10, SE: 3}, Estimate{Mean: 20, SE: 4}, 0.95, 5)
	near(t, "p margin", w.P, 0.31731050786291415, 1e-12)
	if w := EstimateTest(Estimate{Mean: 1}, Estimate{Mean: 2}, 0.95, 0.5); w.P != 0 {
		t.Errorf("exact estimates 1 and 2, margin 0.5: p = %v, want 0", w.P)
	}
	if w := EstimateTest(Estimate{Mean: 1}, Estimate{Mean: 2}, 0.95, 2); w.P != 1 {
		t.Errorf("exact estimates 1 and 2, margin 2: p = %v, want 1", w.P)
	}
	if w := EstimateTest(Estimate{Mean: math.NaN()}, Estimate{Mean: 2, SE: 1}, 0.95, 0); !math.IsNaN(w.P) {
		t.Errorf("a NaN estimate: p = %v, want NaN", w.P)
	}
}
