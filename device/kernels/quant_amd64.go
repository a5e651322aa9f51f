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
func q4kMatVec4AVX512(y *float32, w *byte, xp, xs *float32, rb, nb int)

//go:noescape
func q4kMatVecAVX512(y *float32, w *byte, xp, xs *float32, nb int)

//go:noescape
func q8MatVec4AVX512(y *float32, w *byte, x *float32, rb, nb int)

//go:noescape
func q8MatVecAVX512(y *float32, w *byte, x *float32, nb int)

//go:noescape
func q6kMatVec4AVX512(y *float32, w *byte, x, xs *float32, rb, nb int)

//go:noescape
func q6kMatVecAVX512(y *float32, w *byte, x, xs *float32, nb int)

//go:noescape
func q4kDequantAVX512(dst *float32, src *byte, nb int)

//go:noescape
func q6kDequantAVX512(dst *float32, src *byte, nb int)

//go:noescape
func q8DequantAVX512(dst *float32, src *byte, nb int)

//go:noescape
func qTile4x4AVX512(acc *float32, w, x **float32, n int)

//go:noescape
func q4kMatVec2AVX2(y *float32, w *byte, xp, xs *float32, rb, nb int)

//go:noescape
func q4kMatVecAVX2(y *float32, w *byte, xp, xs *float32, nb int)

//go:noescape
func q8MatVec4AVX2(y *float32, w *byte, x *float32, rb, nb int)

//go:noescape
func q8MatVecAVX2(y *float32, w *byte, x *float32, nb int)

//go:noescape
func q6kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)

//go:noescape
func q4kDequantAVX2(dst *float32, src *byte, nb int)

//go:noescape
func q6kDequantAVX2(dst *float32, src *byte, nb int)

//go:noescape
func q8DequantAVX2(dst *float32, src *byte, nb int)

//go:noescape
func qTile3x4AVX2(acc *float32, w, x **float32, n int)

//go:noescape
func q5kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)

//go:noescape
func q3kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)

//go:noescape
func q2kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)

//go:noescape
func qlMatVecAVX2(y *float32, w *byte, x, xs *float32, nb, kind int)

//go:noescape
func q5kDequantAVX2(dst *float32, src *byte, nb int)

//go:noescape
func q3kDequantAVX2(dst *float32, src *byte, nb int)

//go:noescape
func q2kDequantAVX2(dst *float32, src *byte, nb int)

//go:noescape
func qlDequantAVX2(dst *float32, src *byte, nb, kind int)

//go:noescape
func qReadAVX2(p *byte, n int) uint64

