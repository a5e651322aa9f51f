package kernels

import (
	"sync"
	"testing"
	"time"
)

// The big benchmarks use matrices far larger than any cache (8192 x 8192:
// 128 MiB in bf16/f16, 256 MiB in f32) so they measure streaming weights from
// DRAM, the cost of a decode step. b.SetBytes is the weight bytes, so MB/s is
// directly comparable with BenchmarkMemRead on a buffer of the same size.
const benchDim = 8192

var (
	benchOnce sync.Once
	benchWF   []float32
	benchWH   []uint16
	benchX    []float32
	benchY    []float32
)

func benchData() {
	benchOnce.Do(func() {
		// A short pattern repeated: cheap to build, and every value is a
		// normal number (subnormals would slow the FMAs on some CPUs).
		var pat [1021]float32
		for i := range pat {
			pat[i] = float32(i%61-30) / 37
		}
		benchWF = make([]float32, benchDim*benchDim)
		benchWH = make([]uint16, benchDim*benchDim)
		for i := range benchWF {
			benchWF[i] = pat[i%len(pat)]
		}
		F32ToBF16(benchWH, benchWF)
		benchX = make([]float32, 16*benchDim)
		for i := range benchX {
			benchX[i] = pat[(i*7)%len(pat)]
		}
		benchY = make([]float32, 16*benchDim)
	})
}

func BenchmarkMatVecF32(b *testing.B) {
	benchData()
	b.SetBytes(int64(len(benchWF)) * 4)
	for b.Loop() {
		MatMulF32(benchY, benchX, benchWF, 1, benchDim, benchDim)
	}
}

func BenchmarkMatVecBF16(b *testing.B) {
	benchData()
	b.SetBytes(int64(len(benchWH)) * 2)
	for b.Loop() {
		MatMulBF16(benchY, benchX, benchWH, 1, benchDim, benchDim)
	}
}

// BenchmarkMatVecF16 reuses the bf16 bits as f16 weights: the values differ
// but they are all finite, and speed does not depend on them.
func BenchmarkMatVecF16(b *testing.B) {
	benchData()
	b.SetBytes(int64(len(benchWH)) * 2)
	for b.Loop() {
		MatMulF16(benchY, benchX, benchWH, 1, benchDim, benchDim)
	}
}

func BenchmarkMatVecTBF16(b *testing.B) {
	benchData()
	b.SetBytes(int64(len(benchWH)) * 2)
	for b.Loop() {
		MatMulTBF16(benchY, benchX, benchWH, 1, benchDim, benchDim)
	}
}

// BenchmarkMatMulBF16Batch16 is a 16-row batch (prefill / window check) over
// the same weights; SetBytes is still one pass of weights, so its MB/s next to
// BenchmarkMatVecBF16's says how close the batch comes to costing one pass.
func BenchmarkMatMulBF16Batch16(b *testing.B) {
	benchData()
	b.SetBytes(int64(len(benchWH)) * 2)
	for b.Loop() {
		MatMulBF16(benchY, benchX, benchWH, 16, benchDim, benchDim)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/16, "ns/row")
}

func BenchmarkMatMulTBF16Batch16(b *testing.B) {
	benchData()
	b.SetBytes(int64(len(benchWH)) * 2)
	for b.Loop() {
		MatMulTBF16(benchY, benchX, benchWH, 16, benchDim, benchDim)
	}
}

// BenchmarkMemRead is the ceiling: the same number of goroutines as the
// kernels use, each reading its share of a buffer the size of the weights
// with a vector OR (no arithmetic to speak of). The buffer is the f32 weights
// viewed as words: same memory, no extra allocation. Reading the same buffer
// back to back lets a large last-level cache keep part of it, which can
// flatter this figure; BenchmarkMatVecVsMemRead, which interleaves the two,
// gives the fairer ratio.
func BenchmarkMemRead(b *testing.B) {
	benchData()
	for _, bc := range []struct {
		name string
		n    int // uint64 words
	}{
		{"128MiB", len(benchWH) / 4},
		{"256MiB", len(benchWF) / 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var sink uint64
			b.SetBytes(int64(bc.n) * 8)
			for b.Loop() {
				sink |= memReadOnce(bc.n)
			}
			if sink == 1<<63 {
				b.Log(sink) // keep the reads observable
			}
		})
	}
}

// memReadOnce reads the first n words of the weights in parallel, exactly as
// BenchmarkMemRead does.
func memReadOnce(n int) uint64 { return memRead(unsafeWords(benchWF)[:n]) }

