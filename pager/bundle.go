package pager

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"

	"offload/internal/atomicfile"
)

// hfLayerNames maps the per-layer part of Hugging Face Llama tensor names
// (after "model.layers.N.") to GGUF's (after "blk.N."), as llama.cpp's
// gguf-py tensor_mapping does for the llama architecture.
var hfLayerNames = map[string]string{
	"input_layernorm":          "attn_norm",
	"self_attn.q_proj":         "attn_q",
	"self_attn.k_proj":         "attn_k",
	"self_attn.v_proj":         "attn_v",
	"self_attn.o_proj":         "attn_output",
	"post_attention_layernorm": "ffn_norm",
	"mlp.gate_proj":            "ffn_gate",
	"mlp.up_proj":              "ffn_up",
	"mlp.down_proj":            "ffn_down",
}

var hfGlobalNames = map[string]string{
	"model.embed_tokens": "token_embd",
	"model.norm":         "output_norm",
	"lm_head":            "output",
}

// HFToGGUFName maps a Hugging Face Llama tensor name to its GGUF name, e.g.
// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight". The
// ".weight"/".bias" suffix is kept. It returns false for names with no GGUF
// counterpart (such as the obsolete rotary_emb.inv_freq buffers, which
// llama.cpp's converter also drops) and for unknown names.
func HFToGGUFName(name string) (string, bool) {
	stem, suffix, ok := splitSuffix(name)
	if !ok {
		return "", false
	}
	if g, ok := hfGlobalNames[stem]; ok {
		return g + suffix, true
	}
	rest, ok := strings.CutPrefix(stem, "model.layers.")
	if !ok {
		return "", false
	}
	num, part, ok := strings.Cut(rest, ".")
	if !ok || !isLayerNumber(num) {
		return "", false
	}
	g, ok := hfLayerNames[part]
	if !ok {
		return "", false
	}
	return "blk." + num + "." + g + suffix, true
}

// GGUFToHFName is the inverse of HFToGGUFName.
func GGUFToHFName(name string) (string, bool) {
	stem, suffix, ok := splitSuffix(name)
	if !ok {
		return "", false
	}
	for hf, g := range hfGlobalNames {
		if stem == g {
			return hf + suffix, true
		}
	}
	rest, ok := strings.CutPrefix(stem, "blk.")
	if !ok {
		return "", false
	}
	num, part, ok := strings.Cut(rest, ".")
	if !ok || !isLayerNumber(num) {
		return "", false
	}
	for hf, g := range hfLayerNames {
		if part == g {
			return "model.layers." + num + "." + hf + suffix, true
		}
	}
	return "", false
}

func splitSuffix(name string) (stem, suffix string, ok bool) {
	for _, s := range []string{".weight", ".bias"} {
		if stem, ok := strings.CutSuffix(name, s); ok {
			return stem, s, true
		}
	}
	return "", "", false
}

func isLayerNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && strconv.Itoa(n) == s
}

// qkRows checks the arguments shared by PermuteQK and UnpermuteQK and
// returns the number of rows and the head size in rows.
func qkRows(dst, src []byte, nHead, rowBytes int) (rows, headDim int, err error) {
	if rowBytes <= 0 || nHead <= 0 {
		return 0, 0, fmt.Errorf("qk permute: rowBytes %d and nHead %d must be positive", rowBytes, nHead)
	}
	if len(dst) != len(src) || len(src)%rowBytes != 0 {
		return 0, 0, fmt.Errorf("qk permute: src %d bytes, dst %d bytes, rows of %d bytes", len(src), len(dst), rowBytes)
	}
	rows = len(src) / rowBytes
	if rows%nHead != 0 || (rows/nHead)%2 != 0 {
		return 0, 0, fmt.Errorf("qk permute: %d rows do not split into %d heads of an even size", rows, nHead)
	}
	return rows, rows / nHead, nil
}

