package kernels

// Products against block-quantized weights (ggml's formats, see package
// quant): MatMulQ reads the quantized rows directly and never materialises
// the dequantized matrix.
//
// Decode (one activation row) is memory bound, so the matvec kernels stream
// each worker's rows once and dequantize in registers. They use the blocks'
// structure: a quant group's weights are scale*q - min (or scale*(q-offset)),
// so a group contributes scale*Σq·x - min*Σx, where Σx over each group of
// the activation row is computed once per call (with any reordering of x a
// kernel wants) and shared by every weight row. The inner loop is then just
// "isolate the small integers, convert, FMA", and the scales are applied
// once per group. Sums are float32 throughout; results differ from
// quant.Dot (exact dequantization, sequential sum) only by rounding, bounded
// by the magnitudes of the two terms.
//
// Batches (n >= 2 rows, the prefill and the Sirius check pass) are compute
// bound: each group of weight rows is dequantized exactly once per call into
// a small per-worker scratch (bit-exact with quant.DequantizeRow), and
// register tiles of weight rows x activation rows are multiplied from there,
// so the weights are read from memory once whatever n is. Their cost is
// float32 FMAs: n*in*out of them, which on two cores is several single-row
// passes for 4-bit weights (see BenchmarkBatchQ).
//
// On amd64 the kernels are Go assembly, chosen at run time: Q4_K, Q6_K and
// Q8_0 have AVX-512 (F, BW, VL) and AVX2 (+FMA, F16C) forms; the other types
// one AVX2 form used at both levels (on Zen 4 the 8-lane kernels run as fast
// as 16-lane ones), with batches dequantized in plain Go. Other CPUs and the
// purego build use the plain Go path (exact dequantization into scratch,
// then float32 dots), which the fuzz tests hold the assembly to along with
// quant.Dot.

import (
	"encoding/binary"
	"fmt"
	"sync"

	"offload/quant"
)

// MatMulQ computes y = x·wᵀ for block-quantized weights: w holds out rows of
// in elements of type t (t.RowBytes(in) bytes each, contiguous, as in a GGUF
// tensor of shape [out][in]), x is [n][in] and y is [n][out]:
//
//	y[r*out+o] = Σ_i dequant(w)[o][i] * x[r*in+i]
//
// t must be a quantized type (Q4_0 ... Q6_K; use MatMulF32/BF16/F16 for the
// others) and in a whole number of its blocks. Like the other products it
// panics on a bad shape or short slice: the callers own the shapes, and check
// the file's types with quant.Check when they load it.
func MatMulQ(t quant.Type, y, x []float32, w []byte, n, in, out int) {
	k := qkernelFor(t)
	rb := checkMatMulQ(t, len(y), len(x), len(w), n, in, out)
	if n == 0 || out == 0 {
		return
	}
	if in == 0 {
		clear(y[:n*out])
		return
	}
	if n == 1 {
		matVecQ(k, y[:out], x[:in], w[:out*rb], in, out, rb)
		return
	}
	matMulQBatch(k, y[:n*out], x[:n*in], w[:out*rb], n, in, out, rb)
}

func checkMatMulQ(t quant.Type, ly, lx, lw, n, in, out int) int {
	if n < 0 || in < 0 || out < 0 {
		panic(fmt.Sprintf("kernels: MatMulQ: negative shape n=%d in=%d out=%d", n, in, out))
	}
	rb, err := t.RowBytes(in)
	if err != nil {
		panic(fmt.Sprintf("kernels: MatMulQ: %v", err))
	}
	if ly < n*out || lx < n*in || lw/max(rb, 1) < out && rb > 0 {
		panic(fmt.Sprintf("kernels: MatMulQ: short slice for %s n=%d in=%d out=%d: len(y)=%d len(x)=%d len(w)=%d (want %d)",
			t, n, in, out, ly, lx, lw, out*rb))
	}
	return rb
}

