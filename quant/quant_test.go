package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		t            Type
		elems, bytes int
	}{
		{F32, 1, 4}, {F16, 1, 2}, {BF16, 1, 2},
		{Q4_0, 32, 18}, {Q4_1, 32, 20}, {Q5_0, 32, 22}, {Q5_1, 32, 24}, {Q8_0, 32, 34},
		{Q2_K, 256, 84}, {Q3_K, 256, 110}, {Q4_K, 256, 144}, {Q5_K, 256, 176}, {Q6_K, 256, 210},
	} {
		if tc.t.BlockElems() != tc.elems || tc.t.BlockBytes() != tc.bytes {
			t.Errorf("%s: block %d elems / %d bytes, want %d / %d", tc.t, tc.t.BlockElems(), tc.t.BlockBytes(), tc.elems, tc.bytes)
		}
		if !tc.t.Supported() || tc.t.Quantized() != (tc.elems > 1) {
			t.Errorf("%s: Supported %v Quantized %v", tc.t, tc.t.Supported(), tc.t.Quantized())
		}
		if n, err := tc.t.RowBytes(4096); err != nil || n != 4096/tc.elems*tc.bytes {
			t.Errorf("%s: RowBytes(4096) = %d, %v", tc.t, n, err)
		}
		if n, err := tc.t.RowBytes(0); err != nil || n != 0 {
			t.Errorf("%s: RowBytes(0) = %d, %v", tc.t, n, err)
		}
		if tc.elems > 1 {
			if _, err := tc.t.RowBytes(tc.elems + 1); err == nil || !strings.Contains(err.Error(), "whole number") {
				t.Errorf("%s: RowBytes(%d) err = %v, want a whole-number-of-blocks error", tc.t, tc.elems+1, err)
			}
		}
		if _, err := tc.t.RowBytes(-tc.elems); err == nil {
			t.Errorf("%s: RowBytes(negative) accepted", tc.t)
		}
		if _, err := tc.t.RowBytes(1 << 40); err == nil {
			t.Errorf("%s: RowBytes(2^40) accepted", tc.t)
		}
	}
	if len(Types()) != len(layouts) {
		t.Errorf("Types() lists %d types, layouts %d", len(Types()), len(layouts))
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		id   uint32
		want string // "" for supported
	}{
		{0, ""}, {1, ""}, {2, ""}, {8, ""}, {12, ""}, {14, ""}, {30, ""},
		{17, "not supported yet: IQ2_XS"},
		{15, "not supported yet: Q8_K"},
		{9, "not supported yet: Q8_1"},
		{39, "not supported yet: MXFP4"},
		{34, "not supported yet: TQ1_0"},
		{4, "not supported yet: Q4_2"},
		{28, "not supported yet: F64"},
		{200, "not supported yet: ggml type 200"},
	} {
		err := Check(tc.id)
		if tc.want == "" {
			if err != nil {
				t.Errorf("Check(%d) = %v, want nil", tc.id, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrUnsupported) {
			t.Errorf("Check(%d) = %v, want %q (wrapping ErrUnsupported)", tc.id, err, tc.want)
		}
		var ue *UnsupportedError
		if !errors.As(err, &ue) || uint32(ue.Type) != tc.id {
			t.Errorf("Check(%d): not an *UnsupportedError for the id", tc.id)
		}
		if _, err := Type(tc.id).RowBytes(256); !errors.Is(err, ErrUnsupported) {
			t.Errorf("RowBytes of unsupported %d: %v", tc.id, err)
		}
		if err := DequantizeRow(Type(tc.id), make([]float32, 256), make([]byte, 1024)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("DequantizeRow of unsupported %d: %v", tc.id, err)
		}
	}
}

func TestRowLengthErrors(t *testing.T) {
	for _, typ := range Types() {
		n := 2 * max(typ.BlockElems(), 8)
		rb, _ := typ.RowBytes(n)
		if err := DequantizeRow(typ, make([]float32, n), make([]byte, rb+1)); err == nil {
			t.Errorf("%s: DequantizeRow accepted a long src", typ)
		}
		if err := DequantizeRow(typ, make([]float32, n), make([]byte, rb-1)); err == nil {
			t.Errorf("%s: DequantizeRow accepted a short src", typ)
		}
		if err := QuantizeRow(typ, make([]byte, rb-1), make([]float32, n)); err == nil {
			t.Errorf("%s: QuantizeRow accepted a short dst", typ)
		}
		if typ.Quantized() {
			if err := DequantizeRow(typ, make([]float32, n+1), make([]byte, rb)); err == nil {
				t.Errorf("%s: DequantizeRow accepted a partial block", typ)
			}
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Dot with a short row did not panic", typ)
				}
			}()
			Dot(typ, make([]byte, rb-1), make([]float32, n))
		}()
	}
}

// f16Ref is the half-precision value nearest to f (ties to even), found the
// slow way: a binary search over the finite halves (ordered by value), then
// the two neighbours compared in float64.
func f16Ref(f float32) uint16 {
	if f != f {
		return 0x7e00 | uint16(math.Float32bits(f)>>16)&0x8000
	}
	sign := uint16(0)
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	a := math.Abs(float64(f))
	if a >= 65520 { // halfway between 65504 and 2^16 and above: infinity
		return sign | 0x7c00
	}
	lo := uint16(sort.Search(0x7c00, func(h int) bool { return float64(F16ToF32(uint16(h))) >= a }))
	best := lo
	if lo > 0 {
		below := lo - 1
		eb, ea := a-float64(F16ToF32(below)), float64(F16ToF32(lo))-a
		if lo == 0x7c00 || eb < ea || eb == ea && below&1 == 0 {
			best = below
		}
	}
	return sign | best
}

