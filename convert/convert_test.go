package convert

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"offload/internal/fixtures"
	"offload/pager"
	"offload/quant"
)

// dequantOracle is the part of stories260K-q/dequant.json the converter is
// held to: per file, each tensor's type and the SHA-256 of its bytes.
type dequantOracle map[string]struct {
	File     string `json:"file"`
	FileType *int   `json:"general.file_type"`
	Tensors  map[string]struct {
		Type      string `json:"type"`
		RawSHA256 string `json:"raw_sha256"`
	} `json:"tensors"`
}

func quantDir(t testing.TB) string {
	return filepath.Join(fixtures.Shared(t), "models", "stories260K-q")
}

func loadDequantOracle(t *testing.T) dequantOracle {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(quantDir(t), "dequant.json"))
	if err != nil {
		t.Fatal(err)
	}
	var o dequantOracle
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	if len(o) < 12 {
		t.Fatalf("dequant.json lists %d files", len(o))
	}
	return o
}

func open(t testing.TB, path string) *pager.Model {
	t.Helper()
	m, err := pager.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func run(t testing.TB, src *pager.Model, opt Options) (string, *Result) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out.gguf")
	res, err := Convert(src, dst, opt)
	if err != nil {
		t.Fatal(err)
	}
	return dst, res
}

