package instrument

import "math"

// HistQuantile returns the q-quantile (0 ≤ q ≤ 1) of the call durations
// that a log2 histogram counts (see HistBuckets), in ns. It finds the
// bucket i in which the cumulative count first reaches q·N and
// interpolates linearly inside it:
//
//	Q(q) = lo(i) + (hi(i) − lo(i)) · (q·N − C(i−1)) / n(i)
//
// where [lo(i), hi(i)) = [2^(i−1), 2^i) is the bucket's range, C(i−1) the
// count below it and n(i) its own count, so the error is below the
// bucket's width (a factor of two). Two buckets hold no range to
// interpolate in: bucket 0 holds calls of exactly 0 ns, so a quantile
// there is 0, and the last bucket also holds every longer call, so a
// quantile there is its lower bound 2^(HistBuckets−2), a lower bound.
//
// A histogram that counts nothing has no quantile: HistQuantile returns
// NaN, which the reports print as "—" and write as null, never a made-up
// 0. It panics if q is outside [0, 1], as gonum's stat.Quantile does.
func HistQuantile(h *[HistBuckets]uint64, q float64) float64 {
	if !(q >= 0 && q <= 1) {
		panic("instrument: quantile out of bounds")
	}
	var total uint64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	var below float64
	last := 0
	for i, c := range h {
		if c == 0 {
			continue
		}
		if below+float64(c) >= rank {
			return bucketValue(i, (rank-below)/float64(c))
		}
		below += float64(c)
		last = i
	}
	// Rounding left q·N above the sum of the counts (past 2^53 calls).
	return bucketValue(last, 1)
}

// bucketValue is the duration at fraction frac (0 to 1) of the way
// through bucket i (see HistQuantile).
func bucketValue(i int, frac float64) float64 {
	if i == 0 {
		return 0
	}
	lo := math.Ldexp(1, i-1)
	if i == HistBuckets-1 {
		return lo
	}
	return lo + lo*min(max(frac, 0), 1)
}
