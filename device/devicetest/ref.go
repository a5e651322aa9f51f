package devicetest

import "math"

// Plain float64 references for every kernel. Each returns the exact-ish
// result and, where rounding in float32 can legitimately move the answer, a
// per-element scale the tolerance is taken relative to (e.g. Σ|w·x| for a dot
// product, since a cancelling sum has no meaningful relative error of its own).

// refMatMul: y[r][o] = Σ_i w[o][i] x[r][i], w is [out][in].
func refMatMul(x, w []float64, n, in, out int) (y, scale []float64) {
	y = make([]float64, n*out)
	scale = make([]float64, n*out)
	for r := range n {
		for o := range out {
			var s, a float64
			for i := range in {
				p := w[o*in+i] * x[r*in+i]
				s += p
				a += math.Abs(p)
			}
			y[r*out+o], scale[r*out+o] = s, a
		}
	}
	return y, scale
}

// refMatMulT: y[r][o] = Σ_i x[r][i] w[i][o], w is [in][out].
func refMatMulT(x, w []float64, n, in, out int) (y, scale []float64) {
	y = make([]float64, n*out)
	scale = make([]float64, n*out)
	for r := range n {
		for o := range out {
			var s, a float64
			for i := range in {
				p := x[r*in+i] * w[i*out+o]
				s += p
				a += math.Abs(p)
			}
			y[r*out+o], scale[r*out+o] = s, a
		}
	}
	return y, scale
}

// refRMSNorm follows llama2.c: ss = Σx²/n + eps; y = x * w / sqrt(ss).
func refRMSNorm(x, w []float64, n, cols int, eps float64) (y, scale []float64) {
	y = make([]float64, n*cols)
	scale = make([]float64, n*cols)
	for r := range n {
		row := x[r*cols : (r+1)*cols]
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		ss = ss/float64(cols) + eps
		inv := 1 / math.Sqrt(ss)
		for c, v := range row {
			y[r*cols+c] = v * w[c] * inv
			scale[r*cols+c] = math.Abs(y[r*cols+c]) + 1e-6*inv*math.Abs(w[c])
		}
	}
	return y, scale
}

// ropeFreq is the rotation frequency of pair i of a head: theta^(-2i/headDim).
// For the interleaved style pair i is (2i, 2i+1), which is llama2.c's
// 1/pow(theta, (j % head_size)/head_size) for even j = 2i.
func ropeFreq(i, headDim int, theta float64) float64 {
	return math.Pow(theta, -float64(2*i)/float64(headDim))
}

// refRoPE rotates a copy of x ([n][cols], cols = heads*headDim); row r is at
// position pos0+r. The scale of each element is the norm of its pair.
func refRoPE(x []float64, n, cols, pos0, headDim int, theta float64, half bool) (y, scale []float64) {
	y = append([]float64(nil), x...)
	scale = make([]float64, len(x))
	for r := range n {
		pos := float64(pos0 + r)
		for h := 0; h < cols/headDim; h++ {
			base := r*cols + h*headDim
			for i := 0; i < headDim/2; i++ {
				a, b := base+2*i, base+2*i+1
				if half {
					a, b = base+i, base+i+headDim/2
				}
				ang := pos * ropeFreq(i, headDim, theta)
				c, s := math.Cos(ang), math.Sin(ang)
				va, vb := x[a], x[b]
				y[a] = va*c - vb*s
				y[b] = va*s + vb*c
				norm := math.Hypot(va, vb)
				scale[a], scale[b] = norm, norm
			}
		}
	}
	return y, scale
}

// refRoPEFreqs is refRoPE with pair i turning by pos*freqs[i].
func refRoPEFreqs(x []float64, n, cols, pos0, headDim int, freqs []float64, half bool) (y, scale []float64) {
	y = append([]float64(nil), x...)
	scale = make([]float64, len(x))
	for r := range n {
		pos := float64(pos0 + r)
		for h := 0; h < cols/headDim; h++ {
			base := r*cols + h*headDim
			for i := 0; i < headDim/2; i++ {
				a, b := base+2*i, base+2*i+1
				if half {
					a, b = base+i, base+i+headDim/2
				}
				c, s := math.Cos(pos*freqs[i]), math.Sin(pos*freqs[i])
				va, vb := x[a], x[b]
				y[a], y[b] = va*c-vb*s, va*s+vb*c
				norm := math.Hypot(va, vb)
				scale[a], scale[b] = norm, norm
			}
		}
	}
	return y, scale
}

// refAttention is causal GQA attention with scale 1/sqrt(headDim) and a
// softmax over positions 0..pos0+r for query row r. k and v are
// [maxSeq][nKV*headDim]. The scale of an output element is
// max|v| * (1 + max score magnitude): a score error δ moves a softmax weight
// by about δ relative, and so the output by δ·max|v|.
func refAttention(q, k, v []float64, n, pos0, nHeads, nKV, headDim int) (out, scale []float64) {
	qCols, kvCols := nHeads*headDim, nKV*headDim
	out = make([]float64, n*qCols)
	scale = make([]float64, n*qCols)
	group := nHeads / nKV
	inv := 1 / math.Sqrt(float64(headDim))
	for r := range n {
		last := pos0 + r
		for h := range nHeads {
			kh := h / group
			qh := q[r*qCols+h*headDim : r*qCols+(h+1)*headDim]
			sc := make([]float64, last+1)
			mx, big, vmax := math.Inf(-1), 0.0, 0.0
			for t := 0; t <= last; t++ {
				kt := k[t*kvCols+kh*headDim : t*kvCols+(kh+1)*headDim]
				var s, a float64
				for i := range headDim {
					s += qh[i] * kt[i]
					a += math.Abs(qh[i] * kt[i])
				}
				sc[t] = s * inv
				mx = math.Max(mx, sc[t])
				big = math.Max(big, a*inv)
				for _, vv := range v[t*kvCols+kh*headDim : t*kvCols+(kh+1)*headDim] {
					vmax = math.Max(vmax, math.Abs(vv))
				}
			}
			var sum float64
			for t := range sc {
				sc[t] = math.Exp(sc[t] - mx)
				sum += sc[t]
			}
			o := out[r*qCols+h*headDim : r*qCols+(h+1)*headDim]
			for t := range sc {
				p := sc[t] / sum
				vt := v[t*kvCols+kh*headDim : t*kvCols+(kh+1)*headDim]
				for i := range headDim {
					o[i] += p * vt[i]
				}
			}
			for i := range headDim {
				scale[r*qCols+h*headDim+i] = vmax * (1 + big)
			}
		}
	}
	return out, scale
}

// refSiLUMul: out = gate/(1+exp(-gate)) * up.
func refSiLUMul(gate, up []float64) (out, scale []float64) {
	out = make([]float64, len(gate))
	scale = make([]float64, len(gate))
	for i, g := range gate {
		out[i] = g / (1 + math.Exp(-g)) * up[i]
		scale[i] = math.Abs(out[i]) + 1e-12
	}
	return out, scale
}
