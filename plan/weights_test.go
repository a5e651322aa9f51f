package plan

import (
	"math"
	"path/filepath"
	"testing"

	"offload/convert"
	"offload/internal/fixtures"
	"offload/model"
	"offload/pager"
)

func quantFixture(t *testing.T, name string) string {
	return filepath.Join(fixtures.Shared(t), "models", "stories260K-q", name)
}

func openModel(t *testing.T, path string) *model.Model {
	t.Helper()
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestMixWeightsMatchFile: the sizes plan gives a llama.cpp file type (the
// per-tensor mix, bundled as convert writes it) are those of the file
// `offload convert --type` writes, block for block.
func TestMixWeightsMatchFile(t *testing.T) {
	src, err := pager.Open(quantFixture(t, "stories260K-pad256-F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, ft := range []string{"q4_k_m", "q4_k_s", "q3_k_m", "q2_k", "q8_0", "q6_k", "q4_0"} {
		t.Run(ft, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m.gguf")
			if _, err := convert.Convert(src, out, convert.Options{Type: ft, Bundle: true}); err != nil {
				t.Fatal(err)
			}
			m := openModel(t, out)
			file := FileWeights(m)
			mix, err := MixWeights(m.Config, ft)
			if err != nil {
				t.Fatal(err)
			}
			if file.Embed != mix.Embed || file.Head != mix.Head || file.Norms != mix.Norms || file.Total != mix.Total || file.EmbedRow != mix.EmbedRow {
				t.Errorf("file: embed %d head %d norms %d total %v row %d; mix: %d %d %d %v %d", file.Embed, file.Head, file.Norms, file.Total, file.EmbedRow,
					mix.Embed, mix.Head, mix.Norms, mix.Total, mix.EmbedRow)
			}
			for l := range file.Layers {
				if file.Layers[l] != mix.Layers[l] {
					t.Errorf("layer %d: file %+v, mix %+v", l, file.Layers[l], mix.Layers[l])
				}
			}
			if math.Abs(mix.BytesPerWeight-file.BytesPerWeight) > 1e-12 {
				t.Errorf("bytes per weight: mix %v, file %v", mix.BytesPerWeight, file.BytesPerWeight)
			}
		})
	}
}

// TestFileWeightsUnbundled sizes llama.cpp's own Q4_K_M file: a full pass
// moves the stored FFN; a sparse neuron moves its gate and up rows and its
// down column dequantized to f32 (the engine cannot cut a quantized column).
func TestFileWeightsUnbundled(t *testing.T) {
	m := openModel(t, quantFixture(t, "stories260K-pad256-Q4_K_M.gguf"))
	w := FileWeights(m)
	d, h := m.Config.Dim, m.Config.Hidden
	for l, lw := range w.Layers {
		L := m.Layers[l]
		stored := len(L.Gate.Data) + len(L.Up.Data) + len(L.Down.Data)
		if lw.NeuronStored*float64(h) != float64(stored) {
			t.Errorf("layer %d: stored per neuron %v x %d != %d", l, lw.NeuronStored, h, stored)
		}
		if want := float64(L.Gate.RowBytes() + L.Up.RowBytes() + 4*d); lw.Neuron != want {
			t.Errorf("layer %d: neuron %v, want %v", l, lw.Neuron, want)
		}
		if lw.Attn != int64(len(L.Q.Data)+len(L.K.Data)+len(L.V.Data)+len(L.O.Data)) {
			t.Errorf("layer %d: attn %d", l, lw.Attn)
		}
	}
	if w.Total != float64(m.File.Bytes()) {
		t.Errorf("total %v, file %d", w.Total, m.File.Bytes())
	}
}

// TestParseWeights: file types take their mixes (q4_k is Q4_K_M, as in
// convert), other names a flat size.
func TestParseWeights(t *testing.T) {
	cfg := model.Shapes[0].Config
	for _, s := range model.Shapes {
		if s.Name == "llama-3-70b" {
			cfg = s.Config
		}
	}
	a, err := ParseWeights(cfg, "q4_k")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ParseWeights(cfg, "Q4_K_M")
	if a.Total != b.Total || a.Name != "q4_k_m" {
		t.Errorf("q4_k %v (%s), q4_k_m %v", a.Total, a.Name, b.Total)
	}
	// A 70B Q4_K_M is about 42.5 GB in llama.cpp's files; ours bundles the
	// down columns at the same types, so it is the same size.
	if a.Total < 42e9 || a.Total > 43.5e9 {
		t.Errorf("llama-3-70b q4_k_m: %.4g bytes", a.Total)
	}
	bf, err := ParseWeights(cfg, "bf16")
	if err != nil || bf.BytesPerWeight != 2 || bf.Total != 2*float64(cfg.Params()) {
		t.Errorf("bf16: %+v %v", bf.BytesPerWeight, err)
	}
	if _, err := ParseWeights(cfg, "q4_k_x"); err == nil {
		t.Error("q4_k_x accepted")
	}
}
