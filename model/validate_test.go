package model_test

import (
	"encoding/binary"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"offload/internal/fixtures"
	"offload/internal/half"
	"offload/model"
	"offload/pager"
)

// rewrite copies stories260K.gguf to a new file, letting edit change the
// metadata and each tensor's dtype and bytes.
func rewrite(t *testing.T, editMeta func(map[string]any), edit func(name string, dt pager.DType, b []byte) (pager.DType, []byte)) string {
	t.Helper()
	src, err := pager.Open(filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	meta := map[string]any{}
	for k, v := range src.Meta {
		if !strings.HasPrefix(k, "gguf.") {
			meta[k] = v
		}
	}
	if editMeta != nil {
		editMeta(meta)
	}
	specs := make([]pager.TensorSpec, len(src.Tensors))
	data := make([][]byte, len(src.Tensors))
	for i, tn := range src.Tensors {
		dt, b := tn.DType, append([]byte(nil), tn.Data...)
		if edit != nil {
			dt, b = edit(tn.Name, dt, b)
		}
		specs[i] = pager.TensorSpec{Name: tn.Name, DType: dt, Shape: tn.Shape}
		data[i] = b
	}
	out := filepath.Join(t.TempDir(), "edited.gguf")
	if err := pager.WriteGGUF(out, meta, specs, func(i int, w io.Writer) error { _, err := w.Write(data[i]); return err }); err != nil {
		t.Fatal(err)
	}
	return out
}

func setF32(b []byte, i int, v float32) []byte {
	binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	return b
}

func toF16(b []byte) []byte {
	out := make([]byte, len(b)/2)
	for i := range len(b) / 4 {
		binary.LittleEndian.PutUint16(out[2*i:], half.F32ToF16(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))))
	}
	return out
}

// TestLoadValidation: what the math needs is checked when the model opens,
// with an error naming the file and the value or tensor.
func TestLoadValidation(t *testing.T) {
	nan := float32(math.NaN())
	metaKey := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	tensor := func(name string, f func(pager.DType, []byte) (pager.DType, []byte)) func(string, pager.DType, []byte) (pager.DType, []byte) {
		return func(n string, dt pager.DType, b []byte) (pager.DType, []byte) {
			if n == name {
				return f(dt, b)
			}
			return dt, b
		}
	}
	cases := []struct {
		name string
		meta func(map[string]any)
		edit func(string, pager.DType, []byte) (pager.DType, []byte)
		want string
	}{
		{"NaN epsilon", metaKey("llama.attention.layer_norm_rms_epsilon", nan), nil, "epsilon"},
		{"negative epsilon", metaKey("llama.attention.layer_norm_rms_epsilon", float32(-1e-5)), nil, "epsilon"},
		{"zero RoPE theta", metaKey("llama.rope.freq_base", float32(0)), nil, "RoPE theta"},
		{"infinite RoPE theta", metaKey("llama.rope.freq_base", float32(math.Inf(1))), nil, "RoPE theta"},
		{"NaN norm weight", nil, tensor("blk.3.ffn_norm.weight", func(dt pager.DType, b []byte) (pager.DType, []byte) { return dt, setF32(b, 5, nan) }), "blk.3.ffn_norm.weight"},
		{"infinite output norm", nil, tensor("output_norm.weight", func(dt pager.DType, b []byte) (pager.DType, []byte) {
			return dt, setF32(b, 0, float32(math.Inf(-1)))
		}), "output_norm.weight"},
		{"mixed FFN dtypes", nil, tensor("blk.2.ffn_up.weight", func(_ pager.DType, b []byte) (pager.DType, []byte) { return pager.F16, toF16(b) }), "mixes FFN dtypes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := rewrite(t, c.meta, c.edit)
			m, err := model.Open(path)
			if err == nil {
				m.Close()
				t.Fatalf("opened; want an error about %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %q and the file", err, c.want)
			}
		})
	}
	// The unedited copy opens.
	m, err := model.Open(rewrite(t, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}
