package pager

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWriteSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), []byte(`{"hidden_size": 64, "name": "x", "nested": {"a": [1, 2]}}`))
	specs := []TensorSpec{
		{"z.first", F32, []int{3, 2}},
		{"a.second", BF16, []int{5}},
		{"m.third", F16, []int{2, 2, 2}},
		{"scalar", F32, nil},
	}
	data := [][]byte{make([]byte, 24), make([]byte, 10), make([]byte, 16), {1, 2, 3, 4}}
	for i, d := range data {
		for j := range d {
			d[j] = byte(i*31 + j)
		}
	}
	path := filepath.Join(dir, "model.safetensors")
	meta := map[string]string{"format": "pt", "note": `quote " and \ slash`}
	if err := WriteSafetensors(path, specs, meta, copyFill(data)); err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, path)
	if n := int(raw[0]); (8+n)%8 != 0 {
		t.Errorf("data section starts at %d, not 8-aligned", 8+n)
	}
	for _, m := range []*Model{openT(t, path), openT(t, dir)} {
		if m.Format != "safetensors" || len(m.Tensors) != len(specs) {
			t.Fatalf("%s: %d tensors", m.Format, len(m.Tensors))
		}
		for i, s := range specs {
			got := m.Tensors[i] // file order = spec order
			wantShape := s.Shape
			if wantShape == nil {
				wantShape = []int{}
			}
			if got.Name != s.Name || got.DType != s.DType || !equalInts(got.Shape, wantShape) || !bytes.Equal(got.Data, data[i]) {
				t.Errorf("tensor %d: got %s %s %v, want %s %s %v", i, got.Name, got.DType, got.Shape, s.Name, s.DType, s.Shape)
			}
		}
		if m.Meta["hidden_size"] != float64(64) || m.Meta["name"] != "x" {
			t.Errorf("config not in Meta: %v", m.Meta)
		}
		if !reflect.DeepEqual(m.Meta["nested"], map[string]any{"a": []any{float64(1), float64(2)}}) {
			t.Errorf("nested config: %#v", m.Meta["nested"])
		}
		for k, v := range meta {
			if m.Meta["safetensors.metadata."+k] != v {
				t.Errorf("metadata %s = %v, want %q", k, m.Meta["safetensors.metadata."+k], v)
			}
		}
	}
}

func TestWriteGGUFRoundTrip(t *testing.T) {
	meta := map[string]any{
		"general.architecture": "llama",
		"general.alignment":    uint32(32),
		"u8":                   uint8(200), "i8": int8(-100), "u16": uint16(60000), "i16": int16(-30000),
		"u32": uint32(4e9), "i32": int32(-2e9), "u64": uint64(1 << 63), "i64": int64(-1 << 62),
		"f32": float32(1.5), "f64": math.Pi, "b": true, "s": "hello ▁world",
		"as": []string{"a", "", "ccc"}, "af32": []float32{1, -2.5}, "ai32": []int32{-1, 7}, "au32": []uint32{1, 2},
		"ai64": []int64{-5}, "au8": []uint8{1, 2, 3}, "ab": []bool{true, false}, "af64": []float64{0.25},
		"ai8": []int8{-3}, "au16": []uint16{9}, "ai16": []int16{-9}, "au64": []uint64{1 << 40},
		"empty": []float32{},
		"nest":  []any{[]int32{1, 2}, []string{"x"}, []any{[]bool{true}}},
	}
	specs := []TensorSpec{
		{"token_embd.weight", F32, []int{3, 5}},
		{"blk.0.ffn_up.weight", BF16, []int{2, 3, 7}},
		{"q", Q8_0, []int{2, 32}},
		{"norm", F16, []int{1}},
	}
	data := [][]byte{make([]byte, 60), make([]byte, 84), make([]byte, 68), {0x00, 0x3c}}
	for i, d := range data {
		for j := range d {
			d[j] = byte(i*13 + j*3)
		}
	}
	path := filepath.Join(t.TempDir(), "out.gguf")
	if err := WriteGGUF(path, meta, specs, copyFill(data)); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Size()%32 != 0 {
		t.Errorf("file size %d: last tensor not padded to 32", st.Size())
	}
	m := openT(t, path)
	want := map[string]any{"gguf.version": uint32(3), "gguf.alignment": uint32(32)}
	for k, v := range meta {
		want[k] = v
	}
	if !reflect.DeepEqual(m.Meta, want) {
		for k, v := range want {
			if !reflect.DeepEqual(m.Meta[k], v) {
				t.Errorf("Meta[%s] = %#v, want %#v", k, m.Meta[k], v)
			}
		}
	}
	for i, s := range specs {
		got := m.Tensors[i]
		if got.Name != s.Name || got.DType != s.DType || !equalInts(got.Shape, s.Shape) || !bytes.Equal(got.Data, data[i]) {
			t.Errorf("tensor %d: got %s %s %v", i, got.Name, got.DType, got.Shape)
		}
		if got.off%32 != 0 {
			t.Errorf("tensor %s at offset %d, not 32-aligned", got.Name, got.off)
		}
	}
	// Meta from Open can be written back as is (gguf.* keys are skipped).
	path2 := filepath.Join(t.TempDir(), "again.gguf")
	if err := WriteGGUF(path2, m.Meta, specs, copyFill(data)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, path), readFile(t, path2)) {
		t.Error("rewriting Meta from Open gave a different file")
	}
}

