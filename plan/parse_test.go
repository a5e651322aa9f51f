package plan

import "testing"

func TestParseDType(t *testing.T) {
	dts := []struct {
		in   string
		name string
		b    float64
	}{
		{"bf16", "bf16", 2}, {"BFloat16", "bf16", 2}, {"fp32", "f32", 4}, {"q4_0", "q4_0", 0.5625}, {"int4", "int4", 0.5}, {"q4_k", "q4_k", 4.5 / 8},
	}
	for _, tc := range dts {
		n, b, err := ParseDType(tc.in)
		if err != nil || n != tc.name || b != tc.b {
			t.Errorf("ParseDType(%q) = %q %v %v", tc.in, n, b, err)
		}
	}
	if _, _, err := ParseDType("fp8"); err == nil {
		t.Error("fp8 accepted")
	}
}
