//go:build !amd64 || purego

package kernels

// Without assembly every kernel is its plain-Go version.

// useAsm reports whether the SIMD kernels are in use; always false here.
var useAsm = false

// hasSIMD says whether SIMD kernels exist; never here.
const hasSIMD = false

// simdName names the inner loops in use.
func simdName() string { return "plain" }

// readOr ORs the words of p together: the memory-read ceiling benchmark.
func readOr(p []uint64) uint64 { return readOrGeneric(p) }

func dotF32(a, b []float32) float32               { return dotF32Generic(a, b) }
func dotBF16(w []uint16, x []float32) float32     { return dotBF16Generic(w, x) }
func dotF16(w []uint16, x []float32) float32      { return dotF16Generic(w, x) }
func axpyF32(y []float32, a float32, w []float32) { axpyF32Generic(y, a, w) }
func axpyBF16(y []float32, a float32, w []uint16) { axpyBF16Generic(y, a, w) }
func axpyF16(y []float32, a float32, w []uint16)  { axpyF16Generic(y, a, w) }
func bf16ToF32(dst []float32, src []uint16)       { bf16ToF32Generic(dst, src) }
func f16ToF32(dst []float32, src []uint16)        { f16ToF32Generic(dst, src) }
func f32ToBF16(dst []uint16, src []float32)       { f32ToBF16Generic(dst, src) }
func f32ToF16(dst []uint16, src []float32)        { f32ToF16Generic(dst, src) }

func dot4x1F32(acc *[4]float32, w []float32, wstride int, x []float32, kl int) {
	dot4x1F32Generic(acc, w, wstride, x, kl)
}

func dot4x1BF16(acc *[4]float32, w []uint16, wstride int, x []float32, kl int) {
	dot4x1BF16Generic(acc, w, wstride, x, kl)
}

func dot4x1F16(acc *[4]float32, w []uint16, wstride int, x []float32, kl int) {
	dot4x1F16Generic(acc, w, wstride, x, kl)
}

func axpy4x1F32(y []float32, a *[4]float32, w []float32, wstride int) {
	axpy4x1F32Generic(y, a, w, wstride)
}

func axpy4x1BF16(y []float32, a *[4]float32, w []uint16, wstride int) {
	axpy4x1BF16Generic(y, a, w, wstride)
}

func axpy4x1F16(y []float32, a *[4]float32, w []uint16, wstride int) {
	axpy4x1F16Generic(y, a, w, wstride)
}

func packRowsF32(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	packRowsGeneric(dst, ldd, src, lds, rows, cols, func(d, s []float32) { copy(d, s) })
}

func packRowsF16(dst []float32, ldd int, src []uint16, lds, rows, cols int) {
	packRowsGeneric(dst, ldd, src, lds, rows, cols, f16ToF32Generic)
}

func packRowsBF16(dst []float32, ldd int, src []uint16, lds, rows, cols int) {
	packRowsGeneric(dst, ldd, src, lds, rows, cols, bf16ToF32Generic)
}

// fmaLoop is the FMA peak loop; without SIMD there is none to measure.
func fmaLoop(n int) float64 { return 0 }

func colMax(m, x []float32, rows, width int)    { colMaxGeneric(m, x, rows, width) }
func expSub(x, m, s []float32, rows, width int) { expSubGeneric(x, m, s, rows, width) }

func siluMul(out, gate, up []float32) { siluMulGeneric(out, gate, up) }
