package pager

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// exercise uses everything a caller might touch on a model that opened, so
// that the fuzzers check it is consistent, not just that Open returned.
func exercise(t *testing.T, m *Model, dir string) {
	var sum int64
	for _, tn := range m.Tensors {
		sum += int64(len(tn.Data))
		if want, err := tensorBytes(tn.DType, tn.Shape); tn.DType.Supported() && (err != nil || int64(len(tn.Data)) != want) {
			t.Fatalf("%s: %d bytes for %d elements of %s", tn.Name, len(tn.Data), tn.Elements(), tn.DType)
		}
		if tn.Rows() > 0 && len(tn.Data) > 0 {
			_ = tn.Row(tn.Rows() - 1)
			_ = tn.GatherRows(make([]byte, tn.RowBytes()), []int{0})
		}
		got, ok := m.Tensor(tn.Name)
		if !ok || got != tn {
			t.Fatalf("lookup of %s failed", tn.Name)
		}
	}
	if sum != m.Bytes() {
		t.Fatalf("Bytes() %d, sum %d", m.Bytes(), sum)
	}
	_ = m.CheckDTypes()
	if p, err := m.LlamaParams(); err == nil {
		for l := 0; l < min(p.Layers, 4); l++ {
			if bt, parts, err := m.FFNBundle(l, p.Dim, p.Hidden); err == nil && p.Hidden > 0 {
				_ = parts.Part(bt.Row(p.Hidden-1), PartDown)
			}
		}
	}
	if _, err := m.LlamaParams(); err == nil && m.Bytes() < 1<<20 {
		_ = BundleFFN(m, filepath.Join(dir, "b.gguf"), nil)
	}
}

// noSync turns off fsync in the writers for the duration of a fuzz target:
// BundleFFN runs on every input that opens, and fsync would dominate.
func noSync(f *testing.F) {
	syncWrites = false
	f.Cleanup(func() { syncWrites = true })
}

// fuzzBaseDir is where fuzz inputs are written. On this project's machines
// the disk-backed temp dir costs about 1 ms per file create/remove, which
// starves the coverage-guided fuzzer (its minimisation alone needs thousands
// of iterations), so a tmpfs (/dev/shm) is used when there is one. The file
// is still mapped and parsed exactly as a model file on disk would be.
func fuzzBaseDir(f *testing.F) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "pagerfuzz"); err == nil {
			f.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return f.TempDir()
}

