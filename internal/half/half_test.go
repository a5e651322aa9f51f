package half

import (
	"math"
	"testing"
)

func TestHalfConversions(t *testing.T) {
	tests := []struct {
		f        float32
		f16, b16 uint16
	}{
		{0, 0, 0},
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{65504, 0x7bff, 0x4780}, // 0x477fe000: rounds up in bf16
		{65520, 0x7c00, 0x4780}, // rounds up to Inf in f16
		{float32(math.Ldexp(1, -24)), 0x0001, 0x3380}, // smallest f16 subnormal
		{float32(math.Ldexp(1, -25)), 0x0000, 0x3300}, // tie to even: 0
		{float32(math.Ldexp(3, -26)), 0x0001, 0x3340}, // 0.75 ulp rounds up
		{float32(math.Ldexp(1, -14)), 0x0400, 0x3880}, // smallest f16 normal
		{1 + 1.0/2048, 0x3c00, 0x3f80},                // tie to even (down)
		{1 + 3.0/2048, 0x3c02, 0x3f80},                // tie to even (up)
		{float32(math.Inf(-1)), 0xfc00, 0xff80},
	}
	for _, tc := range tests {
		if got := F32ToF16(tc.f); got != tc.f16 {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.f, got, tc.f16)
		}
		if got := F32ToBF16(tc.f); got != tc.b16 {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", tc.f, got, tc.b16)
		}
	}
	if h := F32ToF16(float32(math.NaN())); !math.IsNaN(float64(F16ToF32(h))) {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", h)
	}
	if h := F32ToBF16(float32(math.NaN())); !math.IsNaN(float64(BF16ToF32(h))) {
		t.Errorf("F32ToBF16(NaN) = %#04x, not a NaN", h)
	}
	// Every non-NaN half survives a round trip through float32 exactly.
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("F32ToF16(F16ToF32(%#04x) = %g) = %#04x", h, f, back)
		}
		if b := uint16(h); !math.IsNaN(float64(BF16ToF32(b))) && F32ToBF16(BF16ToF32(b)) != b {
			t.Fatalf("bf16 %#04x does not round-trip", b)
		}
	}
}
