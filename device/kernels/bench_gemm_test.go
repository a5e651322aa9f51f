package kernels

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// The batched-product benchmarks use the Llama-3-8B FFN shape: W is
// [14336][4096] for MatMul (gate, up) and [4096][14336] read transposed for
// MatMulT (down stored [in][out]); 235 MB in f32, 117 MB in f16/bf16, far
// larger than the caches. Every figure is paired with a ceiling measured in
// the same loop (FMA peak, memory read), so ratios survive a noisy machine.
const gemmOut, gemmIn = 14336, 4096

var (
	gemmOnce sync.Once
	gemmWF   []float32
	gemmWF16 []uint16
	gemmWBF  []uint16
	gemmX    []float32
	gemmY    []float32
)

func gemmData() {
	gemmOnce.Do(func() {
		var pat [1021]float32
		for i := range pat {
			pat[i] = float32(i%61-30) / 37
		}
		gemmWF = make([]float32, gemmOut*gemmIn)
		for i := range gemmWF {
			gemmWF[i] = pat[i%len(pat)]
		}
		gemmWF16 = make([]uint16, len(gemmWF))
		F32ToF16(gemmWF16, gemmWF)
		gemmWBF = make([]uint16, len(gemmWF))
		F32ToBF16(gemmWBF, gemmWF)
		gemmX = make([]float32, 512*gemmOut)
		for i := range gemmX {
			gemmX[i] = pat[(i*7)%len(pat)]
		}
		gemmY = make([]float32, 512*gemmOut)
	})
}

// fmaPeak is the FMA peak in GFLOP/s of Threads() goroutines running a
// register-only FMA loop (fmaLoop) at once: best of three runs of ~5 ms.
func fmaPeak() float64 {
	const iters = 1 << 20
	t := Threads()
	best := 0.0
	for range 3 {
		var wg sync.WaitGroup
		var flops [64]float64
		t0 := time.Now()
		for i := range t {
			wg.Go(func() { flops[i%64] = fmaLoop(iters) })
		}
		wg.Wait()
		d := time.Since(t0)
		var sum float64
		for _, f := range flops {
			sum += f
		}
		best = max(best, sum/d.Seconds()/1e9)
	}
	return best
}

type gemmCase struct {
	name  string
	words []uint64 // the weights, read by the memory ceiling
	run   func(n int)
}

func gemmCases() []gemmCase {
	gemmData()
	o, i := gemmOut, gemmIn
	y, x := gemmY, gemmX
	return []gemmCase{
		{"MatMulF32", unsafeWords(gemmWF), func(n int) { MatMulF32(y, x, gemmWF, n, i, o) }},
		{"MatMulF16", unsafeWords16(gemmWF16), func(n int) { MatMulF16(y, x, gemmWF16, n, i, o) }},
		{"MatMulBF16", unsafeWords16(gemmWBF), func(n int) { MatMulBF16(y, x, gemmWBF, n, i, o) }},
		{"MatMulTF32", unsafeWords(gemmWF), func(n int) { MatMulTF32(y, x, gemmWF, n, o, i) }},
		{"MatMulTF16", unsafeWords16(gemmWF16), func(n int) { MatMulTF16(y, x, gemmWF16, n, o, i) }},
	}
}

// BenchmarkGEMM reports, for batches of 1 to 256 rows, the product's
// GFLOP/s against the FMA peak measured in the same loop (best of each over
// the iterations), and the weight GB/s against a parallel read of the same
// weights (the memory ceiling), also in the same loop.
//
//	go test ./device/kernels -run '^$' -bench 'GEMM' -benchtime 5x
func BenchmarkGEMM(b *testing.B) {
	for _, c := range gemmCases() {
		for _, n := range []int{1, 4, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(b *testing.B) {
				best, bestRead := time.Duration(1<<62), time.Duration(1<<62)
				peak := 0.0
				var sink uint64
				for b.Loop() {
					peak = max(peak, fmaPeak())
					t0 := time.Now()
					sink |= memRead(c.words)
					bestRead = min(bestRead, time.Since(t0))
					t0 = time.Now()
					c.run(n)
					best = min(best, time.Since(t0))
				}
				gflops := 2 * float64(n) * gemmOut * gemmIn / best.Seconds() / 1e9
				b.ReportMetric(gflops, "GFLOP/s")
				b.ReportMetric(peak, "peak-GFLOP/s")
				b.ReportMetric(gflops/peak, "of-peak")
				bytes := 8 * float64(len(c.words))
				gbs := bytes / best.Seconds() / 1e9
				read := bytes / bestRead.Seconds() / 1e9
				b.ReportMetric(gbs, "weight-GB/s")
				b.ReportMetric(read, "memread-GB/s")
				b.ReportMetric(gbs/read, "of-memread")
				if sink == 1<<63 {
					b.Log(sink)
				}
			})
		}
	}
}

// BenchmarkPasses alternates a 16-row product with a 1-row one over the
// same weights and reports how many single-row passes the 16 rows cost (the
// Sirius check of a 16-token window against one decode step).
//
//	go test ./device/kernels -run '^$' -bench 'Passes' -benchtime 10x
func BenchmarkPasses(b *testing.B) {
	for _, c := range gemmCases() {
		b.Run(c.name, func(b *testing.B) {
			best1, best16 := time.Duration(1<<62), time.Duration(1<<62)
			for b.Loop() {
				t0 := time.Now()
				c.run(1)
				t1 := time.Now()
				c.run(16)
				t2 := time.Now()
				best1 = min(best1, t1.Sub(t0))
				best16 = min(best16, t2.Sub(t1))
			}
			b.ReportMetric(float64(best1.Microseconds())/1e3, "n1-ms")
			b.ReportMetric(float64(best16.Microseconds())/1e3, "n16-ms")
			b.ReportMetric(float64(best16)/float64(best1), "passes")
		})
	}
}
