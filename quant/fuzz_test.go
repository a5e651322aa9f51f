package quant

import (
	"encoding/binary"
	"math"
	"testing"
)

// fuzzX derives an activation row of n values from the fuzz input, so the
// dot products see signs, zeros, large and tiny values.
func fuzzX(data []byte, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		var b byte
		if len(data) > 0 {
			b = data[(i*7+3)%len(data)]
		}
		x[i] = float32(int(b)-128) / 16
	}
	return x
}

// FuzzDequantize runs every block decoder on arbitrary bytes: the whole
// blocks of the input, in a slice whose capacity ends where the row ends, so
// any read past the row would panic. Dot must equal dequantize-then-dot bit
// for bit (NaN for NaN) on the same bytes.
func FuzzDequantize(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 420))
	ones := make([]byte, 880)
	for i := range ones {
		ones[i] = 0xff
	}
	f.Add(ones)
	pat := make([]byte, 700)
	for i := range pat {
		pat[i] = byte(i*37 + i>>3)
	}
	f.Add(pat)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range Types() {
			bb, be := typ.BlockBytes(), typ.BlockElems()
			nb := len(data) / bb
			row := data[: nb*bb : nb*bb]
			out := make([]float32, nb*be)
			if err := DequantizeRow(typ, out, row); err != nil {
				t.Fatalf("%s: %d whole blocks rejected: %v", typ, nb, err)
			}
			x := fuzzX(data, len(out))
			want, err := seqDot(typ, row, x)
			if err != nil {
				t.Fatal(err)
			}
			if got := Dot(typ, row, x); !sameFloat(got, want) {
				t.Fatalf("%s: Dot = %g, dequantize+dot = %g", typ, got, want)
			}
			// A row one byte short must be an error, never a read.
			if nb > 0 {
				if err := DequantizeRow(typ, out, row[:len(row)-1:len(row)-1]); err == nil {
					t.Fatalf("%s: short row accepted", typ)
				}
			}
		}
	})
}

// FuzzQuantize quantizes arbitrary float32 rows (NaN, infinities and
// subnormals included) with every quantizer: no panic, exactly the row's
// bytes written, and for finite inputs of moderate size the round trip stays
// within the type's grid (a loose bound: half a step of the block's range).
func FuzzQuantize(f *testing.F) {
	f.Add(make([]byte, 1024))
	seed := make([]byte, 1024)
	for i := range seed {
		seed[i] = byte(i * 131)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		n := len(data) / 4 / QK * QK
		if n == 0 {
			return
		}
		x := make([]float32, n)
		finite := true
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			if math.IsNaN(float64(x[i])) || math.IsInf(float64(x[i]), 0) || math.Abs(float64(x[i])) > 1e4 || math.Abs(float64(x[i])) < 1e-4 && x[i] != 0 {
				finite = false
			}
		}
		for _, typ := range Types() {
			rb, err := typ.RowBytes(n)
			if err != nil {
				t.Fatal(err)
			}
			q := make([]byte, rb+8)
			for i := range q {
				q[i] = 0xa5
			}
			if err := QuantizeRow(typ, q[:rb:rb], x); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			for _, b := range q[rb:] {
				if b != 0xa5 {
					t.Fatalf("%s: wrote past the row", typ)
				}
			}
			y := make([]float32, n)
			if err := DequantizeRow(typ, y, q[:rb]); err != nil {
				t.Fatal(err)
			}
			if !finite || !typ.Quantized() {
				continue
			}
			be := typ.BlockElems()
			for b := 0; b < n; b += be {
				lo, hi := x[b], x[b]
				for _, v := range x[b : b+be] {
					lo, hi = min(lo, v), max(hi, v)
				}
				span := float64(max(hi, -lo, hi-lo))
				for i := b; i < b+be; i++ {
					if d := math.Abs(float64(x[i] - y[i])); d > span {
						t.Fatalf("%s: x[%d]=%g came back %g (block range %g..%g)", typ, i, x[i], y[i], lo, hi)
					}
				}
			}
		}
	})
}
