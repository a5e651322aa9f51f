// Package synth writes synthetic Llama models: the real layer shapes of a
// published architecture with seeded random weights, so that transfers and
// kernels at 8B/70B shapes can be measured on a small machine. Random weights
// are the bad case for sparse drafts; Options.Planted writes a model with
// planted contextual sparsity instead (planted.go), the good case.
package synth

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"offload/internal/atomicfile"
	"offload/internal/half"
	"offload/model"
	"offload/pager"
)

// Options describe the model to write.
type Options struct {
	Shape  model.Shape
	Layers int    // 0: the shape's
	Vocab  int    // 0: the shape's
	DType  string // "bf16", "f16" or "f32"
	Seed   uint64
	// Planted, if in (0, 1), plants contextual sparsity in the FFNs: for
	// each input about this fraction of neurons has a large gate
	// activation and the rest are near zero, the same ones throughout a
	// sequence (see planted.go). 0 writes plain random weights.
	Planted float64
	// Progress, if set, is told the bytes written so far and the total.
	Progress func(done, total int64)
}

// Write creates dir (if needed) with config.json and model.safetensors.
// Both are written atomically.
func Write(dir string, o Options) error {
	cfg := o.Shape.Config
	if o.Layers > 0 {
		cfg.Layers = o.Layers
	}
	if o.Vocab > 0 {
		cfg.Vocab = o.Vocab
	}
	var dt pager.DType
	switch o.DType {
	case "bf16", "":
		dt = pager.BF16
	case "f16":
		dt = pager.F16
	case "f32":
		dt = pager.F32
	default:
		return fmt.Errorf("synth: dtype %q (use bf16, f16 or f32)", o.DType)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	var plant *plantedParams
	if o.Planted != 0 {
		var err error
		if plant, err = newPlanted(cfg, o.Planted, o.Seed); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	d, h, q, kv := cfg.Dim, cfg.Hidden, cfg.Heads*cfg.HeadDim, cfg.KVDim()
	specs := []pager.TensorSpec{{Name: "model.embed_tokens.weight", DType: dt, Shape: []int{cfg.Vocab, d}}}
	for l := 0; l < cfg.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		specs = append(specs,
			pager.TensorSpec{Name: p + "input_layernorm.weight", DType: dt, Shape: []int{d}},
			pager.TensorSpec{Name: p + "self_attn.q_proj.weight", DType: dt, Shape: []int{q, d}},
			pager.TensorSpec{Name: p + "self_attn.k_proj.weight", DType: dt, Shape: []int{kv, d}},
			pager.TensorSpec{Name: p + "self_attn.v_proj.weight", DType: dt, Shape: []int{kv, d}},
			pager.TensorSpec{Name: p + "self_attn.o_proj.weight", DType: dt, Shape: []int{d, q}},
			pager.TensorSpec{Name: p + "post_attention_layernorm.weight", DType: dt, Shape: []int{d}},
			pager.TensorSpec{Name: p + "mlp.gate_proj.weight", DType: dt, Shape: []int{h, d}},
			pager.TensorSpec{Name: p + "mlp.up_proj.weight", DType: dt, Shape: []int{h, d}},
			pager.TensorSpec{Name: p + "mlp.down_proj.weight", DType: dt, Shape: []int{d, h}},
		)
	}
	specs = append(specs, pager.TensorSpec{Name: "model.norm.weight", DType: dt, Shape: []int{d}})
	if !cfg.TiedEmbeddings {
		specs = append(specs, pager.TensorSpec{Name: "lm_head.weight", DType: dt, Shape: []int{cfg.Vocab, d}})
	}
	var total int64
	for _, s := range specs {
		n := int64(dt.Size())
		for _, x := range s.Shape {
			n *= int64(x)
		}
		total += n
	}
	var done int64
	meta := map[string]string{"format": "pt", "offload.synthetic": o.Shape.Name, "offload.seed": fmt.Sprint(o.Seed)}
	if plant != nil {
		meta["offload.planted"] = fmt.Sprint(o.Planted)
	}
	err := pager.WriteSafetensors(filepath.Join(dir, "model.safetensors"), specs, meta, func(i int, w io.Writer) error {
		s := specs[i]
		rows, cols := 1, s.Shape[0]
		if len(s.Shape) == 2 {
			rows, cols = s.Shape[0], s.Shape[1]
		}
		norm := len(s.Shape) == 1
		// Uniform weights with variance 1/cols keep activations O(1)
		// through the layers; norms are near 1.
		scale := float32(math.Sqrt(3 / float64(cols)))
		rng := xorshift(o.Seed*0x9E3779B97F4A7C15 + uint64(i) + 1)
		buf := make([]byte, cols*dt.Size())
		var us []float64
		var vs []float32
		if plant != nil {
			us, vs = make([]float64, cols), make([]float32, cols)
		}
		for r := 0; r < rows; r++ {
			if plant != nil {
				for j := range us {
					us[j] = float64(float32(rng.next()>>40)/float32(1<<24)*2 - 1)
				}
				plant.row(s.Name, r, us, vs)
			}
			for j := 0; j < cols; j++ {
				var v float32
				if plant != nil {
					v = vs[j]
				} else {
					u := float32(rng.next()>>40)/float32(1<<24)*2 - 1 // [-1, 1)
					v = u * scale
					if norm {
						v = 1 + 0.1*u
					}
				}
				switch dt {
				case pager.BF16:
					binary.LittleEndian.PutUint16(buf[2*j:], half.F32ToBF16(v))
				case pager.F16:
					binary.LittleEndian.PutUint16(buf[2*j:], half.F32ToF16(v))
				default:
					binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
				}
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
			done += int64(len(buf))
			if o.Progress != nil && r%256 == 0 {
				o.Progress(done, total)
			}
		}
		if o.Progress != nil {
			o.Progress(done, total)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	conf := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": d, "intermediate_size": h, "num_hidden_layers": cfg.Layers,
		"num_attention_heads": cfg.Heads, "num_key_value_heads": cfg.KVHeads, "head_dim": cfg.HeadDim,
		"vocab_size": cfg.Vocab, "max_position_embeddings": cfg.MaxSeq, "rope_theta": cfg.RopeTheta,
		"rms_norm_eps": cfg.NormEps, "tie_word_embeddings": cfg.TiedEmbeddings, "torch_dtype": map[string]string{"bf16": "bfloat16", "f16": "float16", "f32": "float32", "": "bfloat16"}[o.DType],
		"bos_token_id": 1, "eos_token_id": 2,
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return writeAtomic(filepath.Join(dir, "config.json"), b)
}

// writeAtomic writes b to path through a registered temp file
// (internal/atomicfile), which an error or an interrupt removes.
func writeAtomic(path string, b []byte) error {
	err := atomicfile.Write(path, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

type xorshift uint64

func (x *xorshift) next() uint64 {
	v := uint64(*x)
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	*x = xorshift(v)
	return v
}
