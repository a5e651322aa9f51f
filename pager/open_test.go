package pager

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

func TestDTypes(t *testing.T) {
	tests := []struct {
		d               DType
		name            string
		size            int
		known, supports bool
		rowBytes256     int64
	}{
		{F32, "F32", 4, true, true, 1024},
		{F16, "F16", 2, true, true, 512},
		{BF16, "BF16", 2, true, true, 512},
		{Q8_0, "Q8_0", 0, true, true, 8 * 34},
		{Q4_K, "Q4_K", 0, true, true, 144},
		{Q6_K, "Q6_K", 0, true, true, 210},
		{IQ2_XS, "IQ2_XS", 0, true, false, 74},
		{I32, "I32", 4, true, false, 1024},
		{Q4_2, "Q4_2", 0, false, false, -1},
		{DType(200), "dtype(200)", 0, false, false, -1},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.name {
			t.Errorf("%d.String() = %q, want %q", tt.d, got, tt.name)
		}
		if got := tt.d.Size(); got != tt.size {
			t.Errorf("%s.Size() = %d, want %d", tt.d, got, tt.size)
		}
		if tt.d.Known() != tt.known || tt.d.Supported() != tt.supports {
			t.Errorf("%s: Known %v Supported %v, want %v %v", tt.d, tt.d.Known(), tt.d.Supported(), tt.known, tt.supports)
		}
		rb, err := tt.d.RowBytes(256)
		if tt.rowBytes256 < 0 {
			if err == nil {
				t.Errorf("%s.RowBytes succeeded for an unsizable type", tt.d)
			}
		} else if err != nil || rb != tt.rowBytes256 {
			t.Errorf("%s.RowBytes(256) = %d, %v; want %d", tt.d, rb, err, tt.rowBytes256)
		}
	}
	if _, err := Q4_K.RowBytes(100); err == nil {
		t.Error("Q4_K.RowBytes(100) should fail: not a multiple of 256")
	}
	if _, err := tensorBytes(F32, []int{1 << 30, 1 << 30, 1 << 30}); err == nil {
		t.Error("tensorBytes of 2^90 elements should overflow")
	}
}