// qkernelASM installs the assembly kernels of level lvl (1 AVX2, 2 AVX-512)
// that exist for k's type; the others stay plain Go.
func qkernelASM(k *qkern, lvl int) {
	qRareASM(k, lvl)
	switch {
	case k.t == quant.Q4_K && lvl >= 2:
		k.name = "avx512"
		k.dequant = func(dst []float32, src []byte, nb int) {
			checkQDequant(len(dst), len(src), nb, 256, 144)
			q4kDequantAVX512(&dst[0], &src[0], nb)
		}
		k.prepLen = func(in int) int { return in + in/32 }
		k.prep = func(xp, x []float32) { q4kPrep(xp, x) }
		k.matvec = func(y []float32, w []byte, xp []float32, nb int) {
			checkQ(len(y), len(w), len(xp), nb, 144, 256+8)
			rb, xs := nb*144, &xp[nb*256]
			i := 0
			for ; qMultiRow(nb*256) && i+4 <= len(y); i += 4 {
				q4kMatVec4AVX512(&y[i], &w[i*rb], &xp[0], xs, rb, nb)
			}
			for ; i < len(y); i++ {
				q4kMatVecAVX512(&y[i], &w[i*rb], &xp[0], xs, nb)
			}
		}
	case k.t == quant.Q6_K && lvl >= 2:
		k.name = "avx512"
		k.dequant = func(dst []float32, src []byte, nb int) {
			checkQDequant(len(dst), len(src), nb, 256, 210)
			q6kDequantAVX512(&dst[0], &src[0], nb)
		}
		k.prepLen = func(in int) int { return in + in/16 }
		k.prep = func(xp, x []float32) { copy(xp, x); groupSums(xp[len(x):], x, 16) }
		k.matvec = func(y []float32, w []byte, xp []float32, nb int) {
			checkQ(len(y), len(w), len(xp), nb, 210, 256+16)
			rb, xs := nb*210, &xp[nb*256]
			i := 0
			for ; qMultiRow(nb*256) && i+4 <= len(y); i += 4 {
				q6kMatVec4AVX512(&y[i], &w[i*rb], &xp[0], xs, rb, nb)
			}
			for ; i < len(y); i++ {
				q6kMatVecAVX512(&y[i], &w[i*rb], &xp[0], xs, nb)
			}
		}
	case k.t == quant.Q8_0 && lvl >= 2:
		k.name = "avx512"
		k.dequant = func(dst []float32, src []byte, nb int) {
			checkQDequant(len(dst), len(src), nb, 32, 34)
			q8DequantAVX512(&dst[0], &src[0], nb)
		}
		k.matvec = func(y []float32, w []byte, x []float32, nb int) {
			checkQ(len(y), len(w), len(x), nb, 34, 32)
			rb := nb * 34
			i := 0
			for ; qMultiRow(nb*32) && i+4 <= len(y); i += 4 {
				q8MatVec4AVX512(&y[i], &w[i*rb], &x[0], rb, nb)
			}
			for ; i < len(y); i++ {
				q8MatVecAVX512(&y[i], &w[i*rb], &x[0], nb)
			}
		}
	case k.t == quant.Q4_K && lvl == 1:
		k.name = "avx2"
		k.dequant = func(dst []float32, src []byte, nb int) {
			checkQDequant(len(dst), len(src), nb, 256, 144)
			q4kDequantAVX2(&dst[0], &src[0], nb)
		}
		k.prepLen = func(in int) int { return in + in/32 }
		k.prep = func(xp, x []float32) { q4kPrepAVX2(xp, x) }
		k.matvec = func(y []float32, w []byte, xp []float32, nb int) {
			checkQ(len(y), len(w), len(xp), nb, 144, 256+8)
			rb, xs := nb*144, &xp[nb*256]
			i := 0
			for ; qMultiRow(nb*256) && i+2 <= len(y); i += 2 {
				q4kMatVec2AVX2(&y[i], &w[i*rb], &xp[0], xs, rb, nb)
			}
			for ; i < len(y); i++ {
				q4kMatVecAVX2(&y[i], &w[i*rb], &xp[0], xs, nb)
			}
		}
	case k.t == quant.Q6_K && lvl == 1:
		k.name = "avx2"
		k.dequant = func(dst []float32, src []byte, nb int) {
			checkQDequant(len(dst), len(src), nb, 256, 210)
			q6kDequantAVX2(&dst[0], &src[0], nb)
		}
		k.prepLen = func(in int) int { return in + in/16 }
		k.prep = func(xp, x []float32) {
			copy(xp, x)
			xs := xp[len(x):]
			groupSums(xs, x, 16)
			for i := range xs {
				xs[i] *= 32
			}
		}
		k.matvec = func(y []float32, w []byte, xp []float32, nb int) {
			checkQ(len(y), len(w), len(xp), nb, 210, 256+16)
			rb, xs := nb*210, &xp[nb*256]
			for i := range y {
				q6kMatVecAVX2(&y[i], &w[i*rb], &xp[0], xs, nb)
			}
		}
	case k.t == quant.Q8_0 && lvl == 1:
		k.name = "avx2"
		k.dequant = func(dst []float32, src []byte, nb int) {
			checkQDequant(len(dst), len(src), nb, 32, 34)
			q8DequantAVX2(&dst[0], &src[0], nb)
		}
		k.matvec = func(y []float32, w []byte, x []float32, nb int) {
			checkQ(len(y), len(w), len(x), nb, 34, 32)
			rb := nb * 34
			i := 0
			for ; qMultiRow(nb*32) && i+4 <= len(y); i += 4 {
				q8MatVec4AVX2(&y[i], &w[i*rb], &x[0], rb, nb)
			}
			for ; i < len(y); i++ {
				q8MatVecAVX2(&y[i], &w[i*rb], &x[0], nb)
			}
		}
	}
}