// memRead ORs words together on the pool, as the products would share out
// their weights.
func memRead(words []uint64) uint64 {
	n := len(words)
	var mu sync.Mutex
	var acc uint64
	parallelFor(n/512, n, 1, func(lo, hi int) {
		v := readOr(words[lo*512 : hi*512])
		mu.Lock()
		acc |= v
		mu.Unlock()
	})
	return acc
}

// BenchmarkMatVecVsMemRead alternates a matvec with a plain parallel read of
// the same number of bytes and reports the best time of each as GB/s and
// their ratio. Pairing them in one loop keeps the ratio meaningful on a
// machine whose load (and so bandwidth) varies from one run to the next.
func BenchmarkMatVecVsMemRead(b *testing.B) {
	benchData()
	for _, bc := range []struct {
		name  string
		bytes int
		run   func()
	}{
		{"f32", len(benchWF) * 4, func() { MatMulF32(benchY, benchX, benchWF, 1, benchDim, benchDim) }},
		{"bf16", len(benchWH) * 2, func() { MatMulBF16(benchY, benchX, benchWH, 1, benchDim, benchDim) }},
		{"f16", len(benchWH) * 2, func() { MatMulF16(benchY, benchX, benchWH, 1, benchDim, benchDim) }},
		{"Tbf16", len(benchWH) * 2, func() { MatMulTBF16(benchY, benchX, benchWH, 1, benchDim, benchDim) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bestMV, bestRead := time.Duration(1<<62), time.Duration(1<<62)
			var sink uint64
			for b.Loop() {
				t0 := time.Now()
				sink |= memReadOnce(bc.bytes / 8)
				t1 := time.Now()
				bc.run()
				t2 := time.Now()
				bestRead = min(bestRead, t1.Sub(t0))
				bestMV = min(bestMV, t2.Sub(t1))
			}
			gbs := func(d time.Duration) float64 { return float64(bc.bytes) / d.Seconds() / 1e9 }
			b.ReportMetric(gbs(bestMV), "matvec-GB/s")
			b.ReportMetric(gbs(bestRead), "memread-GB/s")
			b.ReportMetric(gbs(bestMV)/gbs(bestRead), "ratio")
			if sink == 1<<63 {
				b.Log(sink)
			}
		})
	}
}

// BenchmarkMemcpy is a parallel copy of 128 MiB (SetBytes counts it once;
// the memory traffic is a read plus a write).
func BenchmarkMemcpy(b *testing.B) {
	benchData()
	src := unsafeWords(benchWF)[:len(benchWH)/4]
	dst := make([]uint64, len(src))
	copy(dst, src) // fault the pages in before timing
	b.SetBytes(int64(len(src)) * 8)
	for b.Loop() {
		parallelFor(len(src)/512, len(src), 1, func(lo, hi int) {
			copy(dst[lo*512:hi*512], src[lo*512:hi*512])
		})
	}
}

// Small products run inline on the caller; this shows the per-call cost of a
// stories-sized layer (and that nothing is handed to the pool).
func BenchmarkMatVecBF16Small(b *testing.B) {
	const in, out = 288, 768
	w := make([]uint16, in*out)
	x := make([]float32, in)
	y := make([]float32, out)
	b.SetBytes(int64(len(w)) * 2)
	for b.Loop() {
		MatMulBF16(y, x, w, 1, in, out)
	}
}

// BenchmarkBatch16VsMatVec alternates a 16-row batch with a 1-row matvec over
// the same bf16 weights and reports the best time of each and their ratio:
// how many weight passes' worth of time the batch costs.
func BenchmarkBatch16VsMatVec(b *testing.B) {
	benchData()
	for _, bc := range []struct {
		name string
		run  func(n int)
	}{
		{"MatMulBF16", func(n int) { MatMulBF16(benchY, benchX, benchWH, n, benchDim, benchDim) }},
		{"MatMulTBF16", func(n int) { MatMulTBF16(benchY, benchX, benchWH, n, benchDim, benchDim) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			best1, best16 := time.Duration(1<<62), time.Duration(1<<62)
			for b.Loop() {
				t0 := time.Now()
				bc.run(1)
				t1 := time.Now()
				bc.run(16)
				t2 := time.Now()
				best1 = min(best1, t1.Sub(t0))
				best16 = min(best16, t2.Sub(t1))
			}
			b.ReportMetric(float64(best1.Microseconds())/1e3, "n1-ms")
			b.ReportMetric(float64(best16.Microseconds())/1e3, "n16-ms")
			b.ReportMetric(float64(best16)/float64(best1), "passes")
			b.ReportMetric(16*benchDim*benchDim/best16.Seconds()/1e9, "n16-GMAC/s")
		})
	}
}
