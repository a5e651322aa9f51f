// Package kernels holds the CPU compute kernels behind the host device
// backend: matrix-vector / matrix-matrix products against f32, bf16 and f16
// weights (and, through MatMulPacked, any weight type that can widen a
// block of itself to float32), batched attention, SiLU, dot products and
// the half-precision conversions.
//
// At decode (one activation row) the products are memory bound: every weight
// is read once, so the kernels are written to stream weights at close to
// memory bandwidth (four weight rows per pass, four streams per core, the
// rows a quarter of the range apart). With a batch of two or more rows the
// products are compute bound and run a cache-blocked, register-tiled product
// (gemm.go): weights packed a panel at a time, a micro-kernel holding up to
// 28 vector accumulators, each weight panel read from memory once per call.
// Attention for a block of query rows is two such products around a
// column softmax (attention.go).
//
// Work is split across a fixed pool of worker goroutines (see SetThreads,
// ParallelFor): by output columns (whole panels) for batches, by rows for
// the matvec, and MatMulT at decode by weight rows with per-worker partial
// sums. Small calls run inline on the caller, so the handoff never costs
// more than the arithmetic.
//
// On amd64 the inner loops are Go assembly chosen at run time: AVX-512 where
// the CPU has it (32 registers, embedded broadcasts), else AVX2+FMA+F16C;
// elsewhere, with the purego build tag, or after SetPlain(true), they are
// plain Go. Sums are accumulated in float32 lanes, so results differ from a
// strictly sequential float32 sum (llama2.c's order, kept by the *Ref
// functions) only by rounding.
//
// Reference implementations: MatMulF32Ref, MatMulBF16Ref, MatMulF16Ref,
// MatMulTF32Ref, MatMulTBF16Ref, MatMulTF16Ref, AttentionRef and DotF32Ref
// are the plain, single-threaded, sequential-sum versions of the
// corresponding kernels. They are exported so that fuzz tests elsewhere (the
// host and CUDA backends) can hold their results to a known-good definition;
// this package's fuzz tests hold every fast kernel, with each kernel set the
// machine can run, to them.
//
// Slices are row-major. Every function panics (via a Go bounds check or an
// explicit length check) if a slice is shorter than its shape requires; the
// callers own the shapes.
package kernels

import "fmt"

// MatMulF32 computes y = x·wᵀ for w of shape [out][in], x of shape [n][in]
// and y of shape [n][out]:
//
//	y[r*out+o] = Σ_i w[o*in+i] * x[r*in+i]
func MatMulF32(y, x, w []float32, n, in, out int) {
	checkMatMul("MatMulF32", len(y), len(x), len(w), n, in, out)
	matMul(kindF32, y, x, w, nil, n, in, out)
}

// MatMulBF16 is MatMulF32 with bfloat16 weights (the upper 16 bits of a
// float32), widened exactly to float32 before the multiply.
func MatMulBF16(y, x []float32, w []uint16, n, in, out int) {
	checkMatMul("MatMulBF16", len(y), len(x), len(w), n, in, out)
	matMul(kindBF16, y, x, nil, w, n, in, out)
}

// MatMulF16 is MatMulF32 with IEEE half-precision weights, widened exactly to
// float32 before the multiply.
func MatMulF16(y, x []float32, w []uint16, n, in, out int) {
	checkMatMul("MatMulF16", len(y), len(x), len(w), n, in, out)
	matMul(kindF16, y, x, nil, w, n, in, out)
}

// MatMulTF32 computes y = x·w for w of shape [in][out] (the transposed
// layout, used e.g. for the Sirius correction and sparse column gathers):
//
//	y[r*out+o] = Σ_i x[r*in+i] * w[i*out+o]
func MatMulTF32(y, x, w []float32, n, in, out int) {
	checkMatMul("MatMulTF32", len(y), len(x), len(w), n, in, out)
	matMulT(kindF32, y, x, w, nil, n, in, out)
}

