package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkAttention compares the batched attention with the plain path
// (useAsm cleared) on decode and check-pass shapes: stories260K (8 heads of
// 8, 4 KV heads), Llama-3-8B (32 heads of 128, 8 KV heads).
//
//	go test ./device/kernels -run '^$' -bench 'Attention' -benchtime 200x
func BenchmarkAttention(b *testing.B) {
	for _, c := range []attnCase{
		{8, 4, 8, 150, 1}, {8, 4, 8, 150, 16},
		{32, 8, 128, 1000, 1}, {32, 8, 128, 1000, 16}, {32, 8, 128, 0, 256},
	} {
		r := rand.New(rand.NewPCG(1, 2))
		q, k, v := attnInputs(c, func() float32 { return float32(r.NormFloat64()) })
		out := make([]float32, len(q))
		for _, asm := range []bool{true, false} {
			b.Run(fmt.Sprintf("%v/simd=%v", c, asm), func(b *testing.B) {
				saved := useAsm
				useAsm = asm && saved
				defer func() { useAsm = saved }()
				flops := 0.0
				for i := range c.n {
					flops += 4 * float64(c.nHeads*c.hd*(c.pos0+i+1))
				}
				for b.Loop() {
					Attention(out, q, k, v, c.n, c.pos0, c.nHeads, c.nKV, c.hd)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