// qRareASM installs the AVX2 kernels of the less common types, used at both
// SIMD levels (see quant_rare_amd64.s).
func qRareASM(k *qkern, lvl int) {
	if lvl < 1 {
		return
	}
	// Sums of x per group, times mul, after x itself.
	sums := func(group int, mul float32) {
		k.prepLen = func(in int) int { return in + in/group }
		k.prep = func(xp, x []float32) {
			copy(xp, x)
			xs := xp[len(x):]
			groupSums(xs, x, group)
			if mul != 1 {
				for i := range xs {
					xs[i] *= mul
				}
			}
		}
	}
	bb, per := k.bytes, k.elems
	deq := func(f func(dst *float32, src *byte, nb int)) {
		k.dequant = func(dst []float32, src []byte, nb int) {
			checkQDequant(len(dst), len(src), nb, per, bb)
			f(&dst[0], &src[0], nb)
		}
	}
	one := func(f func(y *float32, w *byte, x, xs *float32, nb int)) {
		k.name = "avx2"
		k.matvec = func(y []float32, w []byte, xp []float32, nb int) {
			// The prepared row: x, then per-block sums (k.prepLen).
			checkQ(len(y), len(w), len(xp), nb, bb, k.prepLen(per))
			rb := nb * bb
			xs := &xp[nb*per]
			for i := range y {
				f(&y[i], &w[i*rb], &xp[0], xs, nb)
			}
		}
	}
	switch k.t {
	case quant.Q5_K:
		sums(32, 1)
		one(q5kMatVecAVX2)
		deq(q5kDequantAVX2)
	case quant.Q3_K:
		sums(16, 4)
		one(q3kMatVecAVX2)
		deq(q3kDequantAVX2)
	case quant.Q2_K:
		sums(16, 1)
		one(q2kMatVecAVX2)
		deq(q2kDequantAVX2)
	case quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1:
		kind := map[quant.Type]int{quant.Q4_0: 0, quant.Q4_1: 1, quant.Q5_0: 2, quant.Q5_1: 3}[k.t]
		// Per block, 8 lanes that total offset*Σx (Q4_0: 8, Q5_0: 16) or
		// Σx/8 each (Q4_1, Q5_1: the min multiplies Σx).
		lane := map[quant.Type]float32{quant.Q4_0: 1, quant.Q4_1: 1.0 / 8, quant.Q5_0: 2, quant.Q5_1: 1.0 / 8}[k.t]
		k.prepLen = func(in int) int { return in + in/4 }
		k.prep = func(xp, x []float32) {
			copy(xp, x)
			xs := xp[len(x):]
			for b := 0; b < len(x)/32; b++ {
				var s float32
				for _, v := range x[32*b : 32*b+32] {
					s += v
				}
				for l := range 8 {
					xs[8*b+l] = s * lane
				}
			}
		}
		one(func(y *float32, w *byte, x, xs *float32, nb int) { qlMatVecAVX2(y, w, x, xs, nb, kind) })
		deq(func(dst *float32, src *byte, nb int) { qlDequantAVX2(dst, src, nb, kind) })
	}
}

// q4kPrep lays out x for the AVX-512 Q4_K kernel: per super-block, the 256
// values in nibble order (half z, nibble h, byte b, lane l: element
// 64(2z + l/8) + 32h + 4(l%8) + b), each scaled by 2^-(8(b&1)+4h) to undo
// the in-place nibble's weight, then the sums of x per 32.
func q4kPrep(xp, x []float32) {
	qPermute(xp, x, &q4kPerm512)
	groupSums(xp[len(x):len(x)+len(x)/32], x, 32)
}

// q4kPrepAVX2 is q4kPrep for the AVX2 kernel, whose vectors are one 32-byte
// chunk c (eight dword lanes): element 64c + 32h + 4l + b for lane l.
func q4kPrepAVX2(xp, x []float32) {
	qPermute(xp, x, &q4kPermAVX2)
	groupSums(xp[len(x):len(x)+len(x)/32], x, 32)
}

// qPerm maps each position of a prepared super-block to its element and
// scale.
type qPerm struct {
	src   [256]uint8
	scale [256]float32
}

