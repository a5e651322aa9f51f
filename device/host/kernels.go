package host

import (
	"fmt"
	"math"
	"unsafe"

	"offload/device"
	"offload/device/kernels"
	"offload/quant"
)

// bytes returns the bytes of tensors already checked by the device package's
// Check functions: this backend adds only that each buffer is one of its own
// and still live. Slices are taken at enqueue time, so a later Free cannot
// pull memory from under queued work.
func (d *Device) bytes(op string, check error, ts ...device.Tensor) ([][]byte, error) {
	if check != nil {
		return nil, fmt.Errorf("host: %w", check)
	}
	out := make([][]byte, len(ts))
	for i, t := range ts {
		b, data, err := d.bytesOf(t.Buf, op)
		if err != nil {
			if err == errClosed {
				return nil, err
			}
			return nil, fmt.Errorf("host: %w", err)
		}
		if i == 0 && b.readonly { // every kernel writes its first operand
			return nil, fmt.Errorf("host: %s: the output %q is read-only mapped host memory", op, b.label)
		}
		out[i] = data[t.Off : t.Off+t.Bytes()]
	}
	return out, nil
}

func f32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func u16s(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

func u32s(b []byte) []uint32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func i32s(b []byte) []int32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// caps are the host backend's capabilities.
var caps = device.Capabilities{WeightTypes: device.WeightTypes, MapsHost: true}

// quantTypes maps the device's block-quantized types to the kernels' (ggml's).
var quantTypes = map[device.DType]quant.Type{
	device.Q4_0: quant.Q4_0, device.Q4_1: quant.Q4_1, device.Q5_0: quant.Q5_0, device.Q5_1: quant.Q5_1,
	device.Q8_0: quant.Q8_0, device.Q2_K: quant.Q2_K, device.Q3_K: quant.Q3_K, device.Q4_K: quant.Q4_K,
	device.Q5_K: quant.Q5_K, device.Q6_K: quant.Q6_K,
}

// Caps says which weight types the CPU kernels compute with.
func (d *Device) Caps() device.Capabilities { return caps }

// MatMul computes y[r] = W x[r] with w [out, in] (package kernels).
func (d *Device) MatMul(s device.Stream, y, x, w device.Tensor) error {
	return d.matmul("MatMul", s, y, x, w, false)
}

// MatMulT computes y[r] = x[r] W with w [in, out] (package kernels).
func (d *Device) MatMulT(s device.Stream, y, x, w device.Tensor) error {
	return d.matmul("MatMulT", s, y, x, w, true)
}

func (d *Device) matmul(op string, s device.Stream, y, x, w device.Tensor, transposed bool) error {
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckMatMul(y, x, w, transposed, caps.WeightTypes), y, x, w)
	if err != nil {
		return err
	}
	in, out := w.Cols, w.Rows
	if transposed {
		in, out = w.Rows, w.Cols
	}
	yv, xv, n := f32s(b[0]), f32s(b[1]), x.Rows
	var fn func()
	switch {
	case w.DType.Quantized() && transposed:
		qt := quantTypes[w.DType]
		fn = func() { kernels.MatMulTQ(qt, yv, xv, b[2], n, in, out) }
	case w.DType.Quantized():
		qt := quantTypes[w.DType]
		fn = func() { kernels.MatMulQ(qt, yv, xv, b[2], n, in, out) }
	case w.DType == device.F32 && !transposed:
		fn = func() { kernels.MatMulF32(yv, xv, f32s(b[2]), n, in, out) }
	case w.DType == device.F16 && !transposed:
		fn = func() { kernels.MatMulF16(yv, xv, u16s(b[2]), n, in, out) }
	case w.DType == device.BF16 && !transposed:
		fn = func() { kernels.MatMulBF16(yv, xv, u16s(b[2]), n, in, out) }
	case w.DType == device.F32:
		fn = func() { kernels.MatMulTF32(yv, xv, f32s(b[2]), n, in, out) }
	case w.DType == device.F16:
		fn = func() { kernels.MatMulTF16(yv, xv, u16s(b[2]), n, in, out) }
	default:
		fn = func() { kernels.MatMulTBF16(yv, xv, u16s(b[2]), n, in, out) }
	}
	return st.work(op, func(*item) error { fn(); return nil })
}

