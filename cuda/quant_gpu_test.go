package cuda

import (
	"encoding/binary"
	"math"
	"testing"

	"offload/device"
	"offload/internal/half"
	"offload/quant"
)

// The quantized kernels beyond the conformance suite's tolerance check
// (devicetest's MatMulQuant): their decoding is ggml's bit for bit, and the
// product's batch does not change its bits.

// scaleFields are the byte offsets of the f16 scales (d, and dmin or m) in
// one block of each quantized type (ggml-common.h).
var scaleFields = map[device.DType][]int{
	device.Q4_0: {0}, device.Q4_1: {0, 2}, device.Q5_0: {0}, device.Q5_1: {0, 2}, device.Q8_0: {0},
	device.Q2_K: {80, 82}, device.Q3_K: {108}, device.Q4_K: {0, 2}, device.Q5_K: {0, 2}, device.Q6_K: {208},
}

// randomBlocks returns rows x cols of dt as arbitrary bytes (every quant
// bit, scale bit and sign pattern occurs) whose f16 scales are finite
// numbers of either sign, so that no product is NaN, and those rows
// dequantized by package quant.
func (g *gpuFixture) randomBlocks(dt device.DType, rows, cols int) ([]byte, []float32) {
	g.t.Helper()
	raw := make([]byte, dt.RowBytes(cols)*int64(rows))
	for i := range raw {
		raw[i] = byte(g.rng.Uint32())
	}
	bb := dt.BlockBytes()
	for b := 0; b < len(raw)/bb; b++ {
		for _, off := range scaleFields[dt] {
			binary.LittleEndian.PutUint16(raw[b*bb+off:], half.F32ToF16((2*g.rng.Float32()-1)*0.05))
		}
	}
	deq := make([]float32, rows*cols)
	rb := int(dt.RowBytes(cols))
	for r := range rows {
		if err := quant.DequantizeRow(quant.Type(quantGGML[dt]), deq[r*cols:(r+1)*cols], raw[r*rb:(r+1)*rb]); err != nil {
			g.t.Fatal(err)
		}
	}
	return raw, deq
}

// quantGGML maps the device's quantized types to ggml's type ids.
var quantGGML = map[device.DType]quant.Type{
	device.Q4_0: quant.Q4_0, device.Q4_1: quant.Q4_1, device.Q5_0: quant.Q5_0, device.Q5_1: quant.Q5_1,
	device.Q8_0: quant.Q8_0, device.Q2_K: quant.Q2_K, device.Q3_K: quant.Q3_K, device.Q4_K: quant.Q4_K,
	device.Q5_K: quant.Q5_K, device.Q6_K: quant.Q6_K,
}

// TestGPUQuantExact holds every quantized type's kernels to ggml's
// decoding exactly, on arbitrary blocks: dequant_<type> (the cuBLAS path's
// panels) bit for bit against quant.DequantizeRow, and MatMul and MatMulT
// with one-hot activation rows, which pick single weights out of the
// product (every other term is an exact zero), in batches of 64
// (matmul_<type>, matmul_t_<type>) and of 128 (dequantized panels of three
// rows, so several panels and a short last one, and cuBLAS): any weight
// decoded from the wrong bits, scale, block or lane, and any panel put in
// the wrong place, shows as an exact mismatch that names it.
func TestGPUQuantExact(t *testing.T) {
	g := newGPUFixture(t, Options{Capacity: 64 << 20, Pinned: true})
	const rows = 7
	for _, dt := range quantTypes {
		t.Run(dt.String(), func(t *testing.T) {
			g.t = t
			cols := 2 * max(dt.BlockElems(), 128)
			raw, deq := g.randomBlocks(dt, rows, cols)
			w := g.tensor(dt, rows, cols)
			g.put(w, raw)

			// dequant_<type> over the whole matrix.
			full := g.tensor(device.F32, rows, cols)
			cs, ps, err := g.d.operands(g.s, "test", nil, full, w)
			if err != nil {
				t.Fatal(err)
			}
			nblk := int64(rows*cols) / int64(dt.BlockElems())
			if err := g.d.launch(cs, "dequant_"+dt.String(), [3]uint32{blocks(nblk*32, threads), 1, 1}, [3]uint32{threads, 1, 1}, ps[0], ps[1], nblk); err != nil {
				t.Fatal(err)
			}
			for i, v := range f32s(g.raw(full)) {
				if math.Float32bits(v) != math.Float32bits(deq[i]) {
					t.Fatalf("dequant_%s: w[%d][%d] = %g (%08x), ggml decodes %g (%08x)", dt, i/cols, i%cols, v, math.Float32bits(v), deq[i], math.Float32bits(deq[i]))
				}
			}

			defer func(b int64) { quantPanelBytes = b }(quantPanelBytes)
			quantPanelBytes = 3 * int64(cols) * 4
			for _, trans := range []bool{false, true} {
				in, out := cols, rows
				if trans {
					in, out = rows, cols
				}
				for _, batch := range []int{gemvMaxRows, 2 * gemvMaxRows} {
					if batch > gemvMaxRows && g.d.blas == nil {
						continue
					}
					x := g.tensor(device.F32, batch, in)
					y := g.tensor(device.F32, batch, out)
					for p0 := 0; p0 < in; p0 += batch {
						xv := make([]float32, batch*in)
						for r := range batch {
							xv[r*in+(p0+r)%in] = 1
						}
						g.put(x, f32raw(xv))
						op := g.d.MatMul
						if trans {
							op = g.d.MatMulT
						}
						if err := op(g.s, y, x, w); err != nil {
							t.Fatal(err)
						}
						yv := f32s(g.raw(y))
						for r := range batch {
							i := (p0 + r) % in
							for o := range out {
								wr, wc := o, i // w's row and column of the weight y[r][o] picked
								if trans {
									wr, wc = i, o
								}
								if got, want := yv[r*out+o], deq[wr*cols+wc]; got != want {
									t.Fatalf("trans=%v batch %d: w[%d][%d] reads as %g, ggml decodes %g", trans, batch, wr, wc, got, want)
								}
							}
						}
					}
				}
			}
		})
	}
}