// MatMulTBF16 is MatMulTF32 with bfloat16 weights.
func MatMulTBF16(y, x []float32, w []uint16, n, in, out int) {
	checkMatMul("MatMulTBF16", len(y), len(x), len(w), n, in, out)
	matMulT(kindBF16, y, x, nil, w, n, in, out)
}

// MatMulTF16 is MatMulTF32 with IEEE half-precision weights.
func MatMulTF16(y, x []float32, w []uint16, n, in, out int) {
	checkMatMul("MatMulTF16", len(y), len(x), len(w), n, in, out)
	matMulT(kindF16, y, x, nil, w, n, in, out)
}

// DotF32 returns Σ a[i]*b[i] over len(a) elements; b must be at least as long.
// It runs on the caller's goroutine.
func DotF32(a, b []float32) float32 {
	if len(b) < len(a) {
		panic(fmt.Sprintf("kernels: DotF32: len(b)=%d < len(a)=%d", len(b), len(a)))
	}
	return dotF32(a, b[:len(a)])
}

type wkind uint8

const (
	kindF32 wkind = iota
	kindBF16
	kindF16
)

func checkMatMul(name string, ly, lx, lw, n, in, out int) {
	if n < 0 || in < 0 || out < 0 {
		panic(fmt.Sprintf("kernels: %s: negative shape n=%d in=%d out=%d", name, n, in, out))
	}
	if ly < n*out || lx < n*in || lw < in*out {
		panic(fmt.Sprintf("kernels: %s: short slice for n=%d in=%d out=%d: len(y)=%d len(x)=%d len(w)=%d",
			name, n, in, out, ly, lx, lw))
	}
}

// smallBatch is the most rows MatMul and MatMulT run as repeated matvecs
// (axpys) rather than on the micro-kernels: the four weight rows of a
// matvec step stay in L1/L2 while each activation row passes over them, so
// the weights still come from memory once, with no packing. Measured per CPU
// second against a read of the same weights (8B FFN shape): matvecs win up
// to 6 rows (MatMul f32 n=2 0.67 vs 0.40, f16 n=4 0.38 vs 0.26; MatMulT f32
// n=4 0.42 vs 0.26), the micro-kernels from 8 (MatMul f16 n=8 0.26 vs 0.25,
// f32 0.41 vs 0.30; MatMulT within the noise).
const smallBatch = 6

// inlineWork is the number of multiply-adds below which a product runs on the
// caller: a handoff to the pool costs a few microseconds, about what a single
// core needs for this much work.
const inlineWork = 1 << 16

// matMul runs the [out][in] product: batches (n >= 2) on the micro-kernels
// (gemm.go) where there are any, else split across the pool by outputs. Blocks of
// output rows are claimed dynamically so a slow core does not stall the call.
func matMul(k wkind, y, x, wf []float32, wh []uint16, n, in, out int) {
	if n == 0 || out == 0 {
		return
	}
	if in == 0 {
		clear(y[:n*out]) // empty sums
		return
	}
	if n > smallBatch {
		if p := gemmPlanFor('R', n, out); p != nil {
			gemm(p, y, x, n, in, out, &wsource{kind: k, f32: wf, u16: wh, ld: in})
			return
		}
	}
	// align 12: whole 3-row and 4-row groups
	if inline(out, n*in*out, 12) {
		matMulRows(k, y, x, wf, wh, n, in, out, 0, out)
		return
	}
	parallelFor(out, n*in*out, 12, func(lo, hi int) { matMulRows(k, y, x, wf, wh, n, in, out, lo, hi) })
}