func TestOpenGGUF(t *testing.T) {
	m := openT(t, storiesPath(t, "stories260K.gguf"))
	if m.Format != "gguf" || len(m.Tensors) != 48 {
		t.Fatalf("format %s, %d tensors; want gguf, 48", m.Format, len(m.Tensors))
	}
	if v := m.Meta["gguf.version"]; v != uint32(3) {
		t.Errorf("gguf.version = %v (%T)", v, v)
	}
	if v := m.Meta["gguf.alignment"]; v != uint32(32) {
		t.Errorf("gguf.alignment = %v (%T)", v, v)
	}
	if v := m.Meta["general.architecture"]; v != "llama" {
		t.Errorf("general.architecture = %v", v)
	}
	if v := m.Meta["llama.attention.layer_norm_rms_epsilon"]; v != float32(1e-5) {
		t.Errorf("eps = %v (%T)", v, v)
	}
	toks, ok := m.Meta["tokenizer.ggml.tokens"].([]string)
	if !ok || len(toks) != 512 || toks[1] != "<s>" {
		t.Errorf("tokens: %T len %d", m.Meta["tokenizer.ggml.tokens"], len(toks))
	}
	if s, ok := m.Meta["tokenizer.ggml.scores"].([]float32); !ok || len(s) != 512 || s[511] != -252 {
		t.Errorf("scores: %T", m.Meta["tokenizer.ggml.scores"])
	}
	if tt, ok := m.Meta["tokenizer.ggml.token_type"].([]int32); !ok || len(tt) != 512 {
		t.Errorf("token_type: %T", m.Meta["tokenizer.ggml.token_type"])
	}
	shapes := map[string][]int{
		"token_embd.weight":     {512, 64},
		"output_norm.weight":    {64},
		"blk.0.attn_k.weight":   {32, 64},
		"blk.4.ffn_gate.weight": {172, 64},
		"blk.4.ffn_down.weight": {64, 172},
	}
	for name, shape := range shapes {
		tn, ok := m.Tensor(name)
		if !ok {
			t.Fatalf("missing %s", name)
		}
		if !equalInts(tn.Shape, shape) || tn.DType != F32 || int64(len(tn.Data)) != tn.Elements()*4 {
			t.Errorf("%s: %s %v %d bytes", name, tn.DType, tn.Shape, len(tn.Data))
		}
	}
	// SOURCE.md: data starts at 14176; the first tensor is token_embd.
	raw := readFile(t, storiesPath(t, "stories260K.gguf"))
	first := m.Tensors[0]
	if first.Name != "token_embd.weight" || !bytes.Equal(first.Data, raw[14176:14176+len(first.Data)]) {
		t.Errorf("first tensor %s does not start at offset 14176", first.Name)
	}
	if m.Bytes() != 1171200 {
		t.Errorf("Bytes() = %d", m.Bytes())
	}
	if err := m.CheckDTypes(); err != nil {
		t.Error(err)
	}
	p, err := m.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	want := LlamaParams{Dim: 64, Hidden: 172, Layers: 5, Heads: 8, KVHeads: 4, HeadDim: 8, Vocab: 512, ContextLength: 2048,
		RopeTheta: 10000, NormEps: float64(float32(1e-5))}
	if p != want {
		t.Errorf("LlamaParams = %+v, want %+v", p, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The .bin was built from the GGUF's bytes (SOURCE.md): every tensor must match.
func TestOpenLlama2CMatchesGGUF(t *testing.T) {
	g := openT(t, storiesPath(t, "stories260K.gguf"))
	b := openT(t, storiesPath(t, "stories260K.bin"))
	if b.Format != "llama2c" || len(b.Tensors) != 47 {
		t.Fatalf("format %s, %d tensors; want llama2c, 47 (no output.weight: shared classifier)", b.Format, len(b.Tensors))
	}
	for k, want := range map[string]any{"dim": 64, "hidden_dim": 172, "n_layers": 5, "n_heads": 8, "n_kv_heads": 4,
		"vocab_size": 512, "seq_len": 512, "shared_classifier": true} {
		if b.Meta[k] != want {
			t.Errorf("Meta[%s] = %v, want %v", k, b.Meta[k], want)
		}
	}
	if _, ok := b.Tensor("output.weight"); ok {
		t.Error("shared classifier must not expose output.weight")
	}
	for _, bt := range b.Tensors {
		gt, ok := g.Tensor(bt.Name)
		if !ok {
			t.Fatalf("gguf has no %s", bt.Name)
		}
		if !equalInts(gt.Shape, bt.Shape) || !bytes.Equal(gt.Data, bt.Data) {
			t.Errorf("%s differs: gguf %v, bin %v", bt.Name, gt.Shape, bt.Shape)
		}
	}
	// File order = offsets increase.
	for i := 1; i < len(b.Tensors); i++ {
		if b.Tensors[i].off <= b.Tensors[i-1].off {
			t.Fatalf("tensors not in file order at %s", b.Tensors[i].Name)
		}
	}
	p, err := b.LlamaParams()
	if err != nil {
		t.Fatal(err)
	}
	if p.ContextLength != 512 || !p.TiedEmbeddings || p.NormEps != 1e-5 || p.HeadDim != 8 {
		t.Errorf("LlamaParams = %+v", p)
	}
}

func TestLlama2CSeparateClassifier(t *testing.T) {
	raw := readFile(t, storiesPath(t, "stories260K.bin"))
	wcls := make([]byte, 512*64*4)
	for i := range wcls {
		wcls[i] = byte(i * 7)
	}
	mod := append(append([]byte(nil), raw...), wcls...)
	binary.LittleEndian.PutUint32(mod[20:], uint32(0xFFFFFFFF-512+1)) // vocab_size = -512
	path := t.TempDir() + "/sep.bin"
	writeFile(t, path, mod)
	m := openT(t, path)
	out, ok := m.Tensor("output.weight")
	if !ok || !bytes.Equal(out.Data, wcls) || !equalInts(out.Shape, []int{512, 64}) {
		t.Fatalf("output.weight missing or wrong (ok=%v)", ok)
	}
	if m.Meta["shared_classifier"] != false || m.Meta["vocab_size"] != 512 {
		t.Errorf("meta %v", m.Meta)
	}
}

func TestTensorAccessors(t *testing.T) {
	m := openT(t, storiesPath(t, "stories260K.gguf"))
	gate, _ := m.Tensor("blk.1.ffn_gate.weight")
	if gate.Rows() != 172 || gate.Cols() != 64 || gate.Elements() != 172*64 || gate.RowBytes() != 256 {
		t.Fatalf("rows %d cols %d elems %d", gate.Rows(), gate.Cols(), gate.Elements())
	}
	if r := gate.Row(3); len(r) != 256 || &r[0] != &gate.Data[3*256] || cap(r) != 256 {
		t.Error("Row(3) is not the view of bytes [768, 1024)")
	}
	norm, _ := m.Tensor("output_norm.weight")
	if norm.Rows() != 1 || norm.Cols() != 64 || len(norm.Row(0)) != 256 {
		t.Error("1-D tensor must be one row")
	}
	got := make([]byte, 3*256)
	if err := gate.GatherRows(got, []int{5, 0, 171}); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte(nil), gate.Row(5)...), gate.Row(0)...), gate.Row(171)...)
	if !bytes.Equal(got, want) {
		t.Error("GatherRows copied the wrong rows")
	}
	wantErr(t, gate.GatherRows(got, []int{1, 2, 172}), "row 172 out of range")
	wantErr(t, gate.GatherRows(got[:10], []int{1}), "needs 256 bytes")
	v := math.Float32frombits(binary.LittleEndian.Uint32(gate.Row(0)))
	if math.IsNaN(float64(v)) {
		t.Error("weight is NaN")
	}
	for _, adv := range []int{AdviseWillNeed, AdviseSequential, AdviseRandom, AdviseNormal, AdviseDontNeed} {
		if err := gate.Advise(adv); err != nil {
			t.Errorf("Advise(%d): %v", adv, err)
		}
	}
	if !bytes.Equal(got[:256], gate.Row(5)) { // still readable after DONTNEED (re-read from the file)
		t.Error("data changed after madvise")
	}
}

func BenchmarkOpenGGUF(b *testing.B) {
	path := storiesPath(b, "stories260K.gguf")
	b.ReportAllocs()
	var bytes int64
	for b.Loop() {
		m, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		bytes = m.Bytes()
		_ = m.Close()
	}
	b.ReportMetric(float64(bytes), "tensor-bytes")
}
