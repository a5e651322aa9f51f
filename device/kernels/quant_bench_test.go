package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"offload/quant"
)

// Benchmarks of the quantized products on a Llama-3-8B FFN shape: 14336 rows
// of 4096 (ffn_gate/ffn_up) and 4096 rows of 14336 (ffn_down). Each runs over
// enough copies of the matrix (at least 160 MiB together, several times any
// last-level cache) that every call streams its weights from DRAM, and pairs
// each product with a parallel read of the same number of bytes from the same
// rotation: the same-run memory-read ceiling. Reported: weight GB/s of the
// best product and of the best read, their ratio, and the median of the
// per-iteration (paired) ratios.

const qBenchMinBytes = 160 << 20

type qBenchSet struct {
	t           quant.Type
	in, out     int
	rb          int
	mats        [][]byte
	x, y        []float32
	readSink    uint64
	next, nextR int
}

var (
	qBenchMu   sync.Mutex
	qBenchLast *qBenchSet // only the latest set is kept: each is 160+ MiB
)

// qBench builds the rotation of weight matrices for a type and shape (reused
// by consecutive calls with the same arguments): 64 distinct quantized rows
// tiled over the matrix (speed does not depend on the values, and
// quantizing 58M weights for every run would dominate).
func qBench(t quant.Type, in, out int) *qBenchSet {
	qBenchMu.Lock()
	defer qBenchMu.Unlock()
	if s := qBenchLast; s != nil && s.t == t && s.in == in && s.out == out {
		return s
	}
	qBenchLast = nil
	runtime.GC() // let the previous rotation go before allocating the next
	r := rand.New(rand.NewPCG(21, 22))
	rb, _ := t.RowBytes(in)
	base := qRandWeights(r, t, in, 64)
	s := &qBenchSet{t: t, in: in, out: out, rb: rb}
	size := rb * out
	copies := max(2, (qBenchMinBytes+size-1)/size)
	for range copies {
		m := make([]byte, size)
		for o := 0; o < out; o += 64 {
			copy(m[o*rb:], base[:min(64, out-o)*rb])
		}
		s.mats = append(s.mats, m)
	}
	s.x = qRandX(r, 64*in)
	s.y = make([]float32, 64*out)
	qBenchLast = s
	return s
}

func (s *qBenchSet) matvec(n int) {
	m := s.mats[s.next%len(s.mats)]
	s.next++
	MatMulQ(s.t, s.y, s.x, m, n, s.in, s.out)
}

// read streams one matrix of the rotation on the kernels' threads.
func (s *qBenchSet) read() {
	m := s.mats[(s.nextR+len(s.mats)/2)%len(s.mats)]
	s.nextR++
	const chunk = 1 << 16
	var mu sync.Mutex
	parallelFor((len(m)+chunk-1)/chunk, len(m), 1, func(lo, hi int) {
		v := qRead(m[lo*chunk : min(hi*chunk, len(m))])
		mu.Lock()
		s.readSink |= v
		mu.Unlock()
	})
}

// median of a sample (the paired per-iteration ratios: on a shared machine
// the pairs see the same load, so their median is steadier than a ratio of
// best times).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

var qBenchShapes = []struct{ in, out int }{{4096, 14336}, {14336, 4096}}

// BenchmarkMatVecQ: one activation row (decode).
func BenchmarkMatVecQ(b *testing.B) {
	for _, typ := range qTypes() {
		for _, sh := range qBenchShapes {
			b.Run(fmt.Sprintf("%s/%dx%d", typ, sh.out, sh.in), func(b *testing.B) {
				s := qBench(typ, sh.in, sh.out)
				bytes := float64(s.rb * s.out)
				b.SetBytes(int64(bytes))
				bestMV, bestRead := time.Duration(1<<62), time.Duration(1<<62)
				var ratios []float64
				for b.Loop() {
					t0 := time.Now()
					s.read()
					t1 := time.Now()
					s.matvec(1)
					t2 := time.Now()
					bestRead = min(bestRead, t1.Sub(t0))
					bestMV = min(bestMV, t2.Sub(t1))
					ratios = append(ratios, float64(t1.Sub(t0))/float64(t2.Sub(t1)))
				}
				gbs := func(d time.Duration) float64 { return bytes / d.Seconds() / 1e9 }
				b.ReportMetric(gbs(bestMV), "GB/s")
				b.ReportMetric(gbs(bestRead), "read-GB/s")
				b.ReportMetric(gbs(bestMV)/gbs(bestRead), "of-ceiling")
				b.ReportMetric(median(ratios), "paired-of-ceiling")
				b.ReportMetric(float64(Threads()), "threads")
				b.ReportMetric(float64(qkernelFor(typ).level()), "isa-level")
			})
		}
	}
}

// BenchmarkBatchQ: n activation rows against one weight pass, alternated
// with a single-row pass; "passes" is the batch's best time over the single
// row's, the cost of the batch in single-row passes.
func BenchmarkBatchQ(b *testing.B) {
	for _, typ := range qTypes() {
		for _, n := range []int{2, 4, 16, 64} {
			sh := qBenchShapes[0]
			b.Run(fmt.Sprintf("%s/n=%d/%dx%d", typ, n, sh.out, sh.in), func(b *testing.B) {
				s := qBench(typ, sh.in, sh.out)
				b.SetBytes(int64(s.rb * s.out))
				best1, bestN := time.Duration(1<<62), time.Duration(1<<62)
				var ratios []float64
				for b.Loop() {
					t0 := time.Now()
					s.matvec(1)
					t1 := time.Now()
					s.matvec(n)
					t2 := time.Now()
					best1 = min(best1, t1.Sub(t0))
					bestN = min(bestN, t2.Sub(t1))
					ratios = append(ratios, float64(t2.Sub(t1))/float64(t1.Sub(t0)))
				}
				b.ReportMetric(median(ratios), "paired-passes")
				b.ReportMetric(float64(best1.Microseconds())/1e3, "n1-ms")
				b.ReportMetric(float64(bestN.Microseconds())/1e3, "batch-ms")
				b.ReportMetric(float64(bestN)/float64(best1), "passes")
				b.ReportMetric(float64(n)*float64(s.in)*float64(s.out)/bestN.Seconds()/1e9, "GMAC/s")
			})
		}
	}
}