// widen returns w (a weight vector of any weight dtype) as float32.
func widen(dt device.DType, b []byte) []float32 {
	switch dt {
	case device.F16:
		out := make([]float32, len(b)/2)
		kernels.F16ToF32(out, u16s(b))
		return out
	case device.BF16:
		out := make([]float32, len(b)/2)
		kernels.BF16ToF32(out, u16s(b))
		return out
	}
	return f32s(b)
}

// RMSNorm follows llama2.c: y = x * w / sqrt(Σx²/n + eps), the sum of
// squares accumulated in float64. y may be x.
func (d *Device) RMSNorm(s device.Stream, y, x, w device.Tensor, eps float32) error {
	const op = "RMSNorm"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckRMSNorm(y, x, w, eps, caps.WeightTypes), y, x, w)
	if err != nil {
		return err
	}
	yv, xv, n, c := f32s(b[0]), f32s(b[1]), x.Rows, x.Cols
	return st.work(op, func(*item) error {
		wv := widen(w.DType, b[2])
		d.parallel(n, n*c, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, yr := xv[r*c:(r+1)*c], yv[r*c:(r+1)*c]
				var ss float64
				for _, v := range xr {
					ss += float64(v) * float64(v)
				}
				inv := float32(1 / math.Sqrt(ss/float64(c)+float64(eps)))
				for j, v := range xr {
					yr[j] = wv[j] * (inv * v)
				}
			}
		})
		return nil
	})
}

// ropeKey names a table of rotation angles; ropeTable holds cos and sin of
// pos*freq(i) for positions [0, n) and pairs i in [0, headDim/2), computed in
// float64 and rounded once. Tables only grow and are never modified once
// published, so readers need no lock.
type ropeKey struct {
	headDim int
	theta   float32
}

type ropeTable struct {
	n        int
	cos, sin []float32
}

func (d *Device) ropeTable(k ropeKey, n int) *ropeTable {
	d.ropeMu.Lock()
	defer d.ropeMu.Unlock()
	t := d.rope[k]
	if t != nil && t.n >= n {
		return t
	}
	// Grow geometrically so decoding one position at a time rebuilds rarely.
	size := max(n, 256)
	if t != nil {
		size = max(n, 2*t.n)
	}
	size = min(size, max(n, ropeTableMax))
	half := k.headDim / 2
	nt := &ropeTable{n: size, cos: make([]float32, size*half), sin: make([]float32, size*half)}
	freq := make([]float64, half)
	for i := range freq {
		freq[i] = math.Pow(float64(k.theta), -float64(2*i)/float64(k.headDim))
	}
	for p := range size {
		for i, f := range freq {
			sn, cs := math.Sincos(float64(p) * f)
			nt.cos[p*half+i], nt.sin[p*half+i] = float32(cs), float32(sn)
		}
	}
	d.rope[k] = nt
	return nt
}

// ropeTableMax bounds the positions a cached rotation table covers (its
// size is positions x headDim/2 x 8 bytes of host memory: 64 MiB for 128k
// positions of a 128-wide head); rows beyond it compute their angles.
const ropeTableMax = 1 << 17

