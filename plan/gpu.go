package plan

import (
	"fmt"
	"sort"
	"strings"
)

// GPU is what the cost model needs to know about a device: its dense bf16
// tensor throughput and memory bandwidth as published (peaks), and its
// memory. Achieved rates are the peaks times [FLOPSEfficiency] and
// [MemBWEfficiency].
type GPU struct {
	Name  string
	FLOPS float64 // peak dense bf16 tensor FLOP/s with fp32 accumulate (no structured sparsity)
	MemBW float64 // peak memory bandwidth, bytes/s
	Mem   int64   // memory as marketed (GiB for all but the H200's 141 GB), bytes
	Note  string  // the source of the figures
}

// Achieved fractions of the published peaks. A batch-1 decode step is a
// chain of matrix-vector products, which reach roughly 80% of peak memory
// bandwidth on current GPUs (the usual figure for a well-tuned GEMV/stream
// kernel); batched matrix products reach about 60% of the dense tensor peak
// at the small batch (the window, 16 tokens) a Sirius check runs. Both are
// round planning figures, not measurements: --measured replaces them.
const (
	FLOPSEfficiency = 0.6
	MemBWEfficiency = 0.8
)

// AchievedFLOPS is the FLOP/s the cost model assumes.
func (g GPU) AchievedFLOPS() float64 { return g.FLOPS * FLOPSEfficiency }

// AchievedMemBW is the device-memory bytes/s the cost model assumes.
func (g GPU) AchievedMemBW() float64 { return g.MemBW * MemBWEfficiency }

const gib = 1 << 30

// GPUs is the table of common GPUs, figures from each vendor's datasheet or
// architecture whitepaper (dense, i.e. without the 2:4 sparsity doubling).
var GPUs = []GPU{
	{"rtx-3090", 71e12, 936e9, 24 * gib, "NVIDIA Ampere GA102 whitepaper: 71 TFLOPS bf16 (fp32 acc), 936 GB/s GDDR6X"},
	{"rtx-4090", 165.2e12, 1008e9, 24 * gib, "NVIDIA Ada Lovelace whitepaper: 165.2 TFLOPS bf16 (fp32 acc), 1008 GB/s GDDR6X"},
	{"rtx-5090", 209.5e12, 1792e9, 32 * gib, "NVIDIA Blackwell (GB202) whitepaper: 209.5 TFLOPS bf16 (fp32 acc), 1792 GB/s GDDR7"},
	{"a40", 149.7e12, 696e9, 48 * gib, "NVIDIA A40 datasheet: 149.7 TFLOPS bf16, 696 GB/s GDDR6"},
	{"l40", 181.05e12, 864e9, 48 * gib, "NVIDIA L40 datasheet: 181.05 TFLOPS bf16, 864 GB/s GDDR6"},
	{"a100-40gb", 312e12, 1555e9, 40 * gib, "NVIDIA A100 datasheet (SXM4 40GB): 312 TFLOPS bf16, 1555 GB/s HBM2"},
	{"a100-80gb", 312e12, 2039e9, 80 * gib, "NVIDIA A100 datasheet (SXM4 80GB): 312 TFLOPS bf16, 2039 GB/s HBM2e"},
	{"h100", 989.4e12, 3350e9, 80 * gib, "NVIDIA H100 datasheet (SXM5 80GB): 989.4 TFLOPS bf16, 3.35 TB/s HBM3"},
	{"h200", 989.4e12, 4800e9, 141e9, "NVIDIA H200 datasheet (SXM): 989.4 TFLOPS bf16, 4.8 TB/s HBM3e, 141 GB"},
}

// DefaultGPU is the card `offload plan` assumes when none is named: the
// most common 24 GB card people try to run 70B models on.
const DefaultGPU = "rtx-4090"

// LookupGPU finds a GPU in the table by name, ignoring case, spaces,
// underscores and a leading "nvidia", so "RTX 4090" and "a100_80gb" work.
func LookupGPU(name string) (GPU, error) {
	key := normGPU(name)
	for _, g := range GPUs {
		if normGPU(g.Name) == key {
			return g, nil
		}
	}
	names := make([]string, len(GPUs))
	for i, g := range GPUs {
		names[i] = g.Name
	}
	sort.Strings(names)
	return GPU{}, fmt.Errorf("unknown GPU %q (known: %s; or give its compute rate and memory bandwidth)", name, strings.Join(names, ", "))
}

func normGPU(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "nvidia")
	r := strings.NewReplacer(" ", "", "-", "", "_", "", "geforce", "")
	return r.Replace(s)
}
