package sparsity

import (
	"math"
	"math/bits"
	"slices"
)

// CalibrateThreshold returns a threshold t such that about a fraction keep of
// the magnitudes |a| over all samples exceed it: t is the (k+1)-th largest
// magnitude with k = KeepCount(keep, total), so exactly k values are above t
// when there are no ties at the boundary (fewer when there are). This is how
// the original CATS fixes its per-layer cut-off offline instead of running a
// top-k every token. NaN values are ignored; with no values it returns 0.
func CalibrateThreshold(samples [][]float32, keep float64) float32 {
	total := 0
	for _, s := range samples {
		total += len(s)
	}
	vals := make([]float32, 0, total)
	for _, s := range samples {
		for _, v := range s {
			if v == v {
				vals = append(vals, float32(math.Abs(float64(v))))
			}
		}
	}
	if len(vals) == 0 {
		return 0
	}
	k := KeepCount(keep, len(vals))
	if k == len(vals) {
		// Everything must pass: the largest float below the minimum.
		return math.Nextafter32(slices.Min(vals), float32(math.Inf(-1)))
	}
	return nthLargest(vals, k)
}

// AboveThreshold returns, ascending, the indices j with |a[j]| > t (NaN never
// passes).
func AboveThreshold(a []float32, t float32) []int32 {
	return AppendAboveThreshold(nil, a, t)
}

// AppendAboveThreshold is AboveThreshold appending to dst, for hot paths that
// reuse a slice.
func AppendAboveThreshold(dst []int32, a []float32, t float32) []int32 {
	for j, v := range a {
		if float32(math.Abs(float64(v))) > t {
			dst = append(dst, int32(j))
		}
	}
	return dst
}

// nthLargest returns the value of rank r (0-based) in descending order,
// reordering v. Three-way partitioning keeps runs of equal values linear.
func nthLargest(v []float32, r int) float32 {
	lo, hi := 0, len(v) // half-open
	depth := 2 * bits.Len(uint(len(v)))
	for hi-lo > 1 {
		if depth == 0 {
			slices.SortFunc(v[lo:hi], func(a, b float32) int {
				switch {
				case a > b:
					return -1
				case a < b:
					return 1
				}
				return 0
			})
			return v[r]
		}
		depth--
		a, b, c := v[lo], v[lo+(hi-lo)/2], v[hi-1]
		p := max(min(a, b), min(max(a, b), c)) // median of three
		// Dutch flag, descending: [lo,gt) > p, [gt,i) == p, (lt,hi) < p.
		gt, i, lt := lo, lo, hi-1
		for i <= lt {
			switch {
			case v[i] > p:
				v[gt], v[i] = v[i], v[gt]
				gt++
				i++
			case v[i] < p:
				v[i], v[lt] = v[lt], v[i]
				lt--
			default:
				i++
			}
		}
		switch {
		case r < gt:
			hi = gt
		case r <= lt:
			return p
		default:
			lo = lt + 1
		}
	}
	return v[r]
}
