package kernels

import (
	"fmt"
	"math"
	"testing"

	"offload/quant"
)

// qFuzzCase derives a quantized product from fuzz bytes: byte 0 picks the
// type, 1 the batch rows n (1..6, so the batched path runs too), 2 the row
// length in blocks (1..3 k-quant super-blocks, 1..12 legacy blocks), 3 the
// output rows (1..9, covering the 4-row and 2-row groups and their
// remainders). The rest, cycled, are the raw weight bytes (any scales,
// NaN and infinities included) and the activations (multiples of 1/16 in
// [-8, 8)).
func qFuzzCase(data []byte) (typ quant.Type, x []float32, w []byte, n, in, out int, ok bool) {
	if len(data) < 5 {
		return 0, nil, nil, 0, 0, 0, false
	}
	ts := qTypes()
	typ = ts[int(data[0])%len(ts)]
	n = 1 + int(data[1])%6
	if typ.BlockElems() == quant.QK {
		in = quant.QK * (1 + int(data[2])%3)
	} else {
		in = 32 * (1 + int(data[2])%12)
	}
	out = 1 + int(data[3])%9
	vals := data[4:]
	rb, _ := typ.RowBytes(in)
	w = make([]byte, out*rb)
	for i := range w {
		w[i] = vals[i%len(vals)]
	}
	x = make([]float32, n*in)
	for i := range x {
		x[i] = float32(int8(vals[(len(w)+i)%len(vals)])) / 16
	}
	return typ, x, w, n, in, out, true
}

// FuzzMatMulQ holds MatMulQ at every instruction-set level (plain Go, AVX2,
// AVX-512 where the CPU has them) to quant.Dot on arbitrary weight bytes.
func FuzzMatMulQ(f *testing.F) {
	for t := range byte(10) {
		seed := []byte{t, 0, 1, 4, 0x12, 0x34, 0x9a, 0x3b, 0xc5, 0x00, 0x7f, 0x80}
		f.Add(seed)
		f.Add(append([]byte{t, 3, 2, 8}, make([]byte, 300)...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, x, w, n, in, out, ok := qFuzzCase(data)
		if !ok {
			return
		}
		withQLevel(func(lvl string) {
			y := make([]float32, n*out)
			MatMulQ(typ, y, x, w, n, in, out)
			qCheck(t, fmt.Sprintf("%s %s n=%d in=%d out=%d", typ, lvl, n, in, out), typ, y, x, w, n, in, out)
		})
	})
}

// FuzzDequantQ holds every level's dequantization kernel to
// quant.DequantizeRow bit for bit on arbitrary bytes (NaNs may differ only
// in payload).
func FuzzDequantQ(f *testing.F) {
	for t := range byte(10) {
		f.Add(append([]byte{t, 1}, make([]byte, 200)...))
		f.Add([]byte{t, 2, 0xff, 0x7b, 0x00, 0xfc, 0x01, 0x80})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		ts := qTypes()
		typ := ts[int(data[0])%len(ts)]
		nb := 1 + int(data[1])%4
		src := make([]byte, nb*typ.BlockBytes())
		for i := range src {
			src[i] = data[2+i%(len(data)-2)]
		}
		want := make([]float32, nb*typ.BlockElems())
		if err := quant.DequantizeRow(typ, want, src); err != nil {
			t.Fatal(err)
		}
		withQLevel(func(lvl string) {
			got := make([]float32, len(want)+1)
			got[len(want)] = 12345 // must not be written
			qkernelFor(typ).dequant(got[:len(want):len(want)], src[:len(src):len(src)], nb)
			for i := range want {
				g, w := math.Float32bits(got[i]), math.Float32bits(want[i])
				if g != w && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("%s %s: element %d = %g (%#08x), want %g (%#08x)", typ, lvl, i, got[i], g, want[i], w)
				}
			}
			if got[len(want)] != 12345 {
				t.Fatalf("%s %s: wrote past the row", typ, lvl)
			}
		})
	})
}
