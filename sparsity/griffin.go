package sparsity

import (
	"fmt"
	"math"
	"slices"
)

// Griffin accumulates one layer's per-sequence neuron statistics during
// prefill. For each prompt token's FFN activation h = silu(W_gate x)*(W_up x)
// (one row of length hidden), h is normalised to unit L2 norm and then
// stat_j = sqrt(sum over tokens of h_j^2). Normalising per token stops a few
// tokens with large activations from choosing the set on their own.
//
// Sums are kept in float64: a long prompt adds thousands of small squares and
// float32 would lose the small ones. Use one Griffin per layer; it is not safe
// for concurrent use.
type Griffin struct {
	hidden  int
	sum     []float64 // sum over tokens of (h_j/||h||)^2
	tokens  int       // rows that contributed
	skipped int       // rows with a zero or non-finite norm
}

// NewGriffin returns an empty accumulator for an FFN with hidden neurons.
func NewGriffin(hidden int) *Griffin {
	return &Griffin{hidden: max(hidden, 0), sum: make([]float64, max(hidden, 0))}
}

// Hidden is the number of neurons the accumulator was made for.
func (g *Griffin) Hidden() int { return g.hidden }

// Tokens is the number of rows that contributed to the statistics.
func (g *Griffin) Tokens() int { return g.tokens }

// Skipped is the number of rows left out because their L2 norm was zero or
// not finite (a zero row has no direction; a NaN row would poison every stat).
func (g *Griffin) Skipped() int { return g.skipped }

// Reset clears the statistics for a new sequence, keeping the allocation.
func (g *Griffin) Reset() {
	clear(g.sum)
	g.tokens, g.skipped = 0, 0
}

// Add accumulates rows activations; h is rows x hidden, row-major.
func (g *Griffin) Add(h []float32, rows int) error {
	if rows < 0 || len(h) != rows*g.hidden {
		return fmt.Errorf("griffin: got %d values for %d rows of %d neurons", len(h), rows, g.hidden)
	}
	for r := range rows {
		row := h[r*g.hidden : (r+1)*g.hidden]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		if !(ss > 0) || math.IsInf(ss, 0) {
			g.skipped++
			continue
		}
		inv := 1 / ss // (h_j/||h||)^2 = h_j^2 / ||h||^2
		for j, v := range row {
			g.sum[j] += float64(v) * float64(v) * inv
		}
		g.tokens++
	}
	return nil
}

// Stats returns stat_j = sqrt(sum over tokens of (h_j/||h||)^2) for every
// neuron (a fresh slice).
func (g *Griffin) Stats() []float64 {
	out := make([]float64, g.hidden)
	for j, s := range g.sum {
		out[j] = math.Sqrt(s)
	}
	return out
}

// Select returns the KeepCount(keep, hidden) neurons with the largest
// statistic (ties go to the lower index), sorted ascending. With no
// statistics yet every stat is zero and the lowest indices are returned.
func (g *Griffin) Select(keep float64) []int32 {
	k := KeepCount(keep, g.hidden)
	// sqrt is monotonic, so ranking the sums ranks the stats; ranking the
	// float64 sums directly avoids float32 rounding merging distinct stats.
	// A full sort is fine: Select runs once per sequence per layer.
	idx := make([]int32, g.hidden)
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		switch {
		case g.sum[a] > g.sum[b]:
			return -1
		case g.sum[a] < g.sum[b]:
			return 1
		}
		return int(a - b)
	})
	out := idx[:k]
	slices.Sort(out)
	return out
}
