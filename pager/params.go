package pager

import (
	"fmt"
	"math"
	"path/filepath"
)

// LlamaParams is the architecture of a Llama-family model as stored in its
// file, read the same way for every format. The model package turns it into
// its Config.
type LlamaParams struct {
	Dim           int // embedding width
	Hidden        int // FFN intermediate size
	Layers        int
	Heads         int
	KVHeads       int
	HeadDim       int
	Vocab         int
	ContextLength int
	RopeTheta     float64
	NormEps       float64
	// TiedEmbeddings: no separate output (LM head) tensor, or the config
	// says the head reuses the token embedding.
	TiedEmbeddings bool
}

// Sources of each parameter: GGUF keys are "<arch>.<suffix>", HF keys are
// config.json names; llama2.c headers have them directly.
const (
	hfDim     = "hidden_size"
	hfHidden  = "intermediate_size"
	hfLayers  = "num_hidden_layers"
	hfHeads   = "num_attention_heads"
	hfKVHeads = "num_key_value_heads"
	hfHeadDim = "head_dim"
	hfVocab   = "vocab_size"
	hfCtx     = "max_position_embeddings"
	hfTheta   = "rope_theta"
	hfEps     = "rms_norm_eps"
	hfTied    = "tie_word_embeddings"
)

// LlamaParams reads the architecture. GGUF: the "<general.architecture>.*"
// keys (embedding_length, feed_forward_length, block_count,
// attention.head_count, context_length and attention.layer_norm_rms_epsilon
// are required; head_count_kv defaults to head_count, rope.freq_base to
// 10000, attention.key_length to dim/heads). Hugging Face: config.json
// (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads are
// required; num_key_value_heads defaults to the head count, rope_theta to
// 10000, rms_norm_eps to 1e-6 and max_position_embeddings to 2048, as in
// transformers' LlamaConfig). llama2.c: the header, with run.c's constants
// (theta 10000, eps 1e-5). A missing or malformed required key is an error
// naming the file and the key.
func (m *Model) LlamaParams() (LlamaParams, error) {
	var p LlamaParams
	var err error
	switch m.Format {
	case "gguf":
		p, err = m.ggufParams()
	case "safetensors":
		p, err = m.hfParams()
	case "llama2c":
		p = LlamaParams{
			Dim: m.Meta["dim"].(int), Hidden: m.Meta["hidden_dim"].(int), Layers: m.Meta["n_layers"].(int),
			Heads: m.Meta["n_heads"].(int), KVHeads: m.Meta["n_kv_heads"].(int), Vocab: m.Meta["vocab_size"].(int),
			ContextLength: m.Meta["seq_len"].(int), RopeTheta: 10000, NormEps: 1e-5,
			TiedEmbeddings: m.Meta["shared_classifier"].(bool),
		}
		p.HeadDim = p.Dim / p.Heads
	default:
		return p, fmt.Errorf("%s: unknown format %q", m.Path, m.Format)
	}
	if err != nil {
		return p, err
	}
	switch {
	case p.Dim <= 0, p.Hidden <= 0, p.Layers <= 0, p.Heads <= 0, p.KVHeads <= 0, p.HeadDim <= 0, p.Vocab <= 0, p.ContextLength <= 0:
		return p, fmt.Errorf("%s %s: non-positive size in %+v", m.Format, m.configPath, p)
	case p.Heads%p.KVHeads != 0:
		return p, fmt.Errorf("%s %s: %d heads is not a multiple of %d kv heads", m.Format, m.configPath, p.Heads, p.KVHeads)
	case p.HeadDim%2 != 0:
		return p, fmt.Errorf("%s %s: head dim %d is odd", m.Format, m.configPath, p.HeadDim)
	}
	return p, nil
}

// keyErr names the file and key in a config error.
func (m *Model) keyErr(key, problem string) error {
	return fmt.Errorf("%s %s: %s %s", m.Format, m.configPath, key, problem)
}

// intKey reads an integer-valued metadata entry of any numeric Go type
// (GGUF integers, or JSON float64 that must be integral).
func (m *Model) intKey(key string, def int, required bool) (int, error) {
	v, ok := m.Meta[key]
	if !ok || v == nil {
		if required {
			return 0, m.keyErr(key, "is missing")
		}
		return def, nil
	}
	var x int64
	switch n := v.(type) {
	case uint8:
		x = int64(n)
	case int8:
		x = int64(n)
	case uint16:
		x = int64(n)
	case int16:
		x = int64(n)
	case uint32:
		x = int64(n)
	case int32:
		x = int64(n)
	case int64:
		x = n
	case int:
		x = int64(n)
	case uint64:
		if n > math.MaxInt32 {
			return 0, m.keyErr(key, fmt.Sprintf("is %d, too large", n))
		}
		x = int64(n)
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > math.MaxInt32 {
			return 0, m.keyErr(key, fmt.Sprintf("is %v, not an integer", n))
		}
		x = int64(n)
	default:
		return 0, m.keyErr(key, fmt.Sprintf("has type %T, want an integer", v))
	}
	if x < 0 || x > math.MaxInt32 {
		return 0, m.keyErr(key, fmt.Sprintf("is %d, out of range", x))
	}
	return int(x), nil
}

