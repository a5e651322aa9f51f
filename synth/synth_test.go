package synth

import (
	"testing"

	"offload/model"
)

// TestWriteOpens writes a tiny-vocab, 2-layer llama-2-7b-shaped model and
// checks that model.Open accepts it with the shape's dimensions.
func TestWriteOpens(t *testing.T) {
	s, err := model.LookupShape("llama-2-7b")
	if err != nil {
		t.Fatal(err)
	}
	s.Dim, s.Hidden, s.Heads, s.KVHeads, s.HeadDim = 256, 688, 4, 2, 64
	dir := t.TempDir()
	var last int64
	if err := Write(dir, Options{Shape: s, Layers: 2, Vocab: 100, DType: "bf16", Seed: 1, Progress: func(d, tot int64) { last = d }}); err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := m.Config
	if c.Dim != 256 || c.Hidden != 688 || c.Layers != 2 || c.Vocab != 100 || c.Heads != 4 || c.KVHeads != 2 {
		t.Fatalf("config %+v", c)
	}
	if last != m.File.Bytes() {
		t.Fatalf("progress ended at %d, file holds %d tensor bytes", last, m.File.Bytes())
	}
	// Same seed, same bytes.
	dir2 := t.TempDir()
	if err := Write(dir2, Options{Shape: s, Layers: 2, Vocab: 100, DType: "bf16", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	m2, err := model.Open(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	a, b := m.Layers[1].Down.Data, m2.Layers[1].Down.Data
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("byte %d differs between two writes with the same seed", i)
		}
	}
}
