package kernels

import (
	"sync"
	"unsafe"
)

//go:generate go run gengemm.go

// The batched products (MatMul and MatMulT of more than smallBatch rows,
// MatMulPacked of two or more, and both products inside Attention) are
// register-tiled and cache-blocked, in the manner of BLIS:
//
//   - the activations are packed transposed, xT[k*npad+r] (npad: the rows
//     rounded up to the tile's vector width, the extra rows zero), so that one
//     vector load gives the same k of 4, 8 or 16 rows;
//   - the weights are packed, one panel of nr outputs by kc k's at a time,
//     into a small float32 buffer that stays in L1: f16 and bf16 are widened
//     here, once per panel, and quantized types are dequantized here (see
//     RowPacker), so one float32 micro-kernel serves every weight type;
//   - a micro-kernel (gemm_amd64.s, written by gengemm.go) keeps a tile of
//     rows x nr sums in registers (up to 28 of the 32 AVX-512 registers) while
//     it walks the panel: every weight broadcast feeds mrv FMAs, every
//     activation vector nr FMAs;
//   - the output comes out transposed, cT[o*npad+r], and is transposed back
//     into y by whoever computed it.
//
// Each weight panel is read from memory once per call whatever the batch:
// all row blocks of the batch use it while it is in L1. The k dimension is cut
// into superblocks so that the activations' slice (ks x npad floats) stays in
// L2 while every panel of a thread's outputs passes over it. Threads split
// the outputs (whole panels), so nothing is reduced across threads.

// gemmKernel is one micro-kernel: rows = lanes*mrv rows by nr outputs.
type gemmKernel struct {
	layout         byte // 'R': panel[o*kcp+k]; 'K': panel[k*ldw+o]
	lanes, mrv, nr int
	kc, kcp        int
	fn             gemmFunc
}

// gemmFunc is a micro-kernel. Besides its tile it prefetches pfn cache lines
// into L2 from segments of pfseg bytes, pfld bytes apart, starting at pf:
// the weights the next panel will pack, fetched from memory while this one
// computes.
type gemmFunc func(c *float32, ldc int, x *float32, ldx int, w *float32, ldw, kc, acc int,
	pf unsafe.Pointer, pfld, pfseg, pfn int)

func (k *gemmKernel) rows() int { return k.lanes * k.mrv }

// gemmTable is the running CPU's kernels (nil: none, use the plain path)
// and gemmWide says they are the AVX-512 set; both set by the amd64 init.
var (
	gemmTable []gemmKernel
	gemmWide  bool
)

func findKernel(layout byte, lanes, mrv, nr int) *gemmKernel {
	for i := range gemmTable {
		k := &gemmTable[i]
		if k.layout == layout && k.lanes == lanes && k.mrv == mrv && k.nr == nr {
			return k
		}
	}
	return nil
}

// gemmPlan is the tiling of one product: the batch padded to npad rows is
// covered by nmain tiles of main and then (if npad is not a multiple) one of
// rest, all nr outputs wide.
type gemmPlan struct {
	npad, nr, kc, kcp int
	sw                int // k layout: strip width (outputs packed together); row layout: nr
	main, rest        *gemmKernel
	nmain             int
}

// planKey caches plans: they are picked by layout, batch size and whether
// the product is narrow (at most narrowOut outputs).
type planKey struct {
	layout byte
	n      int
	narrow bool
}

// narrowOut is the most outputs a narrow plan is used for: below it the
// widest tiles would mostly compute padding.
const narrowOut = 8

var plans sync.Map // planKey -> *gemmPlan (nil when no kernel fits)

// gemmPlanFor picks the tiles for a batch of n rows and out outputs, or
// returns nil when the CPU has no kernels (or the plain path is forced).
func gemmPlanFor(layout byte, n, out int) *gemmPlan {
	if !useAsm || gemmTable == nil || n < 1 {
		return nil
	}
	key := planKey{layout, n, out <= narrowOut}
	if p, ok := plans.Load(key); ok {
		return p.(*gemmPlan)
	}
	p := makePlan(layout, n, key.narrow)
	plans.Store(key, p)
	return p
}

