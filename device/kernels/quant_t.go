package kernels

// The transposed product against block-quantized weights. Quantized neuron
// bundles store each FFN neuron's down column as a quantized row of dim
// elements, so a layer's down projection restricted to k neurons is
// y = x·W with W [k][dim] in whole blocks along dim. Each weight row is
// scaled by one activation and added to the outputs (an axpy), so the
// product reads every row once, dequantized exactly (bit for bit with
// quant.DequantizeRow) a run of blocks at a time into a small scratch, and
// sums over the rows in order: the result does not depend on the number of
// threads.

import (
	"fmt"

	"offload/quant"
)

// MatMulTQ computes y = x·W for block-quantized weights w holding in rows of
// out elements of type t (t.RowBytes(out) bytes each, contiguous): x is
// [n][in], y is [n][out] and
//
//	y[r*out+o] = Σ_i x[r*in+i] * dequant(w)[i][o]   (i ascending)
//
// t must be a quantized type and out a whole number of its blocks. It panics
// on a bad shape or a short slice, as the other products do.
func MatMulTQ(t quant.Type, y, x []float32, w []byte, n, in, out int) {
	k := qkernelFor(t)
	if n < 0 || in < 0 || out < 0 {
		panic(fmt.Sprintf("kernels: MatMulTQ: negative shape n=%d in=%d out=%d", n, in, out))
	}
	rb, err := t.RowBytes(out)
	if err != nil {
		panic(fmt.Sprintf("kernels: MatMulTQ: %v", err))
	}
	if len(y) < n*out || len(x) < n*in || len(w) < in*rb {
		panic(fmt.Sprintf("kernels: MatMulTQ: short slice for %s n=%d in=%d out=%d: len(y)=%d len(x)=%d len(w)=%d (want %d)",
			t, n, in, out, len(y), len(x), len(w), in*rb))
	}
	if n == 0 || out == 0 {
		return
	}
	clear(y[:n*out])
	if in == 0 {
		return
	}
	// Each worker owns a range of output columns (whole blocks) of every
	// row of y, and walks all weight rows for it.
	parallelFor(out, n*in*out, k.elems, func(c0, c1 int) {
		b0, b1 := c0/k.elems, c1/k.elems
		p := getQScratch(c1 - c0)
		defer qScratch.Put(p)
		scr := *p
		for i := range in {
			k.dequant(scr, w[i*rb+b0*k.bytes:i*rb+b1*k.bytes], b1-b0)
			for r := range n {
				axpyF32(y[r*out+c0:r*out+c1], x[r*in+i], scr)
			}
		}
	})
}