// fuzzOpen writes the input (and any extra files) into a fresh directory
// under base, opens it and exercises the model. Fresh names matter: on ext4,
// truncating or renaming over an existing file forces a flush (auto_da_alloc)
// that made each iteration cost milliseconds.
func fuzzOpen(t *testing.T, base, name string, data []byte, extra map[string][]byte) {
	dir, err := os.MkdirTemp(base, "in")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for n, b := range extra {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Open(path)
	if err != nil {
		return
	}
	defer m.Close()
	exercise(t, m, dir)
}

// tinyGGUF is a small valid llama GGUF with every metadata kind, for seeds.
func tinyGGUF(t testing.TB) []byte {
	meta := map[string]any{
		"general.architecture": "llama", "llama.embedding_length": uint32(4), "llama.feed_forward_length": uint32(8),
		"llama.block_count": uint32(1), "llama.attention.head_count": uint32(2), "llama.context_length": uint32(16),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5), "tokenizer.ggml.tokens": []string{"a", "b"},
		"tokenizer.ggml.scores": []float32{0, -1}, "nest": []any{[]int32{1}}, "b": true, "f": 2.5, "i": int64(-1),
	}
	specs := []TensorSpec{
		{"token_embd.weight", F32, []int{2, 4}}, {"blk.0.attn_norm.weight", F32, []int{4}},
		{"blk.0.attn_q.weight", F16, []int{4, 4}}, {"blk.0.attn_k.weight", F16, []int{4, 4}},
		{"blk.0.ffn_gate.weight", BF16, []int{8, 4}}, {"blk.0.ffn_up.weight", BF16, []int{8, 4}},
		{"blk.0.ffn_down.weight", BF16, []int{4, 8}}, {"q", Q8_0, []int{1, 32}},
	}
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	err := WriteGGUF(path, meta, specs, func(i int, w io.Writer) error {
		n, _ := tensorBytes(specs[i].DType, specs[i].Shape)
		_, err := w.Write(make([]byte, n))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return readFile(t, path)
}

func FuzzGGUF(f *testing.F) {
	tiny := tinyGGUF(f)
	f.Add(tiny)
	f.Add(tiny[:len(tiny)/2])
	for _, off := range []int{8, 16, 24, 40} { // corrupt counts and the first key/type
		c := append([]byte(nil), tiny...)
		c[off+3] ^= 0x80
		f.Add(c)
	}
	if real, err := os.ReadFile(storiesPath(f, "stories260K.gguf")); err == nil {
		f.Add(real[:1024]) // truncated inside the tokenizer array
	}
	f.Add(buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{256, 2}, uint32(Q4_K), 0}}, 288))
	f.Add(buildGGUF(2, 1, 0, nil, []rawTensor{{"w", []uint64{1 << 62}, 0, 0}}, 0))
	f.Add(readFile(f, rawBundleGGUF(f, f.TempDir(), 32, 4, [3]DType{Q8_0, Q4_0, Q8_0}, nil, nil))) // raw-byte neuron bundles
	noSync(f)
	dir := fuzzBaseDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOpen(t, dir, "m.gguf", data, nil)
	})
}

func FuzzSafetensorsHeader(f *testing.F) {
	f.Add([]byte(`{"__metadata__":{"format":"pt"},"model.embed_tokens.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`), uint16(16), int64(0))
	f.Add([]byte(`{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"F16","shape":[],"data_offsets":[6,8]}}`), uint16(8), int64(0))
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`), uint16(24), int64(0))
	f.Add([]byte(`{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`), uint16(8), int64(0))
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`), uint16(4), int64(1<<60))
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`), uint16(4), int64(-3))
	f.Add([]byte(`[]`), uint16(0), int64(0))
	cfg := []byte(`{"hidden_size":2,"intermediate_size":2,"num_hidden_layers":1,"num_attention_heads":1,"vocab_size":2}`)
	noSync(f)
	dir := fuzzBaseDir(f)
	f.Fuzz(func(t *testing.T, hdr []byte, dataLen uint16, lenAdj int64) {
		file := binary.LittleEndian.AppendUint64(nil, uint64(int64(len(hdr))+lenAdj))
		file = append(append(file, hdr...), make([]byte, dataLen)...)
		fuzzOpen(t, dir, "model.safetensors", file, map[string][]byte{"config.json": cfg})
	})
}

// tinyLlama2C is a valid llama2.c checkpoint: dim 8, hidden 8, 1 layer,
// 2 heads, 1 kv head, vocab 4 (negative: separate classifier when sep), seq 2.
func tinyLlama2C(sep bool) []byte {
	vocab := int32(4)
	if sep {
		vocab = -4
	}
	var b []byte
	for _, v := range []int32{8, 8, 1, 2, 1, vocab, 2} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	floats := 4*8 + 8 + 64 + 32 + 32 + 64 + 8 + 64 + 64 + 64 + 8 + 2*2*2
	if sep {
		floats += 4 * 8
	}
	return append(b, make([]byte, 4*floats)...)
}

func FuzzLlama2C(f *testing.F) {
	f.Add(tinyLlama2C(false))
	f.Add(tinyLlama2C(true))
	f.Add(tinyLlama2C(false)[:100])
	if real, err := os.ReadFile(storiesPath(f, "stories260K.bin")); err == nil {
		f.Add(real[:28])
		f.Add(real[:512])
	}
	noSync(f)
	dir := fuzzBaseDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOpen(t, dir, "m.bin", data, nil)
	})
}
