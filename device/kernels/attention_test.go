package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// attnCase is one attention shape; maxSeq leaves cache rows past the
// attended positions, filled with large values that would show if read.
type attnCase struct{ nHeads, nKV, hd, pos0, n int }

func (c attnCase) String() string {
	return fmt.Sprintf("heads=%d/kv=%d/hd=%d/pos0=%d/n=%d", c.nHeads, c.nKV, c.hd, c.pos0, c.n)
}

// attnInputs makes q, k, v for c from r; cache rows at or past pos0+n hold
// 30 (keys) and 1000 (values).
func attnInputs(c attnCase, val func() float32) (q, k, v []float32) {
	kc := c.nKV * c.hd
	seq := c.pos0 + c.n + 3
	q = make([]float32, c.n*c.nHeads*c.hd)
	k, v = make([]float32, seq*kc), make([]float32, seq*kc)
	for i := range q {
		q[i] = val()
	}
	for i := range k {
		if i < (c.pos0+c.n)*kc {
			k[i], v[i] = val(), val()
		} else {
			k[i], v[i] = 30, 1000
		}
	}
	return q, k, v
}

// checkAttn runs Attention (with every kernel set, 1 and 2 threads) and
// compares it with AttentionRef: each output is a convex combination of
// values, so the tolerance is relative to the largest |v| attended.
func checkAttn(t *testing.T, c attnCase, q, k, v []float32) {
	t.Helper()
	want := make([]float32, len(q))
	AttentionRef(want, q, k, v, c.n, c.pos0, c.nHeads, c.nKV, c.hd)
	var vmax float64
	for _, x := range v[:(c.pos0+c.n)*c.nKV*c.hd] {
		vmax = max(vmax, math.Abs(float64(x)))
	}
	bound := make([]float64, len(want))
	for i := range bound {
		bound[i] = 10 * vmax // checkClose allows 1e-5 of this
	}
	eachImpl(func(impl string) {
		for _, threads := range []int{1, 2} {
			got := make([]float32, len(q))
			for i := range got {
				got[i] = float32(math.NaN())
			}
			withThreads(threads, func() { Attention(got, q, k, v, c.n, c.pos0, c.nHeads, c.nKV, c.hd) })
			checkClose(t, fmt.Sprintf("%v %s threads=%d", c, impl, threads), got, want, bound)
		}
	})
}

func TestAttentionVsRef(t *testing.T) {
	cases := []attnCase{
		{4, 4, 8, 0, 1}, {4, 2, 16, 5, 1}, {4, 2, 16, 0, 6}, {8, 2, 16, 7, 5},
		{6, 1, 32, 3, 4}, {2, 1, 64, 0, 24}, {8, 4, 64, 520, 3}, {16, 2, 128, 0, 17},
		{8, 4, 8, 100, 40}, // stories260K: head dim 8, groups of 2
		{32, 8, 128, 300, 16}, {8, 8, 128, 0, 130}, {64, 8, 128, 40, 1}, {12, 4, 24, 9, 70},
	}
	for _, c := range cases {
		r := rand.New(rand.NewPCG(uint64(c.hd), uint64(c.pos0*1000+c.n)))
		q, k, v := attnInputs(c, func() float32 { return float32(r.NormFloat64()) })
		checkAttn(t, c, q, k, v)
	}
}

// FuzzAttention holds the batched attention to the reference on shapes and
// values drawn from the fuzz input.
func FuzzAttention(f *testing.F) {
	f.Add([]byte{3, 1, 7, 5, 2, 0x81, 0x40, 0x7f, 0x01})
	f.Add([]byte{0, 0, 0, 0, 0, 0})
	f.Add([]byte{7, 3, 40, 17, 30, 0x11, 0xee, 0x52})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 6 {
			return
		}
		nKV := 1 + int(data[0])%4
		c := attnCase{nHeads: nKV * (1 + int(data[1])%4), nKV: nKV, hd: 1 + int(data[2])%48,
			pos0: int(data[3]) % 40, n: 1 + int(data[4])%33}
		vals, i := data[5:], 0
		q, k, v := attnInputs(c, func() float32 {
			i++
			return float32(int8(vals[i%len(vals)]^byte(i*37))) / 32
		})
		checkAttn(t, c, q, k, v)
	})
}
