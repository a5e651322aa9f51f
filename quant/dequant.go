package quant

import (
	"fmt"
	"math"
)

// DequantizeRow decodes len(dst) elements of type t from src, which must hold
// exactly that many elements (a whole number of blocks: RowBytes(len(dst))
// bytes). The values are bit-identical to ggml's dequantize_row_* (and, for
// F16/BF16, its exact widening). Any bytes are accepted: a block with NaN or
// infinite scales decodes to whatever ggml's arithmetic gives.
func DequantizeRow(t Type, dst []float32, src []byte) error {
	if err := checkRow("dequantize", t, len(src), len(dst)); err != nil {
		return err
	}
	dequantize(t, dst, src)
	return nil
}

// dequantize decodes a row whose lengths have been checked.
func dequantize(t Type, dst []float32, src []byte) {
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(src[4*i]) | uint32(src[4*i+1])<<8 |
				uint32(src[4*i+2])<<16 | uint32(src[4*i+3])<<24)
		}
		return
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(le16(src[2*i:]))
		}
		return
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(le16(src[2*i:]))
		}
		return
	}
	l := layouts[t]
	for b := 0; b < len(dst)/l.elems; b++ {
		dequantBlock(t, dst[b*l.elems:(b+1)*l.elems], src[b*l.bytes:(b+1)*l.bytes])
	}
}

// dequantBlock decodes one block of a quantized type. The slices are exactly
// one block long; the array conversions check that once.
func dequantBlock(t Type, dst []float32, src []byte) {
	switch t {
	case Q4_0:
		deqQ4_0((*[32]float32)(dst), (*[18]byte)(src))
	case Q4_1:
		deqQ4_1((*[32]float32)(dst), (*[20]byte)(src))
	case Q5_0:
		deqQ5_0((*[32]float32)(dst), (*[22]byte)(src))
	case Q5_1:
		deqQ5_1((*[32]float32)(dst), (*[24]byte)(src))
	case Q8_0:
		deqQ8_0((*[32]float32)(dst), (*[34]byte)(src))
	case Q2_K:
		deqQ2_K((*[QK]float32)(dst), (*[84]byte)(src))
	case Q3_K:
		deqQ3_K((*[QK]float32)(dst), (*[110]byte)(src))
	case Q4_K:
		deqQ4_K((*[QK]float32)(dst), (*[144]byte)(src))
	case Q5_K:
		deqQ5_K((*[QK]float32)(dst), (*[176]byte)(src))
	case Q6_K:
		deqQ6_K((*[QK]float32)(dst), (*[210]byte)(src))
	default:
		panic(fmt.Sprintf("quant: dequantBlock: %s is not a block type", t))
	}
}

// In every decoder below, a product that is then added to or subtracted
// from is wrapped in float32(...): that rounds it, as C does without
// -ffp-contract, instead of letting the compiler fuse a multiply-add.

