package plan

import (
	"fmt"
	"math"
	"strings"

	"offload/convert"
	"offload/model"
	"offload/pager"
	"offload/quant"
)

// Weights is what a model's weights occupy, block by block, in bytes: the
// sizes the residency plan places and the link moves. A real file is sized
// from its tensors (FileWeights), a llama.cpp file type from its per-tensor
// mix (MixWeights), anything else at a flat number of bytes per weight
// (UniformWeights).
type Weights struct {
	// Name says what was sized ("bf16", "q4_k_m", the file's main type).
	Name string
	// Embed is the token embedding table, Head the LM head (0 when tied to
	// the embeddings), Norms every RMSNorm weight.
	Embed, Head, Norms int64
	// EmbedRow is what one token's embedding moves: the engine gathers the
	// row on the host and sends it as float32 activations.
	EmbedRow int64
	// Total is the size of every weight; BytesPerWeight its average over all
	// weights.
	Total          float64
	BytesPerWeight float64
	Layers         []LayerWeights
}

// LayerWeights sizes one transformer layer.
type LayerWeights struct {
	Attn int64 // q, k, v, o
	// Neuron is what one FFN neuron costs in a sparse pass, as the engine
	// moves it: its gate and up rows and its down column (a bundle row; in
	// an unbundled quantized file the column is sent dequantized, as f32).
	// NeuronStored is the stored FFN per neuron (its size / hidden), what a
	// full pass moves.
	Neuron, NeuronStored float64
}

// selBytes and restBytes split a layer's FFN at kept neurons.
func (l LayerWeights) selBytes(kept int) int64 { return int64(math.Ceil(float64(kept) * l.Neuron)) }
func (l LayerWeights) restBytes(kept, hidden int) int64 {
	return int64(math.Ceil(float64(hidden-kept) * l.NeuronStored))
}

// UniformWeights sizes cfg at b bytes per weight (2 for bf16, 0.5625 for
// q4_0: block types with their scales).
func UniformWeights(cfg model.Config, name string, b float64) Weights {
	g := GeometryOf(cfg, 1)
	w := Weights{Name: name, Embed: sizeOf(g.EmbedParam, b), Head: sizeOf(g.HeadParams, b), Norms: sizeOf(g.NormParams, b),
		EmbedRow: 4 * int64(cfg.Dim), Total: float64(cfg.Params()) * b, BytesPerWeight: b}
	per := 3 * float64(cfg.Dim) * b
	for range cfg.Layers {
		w.Layers = append(w.Layers, LayerWeights{Attn: sizeOf(g.AttnParams, b), Neuron: per, NeuronStored: per})
	}
	return w
}

