package kernels

import (
	"testing"
	"time"
)

func BenchmarkAB(b *testing.B) {
	benchData()
	best := [2]time.Duration{1 << 62, 1 << 62}
	for b.Loop() {
		for v := range 2 {
			tPacked = v == 1
			t0 := time.Now()
			MatMulTBF16(benchY, benchX, benchWH, 16, benchDim, benchDim)
			best[v] = min(best[v], time.Since(t0))
		}
	}
	tPacked = true
	b.ReportMetric(float64(best[0].Microseconds())/1e3, "strided-ms")
	b.ReportMetric(float64(best[1].Microseconds())/1e3, "packed-ms")
}
