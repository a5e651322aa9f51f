//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// The AVX2 kernels process whole vectors of 8 (16 for F32ToBF16); these
// wrappers check bounds once, hand the vector part to assembly and finish the
// short tail in Go. F16 weights also need F16C (VCVTPH2PS/VCVTPS2PH), which
// every AVX2 CPU in practice has but which is checked separately anyway.
var (
	hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasF16C = hasAVX2 && cpu.X86.HasF16C
)

// useAsm switches the SIMD kernels on; SetPlain and tests clear it to run
// the plain Go path on the same machine.
var useAsm = hasAVX2

// hasSIMD is what useAsm is when not forced plain.
var hasSIMD = hasAVX2

func simdName() string {
	switch {
	case !useAsm:
		return "plain"
	case hasAVX512:
		return "avx512"
	}
	return "avx2"
}

//go:noescape
func dotF32AVX2(w, x *float32, n int) float32

//go:noescape
func dotBF16AVX2(w *uint16, x *float32, n int) float32

//go:noescape
func dotF16AVX2(w *uint16, x *float32, n int) float32

//go:noescape
func axpyF32AVX2(y *float32, a float32, w *float32, n int)

//go:noescape
func axpyBF16AVX2(y *float32, a float32, w *uint16, n int)

//go:noescape
func axpyF16AVX2(y *float32, a float32, w *uint16, n int)

//go:noescape
func bf16ToF32AVX2(dst *float32, src *uint16, n int)

//go:noescape
func f16ToF32AVX2(dst *float32, src *uint16, n int)

//go:noescape
func f32ToBF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func f32ToF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func readOrAVX2(p *uint64, q int) uint64

