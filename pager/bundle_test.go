package pager

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestHFToGGUFName(t *testing.T) {
	tests := []struct{ hf, gguf string }{
		{"model.embed_tokens.weight", "token_embd.weight"},
		{"model.norm.weight", "output_norm.weight"},
		{"lm_head.weight", "output.weight"},
		{"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
		{"model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
		{"model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
		{"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
		{"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
		{"model.layers.79.post_attention_layernorm.weight", "blk.79.ffn_norm.weight"},
		{"model.layers.1.mlp.gate_proj.weight", "blk.1.ffn_gate.weight"},
		{"model.layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"},
		{"model.layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight"},
	}
	for _, tt := range tests {
		if g, ok := HFToGGUFName(tt.hf); !ok || g != tt.gguf {
			t.Errorf("HFToGGUFName(%s) = %s, %v; want %s", tt.hf, g, ok, tt.gguf)
		}
		if h, ok := GGUFToHFName(tt.gguf); !ok || h != tt.hf {
			t.Errorf("GGUFToHFName(%s) = %s, %v; want %s", tt.gguf, h, ok, tt.hf)
		}
	}
	for _, bad := range []string{"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.x.mlp.up_proj.weight",
		"model.layers.01.mlp.up_proj.weight", "model.layers.1.mlp.up_proj", "vision.tower.weight", "model.layers.-1.mlp.up_proj.weight", ""} {
		if g, ok := HFToGGUFName(bad); ok {
			t.Errorf("HFToGGUFName(%q) = %q, want no mapping", bad, g)
		}
	}
}

func TestPermuteQK(t *testing.T) {
	// One head of size 4, rows of 1 byte: HF rows [0 1 2 3] (halves {0,1},{2,3})
	// become GGUF pairs (0,2), (1,3).
	hf := []byte{10, 11, 12, 13}
	got := make([]byte, 4)
	if err := UnpermuteQK(got, hf, 1, 1); err != nil {
		t.Fatal(err)
	}
	if want := []byte{10, 12, 11, 13}; !bytes.Equal(got, want) {
		t.Errorf("UnpermuteQK = %v, want %v", got, want)
	}
	// Random round trips over several head layouts and row sizes.
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ heads, hd, rowBytes int }{{8, 8, 256}, {4, 8, 256}, {2, 128, 6}, {3, 2, 1}} {
		src := make([]byte, c.heads*c.hd*c.rowBytes)
		for i := range src {
			src[i] = byte(r.IntN(256))
		}
		a, b := make([]byte, len(src)), make([]byte, len(src))
		if err := PermuteQK(a, src, c.heads, c.rowBytes); err != nil {
			t.Fatal(err)
		}
		if err := UnpermuteQK(b, a, c.heads, c.rowBytes); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, src) {
			t.Errorf("%+v: Unpermute(Permute(x)) != x", c)
		}
		if c.hd > 2 && bytes.Equal(a, src) {
			t.Errorf("%+v: permute was the identity", c)
		}
	}
	wantErr(t, UnpermuteQK(make([]byte, 12), make([]byte, 12), 2, 2), "6 rows do not split into 2 heads of an even size")
	wantErr(t, PermuteQK(make([]byte, 8), make([]byte, 12), 1, 2), "src 12 bytes, dst 8 bytes")
	wantErr(t, PermuteQK(nil, nil, 0, 2), "must be positive")
}

// checkBundle verifies every bundle row of out against the source FFN
// tensors, with a plain strided loop independent of the bundler's blocking.
func checkBundle(t *testing.T, out *Model, ffn func(l int, part string) *Tensor, layers int) {
	t.Helper()
	for l := 0; l < layers; l++ {
		gate, up, down := ffn(l, "ffn_gate"), ffn(l, "ffn_up"), ffn(l, "ffn_down")
		b, ok := out.Tensor(BundleName(l))
		if !ok {
			t.Fatalf("missing %s", BundleName(l))
		}
		h, d, s := gate.Rows(), gate.Cols(), gate.DType.Size()
		if !equalInts(b.Shape, []int{h, 3 * d}) || b.DType != gate.DType {
			t.Fatalf("%s: %s %v, want %s [%d %d]", b.Name, b.DType, b.Shape, gate.DType, h, 3*d)
		}
		for j := 0; j < h; j++ {
			row := b.Row(j)
			if !bytes.Equal(row[:d*s], gate.Row(j)) || !bytes.Equal(row[d*s:2*d*s], up.Row(j)) {
				t.Fatalf("layer %d row %d: gate/up part differs", l, j)
			}
			for i := 0; i < d; i++ {
				if !bytes.Equal(row[(2*d+i)*s:(2*d+i+1)*s], down.Data[(i*h+j)*s:(i*h+j+1)*s]) {
					t.Fatalf("layer %d row %d: down column element %d differs", l, j, i)
				}
			}
		}
		for _, part := range []string{"ffn_gate", "ffn_up", "ffn_down"} {
			if _, ok := out.Tensor(fmt.Sprintf("blk.%d.%s.weight", l, part)); ok {
				t.Errorf("bundled model still has blk.%d.%s.weight", l, part)
			}
		}
	}
}

func bundleT(t *testing.T, src *Model) *Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bundled.gguf")
	var calls int
	var last, total int64
	err := BundleFFN(src, path, func(done, tot int64) {
		if done < last || (total != 0 && tot != total) {
			t.Errorf("progress went from %d/%d to %d/%d", last, total, done, tot)
		}
		calls++
		last, total = done, tot
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last != total {
		t.Errorf("progress: %d calls, ended at %d of %d", calls, last, total)
	}
	out := openT(t, path)
	if out.Bytes() != total {
		t.Errorf("progress total %d, tensor bytes %d", total, out.Bytes())
	}
	if out.Meta[MetaFFNBundled] != true {
		t.Error("offload.ffn_bundled not set")
	}
	return out
}

func TestBundleFFNFromGGUF(t *testing.T) {
	src := openT(t, storiesPath(t, "stories260K.gguf"))
	out := bundleT(t, src)
	checkBundle(t, out, func(l int, part string) *Tensor {
		tn, _ := src.Tensor(fmt.Sprintf("blk.%d.%s.weight", l, part))
		return tn
	}, 5)
	if len(out.Tensors) != 48-10 {
		t.Errorf("%d tensors, want 38", len(out.Tensors))
	}
	for _, tn := range out.Tensors {
		if strings.Contains(tn.Name, "ffn_bundle") {
			continue
		}
		st, ok := src.Tensor(tn.Name)
		if !ok || !bytes.Equal(st.Data, tn.Data) || !equalInts(st.Shape, tn.Shape) {
			t.Errorf("%s not copied unchanged", tn.Name)
		}
	}
	for _, k := range []string{"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.model", "tokenizer.ggml.bos_token_id"} {
		if !reflect.DeepEqual(out.Meta[k], src.Meta[k]) {
			t.Errorf("%s not copied", k)
		}
	}
	want := map[string]any{"general.architecture": "llama", "llama.embedding_length": uint32(64), "llama.feed_forward_length": uint32(172),
		"llama.block_count": uint32(5), "llama.attention.head_count": uint32(8), "llama.attention.head_count_kv": uint32(4),
		"llama.rope.freq_base": float32(10000), "llama.attention.layer_norm_rms_epsilon": float32(1e-5), "llama.context_length": uint32(2048),
		"llama.rope.dimension_count": uint32(8), "llama.vocab_size": uint32(512)}
	for k, v := range want {
		if out.Meta[k] != v {
			t.Errorf("Meta[%s] = %#v, want %#v", k, out.Meta[k], v)
		}
	}
	p1, _ := src.LlamaParams()
	p2, err := out.LlamaParams()
	if err != nil || p1 != p2 {
		t.Errorf("params changed: %+v -> %+v (%v)", p1, p2, err)
	}
	wantErr(t, BundleFFN(out, filepath.Join(t.TempDir(), "again.gguf"), nil), "already FFN-bundled")
}

// bf16Copy writes a BF16 version of the stories GGUF (upper halves of the
// f32 values), to exercise the 2-byte transpose path.
func bf16Copy(t *testing.T, src *Model) *Model {
	t.Helper()
	specs := make([]TensorSpec, len(src.Tensors))
	for i, tn := range src.Tensors {
		specs[i] = TensorSpec{tn.Name, BF16, tn.Shape}
	}
	path := filepath.Join(t.TempDir(), "bf16.gguf")
	err := WriteGGUF(path, src.Meta, specs, func(i int, w io.Writer) error {
		d := src.Tensors[i].Data
		out := make([]byte, len(d)/2)
		for k := 0; k < len(d)/4; k++ {
			out[2*k], out[2*k+1] = d[4*k+2], d[4*k+3]
		}
		_, err := w.Write(out)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return openT(t, path)
}

func TestBundleFFNBF16(t *testing.T) {
	src := bf16Copy(t, openT(t, storiesPath(t, "stories260K.gguf")))
	out := bundleT(t, src)
	checkBundle(t, out, func(l int, part string) *Tensor {
		tn, _ := src.Tensor(fmt.Sprintf("blk.%d.%s.weight", l, part))
		return tn
	}, 5)
}

func TestBundleFFNFromLlama2C(t *testing.T) {
	fromGGUF := bundleT(t, openT(t, storiesPath(t, "stories260K.gguf")))
	fromBin := bundleT(t, openT(t, storiesPath(t, "stories260K.bin")))
	if len(fromBin.Tensors) != len(fromGGUF.Tensors)-1 {
		t.Errorf("%d tensors from .bin, %d from .gguf (want one fewer: no output.weight)", len(fromBin.Tensors), len(fromGGUF.Tensors))
	}
	for _, tn := range fromBin.Tensors {
		g, ok := fromGGUF.Tensor(tn.Name)
		if !ok || !bytes.Equal(g.Data, tn.Data) || !equalInts(g.Shape, tn.Shape) {
			t.Errorf("%s differs between .bin and .gguf bundles", tn.Name)
		}
	}
	if fromBin.Meta["llama.context_length"] != uint32(512) {
		t.Errorf("context length %v, want the .bin's 512", fromBin.Meta["llama.context_length"])
	}
}

// writeHF writes the GGUF model as a Hugging Face directory: HF names, q/k
// permuted to the HF rotate-half order, config.json from the GGUF keys.
// shards > 1 splits the tensors over that many files with an index.
func writeHF(t *testing.T, g *Model, dir string, shards int) {
	t.Helper()
	p, err := g.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": p.Dim, "intermediate_size": p.Hidden, "num_hidden_layers": p.Layers,
		"num_attention_heads": p.Heads, "num_key_value_heads": p.KVHeads, "vocab_size": p.Vocab,
		"max_position_embeddings": p.ContextLength, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"tie_word_embeddings": false, "torch_dtype": "float32", "rope_scaling": nil}
	cb, _ := json.Marshal(cfg)
	writeFile(t, filepath.Join(dir, "config.json"), cb)
	var specs []TensorSpec
	var data [][]byte
	for _, tn := range g.Tensors {
		name, ok := GGUFToHFName(tn.Name)
		if !ok {
			t.Fatalf("no HF name for %s", tn.Name)
		}
		d := tn.Data
		nHead := 0
		if strings.HasSuffix(tn.Name, "attn_q.weight") {
			nHead = p.Heads
		} else if strings.HasSuffix(tn.Name, "attn_k.weight") {
			nHead = p.KVHeads
		}
		if nHead > 0 {
			d = make([]byte, len(tn.Data))
			if err := PermuteQK(d, tn.Data, nHead, tn.RowBytes()); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(d, tn.Data) {
				t.Fatalf("%s: permutation changed nothing", tn.Name)
			}
		}
		specs = append(specs, TensorSpec{name, tn.DType, tn.Shape})
		data = append(data, d)
	}
	if shards <= 1 {
		if err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), specs, map[string]string{"format": "pt"}, copyFill(data)); err != nil {
			t.Fatal(err)
		}
		return
	}
	wm := map[string]string{}
	per := (len(specs) + shards - 1) / shards
	for s := 0; s < shards; s++ {
		lo, hi := s*per, min((s+1)*per, len(specs))
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		for _, sp := range specs[lo:hi] {
			wm[sp.Name] = file
		}
		if err := WriteSafetensors(filepath.Join(dir, file), specs[lo:hi], nil, copyFill(data[lo:hi])); err != nil {
			t.Fatal(err)
		}
	}
	ib, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": wm})
	writeFile(t, filepath.Join(dir, "model.safetensors.index.json"), ib)
}

func TestBundleFFNHFRoundTrip(t *testing.T) {
	g := openT(t, storiesPath(t, "stories260K.gguf"))
	fromGGUF := bundleT(t, g)
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			dir := t.TempDir()
			writeHF(t, g, dir, shards)
			hf := openT(t, dir)
			if len(hf.Tensors) != len(g.Tensors) {
				t.Fatalf("HF dir has %d tensors, want %d", len(hf.Tensors), len(g.Tensors))
			}
			if q, _ := hf.Tensor("model.layers.0.self_attn.q_proj.weight"); q == nil {
				t.Fatal("HF names not kept")
			}
			pg, _ := g.LlamaParams()
			ph, err := hf.LlamaParams()
			if err != nil {
				t.Fatal(err)
			}
			if ph.Dim != pg.Dim || ph.Hidden != pg.Hidden || ph.Heads != pg.Heads || ph.KVHeads != pg.KVHeads || ph.Vocab != pg.Vocab ||
				ph.Layers != pg.Layers || ph.TiedEmbeddings || float32(ph.NormEps) != float32(pg.NormEps) {
				t.Errorf("HF params %+v, GGUF params %+v", ph, pg)
			}
			out := bundleT(t, hf)
			if len(out.Tensors) != len(fromGGUF.Tensors) {
				t.Fatalf("%d tensors from HF, %d from GGUF", len(out.Tensors), len(fromGGUF.Tensors))
			}
			for i, tn := range out.Tensors {
				want := fromGGUF.Tensors[i]
				if tn.Name != want.Name || !equalInts(tn.Shape, want.Shape) || !bytes.Equal(tn.Data, want.Data) {
					t.Errorf("tensor %d: %s %v from HF, %s %v from GGUF (bytes equal: %v)", i, tn.Name, tn.Shape, want.Name, want.Shape,
						bytes.Equal(tn.Data, want.Data))
				}
			}
			for l := 0; l < 5; l++ {
				for _, part := range []string{"attn_q", "attn_k"} {
					name := fmt.Sprintf("blk.%d.%s.weight", l, part)
					a, _ := out.Tensor(name)
					b, _ := g.Tensor(name)
					if !bytes.Equal(a.Data, b.Data) {
						t.Errorf("%s not restored bit-identically", name)
					}
				}
			}
			for _, k := range []string{"llama.embedding_length", "llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon", "llama.context_length"} {
				if out.Meta[k] != fromGGUF.Meta[k] {
					t.Errorf("Meta[%s]: %v from HF, %v from GGUF", k, out.Meta[k], fromGGUF.Meta[k])
				}
			}
		})
	}
}

