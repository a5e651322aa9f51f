package plan

import (
	"fmt"
	"sort"
	"strings"

	"offload/convert"
	"offload/model"
)

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

// ParseWeights sizes cfg for a weight type name: a llama.cpp file type
// ("q4_k_m", "q8_0", "q4_k", as `offload convert --type` takes them) with its
// per-tensor mix, stored as convert writes it (MixWeights); otherwise a
// DTypes entry at its flat bytes per weight ("bf16", "int4").
func ParseWeights(cfg model.Config, s string) (Weights, error) {
	if ft, err := convert.ParseFileType(s); err == nil && ft.Base.Quantized() {
		return MixWeights(cfg, s)
	}
	name, b, err := ParseDType(s)
	if err != nil {
		return Weights{}, fmt.Errorf("%w, or a llama.cpp file type (%s)", err, strings.Join(convert.FileTypes(), ", "))
	}
	return UniformWeights(cfg, name, b), nil
}
