package cuda

import (
	"fmt"
	"math"

	"offload/device"
)

// Launch geometry.
const (
	threads     = 256  // block size of most kernels
	attnThreads = 128  // ATT_THREADS in kernels.cu
	attnMaxDim  = 512  // ATT_MAXD in kernels.cu
	mmtCols     = 32   // MMT_COLS in kernels.cu
	maxBlocks   = 4096 // grid-stride kernels never need more
	errIndex    = 1    // ERR_INDEX in kernels.cu
)

func blocks(n int64, per int64) uint32 {
	b := (n + per - 1) / per
	return uint32(min(max(b, 1), maxBlocks))
}

// launch enqueues kernel name on s with args (checked against kernelSigs).
func (d *Device) launch(s *stream, name string, grid, block [3]uint32, args ...any) error {
	f, ok := d.fns[name]
	if !ok {
		return fmt.Errorf("cuda: kernel %s not loaded", name)
	}
	ka, err := packArgs(name, args)
	if err != nil {
		return err
	}
	defer ka.release()
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := d.drv.launchKernel(f, grid, block, 0, s.h, ka.params()); err != nil {
		return fmt.Errorf("cuda: launch %s: %w", name, err)
	}
	return nil
}

// operands takes the result of the device package's argument check for a
// call (dtypes, shapes, bounds: the contract every backend shares), checks the
// stream and that every buffer is a live one of this device, and returns the
// tensors' device addresses in order.
func (d *Device) operands(s device.Stream, op string, check error, ts ...device.Tensor) (*stream, []devPtr, error) {
	if check != nil {
		return nil, nil, fmt.Errorf("cuda: %w", check)
	}
	cs, err := d.streamOf(s)
	if err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	ps := make([]devPtr, len(ts))
	for i, t := range ts {
		if ps[i], err = d.tensor(t, op); err != nil {
			return nil, nil, err
		}
	}
	return cs, ps, nil
}

func sameShape(op string, a, b device.Tensor, an, bn string) error {
	if a.Rows != b.Rows || a.Cols != b.Cols {
		return fmt.Errorf("cuda: %s: %s is %d x %d but %s is %d x %d", op, an, a.Rows, a.Cols, bn, b.Rows, b.Cols)
	}
	return nil
}

func wantDType(op, what string, t device.Tensor, dts ...device.DType) error {
	for _, dt := range dts {
		if t.DType == dt {
			return nil
		}
	}
	return fmt.Errorf("cuda: %s: %s is %s, want %v", op, what, t.DType, dts)
}

// quantTypes are the block-quantized weight types: MatMul and MatMulT read
// them with matmul_<type> and matmul_t_<type> (dequantizing in registers)
// and, for large batches, dequantize panels of rows with dequant_<type> for
// cuBLAS. Either way the weight's rows are whole blocks: w [out, in] for
// MatMul, w [in, out] for MatMulT (quantized neuron bundles' down columns).
var quantTypes = []device.DType{device.Q4_0, device.Q4_1, device.Q5_0, device.Q5_1, device.Q8_0,
	device.Q2_K, device.Q3_K, device.Q4_K, device.Q5_K, device.Q6_K}

// weightTypes are the weight dtypes the CUDA kernels compute with.
var weightTypes = append([]device.DType{device.F32, device.F16, device.BF16}, quantTypes...)

var weightSuffix = map[device.DType]string{device.F32: "f32", device.F16: "f16", device.BF16: "bf16"}

// MatMul computes y[r] = W x[r] with w [out, in].
func (d *Device) MatMul(s device.Stream, y, x, w device.Tensor) error {
	return d.matmul(s, y, x, w, false)
}

// MatMulT computes y[r] = x[r] W with w [in, out].
func (d *Device) MatMulT(s device.Stream, y, x, w device.Tensor) error {
	return d.matmul(s, y, x, w, true)
}