// RoPE rotates x in place; pair i of a head turns by pos * theta^(-2i/headDim).
func (d *Device) RoPE(s device.Stream, x device.Tensor, pos0, headDim int, theta float32, style device.RopeStyle) error {
	const op = "RoPE"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckRoPE(x, pos0, headDim, theta, style), x)
	if err != nil {
		return err
	}
	xv, n, c, half := f32s(b[0]), x.Rows, x.Cols, headDim/2
	return st.work(op, func(*item) error {
		tab := d.ropeTable(ropeKey{headDim, theta}, min(pos0+n, ropeTableMax))
		d.parallel(n, n*c*4, func(lo, hi int) {
			var own []float32
			for r := lo; r < hi; r++ {
				p := pos0 + r
				var cs, sn []float32
				if p < tab.n {
					cs, sn = tab.cos[p*half:(p+1)*half], tab.sin[p*half:(p+1)*half]
				} else {
					if own == nil {
						own = make([]float32, 2*half)
					}
					cs, sn = own[:half], own[half:]
					for i := range half {
						s, c := math.Sincos(float64(p) * math.Pow(float64(theta), -float64(2*i)/float64(headDim)))
						cs[i], sn[i] = float32(c), float32(s)
					}
				}
				rotateHeads(xv[r*c:(r+1)*c], headDim, cs, sn, style)
			}
		})
		return nil
	})
}

// Attention is causal GQA attention (scale 1/sqrt(headDim)), computed by
// kernels.Attention.
func (d *Device) Attention(s device.Stream, out, q, k, v device.Tensor, pos0, nHeads, nKVHeads, headDim int) error {
	const op = "Attention"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckAttention(out, q, k, v, pos0, nHeads, nKVHeads, headDim), out, q, k, v)
	if err != nil {
		return err
	}
	ov, qv, kv, vv, n := f32s(b[0]), f32s(b[1]), f32s(b[2]), f32s(b[3]), q.Rows
	return st.work(op, func(*item) error {
		kernels.Attention(ov, qv, kv, vv, n, pos0, nHeads, nKVHeads, headDim)
		return nil
	})
}

// SiLUMul computes out = silu(gate) * up; out may be gate or up.
func (d *Device) SiLUMul(s device.Stream, out, gate, up device.Tensor) error {
	const op = "SiLUMul"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckSiLUMul(out, gate, up), out, gate, up)
	if err != nil {
		return err
	}
	ov, gv, uv := f32s(b[0]), f32s(b[1]), f32s(b[2])
	return st.work(op, func(*item) error {
		d.parallel(len(ov), len(ov)*8, func(lo, hi int) {
			kernels.SiLUMul(ov[lo:hi], gv[lo:hi], uv[lo:hi])
		})
		return nil
	})
}

// Add computes y += x.
func (d *Device) Add(s device.Stream, y, x device.Tensor) error {
	const op = "Add"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckAdd(y, x), y, x)
	if err != nil {
		return err
	}
	yv, xv := f32s(b[0]), f32s(b[1])
	return st.work(op, func(*item) error {
		d.parallel(len(yv), len(yv), func(lo, hi int) {
			ys, xs := yv[lo:hi], xv[lo:hi]
			for i := range ys {
				ys[i] += xs[i]
			}
		})
		return nil
	})
}

// checkIndex validates idx (a [1, k] I32 tensor) against a limit at run
// time: the indices live in device memory, so only the kernel sees them.
func checkIndex(idx []int32, limit int) error {
	for i, v := range idx {
		if v < 0 || int(v) >= limit {
			return fmt.Errorf("index %d at position %d out of range [0, %d)", v, i, limit)
		}
	}
	return nil
}

// GatherRows sets dst[i] = src[idx[i]]; an index out of range is reported by
// Synchronize and leaves dst unchanged.
func (d *Device) GatherRows(s device.Stream, dst, src, idx device.Tensor) error {
	const op = "GatherRows"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckGatherRows(dst, src, idx), dst, src, idx)
	if err != nil {
		return err
	}
	dv, sv, iv, rb, rows := b[0], b[1], i32s(b[2]), int(src.RowBytes()), src.Rows
	return st.work(op, func(*item) error {
		if err := checkIndex(iv, rows); err != nil {
			return err
		}
		d.parallel(len(iv), len(iv)*rb/4, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				r := int(iv[i])
				copy(dv[i*rb:(i+1)*rb], sv[r*rb:(r+1)*rb])
			}
		})
		return nil
	})
}

