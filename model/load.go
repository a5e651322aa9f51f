package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"offload/device"
	"offload/internal/fault"
	"offload/internal/half"
	"offload/pager"
	"offload/quant"
)

// Layer holds one transformer block's weights as views into the mapped file.
// Either Gate/Up/Down are set, or Bundle is (a converted model whose FFN
// neuron j is row j of Bundle: gate_j | up_j | down column j, see
// pager.BundleFFN); then BundleParts gives each part's type and size (a
// quantized model's parts may differ: the down column is requantized).
type Layer struct {
	AttnNorm, Q, K, V, O *pager.Tensor
	FFNNorm              *pager.Tensor
	Gate, Up, Down       *pager.Tensor
	Bundle               *pager.Tensor
	BundleParts          pager.BundleParts
}

// BundlePart is the device type and row size of part (pager.PartGate,
// PartUp or PartDown) of a bundled layer's rows.
func (L *Layer) BundlePart(part int) (device.DType, int) {
	dt, err := DType(L.BundleParts.Types[part])
	if err != nil {
		panic(err) // Open refused such files
	}
	return dt, L.BundleParts.Bytes[part]
}

// Model is a Llama-family model opened for inference: its architecture and
// its weights, still in the page cache (nothing is read until used).
type Model struct {
	Config  Config
	File    *pager.Model
	Embed   *pager.Tensor // [vocab, dim]
	Head    *pager.Tensor // [vocab, dim]; the same tensor as Embed when tied
	OutNorm *pager.Tensor // [dim]
	Layers  []Layer
	// Bundled says the FFN weights are stored as neuron bundles.
	Bundled bool
}

