package kernels

import (
	"fmt"
	"math"
)

// Attention computes causal grouped-query attention for n query rows at
// positions pos0, pos0+1, ..., pos0+n-1. q and out are [n][nHeads*headDim];
// k and v are the cache, [positions][nKVHeads*headDim], of which positions
// [0, pos0+n) are read. Query head h uses KV head h/(nHeads/nKVHeads), and
// row r attends to positions t <= pos0+r:
//
//	out[r, h] = Σ_t softmax_t(q[r, h]·k[t, kvh] / sqrt(headDim)) v[t, kvh]
//
// With SIMD kernels the whole batch of rows is attended at once: for each KV
// head and block of query rows, the scores are a product of the block's
// queries (every head of the group) with the keys, run by the batched
// product's micro-kernels; the softmax runs down the columns of the
// transposed scores, eight rows per vector; and the weighted sum of values is
// a second product that reads those probabilities as its packed
// activations, so nothing is transposed in between. Work items (KV head x
// query block) are shared across the pool.
func Attention(out, q, k, v []float32, n, pos0, nHeads, nKVHeads, headDim int) {
	checkAttention("Attention", len(out), len(q), len(k), len(v), n, pos0, nHeads, nKVHeads, headDim)
	if n == 0 {
		return
	}
	a := attnShape{n: n, pos0: pos0, nKV: nKVHeads, group: nHeads / nKVHeads, hd: headDim}
	a.qc, a.kc = nHeads*headDim, nKVHeads*headDim
	a.scale = float32(1 / math.Sqrt(float64(headDim)))
	a.qb = max(1, 64/a.group) // about 64 rows of scores per block
	a.sp, a.pp = gemmPlanFor('R', min(a.qb, n)*a.group, pos0+n), gemmPlanFor('K', min(a.qb, n)*a.group, headDim)
	if a.sp == nil || a.pp == nil || a.sp.npad != a.pp.npad {
		attentionPlain(out, q, k, v, &a)
		return
	}
	a.qb = min(a.qb, n)
	items := nKVHeads * ((n + a.qb - 1) / a.qb)
	work := nHeads * n * (pos0 + n) * headDim * 2
	if inline(items, work, 1) {
		a.items(out, q, k, v, 0, items)
		return
	}
	ap := new(attnShape)
	*ap = a
	parallelFor(items, work, 1, func(lo, hi int) { ap.items(out, q, k, v, lo, hi) })
}

// items attends work items [lo, hi): item it is KV head it%nKV of query
// block it/nKV.
func (a *attnShape) items(out, q, k, v []float32, lo, hi int) {
	for it := lo; it < hi; it++ {
		kh, b := it%a.nKV, it/a.nKV
		a.block(out, q, k, v, kh, b*a.qb, min(a.n, (b+1)*a.qb))
	}
}

func checkAttention(name string, lo, lq, lk, lv, n, pos0, nHeads, nKV, hd int) {
	switch {
	case n < 0 || pos0 < 0 || nHeads <= 0 || nKV <= 0 || hd <= 0 || nHeads%nKV != 0:
		panic(fmt.Sprintf("kernels: %s: bad shape n=%d pos0=%d heads=%d kv heads=%d head dim=%d", name, n, pos0, nHeads, nKV, hd))
	case lq < n*nHeads*hd || lo < n*nHeads*hd || lk < (pos0+n)*nKV*hd || lv < (pos0+n)*nKV*hd:
		panic(fmt.Sprintf("kernels: %s: short slice for n=%d pos0=%d heads=%d kv heads=%d head dim=%d: len(out)=%d len(q)=%d len(k)=%d len(v)=%d",
			name, n, pos0, nHeads, nKV, hd, lo, lq, lk, lv))
	}
}

type attnShape struct {
	n, pos0, nKV, group, hd int
	qc, kc                  int // row strides of q/out and k/v
	qb                      int // query rows per work item
	scale                   float32
	sp, pp                  *gemmPlan // scores (row layout) and values (k layout)
}