func dotF32(a, b []float32) float32 {
	if !useAsm || len(a) < 8 {
		return dotF32Generic(a, b)
	}
	b = b[:len(a)]
	m := len(a) &^ 7
	s := dotF32AVX2(&a[0], &b[0], m)
	for i := m; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

func dotBF16(w []uint16, x []float32) float32 {
	if !useAsm || len(w) < 8 {
		return dotBF16Generic(w, x)
	}
	x = x[:len(w)]
	m := len(w) &^ 7
	s := dotBF16AVX2(&w[0], &x[0], m)
	for i := m; i < len(w); i++ {
		s += BF16ToF32Scalar(w[i]) * x[i]
	}
	return s
}

func dotF16(w []uint16, x []float32) float32 {
	if !useAsm || !hasF16C || len(w) < 8 {
		return dotF16Generic(w, x)
	}
	x = x[:len(w)]
	m := len(w) &^ 7
	s := dotF16AVX2(&w[0], &x[0], m)
	for i := m; i < len(w); i++ {
		s += F16ToF32Scalar(w[i]) * x[i]
	}
	return s
}

func axpyF32(y []float32, a float32, w []float32) {
	if !useAsm || len(y) < 8 {
		axpyF32Generic(y, a, w)
		return
	}
	w = w[:len(y)]
	m := len(y) &^ 7
	axpyF32AVX2(&y[0], a, &w[0], m)
	axpyF32Generic(y[m:], a, w[m:])
}

func axpyBF16(y []float32, a float32, w []uint16) {
	if !useAsm || len(y) < 8 {
		axpyBF16Generic(y, a, w)
		return
	}
	w = w[:len(y)]
	m := len(y) &^ 7
	axpyBF16AVX2(&y[0], a, &w[0], m)
	axpyBF16Generic(y[m:], a, w[m:])
}

func axpyF16(y []float32, a float32, w []uint16) {
	if !useAsm || !hasF16C || len(y) < 8 {
		axpyF16Generic(y, a, w)
		return
	}
	w = w[:len(y)]
	m := len(y) &^ 7
	axpyF16AVX2(&y[0], a, &w[0], m)
	axpyF16Generic(y[m:], a, w[m:])
}

func bf16ToF32(dst []float32, src []uint16) {
	if !useAsm || len(src) < 8 {
		bf16ToF32Generic(dst, src)
		return
	}
	dst = dst[:len(src)]
	m := len(src) &^ 7
	bf16ToF32AVX2(&dst[0], &src[0], m)
	bf16ToF32Generic(dst[m:], src[m:])
}

func f16ToF32(dst []float32, src []uint16) {
	if !useAsm || !hasF16C || len(src) < 8 {
		f16ToF32Generic(dst, src)
		return
	}
	dst = dst[:len(src)]
	m := len(src) &^ 7
	f16ToF32AVX2(&dst[0], &src[0], m)
	f16ToF32Generic(dst[m:], src[m:])
}

func f32ToBF16(dst []uint16, src []float32) {
	if !useAsm || len(src) < 16 {
		f32ToBF16Generic(dst, src)
		return
	}
	dst = dst[:len(src)]
	m := len(src) &^ 15
	f32ToBF16AVX2(&dst[0], &src[0], m)
	f32ToBF16Generic(dst[m:], src[m:])
}

func f32ToF16(dst []uint16, src []float32) {
	if !useAsm || !hasF16C || len(src) < 8 {
		f32ToF16Generic(dst, src)
		return
	}
	dst = dst[:len(src)]
	m := len(src) &^ 7
	f32ToF16AVX2(&dst[0], &src[0], m)
	f32ToF16Generic(dst[m:], src[m:])
}

// readOr reads p as four interleaved streams (see readOrAVX2).
func readOr(p []uint64) uint64 {
	q := len(p) / 4 &^ 7
	if !useAsm || q == 0 {
		return readOrGeneric(p)
	}
	return readOrAVX2(&p[0], q) | readOrGeneric(p[4*q:])
}

//go:noescape
func dotF324x1AVX2(acc *[4]float32, w *float32, wstride int, x *float32, n int)

//go:noescape
func dotBF164x1AVX2(acc *[4]float32, w *uint16, wstride int, x *float32, n int)

//go:noescape
func dotF164x1AVX2(acc *[4]float32, w *uint16, wstride int, x *float32, n int)

// tail4x1 adds the products past m (the vector part) for all four rows.
func tail4x1(acc *[4]float32, w func(i int) float32, wstride int, x []float32, m, kl int) {
	for i := m; i < kl; i++ {
		v := x[i]
		acc[0] += w(i) * v
		acc[1] += w(wstride+i) * v
		acc[2] += w(2*wstride+i) * v
		acc[3] += w(3*wstride+i) * v
	}
}

func dot4x1F32(acc *[4]float32, w []float32, wstride int, x []float32, kl int) {
	if !useAsm || kl < 8 {
		dot4x1F32Generic(acc, w, wstride, x, kl)
		return
	}
	w, x = w[:3*wstride+kl], x[:kl]
	m := kl &^ 7
	if hasAVX512 && kl >= 16 {
		m = kl &^ 15
		dot4x1F32AVX512(acc, &w[0], wstride, &x[0], m)
	} else {
		dotF324x1AVX2(acc, &w[0], wstride, &x[0], m)
	}
	if m < kl {
		tail4x1(acc, func(i int) float32 { return w[i] }, wstride, x, m, kl)
	}
}

func dot4x1BF16(acc *[4]float32, w []uint16, wstride int, x []float32, kl int) {
	if !useAsm || kl < 8 {
		dot4x1BF16Generic(acc, w, wstride, x, kl)
		return
	}
	w, x = w[:3*wstride+kl], x[:kl]
	m := kl &^ 7
	if hasAVX512 && kl >= 16 {
		m = kl &^ 15
		dot4x1BF16AVX512(acc, &w[0], wstride, &x[0], m)
	} else {
		dotBF164x1AVX2(acc, &w[0], wstride, &x[0], m)
	}
	if m < kl {
		tail4x1(acc, func(i int) float32 { return BF16ToF32Scalar(w[i]) }, wstride, x, m, kl)
	}
}

func dot4x1F16(acc *[4]float32, w []uint16, wstride int, x []float32, kl int) {
	if !useAsm || !hasF16C || kl < 8 {
		dot4x1F16Generic(acc, w, wstride, x, kl)
		return
	}
	w, x = w[:3*wstride+kl], x[:kl]
	m := kl &^ 7
	if hasAVX512 && kl >= 16 {
		m = kl &^ 15
		dot4x1F16AVX512(acc, &w[0], wstride, &x[0], m)
	} else {
		dotF164x1AVX2(acc, &w[0], wstride, &x[0], m)
	}
	if m < kl {
		tail4x1(acc, func(i int) float32 { return F16ToF32Scalar(w[i]) }, wstride, x, m, kl)
	}
}

//go:noescape
func axpyF324x1AVX2(y *float32, a *[4]float32, w *float32, wstride, n int)

//go:noescape
func axpyBF164x1AVX2(y *float32, a *[4]float32, w *uint16, wstride, n int)

//go:noescape
func axpyF164x1AVX2(y *float32, a *[4]float32, w *uint16, wstride, n int)

func axpy4x1F32(y []float32, a *[4]float32, w []float32, wstride int) {
	n := len(y)
	if !useAsm || n < 8 {
		axpy4x1F32Generic(y, a, w, wstride)
		return
	}
	w = w[:3*wstride+n]
	m := n &^ 7
	axpyF324x1AVX2(&y[0], a, &w[0], wstride, m)
	if m < n {
		axpy4x1F32Generic(y[m:], a, w[m:], wstride)
	}
}

func axpy4x1BF16(y []float32, a *[4]float32, w []uint16, wstride int) {
	n := len(y)
	if !useAsm || n < 8 {
		axpy4x1BF16Generic(y, a, w, wstride)
		return
	}
	w = w[:3*wstride+n]
	m := n &^ 7
	axpyBF164x1AVX2(&y[0], a, &w[0], wstride, m)
	if m < n {
		axpy4x1BF16Generic(y[m:], a, w[m:], wstride)
	}
}

func axpy4x1F16(y []float32, a *[4]float32, w []uint16, wstride int) {
	n := len(y)
	if !useAsm || !hasF16C || n < 8 {
		axpy4x1F16Generic(y, a, w, wstride)
		return
	}
	w = w[:3*wstride+n]
	m := n &^ 7
	axpyF164x1AVX2(&y[0], a, &w[0], wstride, m)
	if m < n {
		axpy4x1F16Generic(y[m:], a, w[m:], wstride)
	}
}

// hasAVX512 enables the AVX-512 micro-kernels of the batched products
// (EVEX encoding of all 32 registers, embedded broadcasts).
var hasAVX512 = hasF16C && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL

func init() { setAVX512(hasAVX512) }

//go:noescape
func packRowsF32AVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)

