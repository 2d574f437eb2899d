package reports

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// Welch is the result of WelchTest: the change of the mean from a base
// sample to a new one, its confidence interval and the p-value of the test.
type Welch struct {
	Base, New float64 // sample means
	Diff      float64 // New − Base
	Low, High float64 // confidence interval of Diff
	T         float64 // (Diff) / SE
	DF        float64 // Welch–Satterthwaite degrees of freedom
	// P is the p-value of the null hypothesis |μ_new − μ_base| ≤ margin
	// (see WelchTest); NaN where the test is not possible.
	P float64
}

// WelchTest compares the means of two independent samples whose variances
// may differ (Welch 1947, "The generalization of 'Student's' problem when
// several different population variances are involved", Biometrika
// 34:28–35). With sample means m, variances v and sizes n:
//
//	Δ  = m_new − m_base
//	SE = √(v_base/n_base + v_new/n_new)
//	ν  = SE⁴ / ((v_base/n_base)²/(n_base−1) + (v_new/n_new)²/(n_new−1))
//	CI = Δ ± t_{ν,(1+conf)/2} · SE
//
// The null hypothesis is that the change is at most margin in size,
// |μ_new − μ_base| ≤ margin (margin 0 gives the ordinary two-sided test).
// Its p-value is
//
//	p = min(1, 2 · P(T_ν ≥ (|Δ| − margin)/SE))
//
// so that p < 1−conf exactly when the confidence interval lies entirely
// outside [−margin, +margin]: a change is called real only when it is both
// unlikely to be noise and larger than the margin of practical interest
// (a minimum-effect test; Murphy & Myors 1999). Each sample needs at least
// two values; otherwise P is NaN (and a mean of an empty sample is NaN,
// and so is Diff). When both variances are zero the
// difference is exact: P is 0 if |Δ| > margin and 1 otherwise.
func WelchTest(base, new []float64, conf, margin float64) Welch {
	w := Welch{P: math.NaN(), T: math.NaN(), DF: math.NaN(), Base: math.NaN(), New: math.NaN()}
	if len(base) > 0 {
		w.Base = stat.Mean(base, nil)
	}
	if len(new) > 0 {
		w.New = stat.Mean(new, nil)
	}
	w.Diff = w.New - w.Base
	w.Low, w.High = w.Diff, w.Diff
	if len(base) < 2 || len(new) < 2 {
		return w
	}
	a := stat.Variance(base, nil) / float64(len(base))
	b := stat.Variance(new, nil) / float64(len(new))
	se := math.Sqrt(a + b)
	if se == 0 || math.IsNaN(se) {
		w.P = 1
		if math.Abs(w.Diff) > margin {
			w.P = 0
		}
		return w
	}
	w.T = w.Diff / se
	w.DF = (a + b) * (a + b) / (a*a/float64(len(base)-1) + b*b/float64(len(new)-1))
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: w.DF}
	h := t.Quantile((1+conf)/2) * se
	w.Low, w.High = w.Diff-h, w.Diff+h
	w.P = math.Min(1, 2*t.Survival((math.Abs(w.Diff)-margin)/se))
	return w
}

// Estimate is a mean known with a standard error, not as a sample: an
// estimate from stack samples (search.SourceSamples), or a sample's mean.
type Estimate struct {
	Mean, SE float64
}

// EstimateTest compares two independent estimates with the same
// minimum-effect null hypothesis as WelchTest, |μ_new − μ_base| ≤ margin,
// on the normal distribution (the estimates from stack samples are normal
// approximations of binomials over hundreds of samples):
//
//	SE = √(SE_base² + SE_new²),  p = min(1, 2 · P(Z ≥ (|Δ| − margin)/SE))
//
// A NaN mean or standard error gives a NaN P; both standard errors zero
// give an exact difference (P 0 if |Δ| > margin, else 1). DF is +Inf.
func EstimateTest(base, new Estimate, conf, margin float64) Welch {
	w := Welch{Base: base.Mean, New: new.Mean, Diff: new.Mean - base.Mean, T: math.NaN(), DF: math.Inf(1), P: math.NaN()}
	w.Low, w.High = w.Diff, w.Diff
	se := math.Hypot(base.SE, new.SE)
	switch {
	case math.IsNaN(w.Diff) || math.IsNaN(se):
		return w
	case se == 0:
		w.P = 1
		if math.Abs(w.Diff) > margin {
			w.P = 0
		}
		return w
	}
	w.T = w.Diff / se
	h := distuv.UnitNormal.Quantile((1+conf)/2) * se
	w.Low, w.High = w.Diff-h, w.Diff+h
	w.P = math.Min(1, 2*distuv.UnitNormal.Survival((math.Abs(w.Diff)-margin)/se))
	return w
}

