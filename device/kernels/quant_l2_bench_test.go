package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkMatVecQL2 measures the kernels' compute rate on one thread with
// the weights in L2 (no DRAM limit): the headroom over the memory bound.
func BenchmarkMatVecQL2(b *testing.B) {
	defer SetThreads(0)
	SetThreads(1)
	for _, typ := range qTypes() {
		for lvl := qMaxLevel; lvl >= 0; lvl-- {
			b.Run(fmt.Sprintf("%s/level%d", typ, lvl), func(b *testing.B) {
				saved := qLevel
				defer func() { qLevel = saved }()
				qLevel = lvl
				const in, out = 4096, 128
				r := rand.New(rand.NewPCG(1, 2))
				w := qRandWeights(r, typ, in, out)
				x := qRandX(r, in)
				y := make([]float32, out)
				b.SetBytes(int64(len(w)))
				best := time.Duration(1 << 62)
				for b.Loop() {
					t0 := time.Now()
					MatMulQ(typ, y, x, w, 1, in, out)
					best = min(best, time.Since(t0))
				}
				b.ReportMetric(float64(len(w))/best.Seconds()/1e9, "best-GB/s")
			})
		}
	}
}

// BenchmarkBatchQL2 measures the batched path's arithmetic rate on one
// thread with the weights in L2: GMAC/s against the core's FMA peak.
func BenchmarkBatchQL2(b *testing.B) {
	defer SetThreads(0)
	SetThreads(1)
	for _, typ := range qTypes() {
		for lvl := qMaxLevel; lvl >= max(1, qMaxLevel-1); lvl-- {
			b.Run(fmt.Sprintf("%s/level%d/n=16", typ, lvl), func(b *testing.B) {
				saved := qLevel
				defer func() { qLevel = saved }()
				qLevel = lvl
				const in, out, n = 4096, 64, 16
				r := rand.New(rand.NewPCG(1, 2))
				w := qRandWeights(r, typ, in, out)
				x := qRandX(r, n*in)
				y := make([]float32, n*out)
				best := time.Duration(1 << 62)
				for b.Loop() {
					t0 := time.Now()
					MatMulQ(typ, y, x, w, n, in, out)
					best = min(best, time.Since(t0))
				}
				b.ReportMetric(float64(n*in*out)/best.Seconds()/1e9, "best-GMAC/s")
			})
		}
	}
}