func makePlan(layout byte, n int, narrow bool) *gemmPlan {
	wide := gemmWide
	var main, rest *gemmKernel
	npad := 0
	switch {
	case narrow:
		// One row vector by 8 (AVX2: 6) outputs, repeated down the batch.
		lanes := 16
		switch {
		case n <= 4:
			lanes = 4
		case n <= 8 || !wide:
			lanes = 8
		}
		npad = (n + lanes - 1) / lanes * lanes
		main = findKernel(layout, lanes, 1, pick(wide, 8, 6))
	case n <= 4:
		main, npad = findKernel(layout, 4, 1, pick(wide, 28, 12)), 4
	case n <= 8:
		main, npad = findKernel(layout, 8, 1, pick(wide, 28, 12)), 8
	case !wide:
		npad = (n + 7) &^ 7
		if npad == 8 {
			main = findKernel(layout, 8, 1, 12)
		} else {
			main = findKernel(layout, 8, 2, 6)
			if npad%16 != 0 {
				rest = findKernel(layout, 8, 1, 6)
			}
		}
	default:
		npad = (n + 15) &^ 15
		switch npad {
		case 16:
			main = findKernel(layout, 16, 1, 28)
		case 32:
			main = findKernel(layout, 16, 2, 14)
		case 48:
			main = findKernel(layout, 16, 3, 8)
		default:
			main = findKernel(layout, 16, 4, 6)
			if r := npad % 64; r != 0 {
				rest = findKernel(layout, 16, r/16, 6)
			}
		}
	}
	if main == nil {
		return nil
	}
	p := &gemmPlan{npad: npad, nr: main.nr, kc: main.kc, kcp: main.kcp, sw: main.nr,
		main: main, rest: rest, nmain: npad / main.rows()}
	if layout == 'K' {
		// The kernel takes the k stride as an argument, so the k block is
		// the plan's: kStrip rows of a strip about stripFloats wide.
		p.sw, p.kc = stripWidth(main.nr), kStrip
	}
	return p
}

func pick(c bool, a, b int) int {
	if c {
		return a
	}
	return b
}

// A k-layout product (weights [in][out], each row spanning the outputs)
// packs a strip of whole panels at a time: stripWidth(nr) outputs, at least
// stripFloats (768 bytes of f32) of each weight row and a multiple of 8 so
// the packing loop has no tail, by kStrip rows. Strips narrower than that
// read each weight row in a few cache lines at a stride of a whole row,
// which the memory system streams badly (the first version, 48 floats by
// 1024 rows, ran MatMulT at 4 rows at 0.2 of the memory-read ceiling).
const (
	stripFloats = 192
	kStrip      = 128
)

func stripWidth(nr int) int {
	g := 1
	for nr*g < stripFloats || nr*g%8 != 0 {
		g++
	}
	return nr * g
}

// ksFor is the k superblock: the activations' slice of ks x npad floats is
// kept near 256 KiB (a quarter of a typical L2).
func (p *gemmPlan) ksFor(in int) int {
	ks := (256 << 10) / (4 * p.npad) / p.kc * p.kc
	return min(max(ks, p.kc), in)
}

// panelLen is the scratch one participant needs for packed weights.
func (p *gemmPlan) panelLen() int {
	if p.main.layout == 'R' {
		return p.nr * p.kcp
	}
	return p.kc * p.sw
}

// wsource is a weight matrix as the packers see it: element (i, j) is at
// off + i*ld + j of f32 or u16 (kind says which and how to widen), or
// produced by rows (a RowPacker, row layout only).
type wsource struct {
	kind wkind
	f32  []float32
	u16  []uint16
	off  int
	ld   int
	rows RowPacker
	// nOut and stripW bound the outputs a chunk covers (for prefetching).
	nOut, stripW int
}