// TestFixtureTypesAndBytes quantizes the padded F32 stories260K to each
// file type llama-quantize made a fixture of (no importance matrix) and
// compares every tensor: the same type as llama-quantize chose (its
// per-tensor mixes), and the same bytes (raw_sha256), so Q8_0, Q4_0 and
// Q4_K, and every other type the reference quantizer wrote, are
// byte-identical.
func TestFixtureTypesAndBytes(t *testing.T) {
	o := loadDequantOracle(t)
	src := open(t, filepath.Join(quantDir(t), o["F32"].File))
	var names []string
	for k := range o {
		if k != "F32" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	perType := map[string]int{}
	var mu sync.Mutex
	for _, ft := range names {
		t.Run(ft, func(t *testing.T) {
			want := o[ft]
			dst, res := run(t, src, Options{Type: ft, Threads: 2})
			if res.FileType != ft {
				t.Errorf("file type %q, want %q", res.FileType, ft)
			}
			m := open(t, dst)
			if want.FileType == nil || m.Meta["general.file_type"] != uint32(*want.FileType) {
				t.Errorf("general.file_type %v, want %v", m.Meta["general.file_type"], want.FileType)
			}
			if m.Meta["general.quantization_version"] != uint32(2) {
				t.Errorf("general.quantization_version %v, want 2", m.Meta["general.quantization_version"])
			}
			if len(m.Tensors) != len(want.Tensors) {
				t.Fatalf("%d tensors, want %d", len(m.Tensors), len(want.Tensors))
			}
			for _, tn := range m.Tensors {
				w, ok := want.Tensors[tn.Name]
				if !ok {
					t.Fatalf("tensor %s is not in the reference file", tn.Name)
				}
				if tn.DType.String() != w.Type {
					t.Errorf("%s: type %s, llama-quantize chose %s", tn.Name, tn.DType, w.Type)
					continue
				}
				sum := sha256.Sum256(tn.Data)
				if hex.EncodeToString(sum[:]) != w.RawSHA256 {
					t.Errorf("%s (%s): bytes differ from the reference quantizer's", tn.Name, tn.DType)
					continue
				}
				mu.Lock()
				perType[w.Type]++
				mu.Unlock()
			}
		})
	}
	for _, typ := range []string{"Q8_0", "Q4_0", "Q4_K", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K", "Q6_K"} {
		if perType[typ] == 0 {
			t.Errorf("no %s tensor was compared", typ)
		}
	}
	t.Logf("byte-identical tensors per type: %v", perType)
}

// TestKeepTypesCopies: with no --type and no bundles, every tensor is copied
// unchanged (a quantized file in, the same tensors out).
func TestKeepTypesCopies(t *testing.T) {
	src := open(t, filepath.Join(quantDir(t), "stories260K-pad256-Q4_K_M.gguf"))
	dst, _ := run(t, src, Options{})
	m := open(t, dst)
	for _, tn := range src.Tensors {
		got, ok := m.Tensor(tn.Name)
		if !ok || got.DType != tn.DType || !bytes.Equal(got.Data, tn.Data) {
			t.Fatalf("%s changed", tn.Name)
		}
	}
	if m.Meta["general.file_type"] != src.Meta["general.file_type"] {
		t.Errorf("general.file_type %v, source %v", m.Meta["general.file_type"], src.Meta["general.file_type"])
	}
}

// TestFloatBundleMatchesBundleFFN: bundling a float model without a type
// change writes what pager.BundleFFN writes.
func TestFloatBundleMatchesBundleFFN(t *testing.T) {
	src := open(t, filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	dst, res := run(t, src, Options{Bundle: true})
	ref := filepath.Join(t.TempDir(), "ref.gguf")
	if err := pager.BundleFFN(src, ref, nil); err != nil {
		t.Fatal(err)
	}
	a, b := open(t, dst), open(t, ref)
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors, BundleFFN %d", len(a.Tensors), len(b.Tensors))
	}
	for _, tn := range b.Tensors {
		got, ok := a.Tensor(tn.Name)
		if !ok || got.DType != tn.DType || !bytes.Equal(got.Data, tn.Data) {
			t.Fatalf("%s differs from BundleFFN's", tn.Name)
		}
	}
	if _, ok := a.Meta[pager.MetaFFNBundleTypes]; ok {
		t.Error("a uniform float bundle should not need part types")
	}
	if len(res.BundleTypes) != 5 || res.BundleTypes[0] != [3]pager.DType{pager.F32, pager.F32, pager.F32} {
		t.Errorf("bundle types %v", res.BundleTypes)
	}
}

// TestQuantizedBundle bundles a quantized file under each down policy and
// checks every row: the gate and up parts are the file's rows, and the down
// part is the exact down column requantized with the reference quantizer.
func TestQuantizedBundle(t *testing.T) {
	src := open(t, filepath.Join(quantDir(t), "stories260K-pad256-Q4_K_M.gguf"))
	p, err := src.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		policy string
		want   func(down pager.DType) pager.DType
	}{
		{BundleDownSame, func(d pager.DType) pager.DType { return d }},
		{BundleDownQ8, func(pager.DType) pager.DType { return pager.Q8_0 }},
		{"f32", func(pager.DType) pager.DType { return pager.F32 }},
	} {
		t.Run(c.policy, func(t *testing.T) {
			dst, res := run(t, src, Options{Bundle: true, BundleDown: c.policy, Threads: 2})
			m := open(t, dst)
			if m.Meta[pager.MetaFFNBundled] != true {
				t.Fatal("not bundled")
			}
			if len(res.BundleTypes) != p.Layers {
				t.Fatalf("%d bundle layers", len(res.BundleTypes))
			}
			for l := 0; l < p.Layers; l++ {
				name := func(s string) string { return fmt.Sprintf("blk.%d.%s.weight", l, s) }
				gate, _ := src.Tensor(name("ffn_gate"))
				up, _ := src.Tensor(name("ffn_up"))
				down, _ := src.Tensor(name("ffn_down"))
				bt, parts, err := m.FFNBundle(l, p.Dim, p.Hidden)
				if err != nil {
					t.Fatal(err)
				}
				wantTypes := [3]pager.DType{gate.DType, up.DType, c.want(down.DType)}
				if parts.Types != wantTypes || res.BundleTypes[l] != wantTypes {
					t.Fatalf("layer %d: part types %v (result %v), want %v", l, parts.Types, res.BundleTypes[l], wantTypes)
				}
				dq := make([]float32, p.Dim*p.Hidden)
				if err := quant.DequantizeRow(quant.Type(down.DType), dq, down.Data); err != nil {
					t.Fatal(err)
				}
				col := make([]float32, p.Dim)
				want := make([]byte, parts.Bytes[pager.PartDown])
				for j := 0; j < p.Hidden; j++ {
					row := bt.Row(j)
					if !bytes.Equal(parts.Part(row, pager.PartGate), gate.Row(j)) || !bytes.Equal(parts.Part(row, pager.PartUp), up.Row(j)) {
						t.Fatalf("layer %d neuron %d: gate or up part is not the file's row", l, j)
					}
					for i := range col {
						col[i] = dq[i*p.Hidden+j]
					}
					if err := quant.QuantizeRow(quant.Type(parts.Types[pager.PartDown]), want, col); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(parts.Part(row, pager.PartDown), want) {
						t.Fatalf("layer %d neuron %d: down part is not the requantized column", l, j)
					}
				}
			}
		})
	}
}

