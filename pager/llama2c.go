package pager

import (
	"encoding/binary"
	"fmt"
)

// llama2.c header bounds: generous for any real checkpoint, small enough that
// every size computed from them fits comfortably in int64.
const (
	l2cMaxDim    = 1 << 16
	l2cMaxHidden = 1 << 18
	l2cMaxLayers = 1 << 10
	l2cMaxVocab  = 1 << 22
	l2cMaxSeq    = 1 << 22
	l2cHeader    = 28
	l2cMagic     = 0x616b3432 // "ak42": llama2.c export versions 1 and 2
)

// parseLlama2C reads a legacy (version 0) llama2.c checkpoint: a header of 7
// int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len)
// then float32 arrays, each weight stacked over layers. A negative vocab_size
// means the classifier is not shared and a wcls [vocab, dim] block follows the
// two freq_cis blocks (which are skipped). Tensors get GGUF names, one per
// layer, viewing the matching slice of the stacked arrays; the layout already
// matches llama.cpp's (interleaved RoPE, no q/k permutation).
//
// Meta holds "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
// "vocab_size", "seq_len" (int; vocab_size is the absolute value) and
// "shared_classifier" (bool).
func parseLlama2C(path string, mm []byte) (*Model, error) {
	m, err := parseLlama2CHeader(mm)
	if err != nil {
		return nil, fmt.Errorf("llama2c %s (not GGUF or safetensors, read as a llama2.c checkpoint): %w", path, err)
	}
	m.Path = path
	m.configPath = path
	return m, nil
}

func parseLlama2CHeader(mm []byte) (*Model, error) {
	if len(mm) < l2cHeader {
		return nil, fmt.Errorf("file of %d bytes is shorter than the %d-byte header", len(mm), l2cHeader)
	}
	var h [7]int32
	for i := range h {
		h[i] = int32(binary.LittleEndian.Uint32(mm[4*i:]))
	}
	if uint32(h[0]) == l2cMagic {
		return nil, fmt.Errorf("llama2.c export version 1/2 (magic ak42) is not supported; use the legacy version 0 export")
	}
	dim, hidden, layers, heads, kvHeads, vocab, seq := int64(h[0]), int64(h[1]), int64(h[2]), int64(h[3]), int64(h[4]), int64(h[5]), int64(h[6])
	shared := vocab > 0
	if vocab < 0 {
		vocab = -vocab
	}
	switch {
	case dim <= 0 || dim > l2cMaxDim, hidden <= 0 || hidden > l2cMaxHidden, layers <= 0 || layers > l2cMaxLayers,
		heads <= 0 || heads > dim, kvHeads <= 0 || kvHeads > heads, vocab == 0 || vocab > l2cMaxVocab, seq <= 0 || seq > l2cMaxSeq:
		return nil, fmt.Errorf("implausible header dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d seq_len=%d",
			h[0], h[1], h[2], h[3], h[4], h[5], h[6])
	case dim%heads != 0:
		return nil, fmt.Errorf("dim %d is not a multiple of n_heads %d", dim, heads)
	case heads%kvHeads != 0:
		return nil, fmt.Errorf("n_heads %d is not a multiple of n_kv_heads %d", heads, kvHeads)
	case (dim/heads)%2 != 0:
		return nil, fmt.Errorf("head size %d is odd", dim/heads)
	}
	headSize := dim / heads
	kvDim := kvHeads * headSize

	m := &Model{Format: "llama2c", Meta: map[string]any{
		"dim": int(dim), "hidden_dim": int(hidden), "n_layers": int(layers), "n_heads": int(heads),
		"n_kv_heads": int(kvHeads), "vocab_size": int(vocab), "seq_len": int(seq), "shared_classifier": shared,
	}}
	// Stacked blocks in file order; per is the per-layer shape (nil: not per layer).
	type block struct {
		name  string // GGUF name, with %d for the layer
		shape []int
		layer bool
	}
	d, hd, kv, v := int(dim), int(hidden), int(kvDim), int(vocab)
	blocks := []block{
		{"token_embd.weight", []int{v, d}, false},
		{"blk.%d.attn_norm.weight", []int{d}, true},
		{"blk.%d.attn_q.weight", []int{d, d}, true},
		{"blk.%d.attn_k.weight", []int{kv, d}, true},
		{"blk.%d.attn_v.weight", []int{kv, d}, true},
		{"blk.%d.attn_output.weight", []int{d, d}, true},
		{"blk.%d.ffn_norm.weight", []int{d}, true},
		{"blk.%d.ffn_gate.weight", []int{hd, d}, true},
		{"blk.%d.ffn_down.weight", []int{d, hd}, true},
		{"blk.%d.ffn_up.weight", []int{hd, d}, true},
		{"output_norm.weight", []int{d}, false},
	}
	// Total size first, so a truncated file fails with one clear message.
	var want int64 = l2cHeader
	for _, b := range blocks {
		n := int64(4)
		for _, s := range b.shape {
			n *= int64(s)
		}
		if b.layer {
			n *= layers
		}
		want += n
	}
	freqCis := 2 * seq * (headSize / 2) * 4
	want += freqCis
	if !shared {
		want += vocab * dim * 4
	}
	if int64(len(mm)) != want {
		return nil, fmt.Errorf("file is %d bytes but the header (dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d seq_len=%d) implies %d",
			len(mm), h[0], h[1], h[2], h[3], h[4], h[5], h[6], want)
	}
	off := int64(l2cHeader)
	view := func(name string, shape []int) error {
		n := int64(4)
		for _, s := range shape {
			n *= int64(s)
		}
		t := &Tensor{Name: name, DType: F32, Shape: append([]int(nil), shape...), Data: mm[off : off+n : off+n], mapping: mm, off: off}
		off += n
		return m.add(t)
	}
	for _, b := range blocks {
		count := 1
		if b.layer {
			count = int(layers)
		}
		for l := 0; l < count; l++ {
			name := b.name
			if b.layer {
				name = fmt.Sprintf(b.name, l)
			}
			if err := view(name, b.shape); err != nil {
				return nil, err
			}
		}
	}
	off += freqCis
	if !shared {
		if err := view("output.weight", []int{v, d}); err != nil {
			return nil, err
		}
	}
	return m, nil
}