// meanEstimate is a sample's mean as an Estimate (standard error s/√n);
// false for fewer than two values.
func meanEstimate(x []float64) (Estimate, bool) {
	if len(x) < 2 {
		return Estimate{}, false
	}
	m, sd := stat.MeanStdDev(x, nil)
	return Estimate{Mean: m, SE: sd / math.Sqrt(float64(len(x)))}, true
}

// Rank is the result of HistRankTest.
type Rank struct {
	// A is the probability that a call of the new run takes longer than
	// one of the base run, ties counted half (Vargha & Delaney's A; 0.5
	// means no shift).
	A float64
	Z float64 // (A − ½)/σ_A
	P float64 // two-sided p-value; NaN where the test is not possible
}

// HistRankTest compares two latency distributions given as histograms over
// the same ordered buckets (splice's log2 buckets) with the Mann–Whitney
// rank-sum test (Mann & Whitney 1947, Ann. Math. Statist. 18:50–60),
// computed on the binned data, with the tie correction for the many ties
// that binning makes (Lehmann 1975, Nonparametrics, §1.4).
//
// With p and q the bucket proportions of base and new, the effect size is
//
//	A = Σ_k q_k · (Σ_{j<k} p_j + ½ p_k)   (= U/(n_base·n_new))
//
// Calls within one run are not independent draws (they share the run's
// cache state, frequency and interference), so the variance is that of m
// independent observations per run, m being each run's number of rounds
// (the replicates the rest of the comparison uses; Kish's design effect),
// not that of the millions of calls:
//
//	σ²_A = ((n+1) − Σ_k (t_k³ − t_k)/(n(n−1))) / (12 · m_base · m_new)
//
// with n = m_base + m_new and t_k = n · r_k the pooled bucket counts in
// those units (r_k the pooled proportion). Then z = (A − ½)/σ_A and, for
// the null hypothesis |A − ½| ≤ margin (margin 0: no shift at all),
//
//	p = min(1, 2(1 − Φ((|A − ½| − margin)/σ_A)))
//
// as in WelchTest. P is NaN when either histogram is empty or either m is
// below 2, and 1 when all calls of both runs fall in one bucket.
func HistRankTest(base, new []uint64, mBase, mNew int, margin float64) Rank {
	r := Rank{P: math.NaN(), Z: math.NaN(), A: math.NaN()}
	nb, nn := histTotal(base), histTotal(new)
	if nb == 0 || nn == 0 || len(base) != len(new) {
		return r
	}
	var below, a float64
	for k := range base {
		p := float64(base[k]) / nb
		q := float64(new[k]) / nn
		a += q * (below + p/2)
		below += p
	}
	r.A = a
	if mBase < 2 || mNew < 2 {
		return r
	}
	m1, m2 := float64(mBase), float64(mNew)
	n := m1 + m2
	var ties float64
	for k := range base {
		t := m1*float64(base[k])/nb + m2*float64(new[k])/nn
		ties += t*t*t - t
	}
	v := ((n + 1) - ties/(n*(n-1))) / (12 * m1 * m2)
	if v <= 1e-15 {
		r.P = 1
		return r
	}
	r.Z = (a - 0.5) / math.Sqrt(v)
	r.P = math.Min(1, 2*distuv.UnitNormal.Survival((math.Abs(a-0.5)-margin)/math.Sqrt(v)))
	return r
}

func histTotal(h []uint64) float64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return float64(n)
}

// BenjaminiHochberg returns the Benjamini–Hochberg adjusted p-values
// (q-values) of p (Benjamini & Hochberg 1995, "Controlling the false
// discovery rate", J. R. Statist. Soc. B 57:289–300). With the m p-values
// that are not NaN sorted as p_(1) ≤ … ≤ p_(m),
//
//	q_(i) = min_{j ≥ i} min(1, m · p_(j) / j)
//
// and rejecting every hypothesis with q ≤ α keeps the expected proportion
// of false discoveries among the rejections at most α (for independent or
// positively dependent tests). NaN p-values stay NaN and do not count in m.
func BenjaminiHochberg(p []float64) []float64 {
	q := make([]float64, len(p))
	idx := make([]int, 0, len(p))
	for i, v := range p {
		q[i] = math.NaN()
		if !math.IsNaN(v) {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	m := float64(len(idx))
	next := 1.0
	for r := len(idx) - 1; r >= 0; r-- {
		v := math.Min(next, m*p[idx[r]]/float64(r+1))
		v = math.Min(v, 1)
		q[idx[r]] = v
		next = v
	}
	return q
}
