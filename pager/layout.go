package pager

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// LlamaTensor is one tensor of a model as a llama GGUF names and lays it
// out, whatever the source format: Hugging Face names mapped to GGUF names,
// q/k rows of a Hugging Face checkpoint un-permuted for interleaved RoPE, and
// tensors a GGUF carries that other formats keep in their config (Llama 3.1's
// rope_freqs). It is what every converter (BundleFFN, the quantizer) reads.
type LlamaTensor struct {
	Name  string // GGUF name
	DType DType
	Shape []int // outermost first
	// Src is the source tensor, nil for a tensor made from metadata.
	Src *Tensor
	// qkHeads, when not 0, is the head count whose rows are un-permuted
	// (see UnpermuteQK); data holds a made-up tensor's bytes.
	qkHeads int
	data    []byte
}

// Bytes is the tensor's size.
func (t *LlamaTensor) Bytes() int64 {
	if t.Src == nil {
		return int64(len(t.data))
	}
	return int64(len(t.Src.Data))
}

// Rows is Shape[0] of a matrix, 1 otherwise.
func (t *LlamaTensor) Rows() int {
	if len(t.Shape) < 2 {
		return 1
	}
	return t.Shape[0]
}

// Row returns row i in the GGUF order (a vector's row 0 is the whole
// tensor). The slice aliases the source mapping: it must not be written.
// Like slice indexing, an i outside [0, Rows()) panics.
func (t *LlamaTensor) Row(i int) []byte {
	if t.Src == nil {
		n := len(t.data) / t.Rows()
		return t.data[i*n : (i+1)*n]
	}
	if t.qkHeads == 0 || len(t.Shape) < 2 {
		if len(t.Shape) < 2 {
			if i != 0 {
				panic(fmt.Sprintf("pager: %s has one row, not %d", t.Name, i))
			}
			return t.Src.Data
		}
		return t.Src.Row(i)
	}
	// gguf row h*hd + 2*j + p is hf row h*hd + p*hd/2 + j (UnpermuteQK).
	hd := t.Shape[0] / t.qkHeads
	h, r := i/hd, i%hd
	return t.Src.Row(h*hd + (r%2)*hd/2 + r/2)
}

