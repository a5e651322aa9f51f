package engine

import (
	"math/rand"
	"sort"
	"testing"

	"offload/model"
	"offload/pager"
)

// BenchmarkGatherBundled compares gathering half of a layer's neuron bundles
// (70B shape: rows of gate|up|down = 3 x 8192 bf16 = 48 KiB) into staging,
// split into their three parts, with one contiguous copy of the same number
// of bytes: the row-gather path should reach >= 70% of the contiguous rate.
func BenchmarkGatherBundled(b *testing.B) {
	const dim, hidden = 8192, 4096 // 4096 of 70B's 28672 neurons: 192 MiB
	rowB := 3 * dim * 2
	data := make([]byte, hidden*rowB)
	for i := range data {
		data[i] = byte(i * 7)
	}
	bundle := &pager.Tensor{Name: "bundle", DType: pager.BF16, Shape: []int{hidden, 3 * dim}, Data: data}
	L := &model.Layer{Bundle: bundle}
	r := rand.New(rand.NewSource(1))
	perm := r.Perm(hidden)[:hidden/2]
	sort.Ints(perm)
	idx := make([]int32, len(perm))
	for i, p := range perm {
		idx[i] = int32(p)
	}
	var lo layout
	ffnLayout(&lo, nil, L, dim, hidden, idx, 0)
	staging := make([]byte, lo.staged)
	n := int64(len(idx) * rowB)
	workers := 2
	b.Run("contiguous", func(b *testing.B) {
		b.SetBytes(n)
		for i := 0; i < b.N; i++ {
			parallel(int(n/int64(rowB)), workers, func(i0, i1 int) {
				copy(staging[int64(i0)*int64(rowB):int64(i1)*int64(rowB)], data[int64(i0)*int64(rowB):int64(i1)*int64(rowB)])
			})
		}
	})
	b.Run("gather", func(b *testing.B) {
		var lo layout
		ffnLayout(&lo, nil, L, dim, hidden, idx, workers)
		b.SetBytes(n)
		for i := 0; i < b.N; i++ {
			lo.items[0].gather(staging)
		}
	})
}

func BenchmarkGatherRowsOnly(b *testing.B) {
	const dim, hidden = 8192, 4096
	rowB := 3 * dim * 2
	data := make([]byte, hidden*rowB)
	for i := range data {
		data[i] = byte(i * 7)
	}
	r := rand.New(rand.NewSource(1))
	perm := r.Perm(hidden)[:hidden/2]
	sort.Ints(perm)
	staging := make([]byte, len(perm)*rowB)
	b.SetBytes(int64(len(staging)))
	for i := 0; i < b.N; i++ {
		parallel(len(perm), 2, func(i0, i1 int) {
			for k := i0; k < i1; k++ {
				copy(staging[k*rowB:(k+1)*rowB], data[perm[k]*rowB:(perm[k]+1)*rowB])
			}
		})
	}
}
