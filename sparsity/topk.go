package sparsity

import (
	"math"
	"math/bits"
	"slices"
)

// TopKAbs returns the k indices with the largest |a[j]| (the CATS-like
// per-token selection, applied to a = silu(W_gate x)), sorted ascending. Ties
// go to the lower index, NaN ranks below every number, k is clamped to
// [0, len(a)]. It runs in O(len(a)) expected time: a quickselect finds the
// k-th ranked element and one ascending scan collects everything that ranks at
// or above it, so no sort is needed. It allocates; hot paths use a Selector.
func TopKAbs(a []float32, k int) []int32 {
	var s Selector
	return s.TopKAbs(nil, a, k)
}

// TopKAbsSum is TopKAbs over the column sums of |a| for a rows x n row-major
// matrix: with beams, the w branches of one step share a single neuron set so
// that one set of rows is loaded, chosen by sum over branches of |a|.
func TopKAbsSum(a []float32, rows, k int) []int32 {
	var s Selector
	return s.TopKAbsSum(nil, a, rows, k)
}

// Selector holds scratch space so repeated per-token selections do not
// allocate. The zero value is ready to use; it is not safe for concurrent use.
type Selector struct {
	comp []uint64
	sums []float32
}

// TopKAbs is the allocation-free form of the package-level TopKAbs: the result
// is appended to dst[:0] (pass the previous result to reuse it).
func (s *Selector) TopKAbs(dst []int32, a []float32, k int) []int32 {
	return s.top(dst[:0], a, k)
}

// TopKAbsSum is the allocation-free form of the package-level TopKAbsSum.
// It returns nil when len(a) is not a multiple of rows (rows <= 0 included).
func (s *Selector) TopKAbsSum(dst []int32, a []float32, rows, k int) []int32 {
	if rows <= 0 || len(a)%rows != 0 {
		return nil
	}
	n := len(a) / rows
	s.sums = slices.Grow(s.sums[:0], n)[:n]
	clear(s.sums)
	for r := range rows {
		for j, v := range a[r*n : (r+1)*n] {
			if v == v { // NaN adds nothing
				s.sums[j] += float32(math.Abs(float64(v)))
			}
		}
	}
	return s.top(dst[:0], s.sums, k)
}

// magKey maps |v| to a uint32 whose order is the order of magnitudes, with NaN
// below everything: the bits of a non-negative float32 already sort like the
// float, so |v| becomes bits+1 and NaN becomes 0.
func magKey(v float32) uint32 {
	b := math.Float32bits(v) & 0x7fffffff
	if b > 0x7f800000 { // NaN
		return 0
	}
	return b + 1
}

// top appends to dst, in ascending index order, the k indices of v that rank
// first, where j ranks before i when |v[j]| > |v[i]|, or they are equal and
// j < i. Packing magKey<<32 | ^index into one uint64 turns that strict total
// order into plain integer order, so the quickselect compares machine words
// instead of chasing indices.
func (s *Selector) top(dst []int32, v []float32, k int) []int32 {
	n := len(v)
	k = min(max(k, 0), n)
	switch k {
	case 0:
		return dst
	case n:
		for j := range n {
			dst = append(dst, int32(j))
		}
		return dst
	}
	s.comp = slices.Grow(s.comp[:0], n)[:n]
	for j, x := range v {
		s.comp[j] = uint64(magKey(x))<<32 | uint64(^uint32(j))
	}
	pivot := selectDesc(s.comp, k-1)
	// Everything ranking at or above the k-th ranked element is in the top k;
	// scanning in index order yields them sorted. Only the key half needs a
	// look for most elements: the index half matters on a tie with the pivot.
	pk := uint32(pivot >> 32)
	dst = slices.Grow(dst, k)
	for j, x := range v {
		if mk := magKey(x); mk > pk || (mk == pk && ^uint32(j) >= uint32(pivot)) {
			dst = append(dst, int32(j))
		}
	}
	return dst
}

// selectDesc reorders v so that v[t] is the element of rank t in descending
// order, and returns it. Hoare partitioning around a median of three, with an
// introselect-style depth limit: past 2*log2(n) rounds the remaining range is
// sorted, which bounds the worst case at O(n log n).
func selectDesc(v []uint64, t int) uint64 {
	lo, hi := 0, len(v)-1
	depth := 2 * bits.Len(uint(len(v)))
	for lo < hi {
		if depth == 0 {
			r := v[lo : hi+1]
			slices.Sort(r)
			slices.Reverse(r)
			return v[t]
		}
		depth--
		a, b, c := v[lo], v[lo+(hi-lo)/2], v[hi]
		p := max(min(a, b), min(max(a, b), c))
		i, j := lo, hi
		for i <= j {
			for v[i] > p {
				i++
			}
			for v[j] < p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		// [lo, j] >= p, (j, i) == p, [i, hi] <= p.
		switch {
		case t <= j:
			hi = j
		case t >= i:
			lo = i
		default:
			return v[t]
		}
	}
	return v[t]
}