// RowPacker writes rows [r0, r0+nr) x columns [c0, c0+nc) of a weight
// matrix W[out][in] as float32 into dst, row i at dst[i*ld:i*ld+nc]. It is
// how a weight type the kernels do not know (a quantized format) joins the
// batched products: see MatMulPacked. c0 is always a multiple of
// PackAlign, and nc too unless c0+nc is in (the end of the row).
type RowPacker func(dst []float32, ld, r0, nr, c0, nc int)

// PackAlign is the granularity of the column ranges a RowPacker is asked
// for: quantized blocks of up to 32 elements are never split.
const PackAlign = 32

// pack copies rows [r0, r0+nr) x columns [c0, c0+nc) into dst (row i at
// dst[i*ldd:]), as float32.
func (s *wsource) pack(dst []float32, ldd, r0, nr, c0, nc int) {
	if s.rows != nil {
		s.rows(dst, ldd, r0, nr, c0, nc)
		return
	}
	if nr == 0 || nc == 0 {
		return
	}
	o := s.off + r0*s.ld + c0
	end := o + (nr-1)*s.ld + nc
	dst = dst[:(nr-1)*ldd+nc]
	switch s.kind {
	case kindF32:
		packRowsF32(dst, ldd, s.f32[o:end], s.ld, nr, nc)
	case kindF16:
		packRowsF16(dst, ldd, s.u16[o:end], s.ld, nr, nc)
	default:
		packRowsBF16(dst, ldd, s.u16[o:end], s.ld, nr, nc)
	}
}

// gemmRange computes cT[o*npad+r] = Σ_{k<in} xT[k*npad+r] * W(o, k) for
// outputs o in [o0, o1) (o0 a multiple of the plan's strip width) and every
// row r < npad; W(o, k) is w's element (o, k) in the row layout and (k, o) in
// the k layout. cT has room for o1 rounded up to whole panels; buf is
// panelLen() floats of scratch.
//
// The work goes chunk by chunk: a chunk is one strip of outputs by one k
// block, packed into buf and then run through the micro-kernels, which
// prefetch the next chunk's weights while they compute.
func gemmRange(p *gemmPlan, cT, xT []float32, in, out int, w *wsource, o0, o1 int, buf []float32) {
	npad, nr := p.npad, p.nr
	layout := p.main.layout
	buf = buf[:p.panelLen()]
	c := p.firstChunk(in, o0, o1)
	for c.ok {
		next := p.nextChunk(c, in, o0, o1)
		pf := w.prefetchOf(layout, next)
		acc := 0
		if c.k0 > 0 {
			acc = 1
		}
		xs := xT[c.k0*npad : (c.k0+c.kl)*npad]
		ns := min(p.sw, o1-c.s)
		// A partial panel's missing outputs are left as whatever buf
		// held: they only feed outputs past the end, which nobody reads.
		if layout == 'R' {
			w.pack(buf, p.kcp, c.s, ns, c.k0, c.kl)
			p.tiles(cT[c.s*npad:(c.s+nr)*npad], xs, buf, p.kcp, c.kl, acc, pf)
		} else {
			w.pack(buf, p.sw, c.k0, c.kl, c.s, ns)
			np := (ns + nr - 1) / nr
			for g := range np {
				o := c.s + g*nr
				p.tiles(cT[o*npad:(o+nr)*npad], xs, buf[g*nr:], p.sw, c.kl, acc, pf.part(g, np))
			}
		}
		c = next
	}
}

// chunk is one strip of outputs [s, s+sw) by one k block [k0, k0+kl).
type chunk struct {
	s, k0, kl int
	ok        bool
}

// Chunks go superblock by superblock (k in [k1, k1+ks)), and within one
// strip by strip, each strip through its k blocks.
func (p *gemmPlan) firstChunk(in, o0, o1 int) chunk {
	if o0 >= o1 || in == 0 {
		return chunk{}
	}
	return chunk{s: o0, k0: 0, kl: min(p.kc, in, p.ksFor(in)), ok: true}
}

