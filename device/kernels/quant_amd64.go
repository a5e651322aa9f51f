//go:build amd64 && !purego

package kernels

import (
	"golang.org/x/sys/cpu"

	"offload/quant"
)

// The quantized kernels' own feature levels: AVX2 needs FMA and F16C too
// (the f16 scales), AVX-512 needs F, BW and VL (x/sys/cpu reports them only
// if the OS saves the ZMM state).
var qMaxLevel = func() int {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		return 2
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		return 1
	}
	return 0
}()

//go:noescape
func q4kMatVec4AVX512(y *float32, w *byte, x, xs *float32, rb, nb int)

//go:noescape
func q4kMatVecAVX512(y *float32, w *byte, x, xs *float32, nb int)

//go:noescape
func q4kMatVec4AVX512v2(y *float32, w *byte, xp, xs *float32, rb, nb int)

//go:noescape
func q4kMatVecAVX512v2(y *float32, w *byte, xp, xs *float32, nb int)

//go:noescape
func q8MatVec4AVX512(y *float32, w *byte, x *float32, rb, nb int)

//go:noescape
func q8MatVecAVX512(y *float32, w *byte, x *float32, nb int)

//go:noescape
func q6kMatVec4AVX512(y *float32, w *byte, x, xs *float32, rb, nb int)

//go:noescape
func q6kMatVecAVX512(y *float32, w *byte, x, xs *float32, nb int)

//go:noescape
func qReadAVX2(p *byte, n int) uint64

// qkernelASM installs the assembly kernels of level lvl (1 AVX2, 2 AVX-512)
// that exist for k's type; the others stay plain Go.
func qkernelASM(k *qkern, lvl int) {
	switch {
	case k.t == quant.Q4_K && lvl >= 2:
		k.name = "avx512"
		k.prepLen = func(in int) int { return in + in/32 }
		k.prep = func(xp, x []float32) { q4kPrep(xp, x) }
		k.matvec = func(y []float32, w []byte, xp []float32, nb int) {
			checkQ(len(y), len(w), len(xp), nb, 144, 256+8)
			rb, xs := nb*144, &xp[nb*256]
			i := 0
			for ; i+4 <= len(y); i += 4 {
				q4kMatVec4AVX512v2(&y[i], &w[i*rb], &xp[0], xs, rb, nb)
			}
			for ; i < len(y); i++ {
				q4kMatVecAVX512v2(&y[i], &w[i*rb], &xp[0], xs, nb)
			}
		}
	case k.t == quant.Q6_K && lvl >= 2:
		k.name = "avx512"
		k.prepLen = func(in int) int { return in + in/16 }
		k.prep = func(xp, x []float32) { copy(xp, x); groupSums(xp[len(x):], x, 16) }
		k.matvec = func(y []float32, w []byte, xp []float32, nb int) {
			checkQ(len(y), len(w), len(xp), nb, 210, 256+16)
			rb, xs := nb*210, &xp[nb*256]
			i := 0
			for ; i+4 <= len(y); i += 4 {
				q6kMatVec4AVX512(&y[i], &w[i*rb], &xp[0], xs, rb, nb)
			}
			for ; i < len(y); i++ {
				q6kMatVecAVX512(&y[i], &w[i*rb], &xp[0], xs, nb)
			}
		}
	case k.t == quant.Q8_0 && lvl >= 2:
		k.name = "avx512"
		k.matvec = func(y []float32, w []byte, x []float32, nb int) {
			checkQ(len(y), len(w), len(x), nb, 34, 32)
			rb := nb * 34
			i := 0
			for ; i+4 <= len(y); i += 4 {
				q8MatVec4AVX512(&y[i], &w[i*rb], &x[0], rb, nb)
			}
			for ; i < len(y); i++ {
				q8MatVecAVX512(&y[i], &w[i*rb], &x[0], nb)
			}
		}
	}
}

// q4kPrep lays out x for the Q4_K kernels: per super-block, the 256 values
// in nibble order (half z, nibble h, byte b, lane l: element
// 64(2z + l/8) + 32h + 4(l%8) + b), each scaled by 2^-(8(b&1)+4h) to undo
// the in-place nibble's weight, then the sums of x per 32.
func q4kPrep(xp, x []float32) {
	n := len(x)
	for sb := 0; sb < n; sb += 256 {
		o := xp[sb : sb+256]
		for z := range 2 {
			for h := range 2 {
				for b := range 4 {
					scale := float32(1) / float32(int(1)<<(8*(b&1)+4*h))
					d := o[16*(8*z+4*h+b):]
					for l := range 16 {
						d[l] = x[sb+64*(2*z+l/8)+32*h+4*(l%8)+b] * scale
					}
				}
			}
		}
	}
	groupSums(xp[n:n+n/32], x, 32)
}

// checkQ guards an assembly call: rows of nb blocks of bb bytes, and a
// prepared activation of xper floats per block. The driver has already
// checked the shapes; this keeps a wrong call from reading out of bounds.
func checkQ(rows, lw, lxp, nb, bb, xper int) {
	if rows < 1 || nb < 1 || lw < rows*nb*bb || lxp < nb*xper {
		panic("kernels: quantized kernel called with short slices")
	}
}

func qTileRows() int { return qTileMax }

func qTile(acc *[qTileMax * qTileCols]float32, w *[qTileMax][]float32, x *[qTileCols][]float32, in int) {
	qTileGeneric(acc, w, x, qTileMax, in)
}

// qRead reads p (the memory-read ceiling of the quantized benchmarks).
func qRead(p []byte) uint64 {
	if qLevel < 1 || len(p) < 128 {
		return qReadGeneric(p)
	}
	m := len(p) &^ 127
	return qReadAVX2(&p[0], m) | qReadGeneric(p[m:])
}
