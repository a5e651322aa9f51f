package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"offload/quant"
)

// qTypes are the block types MatMulQ takes.
func qTypes() []quant.Type {
	var ts []quant.Type
	for _, t := range quant.Types() {
		if t.Quantized() {
			ts = append(ts, t)
		}
	}
	return ts
}

// qQuantBytes are the byte ranges of a block that hold quant bits (the rest
// are scales and mins). Zeroing them gives a block whose values are each
// group's offset term (-min, or scale*-offset): see qTermBound.
var qQuantBytes = map[quant.Type][2]int{
	quant.Q4_0: {2, 18}, quant.Q4_1: {4, 20}, quant.Q5_0: {2, 22}, quant.Q5_1: {4, 24}, quant.Q8_0: {2, 34},
	quant.Q2_K: {16, 80}, quant.Q3_K: {0, 96}, quant.Q4_K: {16, 144}, quant.Q5_K: {16, 176}, quant.Q6_K: {0, 192},
}

// qTermBound bounds the rounding error of any float32 evaluation of a
// quantized row's dot product: Σ (|w_i| + 2|m_i|)·|x_i| in float64, where
// w is the exactly dequantized row and m_i the offset term of i's group
// (the value a zero quant would decode to). The fast kernels compute
// scale*Σq·x - min*Σx; both terms are within this bound, as is exact
// dequantization's own rounding of scale*q - min.
func qTermBound(t quant.Type, row []byte, x []float32) float64 {
	w := make([]float32, len(x))
	if err := quant.DequantizeRow(t, w, row); err != nil {
		panic(err)
	}
	z := append([]byte(nil), row...)
	r, bb := qQuantBytes[t], t.BlockBytes()
	for b := 0; b < len(z); b += bb {
		clear(z[b+r[0] : b+r[1]])
	}
	m := make([]float32, len(x))
	if err := quant.DequantizeRow(t, m, z); err != nil {
		panic(err)
	}
	var s float64
	for i := range x {
		s += (math.Abs(float64(w[i])) + 2*math.Abs(float64(m[i]))) * math.Abs(float64(x[i]))
	}
	return s
}

// qCheck compares y (n x out, computed by MatMulQ) with quant.Dot row by
// row. Two float32 sums of the same terms differ by at most about
// 2·len·2^-24 times the bound; the slack covers the kernels' extra
// roundings. Non-finite references (from garbage scales) are only required
// not to panic.
func qCheck(t *testing.T, what string, typ quant.Type, y, x []float32, w []byte, n, in, out int) {
	t.Helper()
	rb, _ := typ.RowBytes(in)
	bad := 0
	for r := range n {
		xr := x[r*in : (r+1)*in]
		for o := range out {
			row := w[o*rb : (o+1)*rb]
			want := quant.Dot(typ, row, xr)
			bound := qTermBound(typ, row, xr)
			got := y[r*out+o]
			if math.IsNaN(float64(want)) || math.IsInf(float64(want), 0) || math.IsInf(bound, 0) || bound > 1e30 {
				continue
			}
			tol := float64(in+64) * math.Ldexp(1, -22) * bound
			if d := math.Abs(float64(got) - float64(want)); !(d <= tol) {
				if bad++; bad <= 3 {
					t.Errorf("%s: y[%d][%d] = %g, quant.Dot = %g (|diff| %.3g > tol %.3g)", what, r, o, got, want, d, tol)
				}
			}
		}
	}
}

// qRandWeights quantizes random rows (normal values, a few outliers, some
// all-zero blocks) into out rows of type t.
func qRandWeights(r *rand.Rand, t quant.Type, in, out int) []byte {
	rb, _ := t.RowBytes(in)
	w := make([]byte, out*rb)
	f := make([]float32, in)
	for o := range out {
		scale := float32(math.Exp(r.NormFloat64()))
		for i := range f {
			f[i] = float32(r.NormFloat64()) * scale * 0.02
			if r.IntN(64) == 0 {
				f[i] *= 10
			}
		}
		if r.IntN(8) == 0 {
			clear(f[:min(len(f), 256)])
		}
		if err := quant.QuantizeRow(t, w[o*rb:(o+1)*rb], f); err != nil {
			panic(err)
		}
	}
	return w
}