// WriteTo writes the whole tensor in the GGUF layout. A permuted vector (a
// q/k bias) is un-permuted in a copy; matrices go row by row.
func (t *LlamaTensor) WriteTo(w io.Writer) (int64, error) {
	if t.Src == nil {
		n, err := w.Write(t.data)
		return int64(n), err
	}
	if t.qkHeads == 0 {
		n, err := w.Write(t.Src.Data)
		return int64(n), err
	}
	if len(t.Shape) < 2 {
		buf := make([]byte, len(t.Src.Data))
		if err := UnpermuteQK(buf, t.Src.Data, t.qkHeads, t.DType.Size()); err != nil {
			return 0, err
		}
		n, err := w.Write(buf)
		return int64(n), err
	}
	var total int64
	for i := 0; i < t.Rows(); i++ {
		n, err := w.Write(t.Row(i))
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// FFNPart says which FFN matrix a GGUF tensor name is: "ffn_gate",
// "ffn_up" or "ffn_down" of layer l, or ok false.
func FFNPart(name string) (layer int, part string, ok bool) {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return 0, "", false
	}
	num, p, _ := strings.Cut(rest, ".")
	switch p {
	case "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight":
		if !isLayerNumber(num) {
			return 0, "", false
		}
		l, _ := strconv.Atoi(num)
		return l, strings.TrimSuffix(p, ".weight"), true
	}
	return 0, "", false
}

// LlamaLayout lists src (any format Open reads) as a llama GGUF holds it:
// every tensor under its GGUF name in source order (made-up tensors such as
// rope_freqs first), and the metadata such a GGUF carries: the source's
// GGUF keys when it is a GGUF (tokenizer included), then the llama keys
// recomputed from LlamaParams. It checks what a converter relies on: a llama
// GGUF architecture, GGUF names for every tensor, q/k rows that split into
// heads, and each layer's FFN matrices present with the architecture's
// shapes. Tensor data is not read.
func LlamaLayout(src *Model) ([]LlamaTensor, map[string]any, LlamaParams, error) {
	p, err := src.LlamaParams()
	if err != nil {
		return nil, nil, p, err
	}
	if b, _ := src.Meta[MetaFFNBundled].(bool); b {
		return nil, nil, p, fmt.Errorf("the source is already FFN-bundled")
	}
	if src.Format == "gguf" {
		if arch, _ := src.Meta["general.architecture"].(string); arch != "llama" {
			return nil, nil, p, fmt.Errorf("general.architecture is %q; only llama GGUFs can be converted", arch)
		}
	}
	var out []LlamaTensor
	var ropeMeta map[string]any
	if src.Format == "safetensors" {
		made, m, err := hfRopeScaling(src, p)
		if err != nil {
			return nil, nil, p, err
		}
		ropeMeta = m
		for _, o := range made {
			var buf bytes.Buffer
			if err := o.fill(&buf); err != nil {
				return nil, nil, p, err
			}
			out = append(out, LlamaTensor{Name: o.spec.Name, DType: o.spec.DType, Shape: o.spec.Shape, data: buf.Bytes()})
		}
	}
	seen := map[string]bool{}
	for _, t := range src.Tensors {
		name := t.Name
		lt := LlamaTensor{DType: t.DType, Shape: append([]int(nil), t.Shape...), Src: t}
		if src.Format == "safetensors" {
			g, ok := HFToGGUFName(t.Name)
			if !ok {
				if strings.HasSuffix(t.Name, "rotary_emb.inv_freq") {
					continue
				}
				return nil, nil, p, fmt.Errorf("tensor %s has no GGUF name in the llama layout", t.Name)
			}
			name = g
			switch {
			case strings.HasSuffix(name, ".attn_q.weight"), strings.HasSuffix(name, ".attn_q.bias"):
				lt.qkHeads = p.Heads
			case strings.HasSuffix(name, ".attn_k.weight"), strings.HasSuffix(name, ".attn_k.bias"):
				lt.qkHeads = p.KVHeads
			}
			if lt.qkHeads > 0 {
				rowBytes := t.RowBytes()
				if len(t.Shape) < 2 {
					rowBytes = t.DType.Size()
				}
				if _, _, err := qkRows(t.Data, t.Data, lt.qkHeads, rowBytes); err != nil {
					return nil, nil, p, fmt.Errorf("tensor %s: %w", t.Name, err)
				}
			}
		}
		if seen[name] {
			return nil, nil, p, fmt.Errorf("two source tensors map to %s", name)
		}
		seen[name] = true
		lt.Name = name
		out = append(out, lt)
	}
	// Every layer has its three FFN matrices, shaped as the architecture says.
	shapes := map[string][2]int{"ffn_gate": {p.Hidden, p.Dim}, "ffn_up": {p.Hidden, p.Dim}, "ffn_down": {p.Dim, p.Hidden}}
	found := map[int]int{}
	for _, t := range out {
		l, part, ok := FFNPart(t.Name)
		if !ok {
			continue
		}
		if l >= p.Layers {
			return nil, nil, p, fmt.Errorf("tensor %s: layer %d, but the model has %d layers", t.Name, l, p.Layers)
		}
		want := shapes[part]
		if len(t.Shape) != 2 || t.Shape[0] != want[0] || t.Shape[1] != want[1] {
			return nil, nil, p, fmt.Errorf("tensor %s: shape %v, want %v", t.Name, t.Shape, want)
		}
		found[l]++
	}
	for l := 0; l < p.Layers; l++ {
		if found[l] != 3 {
			for _, part := range []string{"ffn_gate", "ffn_up", "ffn_down"} {
				if name := fmt.Sprintf("blk.%d.%s.weight", l, part); !seen[name] {
					return nil, nil, p, fmt.Errorf("layer %d: missing %s", l, name)
				}
			}
		}
	}
	meta := llamaMeta(src, p)
	for k, v := range ropeMeta {
		meta[k] = v
	}
	return out, meta, p, nil
}
