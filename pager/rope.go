package pager

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// hfRopeScaling converts a Hugging Face config's rope_scaling into what a
// llama GGUF carries, as llama.cpp's convert_hf_to_gguf.py does:
//   - "llama3" (Llama 3.1+): a rope_freqs.weight tensor of head_dim/2 F32
//     factors by which each RoPE frequency's wavelength is stretched;
//   - "linear": the keys llama.rope.scaling.type and llama.rope.scaling.factor.
//
// Absent or null rope_scaling gives nothing; any other type is an error.
func hfRopeScaling(m *Model, p LlamaParams) (tensors []outTensor, meta map[string]any, err error) {
	raw, ok := m.Meta["rope_scaling"]
	if !ok || raw == nil {
		return nil, nil, nil
	}
	rs, ok := raw.(map[string]any)
	if !ok {
		return nil, nil, m.keyErr("rope_scaling", fmt.Sprintf("is %T, want an object", raw))
	}
	typ, _ := rs["rope_type"].(string)
	if typ == "" {
		typ, _ = rs["type"].(string) // older configs
	}
	num := func(key string, def float64) (float64, error) {
		v, ok := rs[key]
		if !ok || v == nil {
			return def, nil
		}
		f, ok := v.(float64)
		if !ok {
			return 0, m.keyErr("rope_scaling."+key, fmt.Sprintf("is %T, want a number", v))
		}
		return f, nil
	}
	switch typ {
	case "linear":
		factor, err := num("factor", 1)
		if err != nil {
			return nil, nil, err
		}
		return nil, map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(factor)}, nil
	case "llama3":
		var vals [4]float64
		for i, k := range []struct {
			key string
			def float64
		}{{"factor", 8}, {"low_freq_factor", 1}, {"high_freq_factor", 4}, {"original_max_position_embeddings", 8192}} {
			if vals[i], err = num(k.key, k.def); err != nil {
				return nil, nil, err
			}
		}
		if vals[1] == vals[2] {
			return nil, nil, m.keyErr("rope_scaling", "has low_freq_factor == high_freq_factor")
		}
		factors := Llama3RopeFactors(p.HeadDim, p.RopeTheta, vals[0], vals[1], vals[2], vals[3])
		data := make([]byte, 4*len(factors))
		for i, f := range factors {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(f))
		}
		t := outTensor{spec: TensorSpec{Name: "rope_freqs.weight", DType: F32, Shape: []int{len(factors)}},
			fill: func(w io.Writer) error { _, err := w.Write(data); return err }}
		return []outTensor{t}, nil, nil
	}
	return nil, nil, m.keyErr("rope_scaling", fmt.Sprintf("has type %q, which the bundler does not convert (only llama3 and linear)", typ))
}

// Llama3RopeFactors computes the Llama 3.1 RoPE frequency factors (llama.cpp's
// rope_freqs.weight): for each of the headDim/2 frequencies
// freq_i = theta^(-2i/headDim), wavelength w = 2*pi/freq_i, the factor is 1 for
// w < oldCtx/highFreqFactor, factor for w > oldCtx/lowFreqFactor, and in
// between 1/((1-s)/factor + s) with s = (oldCtx/w - lowFreqFactor)/(highFreqFactor - lowFreqFactor).
// RoPE then uses freq_i / factor_i. Arithmetic is float32 like the
// reference converter's torch code (results may differ from it in the last
// bit where pow rounds differently).
func Llama3RopeFactors(headDim int, theta, factor, lowFreqFactor, highFreqFactor, oldCtx float64) []float32 {
	out := make([]float32, headDim/2)
	lowWave := float32(oldCtx / lowFreqFactor)
	highWave := float32(oldCtx / highFreqFactor)
	for i := range out {
		freq := float32(1 / math.Pow(theta, float64(float32(2*i)/float32(headDim))))
		wave := float32(2*math.Pi) / freq
		switch {
		case wave < highWave:
			out[i] = 1
		case wave > lowWave:
			out[i] = float32(factor)
		default:
			s := (float32(oldCtx)/wave - float32(lowFreqFactor)) / float32(highFreqFactor-lowFreqFactor)
			out[i] = 1 / ((1-s)/float32(factor) + s)
		}
	}
	return out
}