func (m *Model) floatKey(key string, def float64, required bool) (float64, error) {
	v, ok := m.Meta[key]
	if !ok || v == nil {
		if required {
			return 0, m.keyErr(key, "is missing")
		}
		return def, nil
	}
	switch n := v.(type) {
	case float32:
		return float64(n), nil
	case float64:
		return n, nil
	}
	i, err := m.intKey(key, 0, true)
	if err != nil {
		return 0, m.keyErr(key, fmt.Sprintf("has type %T, want a number", v))
	}
	return float64(i), nil
}

func (m *Model) ggufParams() (LlamaParams, error) {
	var p LlamaParams
	arch, ok := m.Meta["general.architecture"].(string)
	if !ok {
		return p, m.keyErr("general.architecture", "is missing or not a string")
	}
	k := func(s string) string { return arch + "." + s }
	var err error
	ints := []struct {
		dst      *int
		key      string
		def      int
		required bool
	}{
		{&p.Dim, k("embedding_length"), 0, true},
		{&p.Hidden, k("feed_forward_length"), 0, true},
		{&p.Layers, k("block_count"), 0, true},
		{&p.Heads, k("attention.head_count"), 0, true},
		{&p.ContextLength, k("context_length"), 0, true},
	}
	for _, f := range ints {
		if *f.dst, err = m.intKey(f.key, f.def, f.required); err != nil {
			return p, err
		}
	}
	if p.KVHeads, err = m.intKey(k("attention.head_count_kv"), p.Heads, false); err != nil {
		return p, err
	}
	if p.Heads > 0 {
		if p.HeadDim, err = m.intKey(k("attention.key_length"), p.Dim/p.Heads, false); err != nil {
			return p, err
		}
	}
	if p.RopeTheta, err = m.floatKey(k("rope.freq_base"), 10000, false); err != nil {
		return p, err
	}
	if p.NormEps, err = m.floatKey(k("attention.layer_norm_rms_epsilon"), 0, true); err != nil {
		return p, err
	}
	p.Vocab, err = m.intKey(k("vocab_size"), 0, false)
	if err != nil {
		return p, err
	}
	if p.Vocab == 0 {
		if toks, ok := m.Meta["tokenizer.ggml.tokens"].([]string); ok {
			p.Vocab = len(toks)
		} else if t, ok := m.Tensor("token_embd.weight"); ok {
			p.Vocab = t.Rows()
		}
	}
	_, hasOut := m.Tensor("output.weight")
	p.TiedEmbeddings = !hasOut
	return p, nil
}

func (m *Model) hfParams() (LlamaParams, error) {
	var p LlamaParams
	var err error
	if mt, ok := m.Meta["model_type"].(string); ok && mt != "llama" && mt != "mistral" {
		return p, m.keyErr("model_type", fmt.Sprintf("is %q; only llama-architecture models are supported", mt))
	}
	for _, f := range []struct {
		dst *int
		key string
	}{{&p.Dim, hfDim}, {&p.Hidden, hfHidden}, {&p.Layers, hfLayers}, {&p.Heads, hfHeads}} {
		if *f.dst, err = m.intKey(f.key, 0, true); err != nil {
			return p, err
		}
	}
	if p.KVHeads, err = m.intKey(hfKVHeads, p.Heads, false); err != nil {
		return p, err
	}
	if p.Heads > 0 {
		if p.HeadDim, err = m.intKey(hfHeadDim, p.Dim/p.Heads, false); err != nil {
			return p, err
		}
	}
	emb, hasEmb := m.Tensor("model.embed_tokens.weight")
	def := 0
	if hasEmb {
		def = emb.Rows()
	}
	if p.Vocab, err = m.intKey(hfVocab, def, !hasEmb); err != nil {
		return p, err
	}
	if p.ContextLength, err = m.intKey(hfCtx, 2048, false); err != nil {
		return p, err
	}
	if p.RopeTheta, err = m.floatKey(hfTheta, 10000, false); err != nil {
		return p, err
	}
	if p.NormEps, err = m.floatKey(hfEps, 1e-6, false); err != nil {
		return p, err
	}
	tied, _ := m.Meta[hfTied].(bool)
	_, hasHead := m.Tensor("lm_head.weight")
	p.TiedEmbeddings = tied || !hasHead
	return p, nil
}

// displayName is a model name for general.name when the source has none.
func (m *Model) displayName() string {
	if s, ok := m.Meta["general.name"].(string); ok && s != "" {
		return s
	}
	return filepath.Base(m.Path)
}
