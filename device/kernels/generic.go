package kernels

import "math"

// Plain-Go inner loops. They are the whole implementation without SIMD and
// the fallback for tails and CPUs without AVX2. Four independent accumulators
// keep the floating-point adds from serializing on one register.

func dotF32Generic(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dotBF16Generic(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(w); i += 4 {
		s0 += math.Float32frombits(uint32(w[i])<<16) * x[i]
		s1 += math.Float32frombits(uint32(w[i+1])<<16) * x[i+1]
		s2 += math.Float32frombits(uint32(w[i+2])<<16) * x[i+2]
		s3 += math.Float32frombits(uint32(w[i+3])<<16) * x[i+3]
	}
	for ; i < len(w); i++ {
		s0 += math.Float32frombits(uint32(w[i])<<16) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dotF16Generic(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(w); i += 4 {
		s0 += F16ToF32Scalar(w[i]) * x[i]
		s1 += F16ToF32Scalar(w[i+1]) * x[i+1]
		s2 += F16ToF32Scalar(w[i+2]) * x[i+2]
		s3 += F16ToF32Scalar(w[i+3]) * x[i+3]
	}
	for ; i < len(w); i++ {
		s0 += F16ToF32Scalar(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// The x4 variants dot one weight row w[:kl] with four activation rows
// xs[0:kl], xs[stride:stride+kl], ... so the row is loaded once.

func x4Rows(xs []float32, stride, kl int) (x0, x1, x2, x3 []float32) {
	return xs[:kl], xs[stride : stride+kl], xs[2*stride : 2*stride+kl], xs[3*stride : 3*stride+kl]
}

func dotF32x4Generic(acc *[4]float32, w, xs []float32, stride, kl int) {
	w = w[:kl]
	x0, x1, x2, x3 := x4Rows(xs, stride, kl)
	var s0, s1, s2, s3 float32
	for i, v := range w {
		s0 += v * x0[i]
		s1 += v * x1[i]
		s2 += v * x2[i]
		s3 += v * x3[i]
	}
	*acc = [4]float32{s0, s1, s2, s3}
}

func dotBF16x4Generic(acc *[4]float32, w []uint16, xs []float32, stride, kl int) {
	w = w[:kl]
	x0, x1, x2, x3 := x4Rows(xs, stride, kl)
	var s0, s1, s2, s3 float32
	for i, h := range w {
		v := math.Float32frombits(uint32(h) << 16)
		s0 += v * x0[i]
		s1 += v * x1[i]
		s2 += v * x2[i]
		s3 += v * x3[i]
	}
	*acc = [4]float32{s0, s1, s2, s3}
}

func dotF16x4Generic(acc *[4]float32, w []uint16, xs []float32, stride, kl int) {
	w = w[:kl]
	x0, x1, x2, x3 := x4Rows(xs, stride, kl)
	var s0, s1, s2, s3 float32
	for i, h := range w {
		v := F16ToF32Scalar(h)
		s0 += v * x0[i]
		s1 += v * x1[i]
		s2 += v * x2[i]
		s3 += v * x3[i]
	}
	*acc = [4]float32{s0, s1, s2, s3}
}

// The 3x4 variants dot three weight rows (w[j*wstride:][:kl], j < 3) with
// four activation rows: acc[j*4+r] = w_j · x_r. Plain Go gains nothing from
// fusing the rows, so it runs the x4 loop three times.

func dot3x4F32Generic(acc *[12]float32, w []float32, wstride int, xs []float32, stride, kl int) {
	for j := range 3 {
		dotF32x4Generic((*[4]float32)(acc[4*j:]), w[j*wstride:j*wstride+kl], xs, stride, kl)
	}
}

func dot3x4BF16Generic(acc *[12]float32, w []uint16, wstride int, xs []float32, stride, kl int) {
	for j := range 3 {
		dotBF16x4Generic((*[4]float32)(acc[4*j:]), w[j*wstride:j*wstride+kl], xs, stride, kl)
	}
}

func dot3x4F16Generic(acc *[12]float32, w []uint16, wstride int, xs []float32, stride, kl int) {
	for j := range 3 {
		dotF16x4Generic((*[4]float32)(acc[4*j:]), w[j*wstride:j*wstride+kl], xs, stride, kl)
	}
}

// axpy*: y[j] += a * w[j] for j < len(y).

func axpyF32Generic(y []float32, a float32, w []float32) {
	w = w[:len(y)]
	for j, v := range w {
		y[j] += a * v
	}
}

func axpyBF16Generic(y []float32, a float32, w []uint16) {
	w = w[:len(y)]
	for j, h := range w {
		y[j] += a * math.Float32frombits(uint32(h)<<16)
	}
}

func axpyF16Generic(y []float32, a float32, w []uint16) {
	w = w[:len(y)]
	for j, h := range w {
		y[j] += a * F16ToF32Scalar(h)
	}
}

// readOrGeneric ORs every word of p: a plain streaming read, the ceiling the
// product kernels are measured against.
func readOrGeneric(p []uint64) uint64 {
	var a, b, c, d uint64
	i := 0
	for ; i+4 <= len(p); i += 4 {
		a |= p[i]
		b |= p[i+1]
		c |= p[i+2]
		d |= p[i+3]
	}
	for ; i < len(p); i++ {
		a |= p[i]
	}
	return a | b | c | d
}

// tileTF32Generic is the register block of a batched MatMulT (on a packed
// float32 panel, see packT): for the four rows r < 4,
// dst[r*dstride : r*dstride+16] += Σ_{i<ni} x[r*xstride+i] *
// w[i*wstride : i*wstride+16]. Plain Go keeps the 4x16 block in an array.

func tileTF32Generic(dst []float32, dstride int, x []float32, xstride int, w []float32, wstride, ni int) {
	var acc [4][16]float32
	for i := range ni {
		ws := w[i*wstride : i*wstride+16]
		for r := range 4 {
			a := x[r*xstride+i]
			for j, v := range ws {
				acc[r][j] += a * v
			}
		}
	}
	tileTStore(dst, dstride, &acc)
}

func tileTStore(dst []float32, dstride int, acc *[4][16]float32) {
	for r := range 4 {
		d := dst[r*dstride : r*dstride+16]
		for j, v := range acc[r] {
			d[j] += v
		}
	}
}

// The 4x1 variants dot four weight rows (w[j*wstride:][:kl], j < 4) with one
// activation row x[:kl]: the matvec inner loop. Plain Go runs four dots.

func dot4x1F32Generic(acc *[4]float32, w []float32, wstride int, x []float32, kl int) {
	for j := range 4 {
		acc[j] = dotF32Generic(w[j*wstride:j*wstride+kl], x[:kl])
	}
}

func dot4x1BF16Generic(acc *[4]float32, w []uint16, wstride int, x []float32, kl int) {
	for j := range 4 {
		acc[j] = dotBF16Generic(w[j*wstride:j*wstride+kl], x[:kl])
	}
}

func dot4x1F16Generic(acc *[4]float32, w []uint16, wstride int, x []float32, kl int) {
	for j := range 4 {
		acc[j] = dotF16Generic(w[j*wstride:j*wstride+kl], x[:kl])
	}
}

// The axpy 4x1 variants add Σ_{j<4} a[j]*w[j*wstride+c] into y[c] for c <
// len(y). Plain Go does four axpys.

func axpy4x1F32Generic(y []float32, a *[4]float32, w []float32, wstride int) {
	for j := range 4 {
		axpyF32Generic(y, a[j], w[j*wstride:j*wstride+len(y)])
	}
}

func axpy4x1BF16Generic(y []float32, a *[4]float32, w []uint16, wstride int) {
	for j := range 4 {
		axpyBF16Generic(y, a[j], w[j*wstride:j*wstride+len(y)])
	}
}

func axpy4x1F16Generic(y []float32, a *[4]float32, w []uint16, wstride int) {
	for j := range 4 {
		axpyF16Generic(y, a[j], w[j*wstride:j*wstride+len(y)])
	}
}

// The packT functions copy a 32-column strip of weight rows into a
// contiguous float32 panel: dst[i*32+j] = w[i*stride+j] for i < rows, j < 32.
// Batched MatMulT packs before tiling because Llama widths are powers of two:
// walking a column strip down rows whose stride is a multiple of 4 KiB maps
// every row to the same cache set, and the strip would never stay cached.

func packTF32Generic(dst, w []float32, stride, rows int) {
	for i := range rows {
		copy(dst[i*32:i*32+32], w[i*stride:i*stride+32])
	}
}

func packTBF16Generic(dst []float32, w []uint16, stride, rows int) {
	for i := range rows {
		bf16ToF32Generic(dst[i*32:i*32+32], w[i*stride:i*stride+32])
	}
}

func packTF16Generic(dst []float32, w []uint16, stride, rows int) {
	for i := range rows {
		f16ToF32Generic(dst[i*32:i*32+32], w[i*stride:i*stride+32])
	}
}

// packRowsGeneric copies rows of cols elements from src (row stride lds)
// into dst (row stride ldd) through conv.
func packRowsGeneric[T any](dst []float32, ldd int, src []T, lds, rows, cols int, conv func([]float32, []T)) {
	for i := range rows {
		conv(dst[i*ldd:i*ldd+cols], src[i*lds:i*lds+cols])
	}
}

func colMaxGeneric(m, x []float32, rows, width int) {
	m = m[:width]
	for r := range rows {
		for c, v := range x[r*width : (r+1)*width] {
			m[c] = max(m[c], v)
		}
	}
}

func expSubGeneric(x, m, s []float32, rows, width int) {
	m, s = m[:width], s[:width]
	for r := range rows {
		xr := x[r*width : (r+1)*width]
		for c, v := range xr {
			e := float32(math.Exp(float64(v - m[c])))
			xr[c] = e
			s[c] += e
		}
	}
}