// Open maps a model (GGUF file, Hugging Face directory or llama2.c
// checkpoint) and checks every tensor's presence, dtype and shape against the
// architecture, so that a bad file fails here with one clear error instead of
// producing garbage later.
func Open(path string) (*Model, error) {
	f, err := pager.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := fromFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

// dtypes maps the weight file types the kernels compute with to the
// device's.
var dtypes = map[pager.DType]device.DType{
	pager.F32: device.F32, pager.F16: device.F16, pager.BF16: device.BF16,
	pager.Q4_0: device.Q4_0, pager.Q4_1: device.Q4_1, pager.Q5_0: device.Q5_0, pager.Q5_1: device.Q5_1,
	pager.Q8_0: device.Q8_0, pager.Q2_K: device.Q2_K, pager.Q3_K: device.Q3_K, pager.Q4_K: device.Q4_K,
	pager.Q5_K: device.Q5_K, pager.Q6_K: device.Q6_K,
}

// DType maps a weight file's dtype to the device's, or fails for the ones the
// compute kernels do not handle yet.
func DType(d pager.DType) (device.DType, error) {
	if dt, ok := dtypes[d]; ok {
		return dt, nil
	}
	return 0, fmt.Errorf("dtype not supported yet: %s", d)
}

// DefaultContext is the context length assumed when a file does not give one.
const DefaultContext = 2048

// ConfigFrom maps a weight file's parameters onto a Config: the one place
// file metadata becomes architecture (the engine and `offload plan` both use
// it). RoPE pairing follows the format: GGUF converters and llama2.c store
// q/k rows for interleaved-pair RoPE, Hugging Face checkpoints store them
// permuted for rotate-half RoPE; rather than un-permuting at load time the
// engine rotates the way the file expects.
func ConfigFrom(format string, p pager.LlamaParams) Config {
	cfg := Config{
		Arch: "llama", Dim: p.Dim, Hidden: p.Hidden, Layers: p.Layers, Heads: p.Heads, KVHeads: p.KVHeads,
		HeadDim: p.HeadDim, Vocab: p.Vocab, MaxSeq: p.ContextLength, RopeTheta: float32(p.RopeTheta),
		NormEps: float32(p.NormEps), TiedEmbeddings: p.TiedEmbeddings, RopeStyle: device.RopeInterleaved,
	}
	if format == "safetensors" {
		cfg.RopeStyle = device.RopeHalf
	}
	if cfg.MaxSeq <= 0 {
		cfg.MaxSeq = DefaultContext
	}
	return cfg
}

// FromFile checks an already opened weight file as Open does (it does not
// take ownership: closing the Model closes f). inspect uses it so that a
// file's header is parsed once.
func FromFile(f *pager.Model) (*Model, error) { return fromFile(f) }

func fromFile(f *pager.Model) (*Model, error) {
	if err := f.CheckDTypes(); err != nil {
		return nil, err
	}
	p, err := f.LlamaParams()
	if err != nil {
		return nil, err
	}
	cfg := ConfigFrom(f.Format, p)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	// Index tensors by their GGUF name whatever the format.
	byName := map[string]*pager.Tensor{}
	for _, t := range f.Tensors {
		name := t.Name
		if f.Format == "safetensors" {
			g, ok := pager.HFToGGUFName(t.Name)
			if !ok {
				continue
			}
			name = g
		}
		byName[name] = t
	}
	if ferr := fault.Guard(func() { cfg.RopeFreqs, err = ropeFreqs(f, byName, cfg) }); ferr != nil {
		return nil, ferr
	}
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil { // again, with the scaled frequencies
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	m := &Model{Config: cfg, File: f}
	get := func(name string, shape ...int) (*pager.Tensor, error) {
		t, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%s: missing tensor %s", f.Path, name)
		}
		if err := checkShape(t, shape); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: %w", f.Path, name, err)
		}
		dt, err := DType(t.DType)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %s: %w", f.Path, name, err)
		}
		if len(shape) == 1 && dt.Quantized() {
			// Norm weights are read whole, element by element.
			return nil, fmt.Errorf("%s: tensor %s: a %s vector is not supported (norms must be F32, F16 or BF16)", f.Path, name, t.DType)
		}
		return t, nil
	}
	d, h, q, kv := cfg.Dim, cfg.Hidden, cfg.Heads*cfg.HeadDim, cfg.KVDim()
	if m.Embed, err = get("token_embd.weight", cfg.Vocab, d); err != nil {
		return nil, err
	}
	if m.OutNorm, err = get("output_norm.weight", d); err != nil {
		return nil, err
	}
	if _, ok := byName["output.weight"]; ok {
		if m.Head, err = get("output.weight", cfg.Vocab, d); err != nil {
			return nil, err
		}
		m.Config.TiedEmbeddings = false
	} else {
		m.Head = m.Embed
		m.Config.TiedEmbeddings = true
	}
	if v, ok := f.Meta[pager.MetaFFNBundled].(bool); ok && v {
		m.Bundled = true
	}
	m.Layers = make([]Layer, cfg.Layers)
	for l := range m.Layers {
		L := &m.Layers[l]
		n := func(s string) string { return fmt.Sprintf("blk.%d.%s.weight", l, s) }
		for _, w := range []struct {
			dst   **pager.Tensor
			name  string
			shape []int
		}{
			{&L.AttnNorm, "attn_norm", []int{d}},
			{&L.Q, "attn_q", []int{q, d}},
			{&L.K, "attn_k", []int{kv, d}},
			{&L.V, "attn_v", []int{kv, d}},
			{&L.O, "attn_output", []int{d, q}},
			{&L.FFNNorm, "ffn_norm", []int{d}},
		} {
			if *w.dst, err = get(n(w.name), w.shape...); err != nil {
				return nil, err
			}
		}
		if m.Bundled {
			if L.Bundle, L.BundleParts, err = f.FFNBundle(l, d, h); err != nil {
				return nil, err
			}
			for i, t := range L.BundleParts.Types {
				if _, err := DType(t); err != nil {
					return nil, fmt.Errorf("%s: tensor %s: part %d: %w", f.Path, L.Bundle.Name, i, err)
				}
			}
			continue
		}
		if L.Gate, err = get(n("ffn_gate"), h, d); err != nil {
			return nil, err
		}
		if L.Up, err = get(n("ffn_up"), h, d); err != nil {
			return nil, err
		}
		if L.Down, err = get(n("ffn_down"), d, h); err != nil {
			return nil, err
		}
	}
	// The norms are small and read by every token: check them now (the
	// engine checks every other weight as it first reads it).
	norms := []*pager.Tensor{m.OutNorm}
	for l := range m.Layers {
		norms = append(norms, m.Layers[l].AttnNorm, m.Layers[l].FFNNorm)
	}
	for _, t := range norms {
		if err := fault.Guard(func() { err = t.CheckFinite() }); err != nil {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return m, nil
}

// checkShape accepts a 1-D want matched by [n] or [1, n].
func checkShape(t *pager.Tensor, want []int) error {
	got := t.Shape
	if len(want) == 1 && len(got) == 2 && got[0] == 1 {
		got = got[1:]
	}
	if len(got) != len(want) {
		return fmt.Errorf("shape %v, want %v", t.Shape, want)
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("shape %v, want %v", t.Shape, want)
		}
	}
	return nil
}

// EmbedRow writes token tok's embedding row into dst as float32 (the table
// stays on the host: a pass sends only its tokens' rows). The row is read
// from the mapped file on every call, so it is read under fault.Guard (a
// file truncated while running is an error, not SIGBUS) and checked for
// NaN/Inf (a corrupt row is an error naming the tensor, not garbage text).
func (m *Model) EmbedRow(dst []float32, tok int) (err error) {
	if tok < 0 || tok >= m.Config.Vocab {
		return fmt.Errorf("token id %d out of range [0,%d)", tok, m.Config.Vocab)
	}
	if len(dst) < m.Config.Dim {
		return fmt.Errorf("embedding row of %d values into %d", m.Config.Dim, len(dst))
	}
	dst = dst[:m.Config.Dim]
	if ferr := fault.Guard(func() { err = m.embedRow(dst, tok) }); ferr != nil {
		return ferr
	}
	return err
}

