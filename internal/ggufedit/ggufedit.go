// Package ggufedit rewrites a GGUF model with edits to its metadata and
// tensors. Tests use it to build the bad files they need (NaN weights, a
// NaN epsilon, a mixed-dtype FFN, weights that overflow) from a good
// fixture, rather than keeping binary files in the repository.
package ggufedit

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"

	"offload/internal/half"
	"offload/pager"
)

// Edit changes one tensor: given its name, dtype and a private copy of its
// bytes, it returns the dtype and bytes to write (the shape is kept).
type Edit func(name string, dt pager.DType, data []byte) (pager.DType, []byte)

// Rewrite writes src (a GGUF file) to dst with meta edited by editMeta and
// every tensor passed through edit (either may be nil).
func Rewrite(src, dst string, editMeta func(map[string]any), edit Edit) error {
	m, err := pager.Open(src)
	if err != nil {
		return err
	}
	defer m.Close()
	if m.Format != "gguf" {
		return fmt.Errorf("ggufedit: %s is %s, not GGUF", src, m.Format)
	}
	meta := map[string]any{}
	for k, v := range m.Meta {
		if !strings.HasPrefix(k, "gguf.") { // the pager's synthetic keys
			meta[k] = v
		}
	}
	if editMeta != nil {
		editMeta(meta)
	}
	specs := make([]pager.TensorSpec, len(m.Tensors))
	data := make([][]byte, len(m.Tensors))
	for i, t := range m.Tensors {
		dt, b := t.DType, append([]byte(nil), t.Data...)
		if edit != nil {
			dt, b = edit(t.Name, dt, b)
		}
		specs[i] = pager.TensorSpec{Name: t.Name, DType: dt, Shape: t.Shape}
		data[i] = b
	}
	return pager.WriteGGUF(dst, meta, specs, func(i int, w io.Writer) error {
		_, err := w.Write(data[i])
		return err
	})
}

// Tensor applies f to the tensor called name only.
func Tensor(name string, f Edit) Edit {
	return func(n string, dt pager.DType, b []byte) (pager.DType, []byte) {
		if n == name {
			return f(n, dt, b)
		}
		return dt, b
	}
}

// SetF32 sets element i of an F32 tensor to v.
func SetF32(i int, v float32) Edit {
	return func(_ string, dt pager.DType, b []byte) (pager.DType, []byte) {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		return dt, b
	}
}

// FillF32 sets every element of an F32 tensor to v.
func FillF32(v float32) Edit {
	return func(_ string, dt pager.DType, b []byte) (pager.DType, []byte) {
		for i := 0; i+4 <= len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], math.Float32bits(v))
		}
		return dt, b
	}
}

// ToF16 converts an F32 tensor to F16.
func ToF16(_ string, _ pager.DType, b []byte) (pager.DType, []byte) {
	out := make([]byte, len(b)/2)
	for i := range len(b) / 4 {
		binary.LittleEndian.PutUint16(out[2*i:], half.F32ToF16(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))))
	}
	return pager.F16, out
}

// Meta sets one metadata key.
func Meta(key string, v any) func(map[string]any) {
	return func(m map[string]any) { m[key] = v }
}
