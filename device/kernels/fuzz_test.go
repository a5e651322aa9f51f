package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"
)

// fuzzInputs derives a small product from fuzz bytes: the first three bytes
// pick n (1..72), in (0..71) and out (1..40), which covers the matvec
// (n=1), every micro-kernel tile (4, 8, 16, 32, 48 and 64 rows, 64 plus a
// remainder), partial panels and strips, the plain path's 3x4, 4x1 and 4x16
// blocks, and the vector loops' tails; the rest, cycled, give the values. Weights are kept finite and below 2 in magnitude (one exponent bit
// cleared) so that a different summation order can only round differently,
// never overflow differently; subnormals, zeros and signs all still occur.
func fuzzInputs(data []byte, k wkind) (x, wf []float32, wh []uint16, n, in, out int, ok bool) {
	if len(data) < 4 {
		return nil, nil, nil, 0, 0, 0, false
	}
	n, in, out = 1+int(data[0])%72, int(data[1])%72, 1+int(data[2])%40
	vals := data[3:]
	at := func(i int) byte { return vals[i%len(vals)] }
	x = make([]float32, n*in)
	for i := range x {
		x[i] = float32(int8(at(i))) / 16
	}
	off := len(x)
	switch k {
	case kindF32:
		wf = make([]float32, in*out)
		for i := range wf {
			wf[i] = float32(int16(uint16(at(off+2*i))|uint16(at(off+2*i+1))<<8)) / 4096
		}
	default:
		wh = make([]uint16, in*out)
		for i := range wh {
			wh[i] = (uint16(at(off+2*i)) | uint16(at(off+2*i+1))<<8) & 0xbfff
		}
	}
	return x, wf, wh, n, in, out, true
}

// fuzzKernel holds the kernel, with every kernel set this machine can run
// (plain Go, AVX2, AVX-512), to the reference on one fuzz input.
func fuzzKernel(t *testing.T, c kernelCase, data []byte) {
	x, wf, wh, n, in, out, ok := fuzzInputs(data, c.kind)
	if !ok {
		return
	}
	yref := make([]float32, n*out)
	runRef(c, yref, x, wf, wh, n, in, out)
	bound := absBound(x, weightsF32(wf, wh, convFor(c.kind)), n, in, out, c.trans)
	eachImpl(func(impl string) {
		y := make([]float32, n*out)
		runFast(c, y, x, wf, wh, n, in, out)
		checkClose(t, fmt.Sprintf("%s %s n=%d in=%d out=%d", c.name, impl, n, in, out), y, yref, bound)
	})
}

func fuzzSeeds(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1})
	f.Add([]byte{3, 17, 5, 0x80, 0x7f, 1, 2, 3, 0xff, 0x00, 0x3c})
	f.Add([]byte{5, 71, 19, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01})
	f.Add([]byte{4, 16, 8, 0x00, 0x01, 0x00, 0x80, 0x03, 0x00})   // subnormal weights
	f.Add([]byte{3, 70, 35, 0x11, 0x93, 0x4c, 0x3f, 0xc0, 0x27})  // n=4, out=36: panels
	f.Add([]byte{15, 40, 29, 0x05, 0x77, 0x9c, 0x3f, 0xc0, 0x27}) // n=16: 16-lane tile
	f.Add([]byte{69, 65, 39, 0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb}) // n=70: 64-row tile + rest
}

func FuzzMatMulF32(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzKernel(t, kernelCases[0], data) })
}

func FuzzMatMulBF16(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzKernel(t, kernelCases[1], data) })
}

func FuzzMatMulF16(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzKernel(t, kernelCases[2], data) })
}

func FuzzMatMulTF32(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzKernel(t, kernelCases[3], data) })
}

func FuzzMatMulTBF16(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzKernel(t, kernelCases[4], data) })
}

func FuzzMatMulTF16(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzKernel(t, kernelCases[5], data) })
}

func FuzzMatMulPacked(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzKernel(t, kernelCases[6], data) })
}

