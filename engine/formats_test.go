package engine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"offload/corrector"
	"offload/device"
	"offload/internal/fixtures"
	"offload/pager"
)

// writeHFFromGGUF writes stories260K's GGUF tensors as a Hugging Face
// directory: HF names, config.json, and q/k rows permuted the way HF
// checkpoints store them (for rotate-half RoPE).
func writeHFFromGGUF(t *testing.T, src string) string {
	t.Helper()
	f, err := pager.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := f.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var specs []pager.TensorSpec
	var data [][]byte
	for _, tn := range f.Tensors {
		name, ok := pager.GGUFToHFName(tn.Name)
		if !ok {
			t.Fatalf("no HF name for %s", tn.Name)
		}
		b := tn.Data
		heads := 0
		switch {
		case strings.HasSuffix(tn.Name, "attn_q.weight"):
			heads = p.Heads
		case strings.HasSuffix(tn.Name, "attn_k.weight"):
			heads = p.KVHeads
		}
		if heads > 0 {
			out := make([]byte, len(b))
			if err := pager.PermuteQK(out, b, heads, tn.RowBytes()); err != nil {
				t.Fatal(err)
			}
			b = out
		}
		specs = append(specs, pager.TensorSpec{Name: name, DType: tn.DType, Shape: tn.Shape})
		data = append(data, b)
	}
	err = pager.WriteSafetensors(filepath.Join(dir, "model.safetensors"), specs, nil, func(i int, w io.Writer) error {
		_, err := w.Write(data[i])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	conf := map[string]any{"hidden_size": p.Dim, "intermediate_size": p.Hidden, "num_hidden_layers": p.Layers,
		"num_attention_heads": p.Heads, "num_key_value_heads": p.KVHeads, "vocab_size": p.Vocab,
		"max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true}
	b, _ := json.Marshal(conf)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSafetensorsRotateHalf proves the safetensors path and the rotate-half
// RoPE convention on the oracle's weights: the HF directory must give
// exactly the llama2.c tokens.
func TestSafetensorsRotateHalf(t *testing.T) {
	dir := writeHFFromGGUF(t, filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	seq := oracleTokens(t)
	for _, mem := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprintf("mem=%d", mem), func(t *testing.T) {
			cfg := corrector.DefaultConfig()
			cfg.Mode, cfg.MaxTokens = corrector.Dense, 60
			e := newTestEngine(t, dir, mem, Options{}, cfg)
			if e.Config().RopeStyle != device.RopeHalf {
				t.Fatalf("HF model should use rotate-half RoPE, got %v", e.Config().RopeStyle)
			}
			r, err := gen(e, seq[:5], cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, tok := range r.Tokens {
				if tok != seq[5+i] {
					t.Fatalf("token %d: got %d, oracle %d", 5+i, tok, seq[5+i])
				}
			}
			if len(r.Tokens) != 60 {
				t.Fatalf("got %d tokens", len(r.Tokens))
			}
		})
	}
}

// TestBundledModelSameTokens converts stories260K to neuron bundles: dense
// and sparse decoding must give the same tokens as the unconverted model.
func TestBundledModelSameTokens(t *testing.T) {
	src := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	f, err := pager.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "bundled.gguf")
	if err := pager.BundleFFN(f, dst, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	prompt := oracleTokens(t)[:5]
	for _, mode := range []corrector.Mode{corrector.Dense, corrector.Sparse, corrector.Sirius} {
		for _, mem := range []int64{0, 1 << 20} {
			var outs [2][]int
			for i, path := range []string{src, dst} {
				// The plain model packs Griffin rows on the host once per
				// sequence; the bundled one gathers them every step.
				opt := Options{}
				if i == 1 {
					opt.HostPack = -1
				}
				cfg := corrector.DefaultConfig()
				cfg.Mode, cfg.MaxTokens, cfg.Window = mode, 40, 4
				e := newTestEngine(t, path, mem, opt, cfg)
				if i == 1 && !e.M.Bundled {
					t.Fatal("converted model is not bundled")
				}
				r, err := gen(e, prompt, cfg)
				if err != nil {
					t.Fatal(err)
				}
				outs[i] = r.Tokens
			}
			if fmt.Sprint(outs[0]) != fmt.Sprint(outs[1]) {
				t.Fatalf("mode %v mem %d: bundled tokens differ\n plain   %v\n bundled %v", mode, mem, outs[0], outs[1])
			}
		}
	}
}

// TestScaledRoPE adds a rope_freqs.weight tensor (Llama 3.1's form) to
// stories260K: with every factor 1 the tokens must stay the oracle's; with
// the low frequencies divided by 8 they must change (the scaling is applied).
func TestScaledRoPE(t *testing.T) {
	src := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	f, err := pager.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seq := oracleTokens(t)
	var outs []string
	for _, scale := range []float32{1, 8} {
		specs := []pager.TensorSpec{{Name: "rope_freqs.weight", DType: pager.F32, Shape: []int{4}}}
		factors := make([]byte, 16)
		for i := 0; i < 4; i++ {
			v := float32(1)
			if i >= 2 {
				v = scale
			}
			binary.LittleEndian.PutUint32(factors[4*i:], math.Float32bits(v))
		}
		data := [][]byte{factors}
		for _, tn := range f.Tensors {
			specs = append(specs, pager.TensorSpec{Name: tn.Name, DType: tn.DType, Shape: tn.Shape})
			data = append(data, tn.Data)
		}
		meta := map[string]any{}
		for k, v := range f.Meta {
			if !strings.HasPrefix(k, "gguf.") {
				meta[k] = v
			}
		}
		dst := filepath.Join(t.TempDir(), "scaled.gguf")
		if err := pager.WriteGGUF(dst, meta, specs, func(i int, w io.Writer) error { _, err := w.Write(data[i]); return err }); err != nil {
			t.Fatal(err)
		}
		cfg := corrector.DefaultConfig()
		cfg.Mode, cfg.MaxTokens = corrector.Dense, 60
		e := newTestEngine(t, dst, 0, Options{}, cfg)
		if len(e.Config().RopeFreqs) != 4 {
			t.Fatalf("rope_freqs.weight not picked up: %v", e.Config().RopeFreqs)
		}
		r, err := gen(e, seq[:5], cfg)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, fmt.Sprint(r.Tokens))
	}
	if outs[0] != fmt.Sprint(seq[5:]) {
		t.Fatalf("factors of 1 changed the tokens:\n got %s\nwant %v", outs[0], seq[5:])
	}
	if outs[1] == outs[0] {
		t.Fatal("dividing low frequencies by 8 changed nothing: the factors are ignored")
	}
}