func (p *gemmPlan) nextChunk(c chunk, in, o0, o1 int) chunk {
	ks := p.ksFor(in)
	k1 := c.k0 / ks * ks
	k2 := min(in, k1+ks)
	switch {
	case c.k0+c.kl < k2:
		c.k0 += c.kl
	case c.s+p.sw < o1:
		c.s += p.sw
		c.k0 = k1
	case k2 < in:
		c.s = o0
		c.k0 = k2
		k1, k2 = k2, min(in, k2+ks)
	default:
		return chunk{}
	}
	c.kl = min(p.kc, k2-c.k0)
	return c
}

// prefetch describes what a kernel call prefetches (see gemmFunc).
type prefetch struct {
	pf                unsafe.Pointer
	ld, seg, n, nsegs int
}

// part is the share of the prefetch that the g-th of np kernel calls
// issues: whole segments, split evenly.
func (f prefetch) part(g, np int) prefetch {
	if f.n == 0 || np == 1 {
		return f
	}
	lo, hi := f.nsegs*g/np, f.nsegs*(g+1)/np
	per := f.n / f.nsegs
	f.pf = unsafe.Add(f.pf, lo*f.ld)
	f.nsegs = hi - lo
	f.n = f.nsegs * per
	return f
}

// prefetchOf returns the prefetch of the weights chunk c will pack: its
// segments are matrix rows (row layout: outputs; k layout: k's) of part of
// their columns.
func (w *wsource) prefetchOf(layout byte, c chunk) prefetch {
	if !c.ok || w.rows != nil {
		return prefetch{}
	}
	// the strip's width: the packers never read past out.
	ns := min(c.s+w.stripW, w.nOut) - c.s
	r0, nrows, c0, ncols := c.s, ns, c.k0, c.kl
	if layout == 'K' {
		r0, nrows, c0, ncols = c.k0, c.kl, c.s, ns
	}
	if nrows <= 0 || ncols <= 0 {
		return prefetch{}
	}
	i := w.off + r0*w.ld + c0
	es := 2
	var base unsafe.Pointer
	if w.kind == kindF32 {
		es = 4
		base = unsafe.Pointer(&w.f32[i])
	} else {
		base = unsafe.Pointer(&w.u16[i])
	}
	seg := ncols*es + 63
	per := (seg + 63) / 64
	return prefetch{pf: base, ld: w.ld * es, seg: seg, n: nrows * per, nsegs: nrows}
}

// tiles runs the micro-kernels over every row block of one panel; the first
// call carries the prefetch.
func (p *gemmPlan) tiles(c, xs, panel []float32, ldw, kl, acc int, f prefetch) {
	npad := p.npad
	// The kernels read panel[o*kcp+k] (row layout, o < nr, k < kl; ldw is
	// kcp) or panel[k*ldw+o] (k layout): check once that it is all there.
	if p.main.layout == 'R' {
		_ = panel[(p.nr-1)*ldw+kl-1]
	} else {
		_ = panel[(kl-1)*ldw+p.nr-1]
	}
	_ = c[p.nr*npad-1]
	_ = xs[kl*npad-1]
	r := 0
	for range p.nmain {
		p.main.fn(&c[r], npad, &xs[r], npad, &panel[0], ldw, kl, acc, f.pf, f.ld, f.seg, f.n)
		f = prefetch{}
		r += p.main.rows()
	}
	if p.rest != nil {
		p.rest.fn(&c[r], npad, &xs[r], npad, &panel[0], ldw, kl, acc, f.pf, f.ld, f.seg, f.n)
	}
}

// packXT writes xT[k*npad+r] = x[r*ldx+k] for k < in, r < n, and zeros for
// the padding rows n <= r < npad.
func packXT(xT, x []float32, n, in, ldx, npad int) {
	xT = xT[:in*npad]
	const b = 16
	for k0 := 0; k0 < in; k0 += b {
		k1 := min(k0+b, in)
		for r := range n {
			xr := x[r*ldx+k0 : r*ldx+k1]
			for j, v := range xr {
				xT[(k0+j)*npad+r] = v
			}
		}
		if n < npad {
			for k := k0; k < k1; k++ {
				clear(xT[k*npad+n : (k+1)*npad])
			}
		}
	}
}