func TestBundleFFNRefusals(t *testing.T) {
	g := openT(t, storiesPath(t, "stories260K.gguf"))
	dir := t.TempDir()
	writeHF(t, g, dir, 1)
	cfg := readFile(t, filepath.Join(dir, "config.json"))
	writeFile(t, filepath.Join(dir, "config.json"), bytes.Replace(cfg, []byte(`"rope_scaling":null`), []byte(`"rope_scaling":{"rope_type":"yarn","factor":8}`), 1))
	hf := openT(t, dir)
	out := filepath.Join(t.TempDir(), "o.gguf")
	wantErr(t, BundleFFN(hf, out, nil), "config.json", `rope_scaling has type "yarn"`)

	// A GGUF with a layer's FFN missing.
	specs, data := []TensorSpec{}, [][]byte{}
	for _, tn := range g.Tensors {
		if tn.Name == "blk.2.ffn_up.weight" {
			continue
		}
		specs = append(specs, TensorSpec{tn.Name, tn.DType, tn.Shape})
		data = append(data, tn.Data)
	}
	path := filepath.Join(t.TempDir(), "noup.gguf")
	if err := WriteGGUF(path, g.Meta, specs, copyFill(data)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, BundleFFN(openT(t, path), out, nil), "layer 2: missing blk.2.ffn_up.weight")
	if names := dirEntries(t, filepath.Dir(out)); len(names) != 0 {
		t.Errorf("failed bundles left %v", names)
	}
}

