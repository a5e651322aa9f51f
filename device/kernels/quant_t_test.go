package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"offload/quant"
)

// tqCheck compares y = x·W (MatMulTQ) with the float64 product of x and the
// exactly dequantized rows of w. The kernel's float32 sum over in rows is
// within in·2^-23 of Σ|x·w| (one rounding per row, or none with FMA).
func tqCheck(t *testing.T, what string, typ quant.Type, y, x []float32, w []byte, n, in, out int) {
	t.Helper()
	rb, _ := typ.RowBytes(out)
	dq := make([]float32, in*out)
	for i := range in {
		if err := quant.DequantizeRow(typ, dq[i*out:(i+1)*out], w[i*rb:(i+1)*rb]); err != nil {
			t.Fatal(err)
		}
	}
	bad := 0
	for r := range n {
		for o := range out {
			var want, bound float64
			for i := range in {
				p := float64(x[r*in+i]) * float64(dq[i*out+o])
				want += p
				bound += math.Abs(p)
			}
			if math.IsNaN(want) || math.IsInf(bound, 0) || bound > 1e30 {
				continue
			}
			tol := float64(in+2)*math.Ldexp(1, -23)*bound + 1e-30
			if d := math.Abs(float64(y[r*out+o]) - want); !(d <= tol) {
				if bad++; bad <= 3 {
					t.Errorf("%s: y[%d][%d] = %g, want %g (|diff| %.3g > tol %.3g)", what, r, o, y[r*out+o], want, d, tol)
				}
			}
		}
	}
}

// TestMatMulTQ: every quantized type, decode (one row) and batches, at
// every kernel level and thread count, against the exact product; and the
// result does not depend on the thread count.
func TestMatMulTQ(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for _, typ := range qTypes() {
		out := 3 * typ.BlockElems()
		if typ.BlockElems() == 32 {
			out = 37 * 32
		}
		for _, c := range []struct{ n, in int }{{1, 1}, {1, 300}, {3, 67}, {16, 129}} {
			w := qRandWeights(r, typ, out, c.in)
			x := qRandX(r, c.n*c.in)
			withQLevel(func(lvl string) {
				var first []float32
				for _, th := range []int{1, 2, 3} {
					SetThreads(th)
					y := make([]float32, c.n*out+1)
					y[c.n*out] = 42
					MatMulTQ(typ, y, x, w, c.n, c.in, out)
					what := fmt.Sprintf("%s %s threads=%d n=%d in=%d", typ, lvl, th, c.n, c.in)
					tqCheck(t, what, typ, y, x, w, c.n, c.in, out)
					if y[c.n*out] != 42 {
						t.Fatalf("%s: wrote past y", what)
					}
					if first == nil {
						first = y
						continue
					}
					for i := range first {
						if math.Float32bits(first[i]) != math.Float32bits(y[i]) {
							t.Fatalf("%s: y[%d] = %g, with one thread %g", what, i, y[i], first[i])
						}
					}
				}
			})
		}
	}
	SetThreads(0)
}

// FuzzMatMulTQ holds MatMulTQ to the exact product on arbitrary weight
// bytes (any scales), at every kernel level.
func FuzzMatMulTQ(f *testing.F) {
	for t := range byte(10) {
		f.Add([]byte{t, 0, 1, 4, 0x12, 0x34, 0x9a, 0x3b, 0xc5, 0x00, 0x7f, 0x80})
		f.Add(append([]byte{t, 3, 2, 8}, make([]byte, 300)...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// qFuzzCase's "in" (whole blocks) is the transposed product's out.
		typ, _, w, n, out, in, ok := qFuzzCase(data)
		if !ok {
			return
		}
		x := make([]float32, n*in)
		for i := range x {
			x[i] = float32(int8(data[(4+i)%len(data)])) / 16
		}
		withQLevel(func(lvl string) {
			y := make([]float32, n*out)
			MatMulTQ(typ, y, x, w, n, in, out)
			tqCheck(t, fmt.Sprintf("%s %s n=%d in=%d out=%d", typ, lvl, n, in, out), typ, y, x, w, n, in, out)
		})
	})
}

func TestMatMulTQPanics(t *testing.T) {
	w := make([]byte, 34)
	for _, c := range []struct {
		name       string
		typ        quant.Type
		n, in, out int
		ylen, wlen int
	}{
		{"not quantized", quant.F32, 1, 1, 32, 32, 34},
		{"partial block", quant.Q8_0, 1, 1, 31, 31, 34},
		{"short w", quant.Q8_0, 1, 2, 32, 32, 34},
		{"short y", quant.Q8_0, 1, 1, 32, 31, 34},
		{"negative", quant.Q8_0, -1, 1, 32, 32, 34},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", c.name)
				}
			}()
			MatMulTQ(c.typ, make([]float32, c.ylen), make([]float32, 4), w[:c.wlen], c.n, c.in, c.out)
		}()
	}
}
