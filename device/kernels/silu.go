package kernels

import (
	"fmt"
	"math"
)

// SiLUMul sets out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) *
// up[i] for i < len(out), on the caller's goroutine (callers split large
// vectors themselves). out may be gate or up. The SIMD path evaluates e^x in
// float32 (about 1 ulp); the plain path in float64.
func SiLUMul(out, gate, up []float32) {
	if len(gate) < len(out) || len(up) < len(out) {
		panic(fmt.Sprintf("kernels: SiLUMul: len(out)=%d, len(gate)=%d, len(up)=%d", len(out), len(gate), len(up)))
	}
	siluMul(out, gate[:len(out)], up[:len(out)])
}

func siluMulGeneric(out, gate, up []float32) {
	gate, up = gate[:len(out)], up[:len(out)]
	for i, g := range gate {
		out[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
	}
}