func TestBundleFFNRopeScaling(t *testing.T) {
	g := openT(t, storiesPath(t, "stories260K.gguf"))
	for _, tt := range []struct {
		scaling string
		check   func(t *testing.T, out *Model)
	}{
		{`{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}`,
			func(t *testing.T, out *Model) {
				rf, ok := out.Tensor("rope_freqs.weight")
				if !ok || rf.DType != F32 || !equalInts(rf.Shape, []int{4}) || out.Tensors[0] != rf {
					t.Fatalf("rope_freqs.weight missing, wrong, or not first")
				}
				want := Llama3RopeFactors(8, 10000, 8, 1, 4, 8192)
				for i, w := range want {
					if got := math.Float32frombits(binary.LittleEndian.Uint32(rf.Data[4*i:])); got != w {
						t.Errorf("factor %d = %v, want %v", i, got, w)
					}
				}
			}},
		{`{"type":"linear","factor":2.0}`, func(t *testing.T, out *Model) {
			if out.Meta["llama.rope.scaling.type"] != "linear" || out.Meta["llama.rope.scaling.factor"] != float32(2) {
				t.Errorf("linear scaling keys: %v %v", out.Meta["llama.rope.scaling.type"], out.Meta["llama.rope.scaling.factor"])
			}
		}},
	} {
		dir := t.TempDir()
		writeHF(t, g, dir, 1)
		cfg := readFile(t, filepath.Join(dir, "config.json"))
		writeFile(t, filepath.Join(dir, "config.json"), bytes.Replace(cfg, []byte(`"rope_scaling":null`), []byte(`"rope_scaling":`+tt.scaling), 1))
		tt.check(t, bundleT(t, openT(t, dir)))
	}
}

