package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// f16Value computes a half's value in float64 straight from the IEEE formula.
func f16Value(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return s * m * math.Pow(2, -24)
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		return s * math.Inf(1)
	}
	return s * (1 + m/1024) * math.Pow(2, float64(e-15))
}

func TestF16ToF32Exhaustive(t *testing.T) {
	impls(t, func(t *testing.T) {
		src := make([]uint16, 1<<16)
		for i := range src {
			src[i] = uint16(i)
		}
		dst := make([]float32, len(src))
		F16ToF32(dst, src)
		for i, h := range src {
			want := f16Value(h)
			got := float64(dst[i])
			if math.IsNaN(want) != math.IsNaN(got) || (!math.IsNaN(want) && got != want) ||
				math.Signbit(got) != (h&0x8000 != 0) {
				t.Fatalf("F16ToF32(%#04x) = %g, want %g", h, got, want)
			}
			// Round trip is the identity on every non-NaN half.
			if !math.IsNaN(want) {
				var back [1]uint16
				F32ToF16(back[:], dst[i:i+1])
				if back[0] != h {
					t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back[0])
				}
			}
		}
	})
}

func TestBF16RoundTripExhaustive(t *testing.T) {
	impls(t, func(t *testing.T) {
		src := make([]uint16, 1<<16)
		for i := range src {
			src[i] = uint16(i)
		}
		dst := make([]float32, len(src))
		BF16ToF32(dst, src)
		back := make([]uint16, len(src))
		F32ToBF16(back, dst)
		for i, h := range src {
			if math.Float32bits(dst[i]) != uint32(h)<<16 {
				t.Fatalf("BF16ToF32(%#04x) bits = %#08x", h, math.Float32bits(dst[i]))
			}
			nan := h&0x7fff > 0x7f80
			if nan {
				if back[i]&0x7fff <= 0x7f80 {
					t.Fatalf("F32ToBF16(NaN %#04x) = %#04x, not NaN", h, back[i])
				}
			} else if back[i] != h {
				t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, back[i])
			}
		}
	})
}

// nearestEven checks that h is the correctly rounded narrow value of f given
// the widening function: no neighbour is closer, and a tie goes to even.
func nearestEven(f float32, h uint16, widen func(uint16) float64) bool {
	v := float64(f)
	got := widen(h)
	if math.IsNaN(v) {
		return math.IsNaN(got)
	}
	if math.IsNaN(got) {
		return false
	}
	d := math.Abs(got - v)
	for _, nb := range []uint16{h - 1, h + 1, h ^ 0x8000} {
		w := widen(nb)
		if math.IsNaN(w) || (math.IsInf(w, 0) && !math.IsInf(got, 0)) {
			continue
		}
		dn := math.Abs(w - v)
		if math.IsInf(got, 0) && !math.IsInf(w, 0) {
			// Overflow to Inf is right only past the rounding boundary,
			// which is checked separately by the caller's range.
			continue
		}
		if dn < d || (dn == d && dn != 0 && nb&1 == 0 && h&1 == 1) {
			return false
		}
	}
	return true
}

func TestNarrowRounding(t *testing.T) {
	impls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		src := make([]float32, 200000)
		for i := range src {
			switch i % 4 {
			case 0: // any bit pattern
				src[i] = math.Float32frombits(r.Uint32())
			case 1: // normal half range
				src[i] = float32(r.NormFloat64() * 100)
			case 2: // half subnormal range and just above
				src[i] = float32(r.NormFloat64() * 1e-5)
			case 3: // exact ties: a half value plus half an ulp
				h := uint16(r.Uint32() & 0x7bff)
				src[i] = float32(f16Value(h) + (f16Value(h+1)-f16Value(h))/2)
			}
		}
		h16 := make([]uint16, len(src))
		F32ToF16(h16, src)
		bf := make([]uint16, len(src))
		F32ToBF16(bf, src)
		for i, f := range src {
			if a := math.Abs(float64(f)); a < 65504+16 || math.IsNaN(a) || math.IsInf(a, 0) {
				if !nearestEven(f, h16[i], f16Value) {
					t.Fatalf("F32ToF16(%g) = %#04x (%g): not nearest-even", f, h16[i], f16Value(h16[i]))
				}
			} else if h16[i]&0x7fff != 0x7c00 {
				t.Fatalf("F32ToF16(%g) = %#04x, want ±Inf", f, h16[i])
			}
			if g := F32ToF16Scalar(f); g != h16[i] {
				t.Fatalf("F32ToF16(%g) = %#04x, scalar %#04x", f, h16[i], g)
			}
			if g := F32ToBF16Scalar(f); g != bf[i] {
				t.Fatalf("F32ToBF16(%g) = %#04x, scalar %#04x", f, bf[i], g)
			}
			if !nearestEven(f, bf[i], func(h uint16) float64 { return float64(BF16ToF32Scalar(h)) }) &&
				!math.IsInf(float64(BF16ToF32Scalar(bf[i])), 0) {
				t.Fatalf("F32ToBF16(%g) = %#04x: not nearest-even", f, bf[i])
			}
		}
	})
}

// TestReadOr checks the memory-read ceiling kernel really reads every word.
func TestReadOr(t *testing.T) {
	impls(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 31, 32, 33, 100, 1000, 4099} {
			p := make([]uint64, n)
			for i := range p {
				p[i] = 0
			}
			for bit := 0; bit < n && bit < 64; bit++ {
				// Spread the set bits over the whole slice, tails included.
				p[(bit*7919)%n] |= 1 << bit
			}
			var want uint64
			for _, v := range p {
				want |= v
			}
			if got := readOr(p); got != want {
				t.Errorf("readOr(len %d) = %#x, want %#x", n, got, want)
			}
		}
	})
}
