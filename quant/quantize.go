package quant

import (
	"fmt"
	"math"
)

// QuantizeRow encodes src as len(src)/BlockElems blocks of type t into dst,
// which must be exactly RowBytes(len(src)) bytes. It follows ggml's reference
// quantizers without an importance matrix (quantize_row_*_ref, which is what
// llama-quantize runs when given no imatrix), operation for operation, so the
// blocks are byte-identical to ggml's for the same input. F16 and BF16 round
// to nearest even as ggml does; F32 is a copy. Non-finite inputs give
// whatever bytes that arithmetic gives (never a panic).
func QuantizeRow(t Type, dst []byte, src []float32) error {
	if err := checkRow("quantize", t, len(dst), len(src)); err != nil {
		return err
	}
	switch t {
	case F32:
		for i, v := range src {
			u := math.Float32bits(v)
			dst[4*i], dst[4*i+1], dst[4*i+2], dst[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
		return nil
	case F16:
		for i, v := range src {
			h := F32ToF16(v)
			dst[2*i], dst[2*i+1] = byte(h), byte(h>>8)
		}
		return nil
	case BF16:
		for i, v := range src {
			h := F32ToBF16(v)
			dst[2*i], dst[2*i+1] = byte(h), byte(h>>8)
		}
		return nil
	}
	l := layouts[t]
	for b := 0; b < len(src)/l.elems; b++ {
		x, y := src[b*l.elems:(b+1)*l.elems], dst[b*l.bytes:(b+1)*l.bytes]
		switch t {
		case Q4_0:
			quantQ4_0((*[18]byte)(y), (*[32]float32)(x))
		case Q4_1:
			quantQ4_1((*[20]byte)(y), (*[32]float32)(x))
		case Q5_0:
			quantQ5_0((*[22]byte)(y), (*[32]float32)(x))
		case Q5_1:
			quantQ5_1((*[24]byte)(y), (*[32]float32)(x))
		case Q8_0:
			quantQ8_0((*[34]byte)(y), (*[32]float32)(x))
		case Q2_K:
			quantQ2_K((*[84]byte)(y), (*[QK]float32)(x))
		case Q3_K:
			quantQ3_K((*[110]byte)(y), (*[QK]float32)(x))
		case Q4_K:
			quantQ4_K((*[144]byte)(y), (*[QK]float32)(x))
		case Q5_K:
			quantQ5_K((*[176]byte)(y), (*[QK]float32)(x))
		case Q6_K:
			quantQ6_K((*[210]byte)(y), (*[QK]float32)(x))
		default:
			panic(fmt.Sprintf("quant: QuantizeRow: %s has a layout but no quantizer", t))
		}
	}
	return nil
}

// As in dequant.go, every product that is then summed is wrapped in
// float32(...) so that the compiler cannot fuse it into a multiply-add: ggml
// builds these functions without contraction, and one fused rounding can
// flip a quant.

// cInt is C's conversion of a float to a narrow integer type on x86-64 (what
// ggml's (int8_t)/(uint8_t) casts compile to): truncate toward zero to int32
// (CVTTSS2SI, 0x80000000 for NaN or out of range), then keep the low bits.
func cInt(f float32) int32 {
	if f != f || f >= 2147483648 || f < -2147483648 {
		return math.MinInt32
	}
	return int32(f)
}

// nearestInt is ggml's nearest_int: round half to even by adding 1.5*2^23
// and reading the mantissa, exact for |f| <= 2^22 and deterministic (if
// meaningless) beyond, NaN and infinities included.
func nearestInt(f float32) int32 {
	v := float32(f) + 12582912 // float32(f): never fused with a multiply in f
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

func sqrt32(f float32) float32 { return float32(math.Sqrt(float64(f))) }

// absMaxSigned returns the element of largest magnitude (the first, on a
// tie) and that magnitude, as ggml's "amax < fabsf(v)" loops do.
func absMaxSigned(x []float32) (max, amax float32) {
	for _, v := range x {
		if a := abs32(v); amax < a {
			amax, max = a, v
		}
	}
	return max, amax
}

func quantQ4_0(y *[18]byte, x *[32]float32) {
	max, _ := absMaxSigned(x[:])
	d := max / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y[0:], d)
	for j := range 16 {
		x0, x1 := float32(x[j]*id), float32(x[16+j]*id)
		y[2+j] = byte(min(15, int8(cInt(x0+8.5)))) | byte(min(15, int8(cInt(x1+8.5))))<<4
	}
}

func quantQ4_1(y *[20]byte, x *[32]float32) {
	mn, mx := float32(math.MaxFloat32), float32(-math.MaxFloat32)
	for _, v := range x {
		if v < mn {
			mn = v
		}
		if v > mx {
			mx = v
		}
	}
	d := (mx - mn) / 15
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y[0:], d)
	putF16(y[2:], mn)
	for j := range 16 {
		x0, x1 := float32((x[j]-mn)*id), float32((x[16+j]-mn)*id)
		y[4+j] = byte(min(15, int8(cInt(x0+0.5)))) | byte(min(15, int8(cInt(x1+0.5))))<<4
	}
}

func quantQ5_0(y *[22]byte, x *[32]float32) {
	max, _ := absMaxSigned(x[:])
	d := max / -16
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y[0:], d)
	var qh uint32
	for j := range 16 {
		x0, x1 := float32(x[j]*id), float32(x[16+j]*id)
		xi0 := byte(min(31, int8(cInt(x0+16.5))))
		xi1 := byte(min(31, int8(cInt(x1+16.5))))
		y[6+j] = xi0&0xf | (xi1&0xf)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	y[2], y[3], y[4], y[5] = byte(qh), byte(qh>>8), byte(qh>>16), byte(qh>>24)
}

func quantQ5_1(y *[24]byte, x *[32]float32) {
	mn, mx := float32(math.MaxFloat32), float32(-math.MaxFloat32)
	for _, v := range x {
		if v < mn {
			mn = v
		}
		if v > mx {
			mx = v
		}
	}
	d := (mx - mn) / 31
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y[0:], d)
	putF16(y[2:], mn)
	var qh uint32
	for j := range 16 {
		x0, x1 := float32((x[j]-mn)*id), float32((x[16+j]-mn)*id)
		xi0, xi1 := byte(cInt(x0+0.5)), byte(cInt(x1+0.5))
		y[8+j] = xi0&0xf | (xi1&0xf)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	y[4], y[5], y[6], y[7] = byte(qh), byte(qh>>8), byte(qh>>16), byte(qh>>24)
}

func quantQ8_0(y *[34]byte, x *[32]float32) {
	var amax float32
	for _, v := range x {
		if a := abs32(v); !(amax > a) { // ggml's MAX(amax, a), NaN included
			amax = a
		}
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putF16(y[0:], d)
	for j := range 32 {
		y[2+j] = byte(cInt(float32(math.Round(float64(x[j] * id)))))
	}
}

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no importance
// weights (the only way the reference quantizers call it): a scale for n
// signed quants in [-nmax, nmax) minimising the x²-weighted squared error,
// searched over 19 candidate scales. L gets the quants plus nmax.
func makeQXQuants(n, nmax int, x []float32, L []int8) float32 {
	max, amax := absMaxSigned(x[:n])
	if amax < 1e-15 { // GROUP_MAX_EPS: all zero
		clear(L[:n])
		return 0
	}
	clampQ := func(l int32) int32 { return max32(int32(-nmax), min32(int32(nmax-1), l)) }
	iscale := float32(-nmax) / max
	var sumlx, suml2 float32
	for i := range n {
		l := clampQ(nearestInt(iscale * x[i]))
		L[i] = int8(l + int32(nmax))
		w := float32(x[i] * x[i])
		fl := float32(l)
		sumlx += float32(w * x[i] * fl)
		suml2 += float32(w * fl * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(0.1*float32(is))) / max
		sumlx, suml2 = 0, 0
		for i := range n {
			fl := float32(clampQ(nearestInt(iscale * x[i])))
			w := float32(x[i] * x[i])
			sumlx += float32(w * x[i] * fl)
			suml2 += float32(w * fl * fl)
		}
		if suml2 > 0 && sumlx*sumlx > best*suml2 {
			for i := range n {
				L[i] = int8(int32(nmax) + clampQ(nearestInt(iscale*x[i])))
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// makeQ3Quants is ggml's make_q3_quants with do_rmse: x²-weighted least
// squares with up to five rounds of one-quant-at-a-time refinement. L gets
// the quants plus nmax.
func makeQ3Quants(n, nmax int, x []float32, L []int8) float32 {
	max, amax := absMaxSigned(x[:n])
	if amax < 1e-15 {
		clear(L[:n])
		return 0
	}
	clampQ := func(l int32) int32 { return max32(int32(-nmax), min32(int32(nmax-1), l)) }
	iscale := float32(-nmax) / max
	var sumlx, suml2 float32
	for i := range n {
		l := clampQ(nearestInt(iscale * x[i]))
		L[i] = int8(l)
		w := float32(x[i] * x[i])
		fl := float32(l)
		sumlx += float32(w * x[i] * fl)
		suml2 += float32(w * fl * fl)
	}
	for range 5 {
		changed := 0
		for i := range n {
			w := float32(x[i] * x[i])
			li := float32(L[i])
			slx := sumlx - float32(w*x[i]*li)
			if slx > 0 {
				sl2 := suml2 - float32(w*li*li)
				nl := clampQ(nearestInt(x[i] * sl2 / slx))
				if nl != int32(L[i]) {
					fn := float32(nl)
					slx += float32(w * x[i] * fn)
					sl2 += float32(w * fn * fn)
					if sl2 > 0 && slx*slx*suml2 > sumlx*sumlx*sl2 {
						L[i] = int8(nl)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range n {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQKX2Quants is ggml's make_qkx2_quants: an affine fit x ≈ scale*L - min
// (min >= 0 returned separately) of n unsigned quants in [0, nmax], weighted,
// searching nstep+1 candidate scales around nmax/(max-min) and refitting
// scale and min by least squares for each. useMAD picks absolute instead of
// squared error.
func makeQKX2Quants(n, nmax int, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int, useMAD bool) (scale, theMin float32) {
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		clear(L[:n])
		return 0, -mn
	}
	clampL := func(l int32) int32 { return max32(0, min32(int32(nmax), l)) }
	errOf := func(diff float32) float32 {
		if useMAD {
			return abs32(diff)
		}
		return diff * diff
	}
	iscale := float32(nmax) / (mx - mn)
	scale = 1 / iscale
	var bestErr float32
	for i := range n {
		L[i] = uint8(clampL(nearestInt(iscale * (x[i] - mn))))
		diff := float32(scale*float32(L[i])) + mn - x[i]
		bestErr += float32(weights[i] * errOf(diff))
	}
	if nstep < 1 {
		return scale, -mn
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + float32(nmax)) / (mx - mn)
		var sumL, sumL2, sumXL float32
		for i := range n {
			l := clampL(nearestInt(iscale * (x[i] - mn)))
			Laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(w * fl * fl)
			sumXL += float32(w * fl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curErr float32
			for i := range n {
				diff := float32(thisScale*float32(Laux[i])) + thisMin - x[i]
				curErr += float32(weights[i] * errOf(diff))
			}
			if curErr < bestErr {
				copy(L[:n], Laux[:n])
				bestErr = curErr
				scale, mn = thisScale, thisMin
			}
		}
	}
	return scale, -mn
}

func min32(a, b int32) int32 {
	if a < b {
		return a
	}
	return b
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// pack2 stores 256 two-bit values: element 128*h + 32*s + l goes to bits
// 2s..2s+1 of qs[32h + l].
func pack2(qs []byte, L *[QK]uint8) {
	for h := range 2 {
		for l := range 32 {
			j := 128 * h
			qs[32*h+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

func quantQ2_K(y *[84]byte, x *[QK]float32) {
	var L [QK]uint8
	var laux [16]uint8
	var weights [16]float32
	var mins, scales [16]float32
	const q4scale = 15
	var maxScale, maxMin float32
	for j := range 16 {
		for l := range 16 {
			weights[l] = abs32(x[16*j+l])
		}
		scales[j], mins[j] = makeQKX2Quants(16, 3, x[16*j:], weights[:], L[16*j:], laux[:], -0.5, 0.1, 15, true)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	sc := y[0:16]
	if maxScale > 0 {
		iscale := q4scale / maxScale
		for j := range 16 {
			sc[j] = uint8(nearestInt(iscale * scales[j]))
		}
		putF16(y[80:], maxScale/q4scale)
	} else {
		clear(sc)
		putF16(y[80:], 0)
	}
	if maxMin > 0 {
		iscale := q4scale / maxMin
		for j := range 16 {
			sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
		}
		putF16(y[82:], maxMin/q4scale)
	} else {
		putF16(y[82:], 0)
	}
	dAll, mAll := f16At(y[80:]), f16At(y[82:])
	for j := range 16 {
		d := dAll * float32(sc[j]&0xf)
		if d == 0 {
			continue
		}
		dm := float32(mAll * float32(sc[j]>>4))
		for i := range 16 {
			L[16*j+i] = uint8(max32(0, min32(3, nearestInt((x[16*j+i]+dm)/d))))
		}
	}
	pack2(y[16:80], &L)
}

func quantQ3_K(y *[110]byte, x *[QK]float32) {
	var L [QK]int8
	var scales [16]float32
	var maxScale, amax float32
	for j := range 16 {
		scales[j] = makeQ3Quants(16, 4, x[16*j:], L[16*j:])
		if s := abs32(scales[j]); s > amax {
			amax, maxScale = s, scales[j]
		}
	}
	sc := y[96:108]
	clear(sc)
	if maxScale != 0 {
		iscale := -32 / maxScale
		for j := range 16 {
			l := int8(nearestInt(iscale * scales[j]))
			l = max(-32, min(31, l)) + 32
			if j < 8 {
				sc[j] = byte(l & 0xf)
			} else {
				sc[j-8] |= byte(l&0xf) << 4
			}
			l >>= 4
			sc[j%4+8] |= byte(l) << (2 * (j / 4))
		}
		putF16(y[108:], 1/iscale)
	} else {
		putF16(y[108:], 0)
	}
	dAll := f16At(y[108:])
	for j := range 16 {
		d := dAll * float32(int8(q3Scale(sc, j)))
		if d == 0 {
			continue
		}
		for i := range 16 {
			l := max32(-4, min32(3, nearestInt(x[16*j+i]/d)))
			L[16*j+i] = int8(l + 4)
		}
	}
	hm := y[0:32]
	clear(hm)
	var U [QK]uint8
	for j := range QK {
		v := L[j]
		if v > 3 {
			hm[j%32] |= 1 << (j / 32)
			v -= 4
		}
		U[j] = uint8(v)
	}
	pack2(y[32:96], &U)
}

// kScalesAndMins fits the eight 32-element groups of a Q4_K/Q5_K block (the
// common first half of quantize_row_q4_K_ref and _q5_K_ref), stores the 6-bit
// scales and mins, d and dmin, then requantizes each group with the stored
// scales into L (values 0..nmax).
func kScalesAndMins(y []byte, x *[QK]float32, L *[QK]uint8, nmax int, rmin, rdelta float32, nstep int) {
	var laux [32]uint8
	var weights [32]float32
	var mins, scales [8]float32
	var maxScale, maxMin float32
	for j := range 8 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrt32(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(32, nmax, xs, weights[:], L[32*j:], laux[:], rmin, rdelta, nstep, false)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := y[4:16]
	for j := range 8 {
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= ls >> 4 << 6
			sc[j] |= lm >> 4 << 6
		}
	}
	putF16(y[0:], maxScale/63)
	putF16(y[2:], maxMin/63)
	dAll, mAll := f16At(y[0:]), f16At(y[2:])
	for j := range 8 {
		s, m := kScaleMin(sc, j)
		d := dAll * float32(s)
		if d == 0 {
			continue
		}
		dm := float32(mAll * float32(m))
		for i := range 32 {
			L[32*j+i] = uint8(max32(0, min32(int32(nmax), nearestInt((x[32*j+i]+dm)/d))))
		}
	}
}

func quantQ4_K(y *[144]byte, x *[QK]float32) {
	var L [QK]uint8
	kScalesAndMins(y[:], x, &L, 15, -1, 0.1, 20)
	for c := range 4 {
		for l := range 32 {
			y[16+32*c+l] = L[64*c+l] | L[64*c+32+l]<<4
		}
	}
}

func quantQ5_K(y *[176]byte, x *[QK]float32) {
	var L [QK]uint8
	kScalesAndMins(y[:], x, &L, 31, -0.5, 0.1, 15)
	qh := y[16:48]
	clear(qh)
	for c := range 4 {
		m1, m2 := byte(1)<<(2*c), byte(2)<<(2*c)
		for j := range 32 {
			l1, l2 := L[64*c+j], L[64*c+32+j]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			y[48+32*c+j] = l1 | l2<<4
		}
	}
}

func quantQ6_K(y *[210]byte, x *[QK]float32) {
	var L [QK]int8
	var scales [16]float32
	var maxScale, maxAbs float32
	for ib := range 16 {
		scales[ib] = makeQXQuants(16, 32, x[16*ib:], L[16*ib:])
		if a := abs32(scales[ib]); a > maxAbs {
			maxAbs, maxScale = a, scales[ib]
		}
	}
	if maxAbs < 1e-15 {
		clear(y[:])
		putF16(y[208:], 0)
		return
	}
	iscale := -128 / maxScale
	putF16(y[208:], 1/iscale)
	sc := y[192:208]
	for ib := range 16 {
		sc[ib] = byte(int8(min32(127, nearestInt(iscale*scales[ib]))))
	}
	dAll := f16At(y[208:])
	for j := range 16 {
		d := dAll * float32(int8(sc[j]))
		if d == 0 {
			continue
		}
		for i := range 16 {
			l := max32(-32, min32(31, nearestInt(x[16*j+i]/d)))
			L[16*j+i] = int8(l + 32)
		}
	}
	ql, qh := y[0:128], y[128:192]
	for h := range 2 {
		j := 128 * h
		for l := range 32 {
			q1, q2 := uint8(L[j+l])&0xf, uint8(L[j+l+32])&0xf
			q3, q4 := uint8(L[j+l+64])&0xf, uint8(L[j+l+96])&0xf
			ql[64*h+l] = q1 | q3<<4
			ql[64*h+l+32] = q2 | q4<<4
			qh[32*h+l] = uint8(L[j+l])>>4 | uint8(L[j+l+32])>>4<<2 | uint8(L[j+l+64])>>4<<4 | uint8(L[j+l+96])>>4<<6
		}
	}
}