func deqQ4_0(y *[32]float32, b *[18]byte) {
	d := f16At(b[0:])
	qs := b[2:18]
	for j := range 16 {
		y[j] = float32(int(qs[j]&0xf)-8) * d
		y[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

func deqQ4_1(y *[32]float32, b *[20]byte) {
	d, m := f16At(b[0:]), f16At(b[2:])
	qs := b[4:20]
	for j := range 16 {
		y[j] = float32(float32(qs[j]&0xf)*d) + m
		y[j+16] = float32(float32(qs[j]>>4)*d) + m
	}
}

func deqQ5_0(y *[32]float32, b *[22]byte) {
	d := f16At(b[0:])
	qh := uint32(b[2]) | uint32(b[3])<<8 | uint32(b[4])<<16 | uint32(b[5])<<24
	qs := b[6:22]
	for j := range 16 {
		h0 := int(qh>>j) << 4 & 0x10
		h1 := int(qh>>(j+12)) & 0x10
		y[j] = float32(int(qs[j]&0xf)|h0-16) * d
		y[j+16] = float32(int(qs[j]>>4)|h1-16) * d
	}
}

func deqQ5_1(y *[32]float32, b *[24]byte) {
	d, m := f16At(b[0:]), f16At(b[2:])
	qh := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24
	qs := b[8:24]
	for j := range 16 {
		h0 := int(qh>>j) << 4 & 0x10
		h1 := int(qh>>(j+12)) & 0x10
		y[j] = float32(float32(int(qs[j]&0xf)|h0)*d) + m
		y[j+16] = float32(float32(int(qs[j]>>4)|h1)*d) + m
	}
}

func deqQ8_0(y *[32]float32, b *[34]byte) {
	d := f16At(b[0:])
	for j := range 32 {
		y[j] = float32(int8(b[2+j])) * d
	}
}

// Q2_K: scales[0:16], qs[16:80], d[80:82], dmin[82:84]. Sixteen groups of 16;
// byte scales[g] is the group's 4-bit scale (low) and 4-bit min (high).
// Element 128*h + 32*s + l (l < 32) is bits 2s..2s+1 of qs[32*h + l], in
// group 8*h + 2*s + l/16.
func deqQ2_K(y *[QK]float32, b *[84]byte) {
	d, dmin := f16At(b[80:]), f16At(b[82:])
	for h := range 2 {
		q := b[16+32*h : 16+32*h+32]
		for s := range 4 {
			for half := range 2 {
				sc := b[8*h+2*s+half]
				dl := float32(d * float32(sc&0xf))
				ml := float32(dmin * float32(sc>>4))
				out := y[128*h+32*s+16*half:]
				for l := range 16 {
					out[l] = float32(dl*float32(q[16*half+l]>>(2*s)&3)) - ml
				}
			}
		}
	}
}

// q3Scale decodes the j-th of the sixteen 6-bit Q3_K scales (minus 32): the
// low four bits are nibbles of scales[0:8], the high two bits pairs of
// scales[8:12].
func q3Scale(sc []byte, j int) int {
	var lo byte
	if j < 8 {
		lo = sc[j] & 0xf
	} else {
		lo = sc[j-8] >> 4
	}
	hi := sc[8+j%4] >> (2 * (j / 4)) & 3
	return int(lo|hi<<4) - 32
}

// Q3_K: hmask[0:32], qs[32:96], scales[96:108], d[108:110]. Like Q2_K's
// layout for the low two bits, plus a high bit per element in hmask: element
// 128*h + 32*s + l has its high bit in bit 4*h+s of hmask[l]; a clear bit
// means the value is 4 lower.
func deqQ3_K(y *[QK]float32, b *[110]byte) {
	d := f16At(b[108:])
	hm := b[0:32]
	sc := b[96:108]
	for h := range 2 {
		q := b[32+32*h : 32+32*h+32]
		for s := range 4 {
			m := byte(1) << (4*h + s)
			for half := range 2 {
				dl := d * float32(q3Scale(sc, 8*h+2*s+half))
				out := y[128*h+32*s+16*half:]
				for l := range 16 {
					v := int(q[16*half+l] >> (2 * s) & 3)
					if hm[16*half+l]&m == 0 {
						v -= 4
					}
					out[l] = dl * float32(v)
				}
			}
		}
	}
}

// kScaleMin decodes the j-th (of 8) 6-bit scale and min of a Q4_K/Q5_K block
// (ggml's get_scale_min_k4).
func kScaleMin(q []byte, j int) (sc, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | q[j-4]>>6<<4, q[j+4]>>4 | q[j]>>6<<4
}

// Q4_K: d[0:2], dmin[2:4], scales[4:16], qs[16:144]. Eight groups of 32;
// group 2c is the low nibbles of qs[32c:32c+32], group 2c+1 the high ones.
func deqQ4_K(y *[QK]float32, b *[144]byte) {
	d, dmin := f16At(b[0:]), f16At(b[2:])
	sc := b[4:16]
	for c := range 4 {
		q := b[16+32*c : 16+32*c+32]
		s1, m1 := kScaleMin(sc, 2*c)
		s2, m2 := kScaleMin(sc, 2*c+1)
		d1, mm1 := float32(d*float32(s1)), float32(dmin*float32(m1))
		d2, mm2 := float32(d*float32(s2)), float32(dmin*float32(m2))
		out := y[64*c : 64*c+64]
		for l := range 32 {
			out[l] = float32(d1*float32(q[l]&0xf)) - mm1
			out[32+l] = float32(d2*float32(q[l]>>4)) - mm2
		}
	}
}

// Q5_K: d[0:2], dmin[2:4], scales[4:16], qh[16:48], qs[48:176]. Q4_K's
// layout plus a fifth bit: element 64*c + 32*k + l has it in bit 2c+k of
// qh[l].
func deqQ5_K(y *[QK]float32, b *[176]byte) {
	d, dmin := f16At(b[0:]), f16At(b[2:])
	sc := b[4:16]
	qh := b[16:48]
	for c := range 4 {
		q := b[48+32*c : 48+32*c+32]
		s1, m1 := kScaleMin(sc, 2*c)
		s2, m2 := kScaleMin(sc, 2*c+1)
		d1, mm1 := float32(d*float32(s1)), float32(dmin*float32(m1))
		d2, mm2 := float32(d*float32(s2)), float32(dmin*float32(m2))
		u1, u2 := byte(1)<<(2*c), byte(2)<<(2*c)
		out := y[64*c : 64*c+64]
		for l := range 32 {
			v1, v2 := int(q[l]&0xf), int(q[l]>>4)
			if qh[l]&u1 != 0 {
				v1 += 16
			}
			if qh[l]&u2 != 0 {
				v2 += 16
			}
			out[l] = float32(d1*float32(v1)) - mm1
			out[32+l] = float32(d2*float32(v2)) - mm2
		}
	}
}

// Q6_K: ql[0:128], qh[128:192], scales[192:208] int8, d[208:210]. Two halves
// of 128; in half h, element 128*h + 32*k + l (k < 4) has its low nibble in
// ql[64h + l + 32*(k&1)] (low nibble for k < 2, high for k >= 2) and its top
// two bits in bits 2k..2k+1 of qh[32h + l]; its scale is scales[8h + 2k + l/16].
func deqQ6_K(y *[QK]float32, b *[210]byte) {
	d := f16At(b[208:])
	for h := range 2 {
		ql := b[64*h : 64*h+64]
		qh := b[128+32*h : 128+32*h+32]
		sc := b[192+8*h : 192+8*h+8]
		out := y[128*h : 128*h+128]
		for l := range 32 {
			is := l / 16
			q1 := int(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
			q2 := int(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
			q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			out[l] = d * float32(int8(sc[is])) * float32(q1)
			out[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			out[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			out[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
	}
}