// FuzzConvert holds the SIMD conversions to the scalar ones bit for bit, on
// arbitrary bit patterns (NaN, Inf and subnormals included).
func FuzzConvert(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x7f, 0x01, 0x00, 0x80, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x00, 0x10, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x80, 0x7f, 0x47, 0x01, 0x80, 0x00, 0x33})
	f.Fuzz(func(t *testing.T, data []byte) {
		hs := make([]uint16, len(data)/2)
		for i := range hs {
			hs[i] = binary.LittleEndian.Uint16(data[2*i:])
		}
		fs := make([]float32, len(data)/4)
		for i := range fs {
			fs[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		wide := make([]float32, len(hs))
		BF16ToF32(wide, hs)
		for i, h := range hs {
			if math.Float32bits(wide[i]) != math.Float32bits(BF16ToF32Scalar(h)) {
				t.Fatalf("BF16ToF32(%#04x) = %#08x", h, math.Float32bits(wide[i]))
			}
		}
		F16ToF32(wide, hs)
		for i, h := range hs {
			if math.Float32bits(wide[i]) != math.Float32bits(F16ToF32Scalar(h)) {
				t.Fatalf("F16ToF32(%#04x) = %#08x, scalar %#08x", h, math.Float32bits(wide[i]),
					math.Float32bits(F16ToF32Scalar(h)))
			}
		}
		narrow := make([]uint16, len(fs))
		F32ToBF16(narrow, fs)
		for i, v := range fs {
			if narrow[i] != F32ToBF16Scalar(v) {
				t.Fatalf("F32ToBF16(%#08x) = %#04x, scalar %#04x", math.Float32bits(v), narrow[i], F32ToBF16Scalar(v))
			}
		}
		F32ToF16(narrow, fs)
		for i, v := range fs {
			if narrow[i] != F32ToF16Scalar(v) {
				t.Fatalf("F32ToF16(%#08x) = %#04x, scalar %#04x", math.Float32bits(v), narrow[i], F32ToF16Scalar(v))
			}
		}
	})
}

// FuzzExpSub holds the vectorised softmax exponential to the plain one
// (math.Exp, rounded to float32) within a few ulp, on arguments from 0 down
// past the float32 range, -Inf (the causal mask) included.
func FuzzExpSub(f *testing.F) {
	f.Add([]byte{0, 0x80, 0xff, 0x7f, 0x01, 0x42, 0xc2, 0xb0})
	f.Add([]byte{3, 4, 0xff, 0xde, 0xdd, 0x00, 0x01, 0x80, 0xfe, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		width, rows := 8*(1+int(data[0])%4), 1+int(data[1])%5
		vals := data[2:]
		x := make([]float32, rows*width)
		m := make([]float32, width)
		for i := range x {
			b := vals[i%len(vals)] ^ byte(i*29)
			x[i] = -float32(b) * 0.4 // 0 .. -102
			if b == 0xff {
				x[i] = float32(math.Inf(-1))
			}
		}
		for c := range m {
			m[c] = float32(int8(vals[c%len(vals)])) / 64 // x-m stays near or below 0
		}
		want := slices.Clone(x)
		ws := make([]float32, width)
		expSubGeneric(want, m, ws, rows, width)
		eachImpl(func(impl string) {
			got, gs := slices.Clone(x), make([]float32, width)
			expSub(got, m, gs, rows, width)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 4e-7*float64(want[i])+2e-38 {
					t.Fatalf("%s: exp(%g - %g) = %g, want %g", impl, x[i], m[i%width], got[i], want[i])
				}
			}
			for c := range ws {
				if d := math.Abs(float64(gs[c] - ws[c])); d > 1e-6*float64(ws[c])+1e-37 {
					t.Fatalf("%s: column %d sum = %g, want %g", impl, c, gs[c], ws[c])
				}
			}
		})
	})
}

// FuzzSiLUMul holds the vectorised SiLU-and-multiply to the plain one
// within a few ulp, over gates from far below to far above zero.
func FuzzSiLUMul(f *testing.F) {
	f.Add([]byte{0x00, 0x80, 0x7f, 0x81, 0x01, 0xff, 0x40, 0xc0})
	f.Add([]byte{0x3c, 0xa0, 0x10, 0x90, 0x55, 0xaa, 0x05, 0xfa, 0x33, 0x99, 0x11, 0xee, 0x22, 0xdd, 0x44, 0xbb, 0x66})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := len(data)
		gate, up := make([]float32, n), make([]float32, n)
		for i, b := range data {
			gate[i] = float32(int8(b)) / 4 * float32(int(1)<<(b&7)) // up to about ±4000
			up[i] = float32(int8(b^0x5a)) / 16
		}
		want := make([]float32, n)
		siluMulGeneric(want, gate, up)
		eachImpl(func(impl string) {
			got := make([]float32, n)
			SiLUMul(got, gate, up)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-6*math.Abs(float64(want[i]))+1e-30 {
					t.Fatalf("%s: silu(%g)*%g = %g, want %g", impl, gate[i], up[i], got[i], want[i])
				}
			}
		})
	})
}