// block attends query rows [r0, r1) for KV head kh. Rows of the score
// matrix are i = (r-r0)*group + g, so a block's npad lanes hold every head
// of the group for each of its queries.
func (a *attnShape) block(out, q, k, v []float32, kh, r0, r1 int) {
	hd, group, npad := a.hd, a.group, a.sp.npad
	rows := (r1 - r0) * group
	T := a.pos0 + r1 // positions any row of the block attends to
	tPad := (T + a.sp.sw - 1) / a.sp.sw * a.sp.sw
	tPad += tPad & 1 // even, for the 4-lane softmax below
	oPad := (hd + a.pp.sw - 1) / a.pp.sw * a.pp.sw
	lm := max(npad, 8)
	nq, ns, no, nb := hd*npad, tPad*npad, oPad*npad, max(a.sp.panelLen(), a.pp.panelLen())
	scratch := getF32(nq + ns + no + nb + 2*lm)
	qT, sT, oT := (*scratch)[:nq], (*scratch)[nq:nq+ns], (*scratch)[nq+ns:nq+ns+no]
	buf, ms := (*scratch)[nq+ns+no:nq+ns+no+nb], (*scratch)[nq+ns+no+nb:]

	// Queries, transposed and scaled: qT[d*npad+i].
	for d := range hd {
		row := qT[d*npad : (d+1)*npad]
		for i := range rows {
			r, g := r0+i/group, i%group
			row[i] = q[r*a.qc+(kh*group+g)*hd+d] * a.scale
		}
		clear(row[rows:])
	}
	// Scores: sT[t*npad+i] = q_i·k_t for t < T.
	ks := &wsource{kind: kindF32, f32: k, off: kh * hd, ld: a.kc, nOut: T, stripW: a.sp.sw}
	gemmRange(a.sp, sT, qT, hd, T, ks, 0, T, buf)
	// Causal mask: row i sees t <= pos0+r0+i/group; padding lanes see
	// nothing (they stay finite, so the max is defined, and are dropped).
	inf := float32(math.Inf(-1))
	for t := a.pos0 + r0 + 1; t < T; t++ {
		row := sT[t*npad : t*npad+min(rows, (t-a.pos0-r0)*group)]
		for i := range row {
			row[i] = inf
		}
	}
	// Rows T..tPad: -Inf so that the softmax can run over whole vectors.
	for t := T; t < tPad; t++ {
		for i := range npad {
			sT[t*npad+i] = inf
		}
	}
	m, s := ms[:lm], ms[lm:2*lm]
	softmaxCols(sT[:tPad*npad], tPad, npad, m, s)
	// Values: oT[d*npad+i] = Σ_t p[t][i] v_t[d], the probabilities sT
	// being exactly the packed activations the product wants.
	vs := &wsource{kind: kindF32, f32: v, off: kh * hd, ld: a.kc, nOut: hd, stripW: a.pp.sw}
	gemmRange(a.pp, oT, sT, T, hd, vs, 0, hd, buf)
	for i := range rows {
		r, g := r0+i/group, i%group
		inv := 1 / s[i]
		o := out[r*a.qc+(kh*group+g)*hd : r*a.qc+(kh*group+g+1)*hd]
		for d := range o {
			o[d] = oT[d*npad+i] * inv
		}
	}
	putF32(scratch)
}

// softmaxCols replaces x[t*width+c] (t < rows) by exp(x - max_t x[.][c])
// and sets s[c] to the column sums, leaving the division to the caller. m
// and s have room for max(width, 8) floats; width is 4 (then rows is even)
// or a multiple of 8.
func softmaxCols(x []float32, rows, width int, m, s []float32) {
	x = x[:rows*width]
	fold := width == 4 // two rows per 8-wide vector
	if fold {
		rows, width = rows/2, 8
	}
	m, s = m[:width], s[:width]
	for c := range m {
		m[c] = float32(math.Inf(-1))
	}
	clear(s)
	colMax(m, x, rows, width)
	if fold {
		for c := range 4 {
			mx := max(m[c], m[c+4])
			m[c], m[c+4] = mx, mx
		}
	}
	expSub(x, m, s, rows, width)
	if fold {
		for c := range 4 {
			s[c] += s[c+4]
		}
	}
}

// attentionPlain is Attention without the batched products: one work item
// per (query row, KV head), the group of query heads sharing that KV head
// walking the cache together so each key and value row is read once per
// group.
func attentionPlain(out, q, k, v []float32, sh *attnShape) {
	a := *sh
	n, nKV, group, hd := a.n, a.nKV, a.group, a.hd
	work := n * nKV * group * (a.pos0 + n) * hd * 2
	parallelFor(n*nKV, work, 1, func(lo, hi int) {
		sp := getF32(group * (a.pos0 + n))
		defer putF32(sp)
		for it := lo; it < hi; it++ {
			r, kh := it/nKV, it%nKV
			T := a.pos0 + r + 1
			sc := (*sp)[:group*T]
			qs := q[r*a.qc+kh*group*hd : r*a.qc+(kh+1)*group*hd]
			for t := range T {
				kt := k[t*a.kc+kh*hd : t*a.kc+(kh+1)*hd]
				for g := range group {
					sc[g*T+t] = dotF32(qs[g*hd:(g+1)*hd], kt) * a.scale
				}
			}
			for g := range group {
				softmaxRef(sc[g*T : (g+1)*T])
			}
			os := out[r*a.qc+kh*group*hd : r*a.qc+(kh+1)*group*hd]
			clear(os)
			for t := range T {
				vt := v[t*a.kc+kh*hd : t*a.kc+(kh+1)*hd]
				for g := range group {
					axpyF32(os[g*hd:(g+1)*hd], sc[g*T+t], vt)
				}
			}
		}
	})
}

// softmaxRef normalises x in place (max subtracted, sum in float64).
func softmaxRef(x []float32) {
	mx := float32(math.Inf(-1))
	for _, v := range x {
		mx = max(mx, v)
	}
	var sum float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - mx)))
		x[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
}

// AttentionRef is the reference for Attention: single-threaded, one query
// head at a time, scores and weighted sums accumulated in order.
func AttentionRef(out, q, k, v []float32, n, pos0, nHeads, nKVHeads, headDim int) {
	checkAttention("AttentionRef", len(out), len(q), len(k), len(v), n, pos0, nHeads, nKVHeads, headDim)
	qc, kc, group := nHeads*headDim, nKVHeads*headDim, nHeads/nKVHeads
	scale := float32(1 / math.Sqrt(float64(headDim)))
	sc := make([]float32, pos0+n)
	for r := range n {
		T := pos0 + r + 1
		for h := range nHeads {
			kh := h / group
			qh := q[r*qc+h*headDim : r*qc+(h+1)*headDim]
			for t := range T {
				sc[t] = DotF32Ref(qh, k[t*kc+kh*headDim:t*kc+(kh+1)*headDim]) * scale
			}
			softmaxRef(sc[:T])
			o := out[r*qc+h*headDim : r*qc+(h+1)*headDim]
			for d := range o {
				var acc float32
				for t := range T {
					acc += sc[t] * v[t*kc+kh*headDim+d]
				}
				o[d] = acc
			}
		}
	}
}