//go:noescape
func packRowsF16AVX2(dst *float32, ldd int, src *uint16, lds int, rows, cols int)

//go:noescape
func packRowsBF16AVX2(dst *float32, ldd int, src *uint16, lds int, rows, cols int)

// The packRows wrappers take slices already cut to exactly the elements
// read and written (see wsource.pack).
func packRowsF32(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	packRowsF32AVX2(&dst[0], ldd, &src[0], lds, rows, cols)
}

func packRowsF16(dst []float32, ldd int, src []uint16, lds, rows, cols int) {
	packRowsF16AVX2(&dst[0], ldd, &src[0], lds, rows, cols)
}

func packRowsBF16(dst []float32, ldd int, src []uint16, lds, rows, cols int) {
	packRowsBF16AVX2(&dst[0], ldd, &src[0], lds, rows, cols)
}

//go:noescape
func fmaLoopAVX512(n int)

//go:noescape
func fmaLoopAVX2(n int)

// fmaLoop runs n iterations of the FMA peak loop and returns the
// floating-point operations done (0 without SIMD).
func fmaLoop(n int) float64 {
	switch {
	case hasAVX512:
		fmaLoopAVX512(n)
		return float64(n) * 12 * 16 * 2
	case hasAVX2:
		fmaLoopAVX2(n)
		return float64(n) * 12 * 8 * 2
	}
	return 0
}

//go:noescape
func colMaxAVX2(m *float32, x *float32, rows, width int)

//go:noescape
func expSubAVX2(x *float32, m *float32, s *float32, rows, width int)

//go:noescape
func expSubAVX512(x *float32, m *float32, s *float32, rows, width int)

// colMax sets m[c] = max(m[c], x[r*width+c]) over r < rows; width is a
// multiple of 8 and len(m) == width.
func colMax(m, x []float32, rows, width int) {
	if rows == 0 {
		return
	}
	x = x[:rows*width]
	if !useAsm {
		colMaxGeneric(m, x, rows, width)
		return
	}
	_ = m[width-1]
	colMaxAVX2(&m[0], &x[0], rows, width)
}

// expSub replaces x[r*width+c] by exp(x[r*width+c]-m[c]) and adds it to
// s[c]; width is a multiple of 8.
func expSub(x, m, s []float32, rows, width int) {
	if rows == 0 {
		return
	}
	x = x[:rows*width]
	if !useAsm {
		expSubGeneric(x, m, s, rows, width)
		return
	}
	_, _ = m[width-1], s[width-1]
	if hasAVX512 && width%16 == 0 {
		expSubAVX512(&x[0], &m[0], &s[0], rows, width)
		return
	}
	expSubAVX2(&x[0], &m[0], &s[0], rows, width)
}

//go:noescape
func siluMulAVX512(out, gate, up *float32, n int)

//go:noescape
func siluMulAVX2(out, gate, up *float32, n int)

func siluMul(out, gate, up []float32) {
	n := len(out)
	m := 0
	switch {
	case !useAsm:
	case hasAVX512:
		m = n &^ 15
		if m > 0 {
			siluMulAVX512(&out[0], &gate[0], &up[0], m)
		}
	default:
		m = n &^ 7
		if m > 0 {
			siluMulAVX2(&out[0], &gate[0], &up[0], m)
		}
	}
	siluMulGeneric(out[m:], gate[m:], up[m:])
}

// setAVX512 switches the AVX-512 kernels off (or back on, where the CPU
// has them) and returns the previous setting; with them off the AVX2 set
// runs, so tests cover both on an AVX-512 machine. Call it while no kernel
// runs.
func setAVX512(on bool) (was bool) {
	was = hasAVX512
	hasAVX512 = on && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && hasF16C
	gemmTable, gemmWide = nil, false
	switch {
	case hasAVX512:
		gemmTable, gemmWide = gemmKernelsZ, true
	case hasF16C:
		gemmTable = gemmKernelsY
	}
	plans.Clear()
	return was
}
