package quant

// Dot returns Σ w[i]*x[i] over the len(x) elements of one row of type t,
// where w is the row dequantized exactly (as DequantizeRow gives it), summed
// sequentially in float32 with each product rounded: the plain definition
// that the fast kernels are held to. row must be exactly RowBytes(len(x))
// bytes; Dot panics otherwise (the caller owns the shapes). It allocates
// nothing: the row is decoded a block (or, for F32/F16/BF16, 256 elements) at
// a time into a stack buffer.
func Dot(t Type, row []byte, x []float32) float32 {
	if err := checkRow("Dot", t, len(row), len(x)); err != nil {
		panic(err.Error())
	}
	l := layouts[t]
	chunk := l.elems
	if chunk == 1 {
		chunk = QK
	}
	var buf [QK]float32
	var s float32
	for lo := 0; lo < len(x); lo += chunk {
		hi := min(lo+chunk, len(x))
		w := buf[:hi-lo]
		dequantize(t, w, row[lo/l.elems*l.bytes:hi/l.elems*l.bytes])
		for i, v := range w {
			s += float32(v * x[lo+i])
		}
	}
	return s
}