// MixWeights sizes cfg quantized to a llama.cpp file type (see
// convert.ParseFileType) with its per-tensor mix, norms in F32, stored as
// `offload convert` writes it: FFN neurons bundled, each down column
// requantized as convert.DefaultBundleDown says.
func MixWeights(cfg model.Config, fileType string) (Weights, error) {
	ft, err := convert.ParseFileType(fileType)
	if err != nil {
		return Weights{}, err
	}
	a := convert.Arch{Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KVHeads, Tied: cfg.TiedEmbeddings}
	size := func(name string, rows, cols int) (int64, quant.Type, error) {
		t, ok, err := ft.TensorType(a, name, []int{rows, cols})
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			t = quant.F32
		}
		rb, err := t.RowBytes(cols)
		if err != nil {
			return 0, 0, fmt.Errorf("tensor %s: %w", name, err)
		}
		return int64(rows) * int64(rb), t, nil
	}
	d, h, q, kv := cfg.Dim, cfg.Hidden, cfg.Heads*cfg.HeadDim, cfg.KVDim()
	w := Weights{Name: strings.ToLower(ft.Name), Norms: int64(4 * (2*cfg.Layers*d + d)), EmbedRow: 4 * int64(d)}
	if w.Embed, _, err = size("token_embd.weight", cfg.Vocab, d); err != nil {
		return Weights{}, err
	}
	if !cfg.TiedEmbeddings {
		if w.Head, _, err = size("output.weight", cfg.Vocab, d); err != nil {
			return Weights{}, err
		}
	}
	total := w.Embed + w.Head + w.Norms
	policy, _ := convert.ParseBundleDown("")
	for l := 0; l < cfg.Layers; l++ {
		n := func(s string) string { return fmt.Sprintf("blk.%d.%s.weight", l, s) }
		var lw LayerWeights
		for _, t := range []struct {
			name       string
			rows, cols int
		}{{"attn_q", q, d}, {"attn_k", kv, d}, {"attn_v", kv, d}, {"attn_output", d, q}} {
			b, _, err := size(n(t.name), t.rows, t.cols)
			if err != nil {
				return Weights{}, err
			}
			lw.Attn += b
		}
		_, gt, err := size(n("ffn_gate"), h, d)
		if err != nil {
			return Weights{}, err
		}
		_, ut, err := size(n("ffn_up"), h, d)
		if err != nil {
			return Weights{}, err
		}
		_, dt, err := size(n("ffn_down"), d, h)
		if err != nil {
			return Weights{}, err
		}
		bt, err := convert.BundleDownType(policy, pager.DType(dt), d)
		if err != nil {
			return Weights{}, err
		}
		parts, err := pager.NewBundleParts([3]pager.DType{pager.DType(gt), pager.DType(ut), bt}, d)
		if err != nil {
			return Weights{}, err
		}
		lw.Neuron = float64(parts.RowBytes())
		lw.NeuronStored = lw.Neuron
		w.Layers = append(w.Layers, lw)
		total += lw.Attn + int64(h)*int64(parts.RowBytes())
	}
	w.Total = float64(total)
	w.BytesPerWeight = w.Total / float64(cfg.Params())
	return w, nil
}

// FileWeights sizes an opened model from its tensors, as the engine moves
// them (see LayerWeights.Neuron).
func FileWeights(m *model.Model) Weights {
	cfg := m.Config
	w := Weights{Embed: int64(len(m.Embed.Data)), Norms: int64(len(m.OutNorm.Data)), EmbedRow: 4 * int64(cfg.Dim)}
	if !cfg.TiedEmbeddings {
		w.Head = int64(len(m.Head.Data))
	}
	for i := range m.Layers {
		L := &m.Layers[i]
		var lw LayerWeights
		for _, t := range []*pager.Tensor{L.Q, L.K, L.V, L.O} {
			lw.Attn += int64(len(t.Data))
		}
		w.Norms += int64(len(L.AttnNorm.Data) + len(L.FFNNorm.Data))
		var stored int64
		if L.Bundle != nil {
			stored = int64(len(L.Bundle.Data))
			lw.Neuron = float64(L.BundleParts.RowBytes())
		} else {
			stored = int64(len(L.Gate.Data) + len(L.Up.Data) + len(L.Down.Data))
			down := float64(cfg.Dim) * 4 // a quantized column is sent as f32
			if s := L.Down.DType.Size(); s > 0 {
				down = float64(cfg.Dim * s)
			}
			lw.Neuron = float64(L.Gate.RowBytes()+L.Up.RowBytes()) + down
		}
		lw.NeuronStored = float64(stored) / float64(cfg.Hidden)
		w.Layers = append(w.Layers, lw)
	}
	w.Total = float64(m.File.Bytes())
	w.BytesPerWeight = w.Total / float64(cfg.Params())
	return w
}

// validate checks a Weights against cfg.
func (w *Weights) validate(cfg model.Config) error {
	if len(w.Layers) != cfg.Layers {
		return fmt.Errorf("plan: weights sized for %d layers, the model has %d", len(w.Layers), cfg.Layers)
	}
	if !(w.BytesPerWeight > 0) || w.BytesPerWeight > 8 {
		return fmt.Errorf("plan: %v bytes per weight is not a weight type", w.BytesPerWeight)
	}
	return nil
}