// matMulT runs the [in][out] product.
//
// For n <= smallBatch (decode, small checks) it is memory bound, so weight
// rows (the in dimension) are split into blocks and every participant
// streams whole rows sequentially, the access pattern memory likes best
// whatever the thread count. Block 0 accumulates straight into y, every
// other block into its own scratch partial (at most 2*Threads()-1 partials
// of n*out floats), and the partials are added into y at the end: n*out
// adds per block, negligible next to the n*in*out product.
//
// Larger batches run the batched product (gemm.go, k layout) where there
// are SIMD kernels; without them, for n >= 4, columns are split across
// workers in multiples of 16 and each runs plain 4x16 register tiles over
// all of in.
func matMulT(k wkind, y, x, wf []float32, wh []uint16, n, in, out int) {
	if n == 0 || out == 0 {
		return
	}
	if in == 0 {
		clear(y[:n*out])
		return
	}
	if n > smallBatch {
		if p := gemmPlanFor('K', n, out); p != nil {
			gemm(p, y, x, n, in, out, &wsource{kind: k, f32: wf, u16: wh, ld: out})
			return
		}
	}
	if n >= 4 && !useAsm {
		parallelFor(out, n*in*out, 32, func(lo, hi int) {
			matMulTCols(k, y, x, wf, wh, n, in, out, lo, hi)
		})
		return
	}
	block, nblocks := planBlocks(in, n*in*out, 8, 2)
	if nblocks == 1 {
		axpyRows(k, y, x, wf, wh, 0, n, in, out, 0, out, 0, in)
		return
	}
	m := n * out
	sp := getF32((nblocks - 1) * m)
	parts := *sp
	runBlocks(in, block, nblocks, func(lo, hi int) {
		dst := y
		if b := lo / block; b > 0 {
			dst = parts[(b-1)*m : b*m]
		}
		axpyRows(k, dst, x, wf, wh, 0, n, in, out, 0, out, lo, hi)
	})
	parallelFor(m, m*(nblocks-1), 64, func(lo, hi int) {
		for b := range nblocks - 1 {
			addF32(y[lo:hi], parts[b*m+lo:b*m+hi])
		}
	})
	putF32(sp)
}

// spreadRows: the matvec kernels read four weight rows at once. Taken as
// neighbours, the four streams run a row (a power of two bytes, at Llama
// widths) apart and each stops after one row; taken a quarter of the range
// apart, each stream sweeps a quarter of the rows sequentially. On the
// 2-core Zen 4 machine of BENCHMARKS.md that raised the f32 matvec from
// about 0.66 to 0.8 of the memory-read ceiling (f16: 0.58 to 0.7).

// tBlockBytes bounds the slice of the output rows an axpy pass updates while
// it walks its weight rows, so those rows stay in L1/L2.
const tBlockBytes = 48 << 10

// tRowBlock is how many weight rows a batched MatMulT tile sweeps before
// moving to the next columns: the packed 32-column panel of that many rows
// (16 KiB) and the matching x values stay in L1 while every group of four x
// rows reuses them.
const tRowBlock = 128

// matMulTCols sets columns [c0,c1) of every row of y (n >= 4). The bulk is
// done by 4-row x 16-column register tiles (tileT) over 32-column strips of
// tRowBlock weight rows, first packed into a contiguous float32 panel (see
// packT: a strip of power-of-two-strided rows would thrash one cache set;
// packing measured 20-25% faster than tiling the weights in place). Each
// weight vector load feeds four FMAs and the sums stay in registers across
// the strip. Rows and columns that do not fill a tile go through axpyRows.
func matMulTCols(k wkind, y, x, wf []float32, wh []uint16, n, in, out, c0, c1 int) {
	r4, c32 := n&^3, c0+(c1-c0)&^31
	for r := range r4 {
		clear(y[r*out+c0 : r*out+c32])
	}
	var panel [tRowBlock * 32]float32
	for is := 0; is < in; is += tRowBlock {
		ni := min(tRowBlock, in-is)
		for c := c0; c < c32; c += 32 {
			switch k {
			case kindF32:
				packTF32Generic(panel[:], wf[is*out+c:], out, ni)
			case kindBF16:
				packTBF16Generic(panel[:], wh[is*out+c:], out, ni)
			case kindF16:
				packTF16Generic(panel[:], wh[is*out+c:], out, ni)
			}
			for r := 0; r < r4; r += 4 {
				xs := x[r*in+is:]
				tileTF32Generic(y[r*out+c:], out, xs, in, panel[:], 32, ni)
				tileTF32Generic(y[r*out+c+16:], out, xs, in, panel[16:], 32, ni)
			}
		}
	}
	if c32 < c1 {
		axpyRows(k, y, x, wf, wh, 0, r4, in, out, c32, c1, 0, in)
	}
	if r4 < n {
		axpyRows(k, y, x, wf, wh, r4, n, in, out, c0, c1, 0, in)
	}
}

