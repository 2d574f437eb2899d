package search

import (
	"math"
	"sync"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// NewInterval returns the mean of the per-round values xs with its
// two-sided Student's t confidence interval at the given level:
//
//	mean ± t(1-(1-level)/2; n-1) · s/√n
//
// where s is the sample standard deviation (n-1 in the denominator) and
// t(p; ν) the p-quantile of Student's t with ν degrees of freedom. One
// value carries no information about the spread: its interval is
// unbounded (−Inf, +Inf), which Above and Below never call significant,
// the reports print as "—" and run.json holds as null bounds (see
// Interval.UnmarshalJSON); it is never [mean, mean], which would claim no
// spread at all. With no values it is the zero Interval (N == 0).
// Rounds are treated as independent draws of the node's share:
// a round is long (hundreds of milliseconds, thousands of calls) compared
// with any one call.
func NewInterval(xs []float64, level float64) Interval {
	n := len(xs)
	switch n {
	case 0:
		return Interval{}
	case 1:
		return Interval{Mean: xs[0], Low: math.Inf(-1), High: math.Inf(1), N: 1}
	}
	mean, sd := stat.MeanStdDev(xs, nil)
	half := tQuantile(level, n-1) * sd / math.Sqrt(float64(n))
	return Interval{Mean: mean, Low: mean - half, High: mean + half, N: n}
}

// tQuantiles holds the Student-t quantiles tQuantile computed, by level
// and degrees of freedom.
var tQuantiles sync.Map // tKey → float64

type tKey struct {
	level float64
	df    int
}

// tQuantile is the two-sided Student-t quantile of level with df degrees
// of freedom. Each is computed once: the hunt asks for every node's
// interval twice a round, and the inverse incomplete beta behind a
// quantile took half of autoprof's CPU in the rounds of a truth
// benchmark hunt (docs/overhead.md).
func tQuantile(level float64, df int) float64 {
	k := tKey{level, df}
	if q, ok := tQuantiles.Load(k); ok {
		return q.(float64)
	}
	q := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(df)}.Quantile(1 - (1-level)/2)
	tQuantiles.Store(k, q)
	return q
}

// scaled is the interval of k times the variable: mean and bounds
// multiplied by k (k >= 0).
func (iv Interval) scaled(k float64) Interval {
	iv.Mean, iv.Low, iv.High = iv.Mean*k, iv.Low*k, iv.High*k
	return iv
}

// Above reports whether the interval lies wholly above x: the mean is
// significantly greater than x at the interval's level (one-sided test at
// (1-level)/2).
func (iv Interval) Above(x float64) bool { return iv.N >= 2 && iv.Low > x }

// Below reports whether the interval lies wholly below x.
func (iv Interval) Below(x float64) bool { return iv.N >= 2 && iv.High < x }