// UnpermuteQK converts the rows of a q or k projection (weight [rows, in] or
// bias [rows], rowBytes per row) from the Hugging Face order to the GGUF /
// original Meta order that interleaved ("normal") RoPE expects. nHead is the
// number of query heads for q and of key/value heads for k. dst and src must
// not overlap.
//
// Math: Hugging Face stores each head's rows as two halves (RoPE rotates row
// i with row i+hd/2, "rotate half"); GGUF stores them as pairs (rows 2i and
// 2i+1). With head h, head size hd, i < hd/2 and p in {0, 1}:
//
//	gguf row h*hd + 2*i + p  =  hf row h*hd + p*hd/2 + i
//
// which is llama.cpp convert_hf_to_gguf.py's
// w.reshape(n_head, 2, hd/2, *rest).swapaxes(1, 2).reshape(w.shape).
func UnpermuteQK(dst, src []byte, nHead, rowBytes int) error {
	rows, hd, err := qkRows(dst, src, nHead, rowBytes)
	if err != nil {
		return err
	}
	for h := 0; h < rows/hd; h++ {
		for i := 0; i < hd/2; i++ {
			for p := 0; p < 2; p++ {
				g, f := h*hd+2*i+p, h*hd+p*hd/2+i
				copy(dst[g*rowBytes:(g+1)*rowBytes], src[f*rowBytes:(f+1)*rowBytes])
			}
		}
	}
	return nil
}

// PermuteQK is the inverse of UnpermuteQK (GGUF order -> Hugging Face
// order), what transformers' convert_llama_weights_to_hf.py does:
// w.view(n_head, hd/2, 2, in).transpose(1, 2).reshape(rows, in).
func PermuteQK(dst, src []byte, nHead, rowBytes int) error {
	rows, hd, err := qkRows(dst, src, nHead, rowBytes)
	if err != nil {
		return err
	}
	for h := 0; h < rows/hd; h++ {
		for i := 0; i < hd/2; i++ {
			for p := 0; p < 2; p++ {
				g, f := h*hd+2*i+p, h*hd+p*hd/2+i
				copy(dst[f*rowBytes:(f+1)*rowBytes], src[g*rowBytes:(g+1)*rowBytes])
			}
		}
	}
	return nil
}

// BundleName is the GGUF name of layer l's bundled FFN tensor.
func BundleName(l int) string { return fmt.Sprintf("blk.%d.ffn_bundle.weight", l) }

// MetaFFNBundled is the GGUF key BundleFFN sets (to true).
const MetaFFNBundled = "offload.ffn_bundled"

// bundleRowBlock is how many bundle rows are assembled at a time: the down
// projection is read as [dim, bundleRowBlock] sub-blocks, so each of its
// rows contributes one contiguous run instead of one scattered element.
const bundleRowBlock = 64

// outTensor is one tensor of the BundleFFN output.
type outTensor struct {
	spec TensorSpec
	fill func(w io.Writer) error
}