// qkern is the set of kernels for one type on the running CPU.
type qkern struct {
	t            quant.Type
	elems, bytes int // block size
	// prepLen and prep prepare the activation row once per call for
	// matvec (reordered or scaled copies, per-group sums: whatever the
	// kernel wants), into prepLen(in) floats.
	prepLen func(in int) int
	prep    func(xp, x []float32)
	// matvec sets y[i] = row i · x for the len(y) consecutive rows at w
	// (each nb blocks), given the prepared row xp.
	matvec func(y []float32, w []byte, xp []float32, nb int)
	// dequant decodes nb consecutive blocks into dst, bit-exact with
	// quant.DequantizeRow.
	dequant func(dst []float32, src []byte, nb int)
	name    string // "avx512", "avx2" or "generic", for tests and benchmarks
}

// qLevel caps the instruction set the quantized kernels may use: 0 plain Go,
// 1 AVX2, 2 AVX-512. It starts at the best the CPU has (qMaxLevel); tests
// lower it to compare the paths on one machine.
var qLevel = qMaxLevel

// qkerns holds the kernels per level and type, built once.
var qkerns [3]map[quant.Type]*qkern

func init() {
	for lvl := range qkerns {
		qkerns[lvl] = map[quant.Type]*qkern{}
		for _, t := range quant.Types() {
			if !t.Quantized() {
				continue
			}
			k := &qkern{t: t, elems: t.BlockElems(), bytes: t.BlockBytes(), name: "generic"}
			k.prepLen = func(in int) int { return in }
			k.prep = func(xp, x []float32) { copy(xp, x) }
			k.matvec = func(y []float32, w []byte, x []float32, nb int) { matvecQGeneric(k, y, w, x, nb) }
			k.dequant = func(dst []float32, src []byte, nb int) { dequantQGeneric(k, dst, src, nb) }
			if lvl <= qMaxLevel {
				qkernelASM(k, lvl)
			}
			qkerns[lvl][t] = k
		}
	}
}

// qkernelFor returns the kernels for t at the current qLevel.
func qkernelFor(t quant.Type) *qkern {
	if k := qkerns[min(max(qLevel, 0), qMaxLevel)][t]; k != nil {
		return k
	}
	if err := quant.Check(uint32(t)); err != nil {
		panic(fmt.Sprintf("kernels: MatMulQ: %v", err))
	}
	panic(fmt.Sprintf("kernels: MatMulQ: %s is not block-quantized; use MatMulF32, MatMulF16 or MatMulBF16", t))
}

// qScratch recycles the per-call and per-worker float buffers.
var qScratch = sync.Pool{New: func() any { return new([]float32) }}