// Llama 3.1 8B: head_dim 128, theta 500000, factor 8, low 1, high 4, original
// context 8192. Frequencies with wavelength under 2048 keep factor 1, those
// over 8192 get 8, and the ones between are interpolated (checked against the
// float64 formula).
func TestLlama3RopeFactors(t *testing.T) {
	f := Llama3RopeFactors(128, 500000, 8, 1, 4, 8192)
	if len(f) != 64 || f[0] != 1 || f[63] != 8 {
		t.Fatalf("len %d, first %v, last %v", len(f), f[0], f[63])
	}
	var mid int
	for i := range f {
		freq := math.Pow(500000, -float64(2*i)/128)
		wave := 2 * math.Pi / freq
		want := 1.0
		switch {
		case wave > 8192:
			want = 8
		case wave >= 2048:
			s := (8192/wave - 1) / 3
			want = 1 / ((1-s)/8 + s)
			mid++
		}
		if math.Abs(float64(f[i])-want) > 1e-5*want {
			t.Errorf("factor %d = %v, want %v", i, f[i], want)
		}
		if i > 0 && f[i] < f[i-1] {
			t.Errorf("factors decrease at %d", i)
		}
	}
	if mid == 0 {
		t.Error("no factor in the interpolated band")
	}
}

func TestTransposeBlock(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ d, h, j0, nb, s int }{{7, 13, 0, 13, 2}, {5, 70, 64, 6, 4}, {9, 10, 3, 5, 3}, {8, 64, 0, 64, 2}, {1, 3, 1, 2, 4}} {
		down := make([]byte, c.d*c.h*c.s)
		for i := range down {
			down[i] = byte(r.IntN(256))
		}
		dst := make([]byte, c.nb*c.d*c.s)
		transposeBlock(dst, down, c.d, c.h, c.j0, c.nb, c.s)
		for b := 0; b < c.nb; b++ {
			for i := 0; i < c.d; i++ {
				got := dst[(b*c.d+i)*c.s : (b*c.d+i+1)*c.s]
				want := down[(i*c.h+c.j0+b)*c.s : (i*c.h+c.j0+b+1)*c.s]
				if !bytes.Equal(got, want) {
					t.Fatalf("%+v: element [%d][%d] = %v, want %v", c, b, i, got, want)
				}
			}
		}
	}
}