// BundleFFN converts a model (any format Open reads; dtypes F32, F16, BF16)
// into a standard llama GGUF in which each layer's ffn_gate, ffn_up and
// ffn_down are replaced by one tensor blk.N.ffn_bundle.weight of shape
// [hidden, 3*dim] and the same dtype, whose row j is gate row j | up row j |
// down column j. A sparse decoder that selected neurons idx can then fetch
// each neuron's weights as one contiguous 3*dim run (Tensor.GatherRows).
//
// Other tensors are copied under their GGUF names (Hugging Face names
// mapped with HFToGGUFName, q/k rows converted with UnpermuteQK). Metadata:
// the source's GGUF keys when it is a GGUF (tokenizer included), then the
// llama keys recomputed from LlamaParams, and offload.ffn_bundled = true.
// progress, if not nil, is called with the bytes of tensor data written so
// far and the total. The write is atomic.
func BundleFFN(src *Model, dstPath string, progress func(done, total int64)) error {
	fail := func(err error) error { return fmt.Errorf("bundle %s -> %s: %w", src.Path, dstPath, err) }
	if err := atomicfile.SameFile(dstPath, src.Files()...); err != nil {
		return fail(err)
	}
	if err := src.CheckDTypes(); err != nil {
		return fail(err)
	}
	tensors, meta, p, err := LlamaLayout(src)
	if err != nil {
		return fail(err)
	}
	byGGUF := map[string]*LlamaTensor{}
	for i := range tensors {
		byGGUF[tensors[i].Name] = &tensors[i]
	}
	var outs []outTensor
	bundled := map[int]bool{}
	for i := range tensors {
		t := &tensors[i]
		if l, _, ok := FFNPart(t.Name); ok {
			if bundled[l] {
				continue
			}
			bundled[l] = true
			o, err := bundleTensor(l, p, byGGUF)
			if err != nil {
				return fail(err)
			}
			outs = append(outs, o)
			continue
		}
		o := outTensor{spec: TensorSpec{Name: t.Name, DType: t.DType, Shape: append([]int(nil), t.Shape...)}}
		o.fill = func(w io.Writer) error { _, err := t.WriteTo(w); return err }
		outs = append(outs, o)
	}
	meta[MetaFFNBundled] = true
	specs := make([]TensorSpec, len(outs))
	var total int64
	for i, o := range outs {
		specs[i] = o.spec
		n, err := tensorBytes(o.spec.DType, o.spec.Shape)
		if err != nil {
			return fail(fmt.Errorf("tensor %s: %w", o.spec.Name, err))
		}
		total += n
	}
	if err := WriteGGUFProgress(dstPath, meta, specs, total, progress, func(i int, w io.Writer) error { return outs[i].fill(w) }); err != nil {
		return fail(err)
	}
	return nil
}

// llamaMeta builds a converted GGUF's metadata: the source's GGUF keys
// (but its alignment and the keys a conversion recomputes), then the llama
// keys from p.
func llamaMeta(src *Model, p LlamaParams) map[string]any {
	meta := map[string]any{}
	if src.Format == "gguf" {
		for k, v := range src.Meta {
			switch k {
			case "gguf.version", "gguf.alignment", "general.alignment", "general.file_type", "general.quantization_version":
				continue
			}
			meta[k] = v
		}
	}
	meta["general.architecture"] = "llama"
	meta["general.name"] = src.displayName()
	meta["llama.embedding_length"] = uint32(p.Dim)
	meta["llama.feed_forward_length"] = uint32(p.Hidden)
	meta["llama.block_count"] = uint32(p.Layers)
	meta["llama.attention.head_count"] = uint32(p.Heads)
	meta["llama.attention.head_count_kv"] = uint32(p.KVHeads)
	meta["llama.rope.freq_base"] = float32(p.RopeTheta)
	meta["llama.attention.layer_norm_rms_epsilon"] = float32(p.NormEps)
	meta["llama.context_length"] = uint32(p.ContextLength)
	meta["llama.rope.dimension_count"] = uint32(p.HeadDim)
	meta["llama.vocab_size"] = uint32(p.Vocab)
	if p.HeadDim*p.Heads != p.Dim {
		meta["llama.attention.key_length"] = uint32(p.HeadDim)
		meta["llama.attention.value_length"] = uint32(p.HeadDim)
	}
	return meta
}