func getQScratch(n int) *[]float32 {
	p := qScratch.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

// groupSums sets xs[g] = Σ x[g*group : (g+1)*group] (sequentially): the
// per-group activation sums that the min/offset terms multiply.
func groupSums(xs, x []float32, group int) {
	for g := range xs {
		var s float32
		for _, v := range x[g*group : (g+1)*group] {
			s += v
		}
		xs[g] = s
	}
}

// qRowsPerBlock is the row granularity of the parallel split: each worker
// claims whole runs of rows, and streams them in order.
const qRowsPerBlock = 4

func matVecQ(k *qkern, y, x []float32, w []byte, in, out, rb int) {
	nb := in / k.elems
	p := getQScratch(k.prepLen(in))
	defer qScratch.Put(p)
	xp := *p
	k.prep(xp, x)
	parallelFor(out, in*out, qRowsPerBlock, func(lo, hi int) {
		k.matvec(y[lo:hi], w[lo*rb:hi*rb], xp, nb)
	})
}

// matMulQBatch dequantizes qTileRows weight rows at a time into a worker's
// scratch (once per call: the activation rows all use it) and multiplies
// them with every activation row, qTileCols at a time.
func matMulQBatch(k *qkern, y, x []float32, w []byte, n, in, out, rb int) {
	nb := in / k.elems
	R := qTileRows()
	parallelFor(out, n*in*out, R, func(lo, hi int) {
		p := getQScratch(R * in)
		defer qScratch.Put(p)
		scr := *p
		var acc [qTileMax * qTileCols]float32
		var wp [qTileMax][]float32
		var xp [qTileCols][]float32
		for o := lo; o < hi; o += R {
			rows := min(R, hi-o)
			for r := range rows {
				k.dequant(scr[r*in:(r+1)*in], w[(o+r)*rb:(o+r+1)*rb], nb)
			}
			for r := range R {
				wp[r] = scr[min(r, rows-1)*in:][:in] // pad a short tile with its last row
			}
			for c0 := 0; c0 < n; c0 += qTileCols {
				cols := min(qTileCols, n-c0)
				for c := range qTileCols {
					xp[c] = x[(c0+min(c, cols-1))*in:][:in]
				}
				qTile(&acc, &wp, &xp, in)
				for r := range rows {
					for c := range cols {
						y[(c0+c)*out+o+r] = acc[r*qTileCols+c]
					}
				}
			}
		}
	})
}

// Tiles: qTileRows() weight rows (at most qTileMax) by qTileCols activation
// rows; acc[r*qTileCols+c] = w[r] · x[c] over in elements.
const (
	qTileMax  = 4
	qTileCols = 4
)

func qTileGeneric(acc *[qTileMax * qTileCols]float32, w *[qTileMax][]float32, x *[qTileCols][]float32, rows, in int) {
	for r := range rows {
		for c := range qTileCols {
			acc[r*qTileCols+c] = dotQF32(w[r][:in], x[c][:in])
		}
	}
}

// dotQF32 is a plain float32 dot with four accumulators.
func dotQF32(a, b []float32) float32 {
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

// qDequantChunk is how many blocks the plain matvec decodes at a time: 1024
// (Q*_0/1) or 2048 (k-quants) elements, a few KiB that stay in L1.
const qDequantChunk = 8

func matvecQGeneric(k *qkern, y []float32, w []byte, x []float32, nb int) {
	var buf [qDequantChunk * quant.QK]float32
	rb := nb * k.bytes
	for i := range y {
		row := w[i*rb : (i+1)*rb]
		var s float32
		for b := 0; b < nb; b += qDequantChunk {
			e := min(qDequantChunk, nb-b)
			d := buf[:e*k.elems]
			k.dequant(d, row[b*k.bytes:(b+e)*k.bytes], e)
			s += dotQF32(d, x[b*k.elems:(b+e)*k.elems])
		}
		y[i] = s
	}
}

func dequantQGeneric(k *qkern, dst []float32, src []byte, nb int) {
	if err := quant.DequantizeRow(k.t, dst[:nb*k.elems], src[:nb*k.bytes]); err != nil {
		panic("kernels: " + err.Error()) // lengths are checked by MatMulQ
	}
}

// qReadGeneric ORs together the 8-byte words of p: a plain streaming read.
func qReadGeneric(p []byte) uint64 {
	var a, b, c, d uint64
	i := 0
	for ; i+32 <= len(p); i += 32 {
		a |= binary.LittleEndian.Uint64(p[i:])
		b |= binary.LittleEndian.Uint64(p[i+8:])
		c |= binary.LittleEndian.Uint64(p[i+16:])
		d |= binary.LittleEndian.Uint64(p[i+24:])
	}
	for ; i < len(p); i++ {
		a |= uint64(p[i])
	}
	return a | b | c | d
}

// level is the instruction-set level k's matvec uses (0 plain Go, 1 AVX2,
// 2 AVX-512), for benchmark reports.
func (k *qkern) level() int {
	switch k.name {
	case "avx512":
		return 2
	case "avx2":
		return 1
	}
	return 0
}