// matmul runs a product. Batches up to gemvMaxRows rows (or any batch
// without cuBLAS) use our kernels, which widen weights exactly to f32 and
// accumulate in f32 in an order that does not depend on the batch. Larger
// batches use cublasGemmEx: f32 weights as they are; bf16/f16 weights with
// the activations rounded to the weight type (cuBLAS has no mixed f32 x bf16
// product), accumulating in f32.
func (d *Device) matmul(s device.Stream, y, x, w device.Tensor, trans bool) error {
	op := "MatMul"
	in, out := w.Cols, w.Rows
	if trans {
		op, in, out = "MatMulT", w.Rows, w.Cols
	}
	cs, ps, err := d.operands(s, op, device.CheckMatMul(y, x, w, trans, weightTypes), y, x, w)
	if err != nil {
		return err
	}
	n := x.Rows
	if n == 0 || out == 0 {
		return nil
	}
	if w.DType.Quantized() {
		if n > gemvMaxRows && d.blas != nil && in > 0 && int64(w.Cols)*4 <= quantPanelBytes {
			return d.gemmQuant(cs, ps[0], ps[1], ps[2], w.DType, n, in, out, trans)
		}
		name := "matmul_" + w.DType.String()
		grid := [3]uint32{uint32((int64(out)*32 + threads - 1) / threads), 1, 1}
		if trans {
			name = "matmul_t_" + w.DType.String()
			grid[0] = uint32((out + mmtCols - 1) / mmtCols)
		}
		return d.launch(cs, name, grid, [3]uint32{threads, 1, 1}, ps[0], ps[1], ps[2], int32(n), int32(in), int32(out))
	}
	if n > gemvMaxRows && d.blas != nil && (w.DType == device.F32 || int64(in)*2*2 <= scratchBytes) {
		return d.gemm(cs, ps[0], ps[1], ps[2], w.DType, n, in, out, trans)
	}
	name := "matmul_" + weightSuffix[w.DType]
	grid := [3]uint32{uint32((int64(out)*32 + threads - 1) / threads), 1, 1}
	if trans {
		name = "matmul_t_" + weightSuffix[w.DType]
		grid[0] = uint32((out + mmtCols - 1) / mmtCols)
	}
	return d.launch(cs, name, grid, [3]uint32{threads, 1, 1}, ps[0], ps[1], ps[2], int32(n), int32(in), int32(out))
}

// gemm is the cuBLAS path of matmul. Row-major y[n,out] is column-major
// yᵀ[out,n], so MatMul is yᵀ = op(W)·xᵀ with W row-major [out,in] seen as
// column-major [in,out] (transposed, lda = in), and MatMulT uses W
// row-major [in,out] as column-major [out,in] untransposed (lda = out).
func (d *Device) gemm(cs *stream, y, x, w devPtr, wt device.DType, n, in, out int, trans bool) error {
	release, err := d.blasOn(cs)
	if err != nil {
		return err
	}
	defer release()
	g := gemmArgs{transA: cublasOpT, m: out, k: in, a: uint64(w), lda: in, ldc: out, ldb: in, cType: cudaR32F}
	if trans {
		g.transA, g.lda = cublasOpN, out
	}
	g.transB = cublasOpN
	switch wt {
	case device.F32:
		g.aType, g.bType = cudaR32F, cudaR32F
		g.n, g.b, g.c = n, uint64(x), uint64(y)
		if err := d.blas.gemmEx(cs.blas, g); err != nil {
			return fmt.Errorf("cuda: cuBLAS: %w", err)
		}
		return nil
	case device.BF16:
		g.aType, g.bType = cudaR16BF, cudaR16BF
	case device.F16:
		g.aType, g.bType = cudaR16F, cudaR16F
	}
	if err := d.streamScratch(cs); err != nil {
		return err
	}
	conv := "f32_to_bf16_k"
	if wt == device.F16 {
		conv = "f32_to_f16_k"
	}
	chunk := int(scratchBytes / (int64(in) * 2))
	f := d.fns[conv]
	for r0 := 0; r0 < n; r0 += chunk {
		rc := min(chunk, n-r0)
		cnt := int64(rc) * int64(in)
		ka, err := packArgs(conv, []any{devPtr(cs.scratch), x + devPtr(int64(r0)*int64(in)*4), cnt})
		if err != nil {
			return err
		}
		err = d.drv.launchKernel(f, [3]uint32{blocks(cnt, threads), 1, 1}, [3]uint32{threads, 1, 1}, 0, cs.h, ka.params())
		ka.release()
		if err != nil {
			return fmt.Errorf("cuda: launch %s: %w", conv, err)
		}
		g.n, g.b, g.c = rc, cs.scratch, uint64(y)+uint64(r0)*uint64(out)*4
		if err := d.blas.gemmEx(cs.blas, g); err != nil {
			return fmt.Errorf("cuda: cuBLAS: %w", err)
		}
	}
	return nil
}