// bundleTensor builds layer l's bundle from its gate, up and down tensors.
func bundleTensor(l int, p LlamaParams, byGGUF map[string]*LlamaTensor) (outTensor, error) {
	get := func(part string, rows, cols int) (*Tensor, error) {
		name := fmt.Sprintf("blk.%d.%s.weight", l, part)
		t, ok := byGGUF[name]
		if !ok {
			return nil, fmt.Errorf("layer %d: missing %s", l, name)
		}
		if len(t.Shape) != 2 || t.Shape[0] != rows || t.Shape[1] != cols {
			return nil, fmt.Errorf("tensor %s: shape %v, want [%d %d]", name, t.Shape, rows, cols)
		}
		return t.Src, nil
	}
	d, h := p.Dim, p.Hidden
	gate, err := get("ffn_gate", h, d)
	if err != nil {
		return outTensor{}, err
	}
	up, err := get("ffn_up", h, d)
	if err != nil {
		return outTensor{}, err
	}
	down, err := get("ffn_down", d, h)
	if err != nil {
		return outTensor{}, err
	}
	if !gate.DType.Float() || !up.DType.Float() || !down.DType.Float() {
		return outTensor{}, fmt.Errorf("layer %d: ffn dtype %s: quantized FFNs are bundled by offload convert, which requantizes the down columns", l, down.DType)
	}
	if gate.DType != up.DType || gate.DType != down.DType {
		return outTensor{}, fmt.Errorf("layer %d: ffn dtypes differ (gate %s, up %s, down %s)", l, gate.DType, up.DType, down.DType)
	}
	dt := gate.DType
	spec := TensorSpec{Name: BundleName(l), DType: dt, Shape: []int{h, 3 * d}}
	return outTensor{spec: spec, fill: func(w io.Writer) error {
		return writeBundle(w, gate, up, down, d, h, dt.Size())
	}}, nil
}

// writeBundle writes the bundle rows, bundleRowBlock at a time: the down
// columns of a block are transposed from [dim, block] runs of the down matrix.
func writeBundle(w io.Writer, gate, up, down *Tensor, d, h, s int) error {
	rowB := d * s
	buf := make([]byte, bundleRowBlock*rowB) // transposed down columns of the block
	for j0 := 0; j0 < h; j0 += bundleRowBlock {
		nb := min(bundleRowBlock, h-j0)
		transposeBlock(buf[:nb*rowB], down.Data, d, h, j0, nb, s)
		for b := 0; b < nb; b++ {
			j := j0 + b
			if _, err := w.Write(gate.Data[j*rowB : (j+1)*rowB]); err != nil {
				return err
			}
			if _, err := w.Write(up.Data[j*rowB : (j+1)*rowB]); err != nil {
				return err
			}
			if _, err := w.Write(buf[b*rowB : (b+1)*rowB]); err != nil {
				return err
			}
		}
	}
	return nil
}

// transposeBlock sets dst[b][i] = down[i][j0+b] for b < nb, i < d (elements
// of s bytes; down is [d, h] row-major, dst is [nb, d]). For 2- and 4-byte
// elements it reads 4 (or 2) down rows at once and stores 8 contiguous bytes
// per dst row, so stores are word-sized instead of one element at a time.
func transposeBlock(dst, down []byte, d, h, j0, nb, s int) {
	rowB := d * s
	le := binary.LittleEndian
	src := func(i int) []byte { return down[(i*h+j0)*s : (i*h+j0+nb)*s] }
	i := 0
	switch s {
	case 2:
		for ; i+4 <= d; i += 4 {
			r0, r1, r2, r3 := src(i), src(i+1), src(i+2), src(i+3)
			for b := 0; b < nb; b++ {
				v := uint64(le.Uint16(r0[2*b:])) | uint64(le.Uint16(r1[2*b:]))<<16 |
					uint64(le.Uint16(r2[2*b:]))<<32 | uint64(le.Uint16(r3[2*b:]))<<48
				le.PutUint64(dst[b*rowB+2*i:], v)
			}
		}
	case 4:
		for ; i+2 <= d; i += 2 {
			r0, r1 := src(i), src(i+1)
			for b := 0; b < nb; b++ {
				le.PutUint64(dst[b*rowB+4*i:], uint64(le.Uint32(r0[4*b:]))|uint64(le.Uint32(r1[4*b:]))<<32)
			}
		}
	}
	for ; i < d; i++ { // the rest, and any other element size
		r := src(i)
		for b := 0; b < nb; b++ {
			copy(dst[b*rowB+i*s:b*rowB+(i+1)*s], r[b*s:(b+1)*s])
		}
	}
}
