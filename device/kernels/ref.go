package kernels

// The *Ref functions are the plain definitions the fast kernels are held to:
// single-threaded, with each dot product summed sequentially in float32 from
// i = 0 upwards, exactly as llama2.c's matmul does. Fuzz tests here and in the
// backends compare against them.

// DotF32Ref returns Σ a[i]*b[i] summed in order in float32.
func DotF32Ref(a, b []float32) float32 {
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// MatMulF32Ref is the reference for MatMulF32 (w is [out][in]).
func MatMulF32Ref(y, x, w []float32, n, in, out int) {
	for r := range n {
		for o := range out {
			var s float32
			for i := range in {
				s += w[o*in+i] * x[r*in+i]
			}
			y[r*out+o] = s
		}
	}
}

// MatMulBF16Ref is the reference for MatMulBF16.
func MatMulBF16Ref(y, x []float32, w []uint16, n, in, out int) {
	for r := range n {
		for o := range out {
			var s float32
			for i := range in {
				s += BF16ToF32Scalar(w[o*in+i]) * x[r*in+i]
			}
			y[r*out+o] = s
		}
	}
}

// MatMulF16Ref is the reference for MatMulF16.
func MatMulF16Ref(y, x []float32, w []uint16, n, in, out int) {
	for r := range n {
		for o := range out {
			var s float32
			for i := range in {
				s += F16ToF32Scalar(w[o*in+i]) * x[r*in+i]
			}
			y[r*out+o] = s
		}
	}
}

// MatMulTF32Ref is the reference for MatMulTF32 (w is [in][out]).
func MatMulTF32Ref(y, x, w []float32, n, in, out int) {
	for r := range n {
		for o := range out {
			var s float32
			for i := range in {
				s += x[r*in+i] * w[i*out+o]
			}
			y[r*out+o] = s
		}
	}
}

// MatMulTBF16Ref is the reference for MatMulTBF16.
func MatMulTBF16Ref(y, x []float32, w []uint16, n, in, out int) {
	for r := range n {
		for o := range out {
			var s float32
			for i := range in {
				s += x[r*in+i] * BF16ToF32Scalar(w[i*out+o])
			}
			y[r*out+o] = s
		}
	}
}

// MatMulTF16Ref is the reference for MatMulTF16.
func MatMulTF16Ref(y, x []float32, w []uint16, n, in, out int) {
	for r := range n {
		for o := range out {
			var s float32
			for i := range in {
				s += x[r*in+i] * F16ToF32Scalar(w[i*out+o])
			}
			y[r*out+o] = s
		}
	}
}