// unpackCT writes y[r*ldy+o] = cT[o*npad+r] for r < n, o in [o0, o1).
func unpackCT(y, cT []float32, n, npad, ldy, o0, o1 int) {
	const b = 16
	for r0 := 0; r0 < n; r0 += b {
		r1 := min(r0+b, n)
		for o := o0; o < o1; o++ {
			cs := cT[o*npad+r0 : o*npad+r1]
			for j, v := range cs {
				y[(r0+j)*ldy+o] = v
			}
		}
	}
}

// Scratch buffers of the batched products, reused across calls.
var f32Pool sync.Pool

func getF32(n int) *[]float32 {
	if p, ok := f32Pool.Get().(*[]float32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]float32, n, n+n/4)
	return &s
}

func putF32(p *[]float32) { f32Pool.Put(p) }

// gemm computes y[r*out+o] = Σ_k x[r*in+k] * W(o, k) for r < n, o < out
// with the plan p, splitting the outputs across the pool.
func gemm(p *gemmPlan, y, x []float32, n, in, out int, w *wsource) {
	npad := p.npad
	xp := getF32(in * npad)
	xT := *xp
	if inline(in/16+1, n*in, 1) {
		packXT(xT, x, n, in, in, npad)
	} else {
		parallelFor(in/16+1, n*in, 1, func(lo, hi int) {
			k0, k1 := lo*16, min(hi*16, in)
			packXT(xT[k0*npad:], x[k0:], n, k1-k0, in, npad)
		})
	}
	outPad := (out + p.sw - 1) / p.sw * p.sw
	cp := getF32(outPad * npad)
	cT := *cp
	nstrips := outPad / p.sw
	w.nOut, w.stripW = out, p.sw
	strips := func(lo, hi int) {
		bp := getF32(p.panelLen())
		o0, o1 := lo*p.sw, min(hi*p.sw, out)
		gemmRange(p, cT, xT, in, out, w, o0, o1, *bp)
		unpackCT(y, cT, n, npad, out, o0, o1)
		putF32(bp)
	}
	parallelFor(nstrips, n*in*out, 1, strips)
	putF32(cp)
	putF32(xp)
}

// MatMulPacked computes y = x·Wᵀ, y[r*out+o] = Σ_i W[o][i] * x[r*in+i], for
// a weight matrix W [out][in] that only pack can read: a quantized format,
// say, whose RowPacker dequantizes any block of rows (and of columns, in
// multiples of PackAlign) to float32. This is the hook by which such a type
// reuses the float32 kernels: with SIMD kernels a batch of two or more rows
// runs on the batched products' micro-kernels, pack filling each weight
// panel just before it is used (so the weights are dequantized once per
// call, into L1); a single row, or no SIMD, packs four whole rows at a time
// into scratch and dots them with every activation row. A type that wants
// decode at memory speed will want its own fused matvec for n == 1.
func MatMulPacked(y, x []float32, n, in, out int, pack RowPacker) {
	checkMatMul("MatMulPacked", len(y), len(x), in*out, n, in, out)
	if n == 0 || out == 0 {
		return
	}
	if in == 0 {
		clear(y[:n*out])
		return
	}
	if n >= 2 {
		if p := gemmPlanFor('R', n, out); p != nil {
			gemm(p, y, x, n, in, out, &wsource{rows: pack})
			return
		}
	}
	groups := (out + 3) / 4
	body := func(lo, hi int) {
		sp := getF32(4 * in)
		defer putF32(sp)
		w := *sp
		var acc [4]float32
		for g := lo; g < hi; g++ {
			o := 4 * g
			nr := min(4, out-o)
			pack(w, in, o, nr, 0, in)
			clear(w[nr*in:])
			for r := range n {
				dot4x1F32(&acc, w, in, x[r*in:(r+1)*in], in)
				copy(y[r*out+o:r*out+o+nr], acc[:nr])
			}
		}
	}
	if inline(groups, n*in*out, 1) {
		body(0, groups)
		return
	}
	parallelFor(groups, n*in*out, 1, body)
}
