package quant

import "math"

// F16ToF32 widens an IEEE half-precision value exactly. A NaN comes back
// quiet with its payload kept, as ggml's conversion (which goes through a
// float multiply) returns it.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f && man != 0:
		return math.Float32frombits(sign | 0x7fc00000 | man<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000)
	case exp == 0:
		// Zero or subnormal: man * 2^-24, exact in float32.
		v := float32(man) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(v))
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// F32ToF16 rounds a float32 to the nearest IEEE half-precision value, ties to
// even, overflowing to infinity, as ggml's GGML_FP32_TO_FP16 does. A NaN
// becomes the quiet NaN 0x7e00 with its sign.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// The result is subnormal (or rounds up to the smallest normal):
		// count units of 2^-24. A float32 below 2^-25 rounds to zero.
		if e < -10 {
			return sign
		}
		m := man | 0x800000
		shift := uint(14 - e) // 14..24
		q := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && q&1 == 1 {
			q++
		}
		return sign | uint16(q)
	}
	q := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && q&1 == 1 {
		q++ // a carry into the exponent is right, up to infinity
	}
	return sign | uint16(q)
}

// BF16ToF32 widens a bfloat16 value (the upper half of a float32) exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds to nearest, ties to even, as ggml's GGML_FP32_TO_BF16
// does; a NaN stays a NaN (quiet).
func F32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// le16 reads a little-endian uint16 (the f16 fields of the blocks).
func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

// f16At reads the f16 at b[0:2] as float32.
func f16At(b []byte) float32 { return F16ToF32(le16(b)) }

// putF16 stores f rounded to f16 at b[0:2].
func putF16(b []byte, f float32) {
	h := F32ToF16(f)
	b[0], b[1] = byte(h), byte(h>>8)
}
