package model_test

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"offload/internal/fixtures"
	"offload/internal/ggufedit"
	"offload/model"
)

// TestLoadValidation: what the math needs is checked when the model opens,
// with an error naming the file and the value or tensor.
func TestLoadValidation(t *testing.T) {
	src := filepath.Join(fixtures.Stories(t), "stories260K.gguf")
	nan := float32(math.NaN())
	cases := []struct {
		name string
		meta func(map[string]any)
		edit ggufedit.Edit
		want string
	}{
		{"unedited", nil, nil, ""},
		{"NaN epsilon", ggufedit.Meta("llama.attention.layer_norm_rms_epsilon", nan), nil, "epsilon"},
		{"negative epsilon", ggufedit.Meta("llama.attention.layer_norm_rms_epsilon", float32(-1e-5)), nil, "epsilon"},
		{"zero RoPE theta", ggufedit.Meta("llama.rope.freq_base", float32(0)), nil, "RoPE theta"},
		{"infinite RoPE theta", ggufedit.Meta("llama.rope.freq_base", float32(math.Inf(1))), nil, "RoPE theta"},
		{"NaN norm weight", nil, ggufedit.Tensor("blk.3.ffn_norm.weight", ggufedit.SetF32(5, nan)), "blk.3.ffn_norm.weight"},
		{"infinite output norm", nil, ggufedit.Tensor("output_norm.weight", ggufedit.SetF32(0, float32(math.Inf(-1)))), "output_norm.weight"},
		{"mixed FFN dtypes open", nil, ggufedit.Tensor("blk.2.ffn_up.weight", ggufedit.ToF16), ""}, // each part keeps its type
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edited.gguf")
			if err := ggufedit.Rewrite(src, path, c.meta, c.edit); err != nil {
				t.Fatal(err)
			}
			m, err := model.Open(path)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				m.Close()
				return
			}
			if err == nil {
				m.Close()
				t.Fatalf("opened; want an error about %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %q and the file", err, c.want)
			}
		})
	}
}
