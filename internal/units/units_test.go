package units

import (
	"math"
	"testing"
)

func TestParseLink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"4GB/s", 4e9, true},
		{"4Gb/s", 0.5e9, true},
		{"4 GB/s", 4e9, true},
		{"4gb/s", 0.5e9, true},
		{"4GiB/s", 4 * (1 << 30), true},
		{"4Gibps", 0.5 * (1 << 30), true},
		{"800MB/s", 800e6, true},
		{"800Mb/s", 100e6, true},
		{"25e9", 25e9, true},
		{"25GB", 25e9, true},
		{"pcie4", 25e9, true},
		{"PCIe3", 12.5e9, true},
		{"pcie5", 56e9, true},
		{"0", 0, true},
		{"off", 0, true},
		{"1B/s", 0, false}, // below MinLink
		{"999kB/s", 0, false},
		{"1MB/s", 1e6, true},
		{"", 0, false},
		{"fast", 0, false},
		{"-4GB/s", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"4XB/s", 0, false},
		{"4 GB/s extra", 0, false},
		{"pcie9", 0, false},
		{"1e999GB/s", 0, false},
		{"/s", 0, false},
	} {
		got, err := ParseLink(tc.in)
		if tc.ok != (err == nil) || (tc.ok && math.Abs(got-tc.want) > 1e-6*tc.want) {
			t.Errorf("ParseLink(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"24GiB", 24 << 30, true},
		{"24GB", 24e9, true},
		{"24 gb", 0, false}, // bits make no sense for memory
		{"24G", 24e9, true},
		{"24Gi", 24 << 30, true},
		{"600MiB", 600 << 20, true},
		{"1MiB", 1 << 20, true},
		{"4096", 4096, true},
		{"3e9", 3e9, true},
		{"1.5KiB", 1536, true},
		{"0", 0, false},
		{"-1GB", 0, false},
		{"10EB", 0, false},
		{"", 0, false},
		{"lots", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseRateAndFLOPS(t *testing.T) {
	if v, err := ParseRate("936 GB/s"); err != nil || v != 936e9 {
		t.Errorf("ParseRate(936 GB/s) = %v, %v", v, err)
	}
	if v, err := ParseRate("1TB/s"); err != nil || v != 1e12 {
		t.Errorf("ParseRate(1TB/s) = %v, %v", v, err)
	}
	if v, err := ParseFLOPS("989.4TFLOP/s"); err != nil || math.Abs(v-989.4e12) > 1 {
		t.Errorf("ParseFLOPS = %v, %v", v, err)
	}
	for in, want := range map[string]float64{"150T": 150e12, "150 TFLOPS": 150e12, "1.5e14": 1.5e14, "2P": 2e15} {
		if v, err := ParseFLOPS(in); err != nil || math.Abs(v-want) > 1 {
			t.Errorf("ParseFLOPS(%q) = %v, %v", in, v, err)
		}
	}
	for _, in := range []string{"-1T", "T", "abc", "0"} {
		if _, err := ParseFLOPS(in); err == nil {
			t.Errorf("ParseFLOPS(%q) accepted", in)
		}
	}
}

func TestRate(t *testing.T) {
	for in, want := range map[float64]string{25e9: "25 GB/s", 0.5e9: "500 MB/s", 12.5e9: "12.5 GB/s", 2e3: "2 kB/s"} {
		if got := Rate(in); got != want {
			t.Errorf("Rate(%g) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: any input either fails or gives a finite positive value (zero
// for an unpaced link), and never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"4GB/s", "4Gb/s", "pcie4", "24GiB", "1e9", "", "1.5e", "e5", "--1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseLink(s); err == nil && (math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (v > 0 && v < MinLink)) {
			t.Fatalf("ParseLink(%q) = %v", s, v)
		}
		if v, err := ParseSize(s); err == nil && v <= 0 {
			t.Fatalf("ParseSize(%q) = %v", s, v)
		}
		if v, err := ParseRate(s); err == nil && !(v > 0) {
			t.Fatalf("ParseRate(%q) = %v", s, v)
		}
		if v, err := ParseFLOPS(s); err == nil && !(v > 0 && !math.IsInf(v, 0)) {
			t.Fatalf("ParseFLOPS(%q) = %v", s, v)
		}
	})
}