// GatherColsT sets dst[i][r] = src[r][idx[i]]. It walks src in blocks of
// rows so that each block's rows stay in cache while every index reads them.
func (d *Device) GatherColsT(s device.Stream, dst, src, idx device.Tensor) error {
	const op = "GatherColsT"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckGatherColsT(dst, src, idx), dst, src, idx)
	if err != nil {
		return err
	}
	iv, rows, cols := i32s(b[2]), src.Rows, src.Cols
	const block = 16
	nblocks := (rows + block - 1) / block
	return st.work(op, func(*item) error {
		if err := checkIndex(iv, cols); err != nil {
			return err
		}
		work := len(iv) * rows
		if src.DType.BlockBytes() == 2 {
			dv, sv := u16s(b[0]), u16s(b[1])
			d.parallel(nblocks, work, func(lo, hi int) { gatherColsT(dv, sv, iv, rows, cols, lo*block, min(hi*block, rows)) })
		} else {
			dv, sv := u32s(b[0]), u32s(b[1])
			d.parallel(nblocks, work, func(lo, hi int) { gatherColsT(dv, sv, iv, rows, cols, lo*block, min(hi*block, rows)) })
		}
		return nil
	})
}

func gatherColsT[T uint16 | uint32](dst, src []T, idx []int32, rows, cols, r0, r1 int) {
	const block = 16
	for b0 := r0; b0 < r1; b0 += block {
		b1 := min(b0+block, r1)
		for i, c := range idx {
			out := dst[i*rows+b0 : i*rows+b1]
			for r := range out {
				out[r] = src[(b0+r)*cols+int(c)]
			}
		}
	}
}

// RoPEFreqs rotates x in place; pair i of a head turns by pos * freqs[i].
func (d *Device) RoPEFreqs(s device.Stream, x device.Tensor, pos0, headDim int, freqs device.Tensor, style device.RopeStyle) error {
	const op = "RoPEFreqs"
	st, err := d.streamOf(s, op)
	if err != nil {
		return err
	}
	b, err := d.bytes(op, device.CheckRoPEFreqs(x, pos0, headDim, freqs, style), x, freqs)
	if err != nil {
		return err
	}
	xv, fv, n, c, half := f32s(b[0]), f32s(b[1]), x.Rows, x.Cols, headDim/2
	return st.work(op, func(*item) error {
		d.parallel(n, n*c*4, func(lo, hi int) {
			cs, sn := make([]float32, half), make([]float32, half)
			for r := lo; r < hi; r++ {
				p := float64(pos0 + r)
				for i := range half {
					s, c := math.Sincos(p * float64(fv[i]))
					cs[i], sn[i] = float32(c), float32(s)
				}
				rotateHeads(xv[r*c:(r+1)*c], headDim, cs, sn, style)
			}
		})
		return nil
	})
}

// rotateHeads turns every head of one row by the angles whose cosines and
// sines are cs and sn (one per pair), pairing elements as style says.
func rotateHeads(row []float32, headDim int, cs, sn []float32, style device.RopeStyle) {
	half := headDim / 2
	for h := 0; h < len(row); h += headDim {
		v := row[h : h+headDim]
		if style == device.RopeInterleaved {
			for i := range half {
				a, b := v[2*i], v[2*i+1]
				v[2*i], v[2*i+1] = a*cs[i]-b*sn[i], a*sn[i]+b*cs[i]
			}
			continue
		}
		lo, hi := v[:half], v[half:]
		for i := range half {
			a, b := lo[i], hi[i]
			lo[i], hi[i] = a*cs[i]-b*sn[i], a*sn[i]+b*cs[i]
		}
	}
}
