// Package units reads the sizes and rates users type on the command line,
// with one set of rules for every flag so that "--device-mem 24GB" and
// "--link 4Gb/s" mean the same thing wherever they appear:
//
//   - B is a byte and b a bit (rates only: "4Gb/s" is 0.5 GB/s).
//   - k, M, G, T, P are powers of 1000 (SI); Ki, Mi, Gi, Ti, Pi are powers of
//     1024 (IEC). "24GB" is 24e9 bytes, "24GiB" is 24*2^30.
//   - A bare number is bytes (or bytes per second), "3e9" included.
//   - Case matters only where it carries meaning: the b/B of the unit.
//     Prefixes may be written in either case ("24gib", "800mb/s" is 800
//     megabits per second because of its lowercase b).
package units

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Links are named host->device links: one direction, x16, pinned host memory,
// the "measured" column of REFERENCE.md §4 (pageable copies reach about half).
var Links = map[string]float64{
	"pcie3": 12.5e9, // 15.75 GB/s theoretical, ~12-13 GB/s measured
	"pcie4": 25e9,   // 31.5 GB/s theoretical, 24-26 GB/s measured (RTX 4090, A100)
	"pcie5": 56e9,   // 63 GB/s theoretical, ~56 GB/s measured (RTX 5090)
}

// MinLink is the slowest link ParseLink accepts: 1 MB/s. Slower pacing would
// turn a run of a small model into hours with no sign of progress.
const MinLink = 1e6

// quantity splits "12.5 GiB" into its number and unit and applies the
// prefix. bitsOK says whether a lowercase b (bits) is allowed; the result is
// then in bytes.
func quantity(s string, bitsOK bool) (float64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.' || t[i] == '+' || t[i] == '-' ||
		(t[i] == 'e' || t[i] == 'E') && i > 0 && i+1 < len(t) && (t[i+1] >= '0' && t[i+1] <= '9' || t[i+1] == '-' || t[i+1] == '+')) {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("%q: want a number with an optional unit", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q: %q is not a number", s, num)
	}
	bits := false
	switch {
	case unit == "":
	case strings.HasSuffix(unit, "B"):
		unit = unit[:len(unit)-1]
	case strings.HasSuffix(unit, "b"):
		if !bitsOK {
			return 0, fmt.Errorf("%q: b is a bit; memory sizes are in bytes (B), e.g. 24GB or 24GiB", s)
		}
		unit, bits = unit[:len(unit)-1], true
	}
	mult := 1.0
	if unit != "" {
		iec := strings.HasSuffix(strings.ToLower(unit), "i")
		p := strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(unit, "i"), "I"))
		exp := strings.Index("kmgtp", p)
		if len(p) != 1 || exp < 0 {
			return 0, fmt.Errorf("%q: unknown unit %q (use k, M, G, T with B or b, or Ki, Mi, Gi, Ti)", s, strings.TrimSpace(t[i:]))
		}
		base := 1000.0
		if iec {
			base = 1024
		}
		mult = math.Pow(base, float64(exp+1))
	}
	v *= mult
	if bits {
		v /= 8
	}
	return v, nil
}

// ParseSize reads a memory size ("24GiB", "24 GB", "600MiB", "3e9") and
// returns bytes. It must be a positive whole number of bytes below 2^62.
func ParseSize(s string) (int64, error) {
	v, err := quantity(s, false)
	if err != nil {
		return 0, fmt.Errorf("size %w", err)
	}
	if v < 1 || v >= 1<<62 {
		return 0, fmt.Errorf("size %q: must be between 1 byte and 4 EiB", s)
	}
	return int64(math.Round(v)), nil
}

// ParseRate reads a bandwidth ("936 GB/s", "900GiB/s", "4Gb/s", "25e9") and
// returns bytes per second; "/s" or "ps" may be left out.
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(t, "/s")
	t = strings.TrimSuffix(t, "ps")
	v, err := quantity(t, true)
	if err != nil {
		return 0, fmt.Errorf("rate %w", err)
	}
	if !(v > 0) || v > 1e18 {
		return 0, fmt.Errorf("rate %q: must be positive", s)
	}
	return v, nil
}

// ParseLink reads a host->device link: a name from Links ("pcie4"), or a
// rate as ParseRate reads it, at least MinLink. "0", "off" and "none" mean
// no pacing and return 0.
func ParseLink(s string) (float64, error) {
	key := strings.ToLower(strings.TrimSpace(s))
	if v, ok := Links[key]; ok {
		return v, nil
	}
	switch key {
	case "0", "off", "none":
		return 0, nil
	}
	v, err := ParseRate(s)
	if err != nil {
		names := make([]string, 0, len(Links))
		for k := range Links {
			names = append(names, k)
		}
		sort.Strings(names)
		return 0, fmt.Errorf("link %q: want a rate like 25GB/s or 4Gb/s, or one of %s", s, strings.Join(names, ", "))
	}
	if v < MinLink {
		return 0, fmt.Errorf("link %q is %s: slower than the %s minimum this tool paces to", s, Rate(v), Rate(MinLink))
	}
	return v, nil
}

// ParseFLOPS reads a compute rate: "150T", "150 TFLOPS", "1.5e14",
// "989.4TFLOP/s".
func ParseFLOPS(s string) (float64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/S")
	t = strings.TrimSuffix(t, "FLOPS")
	t = strings.TrimSuffix(t, "FLOP")
	t = strings.TrimSpace(t)
	mul := 1.0
	if n := len(t); n > 0 {
		if e := strings.IndexByte("KMGTP", t[n-1]); e >= 0 {
			mul = math.Pow(1000, float64(e+1))
			t = strings.TrimSpace(t[:n-1])
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("flops %q: want a positive number like 150T or 1.5e14", s)
	}
	return v * mul, nil
}

// Rate prints bytes per second in the unit people read links in: "25 GB/s",
// "500 MB/s".
func Rate(v float64) string {
	switch {
	case v >= 1e9:
		return strconv.FormatFloat(v/1e9, 'g', 4, 64) + " GB/s"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + " MB/s"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + " kB/s"
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " B/s"
}