// blasOn readies cs for cuBLAS calls: it holds cs.mu, makes the context
// current and creates cs's handle on first use. release undoes the first
// two.
func (d *Device) blasOn(cs *stream) (release func(), err error) {
	cs.mu.Lock()
	leave, err := d.enter()
	if err != nil {
		cs.mu.Unlock()
		return nil, err
	}
	release = func() {
		leave()
		cs.mu.Unlock()
	}
	if err := d.streamBLAS(cs); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// streamBLAS creates cs's cuBLAS handle on first use; cs.mu is held and the
// context current.
func (d *Device) streamBLAS(cs *stream) error {
	if cs.blas != 0 {
		return nil
	}
	h, err := d.blas.create()
	if err != nil {
		return fmt.Errorf("cuda: cuBLAS: %w", err)
	}
	if err := d.blas.setStream(h, cs.h); err != nil {
		_ = d.blas.destroy(h)
		return fmt.Errorf("cuda: cuBLAS: %w", err)
	}
	cs.blas = h
	return nil
}

// streamScratch allocates cs's scratch (scratchBytes, outside Capacity) on
// first use; cs.mu is held and the context current.
func (d *Device) streamScratch(cs *stream) error {
	if cs.scratch != 0 {
		return nil
	}
	p, err := d.drv.memAlloc(scratchBytes)
	if err != nil {
		return fmt.Errorf("cuda: scratch of %d bytes: %w", scratchBytes, err)
	}
	cs.scratch = p
	return nil
}

// quantPanelBytes sizes gemmQuant's panels: scratchBytes, less in tests
// that want several panels of a small matrix.
var quantPanelBytes int64 = scratchBytes

// gemmQuant is the cuBLAS path of a quantized product (prefill): panels of
// whole rows of w are dequantized exactly to f32 into the stream's scratch
// (dequant_<type>, the same decoding as the product kernels) and each
// panel is one f32 GEMM. For MatMul a panel is rows o0.. of w [out, in]
// and gives columns o0.. of y (yᵀ[o0:, :] = panelᵀ·xᵀ, ldc = out); for
// MatMulT it is rows i0.. of w [in, out] and adds x[:, i0:]·panel to y
// (beta 1 after the first panel).
func (d *Device) gemmQuant(cs *stream, y, x, w devPtr, wt device.DType, n, in, out int, trans bool) error {
	release, err := d.blasOn(cs)
	if err != nil {
		return err
	}
	defer release()
	if err := d.streamScratch(cs); err != nil {
		return err
	}
	name := "dequant_" + wt.String()
	f := d.fns[name]
	rows, cols := out, in // w's shape
	if trans {
		rows, cols = in, out
	}
	rowBytes := wt.RowBytes(cols)
	panel := int(quantPanelBytes / (int64(cols) * 4))
	for r0 := 0; r0 < rows; r0 += panel {
		pr := min(panel, rows-r0)
		nblk := int64(pr) * int64(cols) / int64(wt.BlockElems())
		ka, err := packArgs(name, []any{devPtr(cs.scratch), w + devPtr(int64(r0)*rowBytes), nblk})
		if err != nil {
			return err
		}
		err = d.drv.launchKernel(f, [3]uint32{blocks(nblk*32, threads), 1, 1}, [3]uint32{threads, 1, 1}, 0, cs.h, ka.params())
		ka.release()
		if err != nil {
			return fmt.Errorf("cuda: launch %s: %w", name, err)
		}
		g := gemmArgs{transA: cublasOpT, transB: cublasOpN, m: pr, n: n, k: in,
			a: cs.scratch, aType: cudaR32F, lda: in,
			b: uint64(x), bType: cudaR32F, ldb: in,
			c: uint64(y) + uint64(r0)*4, cType: cudaR32F, ldc: out}
		if trans {
			g.transA, g.m, g.k, g.lda = cublasOpN, out, pr, out
			g.b, g.c = uint64(x)+uint64(r0)*4, uint64(y)
			if r0 > 0 {
				g.beta = 1
			}
		}
		if err := d.blas.gemmEx(cs.blas, g); err != nil {
			return fmt.Errorf("cuda: cuBLAS: %w", err)
		}
	}
	return nil
}

// RMSNorm computes y[r] = x[r] / sqrt(mean(x[r]²) + eps) * w.
func (d *Device) RMSNorm(s device.Stream, y, x, w device.Tensor, eps float32) error {
	const op = "RMSNorm"
	cs, ps, err := d.operands(s, op, device.CheckRMSNorm(y, x, w, eps, weightTypes), y, x, w)
	if err != nil {
		return err
	}
	if x.Rows == 0 || x.Cols == 0 {
		return nil
	}
	if x.Rows > math.MaxInt32 {
		return fmt.Errorf("cuda: %s: %d rows exceed the grid", op, x.Rows)
	}
	return d.launch(cs, "rmsnorm_"+weightSuffix[w.DType], [3]uint32{uint32(x.Rows), 1, 1}, [3]uint32{threads, 1, 1},
		ps[0], ps[1], ps[2], int32(x.Cols), eps)
}

// RoPE rotates x in place; row r is at position pos0+r.
func (d *Device) RoPE(s device.Stream, x device.Tensor, pos0, headDim int, theta float32, style device.RopeStyle) error {
	const op = "RoPE"
	cs, ps, err := d.operands(s, op, device.CheckRoPE(x, pos0, headDim, theta, style), x)
	if err != nil {
		return err
	}
	pairs := int64(x.Rows) * int64(x.Cols) / 2
	if pairs == 0 {
		return nil
	}
	half := int32(0)
	if style == device.RopeHalf {
		half = 1
	}
	grid := (pairs + threads - 1) / threads
	if grid > math.MaxInt32 {
		return fmt.Errorf("cuda: %s: %d pairs exceed the grid", op, pairs)
	}
	return d.launch(cs, "rope", [3]uint32{uint32(grid), 1, 1}, [3]uint32{threads, 1, 1},
		ps[0], int32(x.Rows), int32(x.Cols), int32(pos0), int32(headDim), theta, half)
}

// RoPEFreqs rotates x in place by explicit inverse frequencies.
func (d *Device) RoPEFreqs(s device.Stream, x device.Tensor, pos0, headDim int, freqs device.Tensor, style device.RopeStyle) error {
	const op = "RoPEFreqs"
	cs, ps, err := d.operands(s, op, device.CheckRoPEFreqs(x, pos0, headDim, freqs, style), x, freqs)
	if err != nil {
		return err
	}
	pairs := int64(x.Rows) * int64(x.Cols) / 2
	if pairs == 0 {
		return nil
	}
	half := int32(0)
	if style == device.RopeHalf {
		half = 1
	}
	grid := (pairs + threads - 1) / threads
	if grid > math.MaxInt32 {
		return fmt.Errorf("cuda: %s: %d pairs exceed the grid", op, pairs)
	}
	return d.launch(cs, "rope_freqs", [3]uint32{uint32(grid), 1, 1}, [3]uint32{threads, 1, 1},
		ps[0], int32(x.Rows), int32(x.Cols), int32(pos0), int32(headDim), ps[1], half)
}

// Attention computes causal GQA attention of q's rows over the caches.
func (d *Device) Attention(s device.Stream, out, q, k, v device.Tensor, pos0, nHeads, nKVHeads, headDim int) error {
	const op = "Attention"
	cs, ps, err := d.operands(s, op, device.CheckAttention(out, q, k, v, pos0, nHeads, nKVHeads, headDim), out, q, k, v)
	if err != nil {
		return err
	}
	switch {
	case headDim > attnMaxDim:
		return fmt.Errorf("cuda: %s: head dim %d exceeds %d", op, headDim, attnMaxDim)
	case q.Rows > maxGridY:
		return fmt.Errorf("cuda: %s: %d query rows exceed %d", op, q.Rows, maxGridY)
	}
	if q.Rows == 0 {
		return nil
	}
	scale := float32(1 / math.Sqrt(float64(headDim)))
	return d.launch(cs, "attention", [3]uint32{uint32(nHeads), uint32(q.Rows), 1}, [3]uint32{attnThreads, 1, 1},
		ps[0], ps[1], ps[2], ps[3], int32(pos0), int32(nHeads), int32(nKVHeads), int32(headDim), int32(q.Cols), int32(k.Cols), scale)
}

// SiLUMul computes out = silu(gate) * up.
func (d *Device) SiLUMul(s device.Stream, out, gate, up device.Tensor) error {
	const op = "SiLUMul"
	cs, ps, err := d.operands(s, op, device.CheckSiLUMul(out, gate, up), out, gate, up)
	if err != nil {
		return err
	}
	n := int64(out.Rows) * int64(out.Cols)
	if n == 0 {
		return nil
	}
	return d.launch(cs, "silu_mul", [3]uint32{blocks(n, threads), 1, 1}, [3]uint32{threads, 1, 1}, ps[0], ps[1], ps[2], n)
}

// Add computes y += x.
func (d *Device) Add(s device.Stream, y, x device.Tensor) error {
	const op = "Add"
	cs, ps, err := d.operands(s, op, device.CheckAdd(y, x), y, x)
	if err != nil {
		return err
	}
	n := int64(y.Rows) * int64(y.Cols)
	if n == 0 {
		return nil
	}
	return d.launch(cs, "add_f32", [3]uint32{blocks(n, threads), 1, 1}, [3]uint32{threads, 1, 1}, ps[0], ps[1], n)
}

// GatherRows sets dst[i] = src[idx[i]]. An index out of range is reported
// by the next Synchronize (the kernel sees it, not the enqueuing call).
func (d *Device) GatherRows(s device.Stream, dst, src, idx device.Tensor) error {
	const op = "GatherRows"
	cs, ps, err := d.operands(s, op, device.CheckGatherRows(dst, src, idx), dst, src, idx)
	if err != nil {
		return err
	}
	rowBytes := dst.RowBytes()
	if dst.Rows == 0 || rowBytes == 0 {
		return nil
	}
	name, word := "gather_rows_u16", int64(2)
	if rowBytes%4 == 0 && dst.Off%4 == 0 && src.Off%4 == 0 {
		name, word = "gather_rows_u32", 4
	}
	words := rowBytes / word
	if words > math.MaxInt32 || src.Rows > math.MaxInt32 {
		return fmt.Errorf("cuda: %s: rows of %d bytes are too large", op, rowBytes)
	}
	for i0 := 0; i0 < dst.Rows; i0 += maxGridY {
		k := min(maxGridY, dst.Rows-i0)
		err := d.launch(cs, name, [3]uint32{blocks(words, threads), uint32(k), 1}, [3]uint32{threads, 1, 1},
			ps[0]+devPtr(int64(i0)*rowBytes), ps[1], ps[2]+devPtr(4*i0), int32(k), int32(words), int32(src.Rows), devPtr(cs.errDev))
		if err != nil {
			return err
		}
	}
	return nil
}

// GatherColsT sets dst[i][r] = src[r][idx[i]].
func (d *Device) GatherColsT(s device.Stream, dst, src, idx device.Tensor) error {
	const op = "GatherColsT"
	cs, ps, err := d.operands(s, op, device.CheckGatherColsT(dst, src, idx), dst, src, idx)
	if err != nil {
		return err
	}
	if dst.Rows == 0 || dst.Cols == 0 {
		return nil
	}
	if src.Rows > math.MaxInt32 || src.Cols > math.MaxInt32 {
		return fmt.Errorf("cuda: %s: src %d x %d is too large", op, src.Rows, src.Cols)
	}
	name := "gather_cols_t_u16"
	if src.DType.BlockBytes() == 4 {
		name = "gather_cols_t_u32"
	}
	for i0 := 0; i0 < dst.Rows; i0 += maxGridY {
		k := min(maxGridY, dst.Rows-i0)
		err := d.launch(cs, name, [3]uint32{blocks(int64(src.Rows), threads), uint32(k), 1}, [3]uint32{threads, 1, 1},
			ps[0]+devPtr(int64(i0)*dst.RowBytes()), ps[1], ps[2]+devPtr(4*i0), int32(k), int32(src.Rows), int32(src.Cols), devPtr(cs.errDev))
		if err != nil {
			return err
		}
	}
	return nil
}

// Convert copies src into dst converting the element type: f32 to bf16 or
// f16 (round to nearest even), bf16 or f16 to f32 (exact), or a plain copy
// when the types agree. Shapes must match.
func (d *Device) Convert(s device.Stream, dst, src device.Tensor) error {
	const op = "Convert"
	cs, ps, err := d.operands(s, op, nil, dst, src)
	if err != nil {
		return err
	}
	if err := sameShape(op, dst, src, "dst", "src"); err != nil {
		return err
	}
	n := int64(dst.Rows) * int64(dst.Cols)
	if n == 0 {
		return nil
	}
	var name string
	switch {
	case dst.DType == src.DType:
		return d.CopyDevice(s, dst.Buf, dst.Off, src.Buf, src.Off, dst.Bytes())
	case src.DType == device.F32 && dst.DType == device.BF16:
		name = "f32_to_bf16_k"
	case src.DType == device.F32 && dst.DType == device.F16:
		name = "f32_to_f16_k"
	case src.DType == device.BF16 && dst.DType == device.F32:
		name = "bf16_to_f32_k"
	case src.DType == device.F16 && dst.DType == device.F32:
		name = "f16_to_f32_k"
	default:
		return fmt.Errorf("cuda: %s: %s to %s is not supported", op, src.DType, dst.DType)
	}
	return d.launch(cs, name, [3]uint32{blocks(n, threads), 1, 1}, [3]uint32{threads, 1, 1}, ps[0], ps[1], n)
}

// rowsOp checks a per-row reduction over x [n, cols] F32 writing out [1, n].
func (d *Device) rowsOp(s device.Stream, op string, out, x device.Tensor, outType device.DType) (*stream, []devPtr, error) {
	cs, ps, err := d.operands(s, op, nil, out, x)
	if err != nil {
		return nil, nil, err
	}
	if err := wantDType(op, "x", x, device.F32); err != nil {
		return nil, nil, err
	}
	if err := wantDType(op, "out", out, outType); err != nil {
		return nil, nil, err
	}
	if out.Rows != 1 || out.Cols != x.Rows {
		return nil, nil, fmt.Errorf("cuda: %s: out is %d x %d, want 1 x %d", op, out.Rows, out.Cols, x.Rows)
	}
	if x.Rows > math.MaxInt32 {
		return nil, nil, fmt.Errorf("cuda: %s: %d rows exceed the grid", op, x.Rows)
	}
	return cs, ps, nil
}

// Argmax writes into out ([1, n] I32) the index of the largest element of
// each row of x ([n, cols] F32): the first on ties, never a NaN (0 for an
// all-NaN row). Greedy decoding reads back n ints instead of n*vocab floats.
func (d *Device) Argmax(s device.Stream, out, x device.Tensor) error {
	cs, ps, err := d.rowsOp(s, "Argmax", out, x, device.I32)
	if err != nil || x.Rows == 0 {
		return err
	}
	if x.Cols == 0 {
		return fmt.Errorf("cuda: Argmax: rows are empty")
	}
	return d.launch(cs, "argmax_rows", [3]uint32{uint32(x.Rows), 1, 1}, [3]uint32{threads, 1, 1}, ps[0], ps[1], int32(x.Cols))
}

// Softmax sets y[r] = softmax(x[r] / temperature); y may be x.
func (d *Device) Softmax(s device.Stream, y, x device.Tensor, temperature float32) error {
	const op = "Softmax"
	cs, ps, err := d.operands(s, op, nil, y, x)
	if err != nil {
		return err
	}
	if err := wantDType(op, "x", x, device.F32); err != nil {
		return err
	}
	if err := wantDType(op, "y", y, device.F32); err != nil {
		return err
	}
	if err := sameShape(op, y, x, "y", "x"); err != nil {
		return err
	}
	if !(temperature > 0) {
		return fmt.Errorf("cuda: %s: temperature %g must be positive", op, temperature)
	}
	if x.Rows == 0 || x.Cols == 0 {
		return nil
	}
	return d.launch(cs, "softmax_rows", [3]uint32{uint32(x.Rows), 1, 1}, [3]uint32{threads, 1, 1}, ps[0], ps[1], int32(x.Cols), 1/temperature)
}

// LogLikelihood writes out[r] = log softmax(logits[r] / temperature)[tokens[r]]
// for logits [n, vocab] F32, tokens and out [1, n] (I32, F32): what a Sirius
// check compares with its acceptance threshold. A token out of range gives
// -Inf and an error at the next Synchronize.
func (d *Device) LogLikelihood(s device.Stream, out, logits, tokens device.Tensor, temperature float32) error {
	const op = "LogLikelihood"
	cs, ps, err := d.rowsOp(s, op, out, logits, device.F32)
	if err != nil {
		return err
	}
	tp, err := d.tensor(tokens, op)
	if err != nil {
		return err
	}
	if err := wantDType(op, "tokens", tokens, device.I32); err != nil {
		return err
	}
	if tokens.Rows != 1 || tokens.Cols != logits.Rows {
		return fmt.Errorf("cuda: %s: %d tokens for %d rows of logits", op, tokens.Cols, logits.Rows)
	}
	if !(temperature > 0) {
		return fmt.Errorf("cuda: %s: temperature %g must be positive", op, temperature)
	}
	if logits.Rows == 0 {
		return nil
	}
	return d.launch(cs, "loglik_rows", [3]uint32{uint32(logits.Rows), 1, 1}, [3]uint32{threads, 1, 1},
		ps[0], ps[1], tp, int32(logits.Cols), 1/temperature, devPtr(cs.errDev))
}
