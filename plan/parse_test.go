package plan

import (
	"math"
	"testing"
)

func TestParseLink(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"pcie4", 25e9, true},
		{"PCIe3", 12.5e9, true},
		{"pcie5", 56e9, true},
		{"25GB/s", 25e9, true},
		{"25 GB/s", 25e9, true},
		{"12.5GB/s", 12.5e9, true},
		{"1GiB/s", 1 << 30, true},
		{"25e9", 25e9, true},
		{"25GB", 25e9, true},
		{"pcie9", 0, false},
		{"fast", 0, false},
		{"-5GB/s", 0, false},
		{"0", 0, false},
		{"", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseLink(tc.in)
		if tc.ok != (err == nil) || (tc.ok && math.Abs(got-tc.want) > 1) {
			t.Errorf("ParseLink(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseSizeFLOPSDType(t *testing.T) {
	sizes := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"24GiB", 24 << 30, true}, {"24 GB", 24e9, true}, {"80G", 80e9, true}, {"1048576", 1 << 20, true},
		{"0", 0, false}, {"-1GB", 0, false}, {"lots", 0, false}, {"99999999999999999999999GB", 0, false},
	}
	for _, tc := range sizes {
		got, err := ParseSize(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	flops := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"150T", 150e12, true}, {"150 TFLOPS", 150e12, true}, {"1.5e14", 1.5e14, true}, {"989.4TFLOP/s", 989.4e12, true},
		{"2P", 2e15, true}, {"T", 0, false}, {"-1T", 0, false}, {"abc", 0, false},
	}
	for _, tc := range flops {
		got, err := ParseFLOPS(tc.in)
		if tc.ok != (err == nil) || math.Abs(got-tc.want) > 1 {
			t.Errorf("ParseFLOPS(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
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

func FuzzParseLink(f *testing.F) {
	for _, s := range []string{"pcie4", "25GB/s", "1e9", "3 GiB/s", "", "/s", "1e999GB/s", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseLink(s)
		if err == nil && !(v > 0 && !math.IsInf(v, 0)) {
			t.Fatalf("ParseLink(%q) = %v without error", s, v)
		}
		n, err := ParseSize(s)
		if err == nil && n <= 0 {
			t.Fatalf("ParseSize(%q) = %v without error", s, n)
		}
		x, err := ParseFLOPS(s)
		if err == nil && !(x > 0 && !math.IsInf(x, 0)) {
			t.Fatalf("ParseFLOPS(%q) = %v without error", s, x)
		}
	})
}