func (m *Model) embedRow(dst []float32, tok int) error {
	row := m.Embed.Row(tok)
	if i := pager.NonFinite(m.Embed.DType, row); i >= 0 {
		return fmt.Errorf("tensor %s row %d (token %d) holds a non-finite weight at column %d: the file is corrupt", m.Embed.Name, tok, tok, i)
	}
	switch m.Embed.DType {
	case pager.F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(row[4*i:]))
		}
	case pager.F16:
		for i := range dst {
			dst[i] = half.F16ToF32(binary.LittleEndian.Uint16(row[2*i:]))
		}
	case pager.BF16:
		for i := range dst {
			dst[i] = half.BF16ToF32(binary.LittleEndian.Uint16(row[2*i:]))
		}
	default:
		if err := quant.DequantizeRow(quant.Type(m.Embed.DType), dst, row); err != nil {
			return fmt.Errorf("token_embd.weight: row %d: %w", tok, err)
		}
	}
	return nil
}

// Close unmaps the weights.
func (m *Model) Close() error { return m.File.Close() }

// WeightBytes is the size of every tensor the device may need: all of them
// but the token embedding table, which stays on the host (only the rows of
// the tokens being processed are sent) unless it doubles as the LM head.
func (m *Model) WeightBytes() int64 {
	b := m.File.Bytes()
	if !m.Config.TiedEmbeddings {
		b -= int64(len(m.Embed.Data))
	}
	return b
}

// ropeFreqs reads a scaled RoPE: a GGUF rope_freqs.weight tensor of
// per-frequency divisors (llama.cpp's Llama 3.1 form), a GGUF linear
// scaling, or a Hugging Face config's rope_scaling (llama3 or linear). It
// returns nil for plain RoPE and an error naming the file for a scaling it
// cannot apply, rather than silently computing something else.
func ropeFreqs(f *pager.Model, byName map[string]*pager.Tensor, cfg Config) ([]float32, error) {
	half := cfg.HeadDim / 2
	base := func(factor func(i int) float64) []float32 {
		out := make([]float32, half)
		for i := range out {
			out[i] = float32(math.Pow(float64(cfg.RopeTheta), -float64(2*i)/float64(cfg.HeadDim)) / factor(i))
		}
		return out
	}
	if t, ok := byName["rope_freqs.weight"]; ok {
		if t.DType != pager.F32 || t.Elements() != int64(half) {
			return nil, fmt.Errorf("%s: tensor rope_freqs.weight is %s %v, want F32 [%d]", f.Path, t.DType, t.Shape, half)
		}
		fac := make([]float64, half)
		for i := range fac {
			fac[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:])))
			if !(fac[i] > 0) {
				return nil, fmt.Errorf("%s: rope_freqs.weight[%d] = %g is not a positive factor", f.Path, i, fac[i])
			}
		}
		return base(func(i int) float64 { return fac[i] }), nil
	}
	num := func(m map[string]any, k string) (float64, bool) {
		switch v := m[k].(type) {
		case float64:
			return v, true
		case float32:
			return float64(v), true
		}
		return 0, false
	}
	if f.Format == "gguf" {
		if typ, _ := f.Meta["llama.rope.scaling.type"].(string); typ != "" && typ != "none" {
			factor, ok := num(f.Meta, "llama.rope.scaling.factor")
			if typ != "linear" || !ok || factor <= 0 {
				return nil, fmt.Errorf("%s: rope scaling %q (factor %v) is not supported (only linear, and Llama 3.1's rope_freqs)", f.Path, typ, f.Meta["llama.rope.scaling.factor"])
			}
			return base(func(int) float64 { return factor }), nil
		}
		return nil, nil
	}
	rs, ok := f.Meta["rope_scaling"].(map[string]any)
	if !ok {
		return nil, nil
	}
	typ, _ := rs["rope_type"].(string)
	if typ == "" {
		typ, _ = rs["type"].(string)
	}
	factor, _ := num(rs, "factor")
	switch typ {
	case "", "default":
		return nil, nil
	case "linear":
		if factor <= 0 {
			return nil, fmt.Errorf("%s: rope_scaling linear needs a positive factor", f.Path)
		}
		return base(func(int) float64 { return factor }), nil
	case "llama3":
		low, ok1 := num(rs, "low_freq_factor")
		high, ok2 := num(rs, "high_freq_factor")
		orig, ok3 := num(rs, "original_max_position_embeddings")
		if !ok1 || !ok2 || !ok3 || factor <= 0 || low == high {
			return nil, fmt.Errorf("%s: rope_scaling llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings", f.Path)
		}
		fac := pager.Llama3RopeFactors(cfg.HeadDim, float64(cfg.RopeTheta), factor, low, high, orig)
		return base(func(i int) float64 { return float64(fac[i]) }), nil
	}
	return nil, fmt.Errorf("%s: rope_scaling type %q is not supported (only linear and llama3)", f.Path, typ)
}