// axpyRows sets dst rows [r0,r1), columns [c0,c1) to Σ_{i0<=i<i1} x[r][i] *
// w[i][c] by row updates (y += a*w[i,:]). Columns are taken in slices that
// keep the rows of dst cache resident; for one row and Llama widths that is
// the whole row, so the weights stream strictly sequentially.
func axpyRows(k wkind, dst, x, wf []float32, wh []uint16, r0, r1, in, out, c0, c1, i0, i1 int) {
	for r := r0; r < r1; r++ {
		clear(dst[r*out+c0 : r*out+c1])
	}
	cb := max(64, tBlockBytes/(4*max(1, r1-r0))&^63)
	for cs := c0; cs < c1; cs += cb {
		ce := min(cs+cb, c1)
		// Four weight rows per pass (axpy4x1): four weight streams, and y
		// loaded and stored once per four rows; measured ~50% faster than
		// one row at a time. The four rows are a quarter of the range
		// apart (see spreadRows).
		q := (i1 - i0) / 4
		var a [4]float32
		for i := i0; i < i0+q; i++ {
			for r := r0; r < r1; r++ {
				for j := range 4 {
					a[j] = x[r*in+i+j*q]
				}
				ys := dst[r*out+cs : r*out+ce]
				switch k {
				case kindF32:
					axpy4x1F32(ys, &a, wf[i*out+cs:], q*out)
				case kindBF16:
					axpy4x1BF16(ys, &a, wh[i*out+cs:], q*out)
				case kindF16:
					axpy4x1F16(ys, &a, wh[i*out+cs:], q*out)
				}
			}
		}
		for i := i0 + 4*q; i < i1; i++ {
			for r := r0; r < r1; r++ {
				a := x[r*in+i]
				ys := dst[r*out+cs : r*out+ce]
				switch k {
				case kindF32:
					axpyF32(ys, a, wf[i*out+cs:i*out+ce])
				case kindBF16:
					axpyBF16(ys, a, wh[i*out+cs:i*out+ce])
				case kindF16:
					axpyF16(ys, a, wh[i*out+cs:i*out+ce])
				}
			}
		}
	}
}

func addF32(y, x []float32) { axpyF32(y, 1, x) }

// xBlockBytes bounds the slice of the batch (all n activation rows, kc
// columns each) that a batched product keeps hot while it sweeps the weight
// rows: small enough to stay in L2 next to the streaming weights.
const xBlockBytes = 128 << 10

