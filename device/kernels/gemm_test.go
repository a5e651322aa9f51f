package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestGemmTiling holds the batched products, with the AVX2 and (where the
// CPU has them) AVX-512 kernels, to their references on shapes that
// exercise every tile choice (batches of 2 to 200 rows: 4-, 8- and
// 16-lane tiles, 64-row tiles with 16/32/48-row remainders), partial panels
// and strips, k blocks with tails and more than one k superblock.
func TestGemmTiling(t *testing.T) {
	if gemmPlanFor('R', 2, 100) == nil {
		t.Skip("no batched kernels on this CPU/build")
	}
	type sh struct{ n, in, out int }
	var shapes []sh
	for _, n := range []int{2, 4, 5, 8, 9, 16, 17, 31, 32, 33, 48, 63, 64, 65, 80, 100, 130, 200} {
		shapes = append(shapes, sh{n, 37, 61}, sh{n, 300, 29}, sh{n, 70, 8}, sh{n, 33, 3})
	}
	// In > the k superblock (4096 for 16 rows, 1024 for 64, 256 for 200).
	shapes = append(shapes, sh{16, 4200, 30}, sh{64, 1100, 13}, sh{200, 600, 7}, sh{3, 4500, 57})
	for _, c := range kernelCases {
		for _, s := range shapes {
			r := rand.New(rand.NewPCG(uint64(s.n), uint64(s.in*1000+s.out)))
			x := randF32(r, s.n*s.in)
			wf, wh := randWeights(r, c.kind, s.in*s.out)
			want := make([]float32, s.n*s.out)
			runRef(c, want, x, wf, wh, s.n, s.in, s.out)
			bound := absBound(x, weightsF32(wf, wh, convFor(c.kind)), s.n, s.in, s.out, c.trans)
			eachImpl(func(impl string) {
				if impl == "plain" {
					return // TestMatMulVsRef covers it; these shapes are for the tiles
				}
				for _, threads := range []int{1, 2} {
					got := make([]float32, s.n*s.out)
					withThreads(threads, func() { runFast(c, got, x, wf, wh, s.n, s.in, s.out) })
					checkClose(t, fmt.Sprintf("%s %s threads=%d n=%d in=%d out=%d", c.name, impl, threads, s.n, s.in, s.out), got, want, bound)
				}
			})
		}
	}
}
