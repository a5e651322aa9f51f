package pager

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawTensor is a tensor info for hand-built GGUF headers.
type rawTensor struct {
	name string
	dims []uint64 // ggml order: innermost first
	typ  uint32
	off  uint64
}

// buildGGUF hand-assembles a GGUF file so tests can put any value in any
// field. kvs is written as given (key, then the already-encoded type+value).
func buildGGUF(version uint32, nTensors, nKV uint64, kvs func(e *ggufEnc), tensors []rawTensor, data int) []byte {
	var e ggufEnc
	e.raw([]byte("GGUF"))
	e.u32(version)
	e.u64(nTensors)
	e.u64(nKV)
	if kvs != nil {
		kvs(&e)
	}
	for _, t := range tensors {
		e.str(t.name)
		e.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			e.u64(d)
		}
		e.u32(t.typ)
		e.u64(t.off)
	}
	e.raw(make([]byte, alignUp(int64(len(e.b)), 32)-int64(len(e.b))))
	e.raw(make([]byte, data))
	return e.b
}

func oneKV(key string, v any) func(e *ggufEnc) {
	return func(e *ggufEnc) {
		e.str(key)
		if err := e.value(v, 0); err != nil {
			panic(err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	real := readFile(t, storiesPath(t, "stories260K.gguf"))
	realBin := readFile(t, storiesPath(t, "stories260K.bin"))
	okTensor := []rawTensor{{"w", []uint64{4, 2}, uint32(F32), 0}}
	stHeader := func(h string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(b, h...), make([]byte, data)...)
	}
	hugeHeader := binary.LittleEndian.AppendUint64(nil, 1<<60)
	hugeHeader = append(hugeHeader, "{}"...)
	binHeader := func(h ...int32) []byte {
		var b []byte
		for _, v := range h {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
		return append(b, make([]byte, 64)...)
	}

	tests := []struct {
		name  string
		file  string // base name; decides safetensors vs other
		data  []byte
		frags []string
	}{
		{"empty", "m.gguf", []byte{}, []string{"empty file"}},
		{"gguf truncated in header", "m.gguf", real[:100], []string{"gguf", "m.gguf", "tensor count 48 cannot fit"}},
		{"gguf truncated in tokens", "m.gguf", real[:5000], []string{"unexpected end of file"}},
		{"gguf truncated in tensor infos", "m.gguf", real[:13000], []string{"tensor 28 name", "cannot fit"}},
		{"gguf truncated data", "m.gguf", real[:len(real)-1], []string{"lies outside the file", "truncated"}},
		{"gguf only header", "m.gguf", real[:14176], []string{"token_embd.weight", "outside the file"}},
		{"gguf version 1", "m.gguf", buildGGUF(1, 0, 0, nil, nil, 0), []string{"version 1 is not supported"}},
		{"gguf version 9", "m.gguf", buildGGUF(9, 0, 0, nil, nil, 0), []string{"unknown GGUF version 9"}},
		{"gguf big endian", "m.gguf", append([]byte("GGUF"), 0, 0, 0, 3), []string{"big-endian"}},
		{"gguf 2^60 tensors", "m.gguf", buildGGUF(3, 1<<60, 0, nil, nil, 0), []string{"tensor count 1152921504606846976 exceeds"}},
		{"gguf 2^60 kvs", "m.gguf", buildGGUF(3, 0, 1<<60, nil, nil, 0), []string{"metadata count"}},
		{"gguf tensors beyond file", "m.gguf", buildGGUF(3, 5000, 0, nil, nil, 0), []string{"cannot fit"}},
		{"gguf 2^60 string", "m.gguf", buildGGUF(3, 0, 1, func(e *ggufEnc) { e.u64(1 << 60); e.raw(make([]byte, 32)) }, nil, 0), []string{"string length"}},
		{"gguf 2^60 array", "m.gguf", buildGGUF(3, 0, 1, func(e *ggufEnc) {
			e.str("a")
			e.u32(ggufArray)
			e.u32(ggufUint32)
			e.u64(1 << 60)
		}, nil, 0), []string{`metadata "a"`, "array length"}},
		{"gguf unknown kv type", "m.gguf", buildGGUF(3, 0, 1, func(e *ggufEnc) { e.str("k"); e.u32(77); e.u8(0) }, nil, 0), []string{"unknown metadata type 77"}},
		{"gguf bad bool", "m.gguf", buildGGUF(3, 0, 1, func(e *ggufEnc) { e.str("k"); e.u32(ggufBool); e.u8(7) }, nil, 0), []string{"bool value 7"}},
		{"gguf nested arrays", "m.gguf", buildGGUF(3, 0, 1, func(e *ggufEnc) {
			e.str("k")
			e.u32(ggufArray)
			for i := 0; i < 6; i++ {
				e.u32(ggufArray)
				e.u64(1)
			}
			e.raw(make([]byte, 64))
		}, nil, 0), []string{"nested deeper"}},
		{"gguf duplicate key", "m.gguf", buildGGUF(3, 0, 2, func(e *ggufEnc) {
			oneKV("k", uint32(1))(e)
			oneKV("k", uint32(2))(e)
		}, nil, 0), []string{`duplicate metadata key "k"`}},
		{"gguf bad alignment", "m.gguf", buildGGUF(3, 0, 1, oneKV("general.alignment", uint32(3)), nil, 0), []string{"general.alignment"}},
		{"gguf dim 2^60", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{1 << 60, 2}, 0, 0}}, 64), []string{"tensor w", "too large"}},
		{"gguf dims overflow", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{1 << 40, 1 << 40}, 0, 0}}, 64), []string{"tensor w", "too large"}},
		{"gguf n_dims 5", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{1, 1, 1, 1, 1}, 0, 0}}, 64), []string{"n_dims 5"}},
		{"gguf unknown dtype", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{4}, 200, 0}}, 64), []string{"tensor w", "unknown or unsupported ggml type 200"}},
		{"gguf removed dtype", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{32}, 4, 0}}, 64), []string{"ggml type 4 (Q4_2)"}},
		{"gguf partial quant block", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{100}, uint32(Q4_K), 0}}, 1024), []string{"not a multiple of the Q4_K block size 256"}},
		{"gguf misaligned offset", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{4}, 0, 4}}, 64), []string{"not a multiple of the alignment"}},
		{"gguf tensor past end", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{4, 2}, 0, 0}}, 16), []string{"tensor w", "outside the file"}},
		{"gguf offset 2^63", "m.gguf", buildGGUF(3, 1, 0, nil, []rawTensor{{"w", []uint64{4}, 0, 1 << 63}}, 16), []string{"outside the file"}},
		{"gguf duplicate tensor", "m.gguf", buildGGUF(3, 2, 0, nil, append(okTensor, okTensor...), 64), []string{`duplicate tensor name "w"`}},

		{"safetensors 2^60 header", "model.safetensors", hugeHeader, []string{"model.safetensors", "header length 1152921504606846976 exceeds the limit"}},
		{"safetensors short", "model.safetensors", []byte{1, 2, 3}, []string{"shorter than the 8-byte header length"}},
		{"safetensors header past end", "model.safetensors", stHeader(`{}`, 0)[:9], []string{"exceeds the 1 bytes after it"}},
		{"safetensors bad json", "model.safetensors", stHeader(`{"a":`, 0), []string{"header JSON"}},
		{"safetensors unknown dtype", "model.safetensors", stHeader(`{"w":{"dtype":"XYZ","shape":[2],"data_offsets":[0,8]}}`, 8), []string{"tensor w has dtype XYZ", "supported: F32, F16, BF16"}},
		{"safetensors fp8 dtype", "model.safetensors", stHeader(`{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}`, 8), []string{"dtype F8_E4M3"}},
		{"safetensors shape mismatch", "model.safetensors", stHeader(`{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 32), []string{"shape [2 3] of F32 needs 24 bytes", "hold 20"}},
		{"safetensors offsets past end", "model.safetensors", stHeader(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), []string{"outside the 4 data bytes"}},
		{"safetensors reversed offsets", "model.safetensors", stHeader(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, 8), []string{"data_offsets [8, 0] begin after they end"}},
		{"safetensors negative dim", "model.safetensors", stHeader(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 8), []string{"dim 0 is -1"}},
		{"safetensors huge dims", "model.safetensors", stHeader(`{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,0]}}`, 8), []string{"too large"}},
		{"safetensors bad metadata", "model.safetensors", stHeader(`{"__metadata__":{"a":1}}`, 0), []string{"__metadata__"}},
		{"safetensors unknown field", "model.safetensors", stHeader(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4), []string{"unknown field"}},

		{"llama2c truncated", "m.bin", realBin[:len(realBin)-10], []string{"llama2c", "m.bin", "file is 1056530 bytes but the header", "implies 1056540"}},
		{"llama2c short", "m.bin", realBin[:20], []string{"shorter than the 28-byte header"}},
		{"llama2c absurd header", "m.bin", binHeader(1<<30, 1, 1, 1, 1, 1, 1), []string{"implausible header dim=1073741824"}},
		{"llama2c min vocab", "m.bin", binHeader(64, 64, 1, 8, 8, -1<<31, 1), []string{"implausible header"}},
		{"llama2c heads", "m.bin", binHeader(64, 64, 1, 6, 3, 10, 1), []string{"not a multiple of n_heads 6"}},
		{"llama2c kv heads", "m.bin", binHeader(64, 64, 1, 8, 3, 10, 1), []string{"not a multiple of n_kv_heads 3"}},
		{"llama2c v1 export", "m.bin", binHeader(0x616b3432, 1), []string{"magic ak42"}},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(dir, fmt.Sprint(i))
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(tt.file, ".safetensors") {
				writeFile(t, filepath.Join(sub, "config.json"), []byte(`{"hidden_size": 8}`))
			}
			path := filepath.Join(sub, tt.file)
			writeFile(t, path, tt.data)
			m, err := Open(path)
			if err == nil {
				m.Close()
			}
			t.Log(err)
			wantErr(t, err, append([]string{path}, tt.frags...)...)
		})
	}
}

// TestQuantizedTypes: a quantized GGUF opens, sizes its tensors by block,
// and passes CheckDTypes; a type the runtime does not compute with is
// refused naming the tensor and the type.
func TestQuantizedTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "X.gguf")
	writeFile(t, path, buildGGUF(3, 2, 0, nil, []rawTensor{
		{"blk.0.attn_norm.weight", []uint64{256}, uint32(F32), 0},
		{"blk.0.ffn_up.weight", []uint64{256, 2}, uint32(Q4_K), 1024},
	}, 1024+2*144))
	m := openT(t, path)
	up, _ := m.Tensor("blk.0.ffn_up.weight")
	if up.DType != Q4_K || len(up.Data) != 2*144 || up.Rows() != 2 || len(up.Row(1)) != 144 {
		t.Fatalf("Q4_K tensor: %s %v %d bytes", up.DType, up.Shape, len(up.Data))
	}
	if err := m.CheckDTypes(); err != nil {
		t.Errorf("CheckDTypes() = %v for a Q4_K tensor", err)
	}
	iq := filepath.Join(t.TempDir(), "IQ.gguf")
	writeFile(t, iq, buildGGUF(3, 2, 0, nil, []rawTensor{
		{"blk.0.attn_norm.weight", []uint64{256}, uint32(F32), 0},
		{"blk.0.ffn_up.weight", []uint64{256, 2}, uint32(IQ2_XS), 1024},
	}, 1024+2*74))
	err := openT(t, iq).CheckDTypes()
	want := fmt.Sprintf("gguf %s: tensor blk.0.ffn_up.weight: dtype not supported yet: IQ2_XS (supported: %s)", iq, supportedNames)
	if err == nil || err.Error() != want {
		t.Errorf("CheckDTypes() = %v\nwant %s", err, want)
	}
}

func TestHFConfigErrors(t *testing.T) {
	st := func(dir string) {
		h := `{"model.embed_tokens.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		writeFile(t, filepath.Join(dir, "model.safetensors"), append(append(b, h...), make([]byte, 16)...))
	}
	t.Run("dir without config.json", func(t *testing.T) {
		dir := t.TempDir()
		st(dir)
		_, err := Open(dir)
		wantErr(t, err, "missing "+filepath.Join(dir, "config.json"))
	})
	t.Run("file without config.json", func(t *testing.T) {
		dir := t.TempDir()
		st(dir)
		_, err := Open(filepath.Join(dir, "model.safetensors"))
		wantErr(t, err, "missing "+filepath.Join(dir, "config.json"))
	})
	t.Run("config not JSON", func(t *testing.T) {
		dir := t.TempDir()
		st(dir)
		writeFile(t, filepath.Join(dir, "config.json"), []byte("{hidden"))
		_, err := Open(dir)
		wantErr(t, err, "parse "+filepath.Join(dir, "config.json"))
	})
	t.Run("dir without weights", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "config.json"), []byte("{}"))
		_, err := Open(dir)
		wantErr(t, err, "no model.safetensors or model.safetensors.index.json")
	})
	t.Run("index escapes dir", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "config.json"), []byte("{}"))
		writeFile(t, filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"weight_map":{"w":"../x.safetensors"}}`))
		_, err := Open(dir)
		wantErr(t, err, "not a file name in the model directory")
	})
	t.Run("index names wrong shard", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "config.json"), []byte("{}"))
		st(dir)
		writeFile(t, filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"weight_map":{"lm_head.weight":"model.safetensors"}}`))
		if err := os.Rename(filepath.Join(dir, "model.safetensors"), filepath.Join(dir, "model-1.safetensors")); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"weight_map":{"lm_head.weight":"model-1.safetensors"}}`))
		_, err := Open(dir)
		wantErr(t, err, "weight_map lists lm_head.weight in model-1.safetensors, but that shard does not hold it")
	})
	missing := []struct{ cfg, key string }{
		{`{"intermediate_size":4,"num_hidden_layers":1,"num_attention_heads":1}`, "hidden_size is missing"},
		{`{"hidden_size":2,"num_hidden_layers":1,"num_attention_heads":1}`, "intermediate_size is missing"},
		{`{"hidden_size":2.5,"intermediate_size":4,"num_hidden_layers":1,"num_attention_heads":1}`, "hidden_size is 2.5, not an integer"},
		{`{"hidden_size":"2","intermediate_size":4,"num_hidden_layers":1,"num_attention_heads":1}`, "hidden_size has type string"},
		{`{"model_type":"gpt2","hidden_size":2}`, `model_type is "gpt2"`},
	}
	for _, tt := range missing {
		t.Run(tt.key, func(t *testing.T) {
			dir := t.TempDir()
			st(dir)
			writeFile(t, filepath.Join(dir, "config.json"), []byte(tt.cfg))
			m := openT(t, dir)
			_, err := m.LlamaParams()
			wantErr(t, err, filepath.Join(dir, "config.json"), tt.key)
			wantErr(t, BundleFFN(m, filepath.Join(dir, "out.gguf"), nil), tt.key)
		})
	}
}

func TestGGUFMissingKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.gguf")
	writeFile(t, path, buildGGUF(3, 0, 2, func(e *ggufEnc) {
		oneKV("general.architecture", "llama")(e)
		oneKV("llama.embedding_length", uint32(8))(e)
	}, nil, 0))
	m := openT(t, path)
	_, err := m.LlamaParams()
	wantErr(t, err, path, "llama.feed_forward_length is missing")
}