var q4kPerm512, q4kPermAVX2 qPerm

func init() {
	i := 0
	for z := range 2 {
		for h := range 2 {
			for b := range 4 {
				for l := range 16 {
					q4kPerm512.src[i] = uint8(64*(2*z+l/8) + 32*h + 4*(l%8) + b)
					q4kPerm512.scale[i] = 1 / float32(int(1)<<(8*(b&1)+4*h))
					i++
				}
			}
		}
	}
	i = 0
	for c := range 4 {
		for h := range 2 {
			for b := range 4 {
				for l := range 8 {
					q4kPermAVX2.src[i] = uint8(64*c + 32*h + 4*l + b)
					q4kPermAVX2.scale[i] = 1 / float32(int(1)<<(8*(b&1)+4*h))
					i++
				}
			}
		}
	}
}

// qPermute applies p to every super-block of x (len(x) a multiple of 256).
func qPermute(xp, x []float32, p *qPerm) {
	for sb := 0; sb+256 <= len(x); sb += 256 {
		o, in := (*[256]float32)(xp[sb:]), (*[256]float32)(x[sb:])
		for i := range o {
			o[i] = in[p.src[i]] * p.scale[i]
		}
	}
}

// qMultiRow says whether the matvec kernels should walk several rows at
// once (sharing each load of x) for rows of in elements. While x fits in L1
// one row at a time is better: a worker then reads its weights as a single
// sequential stream, which measured up to 1.5x faster from DRAM than four
// interleaved ones (Q8_0 and Q4_K, in = 4096, 2 threads on Zen 4). Once x
// spills to L2, reloading it for every row costs more than the extra
// streams (in = 14336).
func qMultiRow(in int) bool { return in > qMultiRowMin }

// qMultiRowMin is the row length above which rows are walked together:
// 6144 floats (24 KiB of x, against a 32 KiB L1).
var qMultiRowMin = 6144

// checkQ guards an assembly call: rows of nb blocks of bb bytes, and a
// prepared activation of xper floats per block. The driver has already
// checked the shapes; this keeps a wrong call from reading out of bounds.
func checkQ(rows, lw, lxp, nb, bb, xper int) {
	if rows < 1 || nb < 1 || lw < rows*nb*bb || lxp < nb*xper {
		panic("kernels: quantized kernel called with short slices")
	}
}

// checkQDequant guards a dequantization call.
func checkQDequant(ldst, lsrc, nb, be, bb int) {
	if nb < 1 || ldst < nb*be || lsrc < nb*bb {
		panic("kernels: quantized dequantization called with short slices")
	}
}

// qTileRows is the number of weight rows per batched tile: 4 with AVX-512
// (16 zmm accumulators), 3 with AVX2 (12 of the 16 ymm registers).
func qTileRows() int {
	if qLevel == 1 {
		return 3
	}
	return qTileMax
}

// qTile multiplies a tile of dequantized weight rows by activation rows.
func qTile(acc *[qTileMax * qTileCols]float32, w *[qTileMax][]float32, x *[qTileCols][]float32, in int) {
	if qLevel == 1 && in%8 == 0 {
		var wp [3]*float32
		var xp [qTileCols]*float32
		for i := range wp {
			wp[i] = &w[i][:in][0]
		}
		for i := range xp {
			xp[i] = &x[i][:in][0]
		}
		qTile3x4AVX2(&acc[0], &wp[0], &xp[0], in)
		return
	}
	if qLevel < 2 || in%16 != 0 {
		qTileGeneric(acc, w, x, qTileRows(), in)
		return
	}
	var wp [qTileMax]*float32
	var xp [qTileCols]*float32
	for i := range wp {
		wp[i] = &w[i][:in][0]
	}
	for i := range xp {
		xp[i] = &x[i][:in][0]
	}
	qTile4x4AVX512(&acc[0], &wp[0], &xp[0], in)
}

// qRead reads p (the memory-read ceiling of the quantized benchmarks).
func qRead(p []byte) uint64 {
	if qLevel < 1 || len(p) < 128 {
		return qReadGeneric(p)
	}
	m := len(p) &^ 127
	return qReadAVX2(&p[0], m) | qReadGeneric(p[m:])
}