// TestQuantizeAndBundle quantizes a float model and bundles it in one pass:
// the same as quantizing first and bundling the result (the down columns
// then come from the quantized matrix), except that here they are quantized
// straight from the float weights: so gate and up parts must equal the
// unbundled file's rows, and the down part the F32 column quantized.
func TestQuantizeAndBundle(t *testing.T) {
	src := open(t, filepath.Join(quantDir(t), "stories260K-pad256-F32.gguf"))
	ref := open(t, filepath.Join(quantDir(t), "stories260K-pad256-Q4_K_M.gguf"))
	p, _ := src.LlamaParams()
	dst, _ := run(t, src, Options{Type: "q4_k_m", Bundle: true})
	m := open(t, dst)
	for _, tn := range ref.Tensors {
		if _, _, ok := pager.FFNPart(tn.Name); ok {
			continue
		}
		got, ok := m.Tensor(tn.Name)
		if !ok || !bytes.Equal(got.Data, tn.Data) {
			t.Fatalf("%s differs from llama-quantize's", tn.Name)
		}
	}
	for l := 0; l < p.Layers; l++ {
		bt, parts, err := m.FFNBundle(l, p.Dim, p.Hidden)
		if err != nil {
			t.Fatal(err)
		}
		name := func(s string) string { return fmt.Sprintf("blk.%d.%s.weight", l, s) }
		gate, _ := ref.Tensor(name("ffn_gate"))
		down, _ := ref.Tensor(name("ffn_down"))
		fdown, _ := src.Tensor(name("ffn_down"))
		if parts.Types[pager.PartDown] != down.DType {
			t.Fatalf("layer %d: down part %s, the file's down matrix is %s", l, parts.Types[pager.PartDown], down.DType)
		}
		f := make([]float32, p.Dim*p.Hidden)
		if err := quant.DequantizeRow(quant.F32, f, fdown.Data); err != nil {
			t.Fatal(err)
		}
		col := make([]float32, p.Dim)
		want := make([]byte, parts.Bytes[pager.PartDown])
		for j := 0; j < p.Hidden; j += 37 {
			if !bytes.Equal(parts.Part(bt.Row(j), pager.PartGate), gate.Row(j)) {
				t.Fatalf("layer %d neuron %d: gate part differs from llama-quantize's row", l, j)
			}
			for i := range col {
				col[i] = f[i*p.Hidden+j]
			}
			if err := quant.QuantizeRow(quant.Type(down.DType), want, col); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(parts.Part(bt.Row(j), pager.PartDown), want) {
				t.Fatalf("layer %d neuron %d: down part is not the F32 column quantized", l, j)
			}
		}
	}
}

// TestLlama2CFallbacks quantizes the original stories260K (llama2.c, dim
// 64, hidden 172): no row is a whole number of 256-blocks, so Q4_K_M falls
// back as llama.cpp does: Q4_K to Q5_0, the head's Q6_K to Q8_0, and rows of
// 172 (ffn_down) to F16; and Q8_0 stops at ffn_down, which has no fallback.
func TestLlama2CFallbacks(t *testing.T) {
	src := open(t, filepath.Join(fixtures.Stories(t), "stories260K.bin"))
	dst, res := run(t, src, Options{Type: "q4_k_m"})
	got := map[string]pager.DType{}
	for _, tn := range res.Tensors {
		got[tn.Name] = tn.DType
	}
	for name, want := range map[string]pager.DType{
		"token_embd.weight":   pager.Q8_0, // tied: the head's type, Q6_K falling back to Q8_0
		"blk.0.attn_q.weight": pager.Q5_0, "blk.0.ffn_gate.weight": pager.Q5_0,
		"blk.0.ffn_down.weight": pager.F16, "blk.0.attn_norm.weight": pager.F32,
	} {
		if got[name] != want {
			t.Errorf("%s: %s, want %s", name, got[name], want)
		}
	}
	m := open(t, dst)
	if _, err := m.LlamaParams(); err != nil {
		t.Fatal(err)
	}
	_, err := Convert(src, filepath.Join(t.TempDir(), "q8.gguf"), Options{Type: "q8_0"})
	if err == nil || !strings.Contains(err.Error(), "blk.0.ffn_down.weight") || !strings.Contains(err.Error(), "no fallback") {
		t.Fatalf("Q8_0 of rows of 172: %v", err)
	}
}

