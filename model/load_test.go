package model_test

import (
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"offload/device"
	"offload/internal/fixtures"
	"offload/model"
	"offload/pager"
	"offload/synth"
)

func TestOpenStories(t *testing.T) {
	dir := fixtures.Stories(t)
	for _, name := range []string{"stories260K.gguf", "stories260K.bin"} {
		m, err := model.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		c := m.Config
		if c.Dim != 64 || c.Hidden != 172 || c.Layers != 5 || c.Heads != 8 || c.KVHeads != 4 || c.HeadDim != 8 || c.Vocab != 512 ||
			c.RopeStyle != device.RopeInterleaved || c.RopeFreqs != nil || c.NormEps != 1e-5 {
			t.Fatalf("%s: config %+v", name, c)
		}
		m.Close()
	}
}

// hfWithScaling writes a tiny synthetic HF model whose config.json has the
// given rope_scaling.
func hfWithScaling(t *testing.T, scaling any) string {
	s, _ := model.LookupShape("llama-3-8b")
	s.Dim, s.Hidden, s.Heads, s.KVHeads, s.HeadDim = 64, 128, 4, 2, 16
	dir := t.TempDir()
	if err := synth.Write(dir, synth.Options{Shape: s, Layers: 1, Vocab: 32, DType: "f32", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config.json")
	b, _ := os.ReadFile(p)
	var conf map[string]any
	json.Unmarshal(b, &conf)
	conf["rope_scaling"] = scaling
	b, _ = json.Marshal(conf)
	os.WriteFile(p, b, 0o644)
	return dir
}

func TestRopeScaling(t *testing.T) {
	llama3 := map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192.0}
	m, err := model.Open(hfWithScaling(t, llama3))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fac := pager.Llama3RopeFactors(16, 500000, 8, 1, 4, 8192)
	if len(m.Config.RopeFreqs) != 8 {
		t.Fatalf("RopeFreqs %v", m.Config.RopeFreqs)
	}
	for i, f := range m.Config.RopeFreqs {
		want := math.Pow(500000, -float64(2*i)/16) / float64(fac[i])
		if math.Abs(float64(f)-want) > 1e-6*want {
			t.Fatalf("freq %d: %g, want %g", i, f, want)
		}
	}
	if m.Config.RopeStyle != device.RopeHalf {
		t.Fatal("HF model should use rotate-half RoPE")
	}
	if _, err := model.Open(hfWithScaling(t, map[string]any{"type": "yarn", "factor": 4.0})); err == nil || !strings.Contains(err.Error(), "yarn") {
		t.Fatalf("unsupported scaling should be refused by name, got %v", err)
	}
	m2, err := model.Open(hfWithScaling(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Config.RopeFreqs != nil {
		t.Fatal("null rope_scaling should give plain RoPE")
	}
}

func TestMissingTensor(t *testing.T) {
	dir := hfWithScaling(t, nil)
	// Drop a tensor by renaming it in a rewritten file.
	f, err := pager.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var specs []pager.TensorSpec
	var data [][]byte
	for _, tn := range f.Tensors {
		if strings.Contains(tn.Name, "up_proj") {
			continue
		}
		specs = append(specs, pager.TensorSpec{Name: tn.Name, DType: tn.DType, Shape: tn.Shape})
		data = append(data, append([]byte(nil), tn.Data...))
	}
	f.Close()
	if err := pager.WriteSafetensors(filepath.Join(dir, "model.safetensors"), specs, nil, func(i int, w io.Writer) error { _, err := w.Write(data[i]); return err }); err != nil {
		t.Fatal(err)
	}
	_, err = model.Open(dir)
	if err == nil || !strings.Contains(err.Error(), "missing tensor blk.0.ffn_up.weight") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want a missing-tensor error naming the file, got %v", err)
	}
}
