package plan

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// Named links: one direction, x16, pinned host memory, as measured in public
// reports (REFERENCE.md §4). Pageable copies reach about half of these.
var Links = map[string]float64{
	"pcie3": 12.5e9, // 15.75 GB/s theoretical, ~12-13 GB/s measured
	"pcie4": 25e9,   // 31.5 GB/s theoretical, 24-26 GB/s measured (RTX 4090, A100)
	"pcie5": 56e9,   // 63 GB/s theoretical, ~56 GB/s measured (RTX 5090)
}

// ParseLink reads a host->device link rate: a name from [Links] ("pcie4"), or
// a rate such as "25GB/s", "25 GB/s", "23.3GiB/s" or "25e9" (bytes/s). It
// returns bytes per second.
func ParseLink(s string) (float64, error) {
	key := strings.ToLower(strings.TrimSpace(s))
	if v, ok := Links[key]; ok {
		return v, nil
	}
	v, err := ParseRate(s)
	if err != nil {
		names := make([]string, 0, len(Links))
		for k := range Links {
			names = append(names, k)
		}
		sort.Strings(names)
		return 0, fmt.Errorf("link %q: want a rate like 25GB/s or one of %s", s, strings.Join(names, ", "))
	}
	return v, nil
}

// ParseRate reads a bandwidth, "1TB/s", "936 GB/s", "900GiB/s" or a plain
// number of bytes per second, and returns bytes per second.
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSpace(strings.TrimSuffix(t, "/s"))
	if v, err := strconv.ParseFloat(t, 64); err == nil {
		return positive(s, v)
	}
	b, err := humanize.ParseBigBytes(t)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %w", s, err)
	}
	v, _ := b.Float64()
	return positive(s, v)
}

// ParseFLOPS reads a compute rate: "150T", "150 TFLOPS", "1.5e14", "989.4TFLOP/s".
func ParseFLOPS(s string) (float64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/S")
	t = strings.TrimSuffix(t, "FLOPS")
	t = strings.TrimSuffix(t, "FLOP")
	t = strings.TrimSpace(t)
	mul := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mul = 1e3
		case 'M':
			mul = 1e6
		case 'G':
			mul = 1e9
		case 'T':
			mul = 1e12
		case 'P':
			mul = 1e15
		}
		if mul != 1 {
			t = strings.TrimSpace(t[:n-1])
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("flops %q: want a number like 150T or 1.5e14", s)
	}
	return positive(s, v*mul)
}

// ParseSize reads a memory size, "24GiB", "24 GB", "80G" (humanize rules:
// GB is 10^9, GiB 2^30), or a plain number of bytes.
func ParseSize(s string) (int64, error) {
	v, err := humanize.ParseBigBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	if v.Sign() <= 0 || !v.IsInt64() {
		return 0, fmt.Errorf("size %q: out of range", s)
	}
	return v.Int64(), nil
}

func positive(s string, v float64) (float64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, fmt.Errorf("%q: must be a positive finite number", s)
	}
	return v, nil
}

// DTypes are the weight types plan knows, in bytes per weight. Block-
// quantized GGUF types include their scales (q4_0: 18 bytes per 32 weights).
// int8/int4 are idealised what-ifs with no scale overhead.
var DTypes = map[string]float64{
	"f32": 4, "f16": 2, "bf16": 2,
	"int8": 1, "int4": 0.5,
	"q8_0": 34.0 / 32, "q4_0": 18.0 / 32, "q4_1": 20.0 / 32, "q5_0": 22.0 / 32, "q5_1": 24.0 / 32,
	"q2_k": 84.0 / 256, "q3_k": 110.0 / 256, "q4_k": 144.0 / 256, "q5_k": 176.0 / 256, "q6_k": 210.0 / 256,
}

var dtypeAliases = map[string]string{"fp32": "f32", "float32": "f32", "fp16": "f16", "float16": "f16", "bfloat16": "bf16"}

// ParseDType returns the canonical name and bytes per weight of a dtype.
func ParseDType(s string) (string, float64, error) {
	k := strings.ToLower(strings.TrimSpace(s))
	if a, ok := dtypeAliases[k]; ok {
		k = a
	}
	if v, ok := DTypes[k]; ok {
		return k, v, nil
	}
	names := make([]string, 0, len(DTypes))
	for n := range DTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return "", 0, fmt.Errorf("unknown dtype %q (known: %s)", s, strings.Join(names, ", "))
}