// A failing or short fill, or a bad spec, must leave no file behind: not the
// output, not the temp file.
func TestWritersAreAtomic(t *testing.T) {
	specs := []TensorSpec{{"a", F32, []int{4}}, {"b", F32, []int{4}}}
	boom := errors.New("boom")
	fills := []struct {
		name string
		fill func(int, io.Writer) error
		frag string
	}{
		{"error", func(i int, w io.Writer) error {
			if i == 1 {
				return boom
			}
			_, err := w.Write(make([]byte, 16))
			return err
		}, "boom"},
		{"short", func(i int, w io.Writer) error { _, err := w.Write(make([]byte, 15)); return err }, "fill wrote 15 bytes, want 16"},
		{"long", func(i int, w io.Writer) error { _, err := w.Write(make([]byte, 17)); return err }, "more bytes than the tensor holds"},
	}
	writers := map[string]func(path string, specs []TensorSpec, fill func(int, io.Writer) error) error{
		"safetensors": func(p string, s []TensorSpec, f func(int, io.Writer) error) error {
			return WriteSafetensors(p, s, nil, f)
		},
		"gguf": func(p string, s []TensorSpec, f func(int, io.Writer) error) error { return WriteGGUF(p, nil, s, f) },
	}
	for wname, write := range writers {
		for _, f := range fills {
			t.Run(wname+"/"+f.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "out")
				wantErr(t, write(path, specs, f.fill), path, f.frag)
				if names := dirEntries(t, dir); len(names) != 0 {
					t.Errorf("left files behind: %v", names)
				}
			})
		}
		t.Run(wname+"/bad specs", func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out")
			ok := func(int, io.Writer) error { return nil }
			wantErr(t, write(path, []TensorSpec{{"a", F32, []int{1}}, {"a", F32, []int{1}}}, ok), "duplicate name")
			wantErr(t, write(path, []TensorSpec{{"a", F32, []int{-1}}}, ok), "negative dimension")
			wantErr(t, write(path, []TensorSpec{{"a", DType(99), []int{1}}}, ok), "dtype(99)")
			if names := dirEntries(t, dir); len(names) != 0 {
				t.Errorf("left files behind: %v", names)
			}
		})
	}
	// An existing file is untouched when the rewrite fails.
	dir := t.TempDir()
	path := filepath.Join(dir, "keep.gguf")
	writeFile(t, path, []byte("old contents"))
	wantErr(t, WriteGGUF(path, nil, specs, fills[0].fill), "boom")
	if got := string(readFile(t, path)); got != "old contents" {
		t.Errorf("existing file changed to %q", got)
	}
	wantErr(t, WriteSafetensors(filepath.Join(dir, "q.safetensors"), []TensorSpec{{"q", Q4_K, []int{256}}}, nil, nil), "Q4_K is not supported")
	wantErr(t, WriteGGUF(filepath.Join(dir, "m.gguf"), map[string]any{"bad": struct{}{}}, nil, nil), `metadata "bad"`)
	wantErr(t, WriteGGUF(filepath.Join(dir, "m.gguf"), map[string]any{"general.alignment": uint32(64)}, nil, nil), "general.alignment must be")
	if names := dirEntries(t, dir); strings.Join(names, ",") != "keep.gguf" {
		t.Errorf("files in dir: %v", names)
	}
}