// matMulRows computes output rows [lo,hi) of every batch row.
//
// For n < 4 (decode) four weight rows at a time are dotted with each x row
// (dot4x1): every core keeps four sequential weight streams in flight, which
// measured 30-70% faster than one row at a time, and x stays in L1/L2.
// The four rows are not neighbours but a quarter of the range apart
// (spreadRows), so each stream sweeps its own quarter of the rows
// sequentially.
//
// With SIMD kernels a batch never gets here (see gemm.go); in the plain
// path, for n >= 4, the in dimension is cut into blocks of kc columns so the
// batch's slice of x stays in L2, and within a block three weight rows at a
// time meet four activation rows at a time in registers (dot3x4): each weight
// byte still comes from memory once, and the loads per FMA drop enough for
// the FMA units, not the caches, to set the pace. Partial sums over blocks
// are added into y.
func matMulRows(k wkind, y, x, wf []float32, wh []uint16, n, in, out, lo, hi int) {
	kc := in
	blocks := n >= 4 && !useAsm // plain 3x4 register blocks
	if blocks && n*in*4 > xBlockBytes {
		kc = max(64, xBlockBytes/(n*4)&^63)
	}
	var acc12 [12]float32
	var acc4 [4]float32
	for k0 := 0; k0 < in; k0 += kc {
		kl := min(kc, in-k0)
		add := k0 > 0
		put := func(r, o int, v float32) {
			if add {
				y[r*out+o] += v
			} else {
				y[r*out+o] = v
			}
		}
		o := lo
		if blocks {
			for ; o+3 <= hi; o += 3 {
				r := 0
				for ; r+4 <= n; r += 4 {
					wo, xo := o*in+k0, r*in+k0
					switch k {
					case kindF32:
						dot3x4F32Generic(&acc12, wf[wo:], in, x[xo:], in, kl)
					case kindBF16:
						dot3x4BF16Generic(&acc12, wh[wo:], in, x[xo:], in, kl)
					case kindF16:
						dot3x4F16Generic(&acc12, wh[wo:], in, x[xo:], in, kl)
					}
					for j := range 3 {
						for rr := range 4 {
							put(r+rr, o+j, acc12[4*j+rr])
						}
					}
				}
				for ; r < n; r++ {
					for j := range 3 {
						put(r, o+j, dotW(k, wf, wh, (o+j)*in+k0, x[r*in+k0:], kl))
					}
				}
			}
		}
		if !blocks {
			// Four rows a quarter of the range apart (see spreadRows).
			q := (hi - o) / 4
			for i := o; i < o+q; i++ {
				for r := range n {
					wo, xs := i*in+k0, x[r*in+k0:]
					switch k {
					case kindF32:
						dot4x1F32(&acc4, wf[wo:], q*in, xs, kl)
					case kindBF16:
						dot4x1BF16(&acc4, wh[wo:], q*in, xs, kl)
					case kindF16:
						dot4x1F16(&acc4, wh[wo:], q*in, xs, kl)
					}
					for j := range 4 {
						put(r, i+j*q, acc4[j])
					}
				}
			}
			o += 4 * q
		}
		for ; o < hi; o++ {
			r := 0
			for ; blocks && r+4 <= n; r += 4 {
				wo, xo := o*in+k0, r*in+k0
				switch k {
				case kindF32:
					dotF32x4Generic(&acc4, wf[wo:wo+kl], x[xo:], in, kl)
				case kindBF16:
					dotBF16x4Generic(&acc4, wh[wo:wo+kl], x[xo:], in, kl)
				case kindF16:
					dotF16x4Generic(&acc4, wh[wo:wo+kl], x[xo:], in, kl)
				}
				for j := range 4 {
					put(r+j, o, acc4[j])
				}
			}
			for ; r < n; r++ {
				put(r, o, dotW(k, wf, wh, o*in+k0, x[r*in+k0:], kl))
			}
		}
	}
}

// dotW dots kl weights starting at w offset wo with x[:kl].
func dotW(k wkind, wf []float32, wh []uint16, wo int, x []float32, kl int) float32 {
	x = x[:kl]
	switch k {
	case kindF32:
		return dotF32(wf[wo:wo+kl], x)
	case kindBF16:
		return dotBF16(wh[wo:wo+kl], x)
	default:
		return dotF16(wh[wo:wo+kl], x)
	}
}

// SetPlain forces the plain Go kernels (plain true) or restores the SIMD
// kernels this CPU supports (false), and returns the previous setting. It
// is for side-by-side measurements; call it while no product is running.
func SetPlain(plain bool) (was bool) {
	was = !useAsm
	useAsm = hasSIMD && !plain
	return was
}

// Impl names the kernels in use: "avx512", "avx2" or "plain".
func Impl() string { return simdName() }