func TestHalfRoundTrip(t *testing.T) {
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		exp, man := h>>10&0x1f, h&0x3ff
		var want float64
		switch {
		case exp == 0x1f && man != 0:
			if f == f {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN", h, f)
			}
			continue
		case exp == 0x1f:
			want = math.Inf(1)
		case exp == 0:
			want = math.Ldexp(float64(man), -24)
		default:
			want = math.Ldexp(float64(man|0x400), exp-25)
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if float64(f) != want || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, f, want)
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back)
		}
		if b := BF16ToF32(uint16(h)); exp != 0x1f && F32ToBF16(b) != uint16(h) && b == b {
			t.Fatalf("bf16 round trip of %#04x", h)
		}
	}
}

func TestF32ToF16Rounding(t *testing.T) {
	// Midpoints between neighbouring halves (ties), a hair either side of
	// them, subnormal boundaries and overflow, then random values.
	var xs []float32
	for h := uint16(0); h < 0x7c00; h += 37 {
		lo, hi := float64(F16ToF32(h)), float64(F16ToF32(h+1))
		mid := float32((lo + hi) / 2)
		xs = append(xs, mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9), -mid)
	}
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1, 65504, 65519.99, 65520, 1e10, float32(math.Inf(1)), float32(math.Inf(-1)),
		5.960464477539063e-08, 2.980232238769531e-08, 2.9802326e-08, 1e-30, float32(math.NaN()))
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		// Exponents from 2^-27 (below the smallest subnormal half) to 2^18.
		bits := r.Uint32()&0x807fffff | uint32(100+r.IntN(46))<<23
		xs = append(xs, math.Float32frombits(bits))
	}
	for _, x := range xs {
		if got, want := F32ToF16(x), f16Ref(x); got != want {
			t.Errorf("F32ToF16(%g / %#08x) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
	if got := F32ToBF16(1.00390625); got != 0x3f80 { // a tie, rounds to even
		t.Errorf("F32ToBF16 tie = %#04x", got)
	}
	if got := F32ToBF16(1.01171875); got != 0x3f82 { // a tie, rounds up to even
		t.Errorf("F32ToBF16 tie = %#04x", got)
	}
}

func randRow(r *rand.Rand, n int, scale float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64()) * scale
		if r.IntN(50) == 0 {
			x[i] *= 8 // outliers
		}
	}
	return x
}

// TestQuantizeError is a sanity check on the quantizers beyond the fixtures:
// random rows round-trip with an RMS error that shrinks with the bit width.
func TestQuantizeError(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 4096
	x := randRow(r, n, 0.02)
	var rms float64
	for _, v := range x {
		rms += float64(v) * float64(v)
	}
	rms = math.Sqrt(rms / n)
	for _, tc := range []struct {
		t      Type
		maxRel float64 // RMS error / RMS value
	}{
		{Q8_0, 0.015}, {Q6_K, 0.04}, {Q5_0, 0.1}, {Q5_1, 0.07}, {Q5_K, 0.07},
		{Q4_0, 0.2}, {Q4_1, 0.14}, {Q4_K, 0.14}, {Q3_K, 0.3}, {Q2_K, 0.5},
		{F16, 0.001}, {BF16, 0.005}, {F32, 0},
	} {
		rb, _ := tc.t.RowBytes(n)
		q := make([]byte, rb)
		if err := QuantizeRow(tc.t, q, x); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, n)
		if err := DequantizeRow(tc.t, y, q); err != nil {
			t.Fatal(err)
		}
		var e float64
		for i := range x {
			d := float64(x[i] - y[i])
			e += d * d
		}
		rel := math.Sqrt(e/n) / rms
		t.Logf("%-5s %.2f bits/weight, relative RMS error %.4f", tc.t, 8*float64(rb)/n, rel)
		if rel > tc.maxRel {
			t.Errorf("%s: relative RMS error %.4f > %.4f", tc.t, rel, tc.maxRel)
		}
	}
}

// seqDot is dequantize-then-dot: the definition Dot must equal bit for bit.
func seqDot(t Type, row []byte, x []float32) (float32, error) {
	w := make([]float32, len(x))
	if err := DequantizeRow(t, w, row); err != nil {
		return 0, err
	}
	var s float32
	for i := range w {
		s += float32(w[i] * x[i])
	}
	return s, nil
}

func sameFloat(a, b float32) bool { return a == b || a != a && b != b }

func TestDotMatchesDequantize(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, typ := range Types() {
		for _, n := range []int{0, 256, 512, 1024 + 256} {
			x := randRow(r, n, 1)
			w := randRow(r, n, 0.05)
			rb, _ := typ.RowBytes(n)
			q := make([]byte, rb)
			if err := QuantizeRow(typ, q, w); err != nil {
				t.Fatal(err)
			}
			want, err := seqDot(typ, q, x)
			if err != nil {
				t.Fatal(err)
			}
			if got := Dot(typ, q, x); !sameFloat(got, want) {
				t.Errorf("%s n=%d: Dot = %g, dequantize+dot = %g", typ, n, got, want)
			}
		}
	}
}
