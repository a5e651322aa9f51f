package kernels

import (
	"fmt"
	"math"
)

// BF16ToF32Scalar widens one bfloat16 (exact: it is the top half of a float32).
func BF16ToF32Scalar(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16Scalar narrows one float32 to bfloat16, rounding to nearest even.
// NaNs stay NaN (quieted); values past the largest bfloat16 become ±Inf.
func F32ToBF16Scalar(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32Scalar widens one IEEE half-precision value (exact, subnormals
// included; a NaN stays NaN with its payload, quieted).
func F16ToF32Scalar(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: normalize so the leading one becomes implicit.
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	case 0x1f:
		if mant != 0 {
			// NaN: quieted, as VCVTPH2PS does, so both paths agree bit for bit.
			return math.Float32frombits(sign | 0x7fc00000 | mant<<13)
		}
		return math.Float32frombits(sign | 0x7f800000)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToF16Scalar narrows one float32 to IEEE half precision, rounding to
// nearest even (as VCVTPS2PH with imm 0 does): overflow gives ±Inf, tiny
// values become subnormal or ±0, NaNs stay NaN (quieted).
func F32ToF16Scalar(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		// Subnormal result: the unit is 2^-24, so shift the full
		// significand right by 14-e and round the remainder to even.
		m := mant | 0x800000
		shift := uint(14 - e)
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to Inf: that is correct rounding
	}
	return sign | uint16(r)
}

// BF16ToF32 widens len(src) bfloat16 values into dst.
func BF16ToF32(dst []float32, src []uint16) {
	checkConv("BF16ToF32", len(dst), len(src))
	bf16ToF32(dst[:len(src)], src)
}

// F16ToF32 widens len(src) half-precision values into dst.
func F16ToF32(dst []float32, src []uint16) {
	checkConv("F16ToF32", len(dst), len(src))
	f16ToF32(dst[:len(src)], src)
}

// F32ToBF16 narrows len(src) float32 values into dst, rounding to nearest even.
func F32ToBF16(dst []uint16, src []float32) {
	checkConv("F32ToBF16", len(dst), len(src))
	f32ToBF16(dst[:len(src)], src)
}

// F32ToF16 narrows len(src) float32 values into dst, rounding to nearest even.
func F32ToF16(dst []uint16, src []float32) {
	checkConv("F32ToF16", len(dst), len(src))
	f32ToF16(dst[:len(src)], src)
}

func checkConv(name string, ld, ls int) {
	if ld < ls {
		panic(fmt.Sprintf("kernels: %s: len(dst)=%d < len(src)=%d", name, ld, ls))
	}
}

func bf16ToF32Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

func f16ToF32Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = F16ToF32Scalar(h)
	}
}

func f32ToBF16Generic(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = F32ToBF16Scalar(f)
	}
}

func f32ToF16Generic(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = F32ToF16Scalar(f)
	}
}