// TestRefusals: bad requests fail with one error naming the problem, and
// leave no output behind.
func TestRefusals(t *testing.T) {
	q := open(t, filepath.Join(quantDir(t), "stories260K-pad256-Q4_K_M.gguf"))
	f := open(t, filepath.Join(quantDir(t), "stories260K-pad256-F32.gguf"))
	dir := t.TempDir()
	for _, c := range []struct {
		src  *pager.Model
		opt  Options
		want string
	}{
		{q, Options{Type: "q8_0"}, "tensor output.weight is already quantized (Q6_K)"},
		{f, Options{Type: "q4_k_x"}, `unknown file type "q4_k_x"`},
		{f, Options{Type: "iq2_xs"}, "needs an importance matrix"},
		{f, Options{Type: "q2_k_s"}, "needs an importance matrix"},
		{q, Options{Bundle: true, BundleDown: "q9"}, `--bundle-down "q9"`},
	} {
		out := filepath.Join(dir, "out.gguf")
		_, err := Convert(c.src, out, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.opt, err, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%+v: an output was left behind", c.opt)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
	// Bundling an already bundled file is refused.
	b, _ := run(t, q, Options{Bundle: true})
	_, err := Convert(open(t, b), filepath.Join(dir, "again.gguf"), Options{Bundle: true})
	if err == nil || !strings.Contains(err.Error(), "already FFN-bundled") {
		t.Errorf("re-bundling: %v", err)
	}
}

// TestProgress: progress ends at the total, which is the tensor data size.
func TestProgress(t *testing.T) {
	src := open(t, filepath.Join(quantDir(t), "stories260K-pad256-F32.gguf"))
	var last, total int64
	calls := 0
	_, res := run(t, src, Options{Type: "q8_0", Bundle: true, Progress: func(d, tot int64) {
		if d < last {
			t.Errorf("progress went back from %d to %d", last, d)
		}
		last, total = d, tot
		calls++
	}})
	if calls == 0 || last != total || total != res.Bytes {
		t.Fatalf("progress: %d calls, last %d of %d, data %d", calls, last, total, res.Bytes)
	}
}

// writeHFBF16 exports a GGUF model as a Hugging Face directory in bfloat16:
// config.json, and model.safetensors with HF names and q/k rows permuted for
// rotate-half RoPE.
func writeHFBF16(t *testing.T, g *pager.Model, dir string) {
	t.Helper()
	p, err := g.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "hidden_size": p.Dim, "intermediate_size": p.Hidden,
		"num_hidden_layers": p.Layers, "num_attention_heads": p.Heads, "num_key_value_heads": p.KVHeads,
		"vocab_size": p.Vocab, "rms_norm_eps": p.NormEps, "rope_theta": p.RopeTheta,
		"max_position_embeddings": p.ContextLength, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
	})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var specs []pager.TensorSpec
	var data [][]byte
	for _, tn := range g.Tensors {
		hf, ok := pager.GGUFToHFName(tn.Name)
		if !ok {
			t.Fatalf("no HF name for %s", tn.Name)
		}
		f := make([]float32, tn.Elements())
		if err := quant.DequantizeRow(quant.Type(tn.DType), f, tn.Data); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 2*len(f))
		if err := quant.QuantizeRow(quant.BF16, b, f); err != nil {
			t.Fatal(err)
		}
		heads := 0
		switch {
		case strings.HasSuffix(tn.Name, "attn_q.weight"):
			heads = p.Heads
		case strings.HasSuffix(tn.Name, "attn_k.weight"):
			heads = p.KVHeads
		}
		if heads > 0 {
			perm := make([]byte, len(b))
			if err := pager.PermuteQK(perm, b, heads, 2*tn.Cols()); err != nil {
				t.Fatal(err)
			}
			b = perm
		}
		specs = append(specs, pager.TensorSpec{Name: hf, DType: pager.BF16, Shape: tn.Shape})
		data = append(data, b)
	}
	err = pager.WriteSafetensors(filepath.Join(dir, "model.safetensors"), specs, nil, func(i int, w io.Writer) error {
		_, err := w.Write(data[i])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFromSafetensorsBF16: a bf16 Hugging Face directory quantizes (and
// bundles) to the same tensors as the same weights in a bf16 GGUF (here made
// by the converter itself from the F32 fixture): names mapped, q/k rows
// un-permuted row by row, bf16 decoded exactly.
func TestFromSafetensorsBF16(t *testing.T) {
	g := open(t, filepath.Join(quantDir(t), "stories260K-pad256-F32.gguf"))
	bf16, _ := run(t, g, Options{Type: "bf16"})
	gb := open(t, bf16)
	for _, tn := range gb.Tensors {
		want := pager.BF16
		if len(tn.Shape) == 1 {
			want = pager.F32 // norms keep their type
		}
		if tn.DType != want {
			t.Fatalf("%s: %s after --type bf16", tn.Name, tn.DType)
		}
	}
	dir := t.TempDir()
	writeHFBF16(t, g, dir)
	hf := open(t, dir)
	for _, opt := range []Options{{Type: "q4_k_m"}, {Type: "q8_0", Bundle: true}, {Type: "q4_k_m", Bundle: true, BundleDown: BundleDownQ8}} {
		a, _ := run(t, hf, opt)
		b, _ := run(t, gb, opt)
		ma, mb := open(t, a), open(t, b)
		if len(ma.Tensors) != len(mb.Tensors) {
			t.Fatalf("%+v: %d tensors from HF, %d from GGUF", opt, len(ma.Tensors), len(mb.Tensors))
		}
		for _, tn := range mb.Tensors {
			got, ok := ma.Tensor(tn.Name)
			if strings.HasSuffix(tn.Name, "_norm.weight") {
				// Norms: bf16 in the HF directory, F32 in the GGUF.
				continue
			}
			if !ok || got.DType != tn.DType || !bytes.Equal(got.Data, tn.Data) {
				t.Fatalf("%+v: %s differs between the HF and GGUF sources", opt, tn.Name)
			}
		}
	}
}