func qRandX(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// withQLevel runs f at every kernel level this CPU has, plain Go first,
// and the SIMD levels both with one row at a time and with rows walked
// together (see qMultiRow).
func withQLevel(f func(name string)) {
	saved, savedMin := qLevel, qMultiRowMin
	defer func() { qLevel, qMultiRowMin = saved, savedMin }()
	for lvl := 0; lvl <= qMaxLevel; lvl++ {
		qLevel = lvl
		for _, m := range []int{1 << 30, 0} {
			qMultiRowMin = m
			f(fmt.Sprintf("level%d/multirow=%v", lvl, m == 0))
			if lvl == 0 {
				break
			}
		}
	}
}

func TestMatMulQ(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, typ := range qTypes() {
		for _, sh := range []struct{ n, in, out int }{
			{1, 256, 1}, {1, 512, 7}, {1, 1280, 13}, {1, 4096, 64},
			{2, 256, 5}, {3, 512, 9}, {4, 768, 4}, {5, 256, 11}, {16, 1024, 10}, {17, 512, 3}, {64, 256, 6},
		} {
			in := sh.in
			w := qRandWeights(r, typ, in, sh.out)
			x := qRandX(r, sh.n*in)
			withQLevel(func(lvl string) {
				y := make([]float32, sh.n*sh.out)
				for i := range y {
					y[i] = float32(math.NaN()) // every output must be written
				}
				MatMulQ(typ, y, x, w, sh.n, in, sh.out)
				qCheck(t, fmt.Sprintf("%s %s n=%d in=%d out=%d", typ, lvl, sh.n, in, sh.out), typ, y, x, w, sh.n, in, sh.out)
			})
		}
	}
}

// TestMatMulQThreads runs a product large enough to be split across the
// worker pool, with several thread counts.
func TestMatMulQThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	defer SetThreads(0)
	for _, typ := range []quant.Type{quant.Q4_K, quant.Q8_0, quant.Q6_K} {
		const in, out = 2048, 203
		w := qRandWeights(r, typ, in, out)
		x := qRandX(r, 3*in)
		for _, th := range []int{1, 2, 3, 8} {
			SetThreads(th)
			for _, n := range []int{1, 3} {
				y := make([]float32, n*out)
				MatMulQ(typ, y, x, w, n, in, out)
				qCheck(t, fmt.Sprintf("%s threads=%d n=%d", typ, th, n), typ, y, x, w, n, in, out)
			}
		}
	}
}

func TestMatMulQShapes(t *testing.T) {
	w := make([]byte, 144*2)
	x := make([]float32, 256)
	y := make([]float32, 2)
	MatMulQ(quant.Q4_K, y[:0], x, w, 1, 256, 0) // empty output: nothing to do
	y[0] = 1
	MatMulQ(quant.Q4_K, y, x[:0], w[:0], 1, 0, 2) // empty sums
	if y[0] != 0 || y[1] != 0 {
		t.Errorf("in=0: y = %v, want zeros", y)
	}
	for _, tc := range []struct {
		name string
		f    func()
		want string
	}{
		{"partial block", func() { MatMulQ(quant.Q4_K, y, x, w, 1, 200, 1) }, "whole number"},
		{"short w", func() { MatMulQ(quant.Q4_K, y, x, w[:287], 1, 256, 2) }, "short slice"},
		{"short x", func() { MatMulQ(quant.Q4_K, y, x[:255], w, 1, 256, 2) }, "short slice"},
		{"short y", func() { MatMulQ(quant.Q4_K, y[:1], x, w, 1, 256, 2) }, "short slice"},
		{"f32", func() { MatMulQ(quant.F32, y, x, w, 1, 256, 1) }, "not block-quantized"},
		{"iq2_xs", func() { MatMulQ(quant.Type(17), y, x, w, 1, 256, 1) }, "not supported yet: IQ2_XS"},
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tc.want) {
					t.Errorf("%s: panic %v, want one mentioning %q", tc.name, r, tc.want)
				}
			}()
			tc.f()
		}()
	}
}

// TestDequantQExact holds every level's dequantization kernel (the batched
// path's first step) to quant.DequantizeRow bit for bit, signed zeros
// included.
func TestDequantQExact(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, typ := range qTypes() {
		const in = 1024
		w := qRandWeights(r, typ, in, 4)
		// Also raw random bytes: any scale, infinities and NaNs included
		// (a NaN may differ in payload only).
		raw := make([]byte, len(w))
		for i := range raw {
			raw[i] = byte(r.Uint32())
		}
		for _, src := range [][]byte{w, raw} {
			want := make([]float32, len(src)/typ.BlockBytes()*typ.BlockElems())
			if err := quant.DequantizeRow(typ, want, src); err != nil {
				t.Fatal(err)
			}
			withQLevel(func(lvl string) {
				k := qkernelFor(typ)
				got := make([]float32, len(want))
				k.dequant(got, src, len(src)/typ.BlockBytes())
				for i := range got {
					g, w := math.Float32bits(got[i]), math.Float32bits(want[i])
					if g != w && !(got[i] != got[i] && want[i] != want[i]) {
						t.Fatalf("%s %s: element %d = %g (%#08x), want %g (%#08x)", typ, lvl, i, got[i], g, want[i], w)
					}
				}
			})
		}
	}
}