// TestGPUQuantBatchInvariance: for every quantized type, MatMul and MatMulT
// over 16 rows (a Sirius window check) give bit-identical rows to one row
// at a time (decode steps), as TestGPUBatchInvariance holds for float
// weights.
func TestGPUQuantBatchInvariance(t *testing.T) {
	g := newGPUFixture(t, Options{Capacity: 64 << 20, Pinned: true})
	const n, rows = 16, 45
	for _, dt := range quantTypes {
		t.Run(dt.String(), func(t *testing.T) {
			g.t = t
			cols := 2 * max(dt.BlockElems(), 128)
			raw, _ := g.randomBlocks(dt, rows, cols)
			w := g.tensor(dt, rows, cols)
			g.put(w, raw)
			for _, trans := range []bool{false, true} {
				in, out := cols, rows
				op := g.d.MatMul
				if trans {
					in, out, op = rows, cols, g.d.MatMulT
				}
				x := g.tensor(device.F32, n, in)
				g.put(x, f32raw(g.randF32(n*in, 1)))
				yb := g.tensor(device.F32, n, out)
				if err := op(g.s, yb, x, w); err != nil {
					t.Fatal(err)
				}
				batch := f32s(g.raw(yb))
				y1 := g.tensor(device.F32, 1, out)
				for _, r := range []int{0, 3, 4, 15} { // first and last of a group of MM_ROWS, and the last row
					if err := op(g.s, y1, x.Slice(r, r+1), w); err != nil {
						t.Fatal(err)
					}
					for o, v := range f32s(g.raw(y1)) {
						if math.Float32bits(v) != math.Float32bits(batch[r*out+o]) {
							t.Fatalf("trans=%v: row %d col %d: batched %g, alone %g", trans, r, o, batch[r*out+o], v)
						}
					}
				}
			}
		})
	}
}

// TestGPUQuantEmptyInner: a quantized product over an empty inner
// dimension (w [out, 0], or transposed w [0, out]) writes zeros, for a
// decode row and a batch past gemvMaxRows (which must not divide by the
// empty row's length choosing panels).
func TestGPUQuantEmptyInner(t *testing.T) {
	g := newGPUFixture(t, Options{Capacity: 16 << 20, Pinned: true})
	const out = 256
	for _, trans := range []bool{false, true} {
		for _, n := range []int{1, 2 * gemvMaxRows} {
			rows, cols := out, 0
			op := g.d.MatMul
			if trans {
				rows, cols, op = 0, out, g.d.MatMulT
			}
			w := g.tensor(device.Q4_K, rows, cols)
			x := g.tensor(device.F32, n, 0)
			y := g.tensor(device.F32, n, out)
			g.put(y, f32raw(g.randF32(n*out, 1)))
			if err := op(g.s, y, x, w); err != nil {
				t.Fatalf("trans=%v n=%d: %v", trans, n, err)
			}
			for i, v := range f32s(g.raw(y)) {
				if v != 0 {
					t.Fatalf("trans=%v n=%d: y[%d] = %g, want 0", trans, n, i, v)
				}
			}
		}
	}
}
