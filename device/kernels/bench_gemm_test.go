package kernels

import (
	"fmt"
	"sync"
	"syscall"
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

// cpuTime is the CPU time this process has used (all threads).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed runs f and returns its wall time and the CPU time the process used
// meanwhile. On a machine shared with other work, wall time includes the
// time the scheduler gave away; CPU time does not, so a rate per CPU
// second, set against the FMA loop's rate per CPU second, measures the
// kernel's efficiency whatever the load (it does not see a thread idling
// for another, which wall time at low load does).
func timed(f func()) (wall, cpu time.Duration) {
	c0, t0 := cpuTime(), time.Now()
	f()
	return time.Since(t0), cpuTime() - c0
}

// fmaPeak is the FMA peak of Threads() goroutines running a register-only
// FMA loop (fmaLoop) at once, in GFLOP per wall second and per CPU second:
// best of three runs of ~5 ms.
func fmaPeak() (wall, cpu float64) {
	const iters = 1 << 20
	t := Threads()
	for range 3 {
		var flops [64]float64
		w, c := timed(func() {
			var wg sync.WaitGroup
			for i := range t {
				wg.Go(func() { flops[i%64] = fmaLoop(iters) })
			}
			wg.Wait()
		})
		var sum float64
		for _, f := range flops {
			sum += f
		}
		wall = max(wall, sum/w.Seconds()/1e9)
		cpu = max(cpu, sum/c.Seconds()/1e9)
	}
	return wall, cpu
}

type gemmCase struct {
	name  string
	words []uint64 // the weights, read by the memory ceiling
	run   func(n int)
}

func gemmCases() []gemmCase {
	gemmData()
	benchKernels()
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
// GFLOP/s against the FMA peak measured in the same loop, and the weight
// GB/s against a parallel read of the same weights (the memory ceiling),
// also in the same loop; best of each over the iterations. Every rate is
// given per wall second and per CPU second (cpu-...; see timed): on a
// shared machine the latter are the ones that hold still. KERNELS=avx2
// measures the AVX2 set on an AVX-512 machine, KERNELS=plain the Go path.
//
//	go test ./device/kernels -run '^$' -bench 'GEMM' -benchtime 5x
func BenchmarkGEMM(b *testing.B) {
	for _, c := range gemmCases() {
		for _, n := range []int{1, 4, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(b *testing.B) {
				inf := time.Duration(1 << 62)
				best, bestCPU, read, readCPU := inf, inf, inf, inf
				var peak, peakCPU float64
				var sink uint64
				for b.Loop() {
					pw, pc := fmaPeak()
					peak, peakCPU = max(peak, pw), max(peakCPU, pc)
					w, cpu := timed(func() { sink |= memRead(c.words) })
					read, readCPU = min(read, w), min(readCPU, cpu)
					w, cpu = timed(func() { c.run(n) })
					best, bestCPU = min(best, w), min(bestCPU, cpu)
				}
				flops := 2 * float64(n) * gemmOut * gemmIn
				bytes := 8 * float64(len(c.words))
				rate := func(x float64, d time.Duration) float64 { return x / d.Seconds() / 1e9 }
				b.ReportMetric(rate(flops, best), "GFLOP/s")
				b.ReportMetric(peak, "peak-GFLOP/s")
				b.ReportMetric(rate(flops, best)/peak, "of-peak")
				b.ReportMetric(rate(flops, bestCPU)/peakCPU, "cpu-of-peak")
				b.ReportMetric(rate(bytes, best), "weight-GB/s")
				b.ReportMetric(rate(bytes, read), "memread-GB/s")
				b.ReportMetric(float64(read)/float64(best), "of-memread")
				b.ReportMetric(float64(readCPU)/float64(bestCPU), "cpu-of-memread")
				if sink == 1<<63 {
					b.Log(sink)
				}
			})
		}
	}
}

// BenchmarkPasses alternates a 16-row product with a 1-row one over the
// same weights and reports how many single-row passes the 16 rows cost (the
// Sirius check of a 16-token window against one decode step), by wall time
// and by CPU time, best of each.
//
//	go test ./device/kernels -run '^$' -bench 'Passes' -benchtime 10x
func BenchmarkPasses(b *testing.B) {
	for _, c := range gemmCases() {
		b.Run(c.name, func(b *testing.B) {
			inf := time.Duration(1 << 62)
			w1, c1, w16, c16 := inf, inf, inf, inf
			for b.Loop() {
				w, cpu := timed(func() { c.run(1) })
				w1, c1 = min(w1, w), min(c1, cpu)
				w, cpu = timed(func() { c.run(16) })
				w16, c16 = min(w16, w), min(c16, cpu)
			}
			b.ReportMetric(float64(w1.Microseconds())/1e3, "n1-ms")
			b.ReportMetric(float64(w16.Microseconds())/1e3, "n16-ms")
			b.ReportMetric(float64(w16)/float64(w1), "passes")
			b.ReportMetric(float64(c16)/float64(c1), "cpu-passes")
		})
	}
}
