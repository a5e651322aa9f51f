package pager

import (
	"io"
	"path/filepath"
	"testing"
)

// BenchmarkBundleFFN converts stories260K.gguf (1.1 MB) end to end,
// including the atomic write and fsync.
func BenchmarkBundleFFN(b *testing.B) {
	src, err := Open(storiesPath(b, "stories260K.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(b.TempDir(), "b.gguf")
	b.SetBytes(src.Bytes())
	for b.Loop() {
		if err := BundleFFN(src, out, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteBundle measures the bundle layout pass alone (gate/up rows
// plus the blocked down transpose) for one TinyLlama-sized BF16 layer
// (dim 2048, hidden 5632), writing to io.Discard.
func BenchmarkWriteBundle(b *testing.B) {
	const d, h, s = 2048, 5632, 2
	mk := func(rows, cols int) *Tensor {
		return &Tensor{DType: BF16, Shape: []int{rows, cols}, Data: make([]byte, rows*cols*s)}
	}
	gate, up, down := mk(h, d), mk(h, d), mk(d, h)
	b.SetBytes(3 * d * h * s)
	for b.Loop() {
		if err := writeBundle(io.Discard, gate, up, down, d, h, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGatherRows packs half of one layer's neuron bundles (every other
// row) of a TinyLlama-sized BF16 bundle [5632, 3*2048] into a staging buffer.
func BenchmarkGatherRows(b *testing.B) {
	const h, w = 5632, 3 * 2048 * 2
	t := &Tensor{DType: BF16, Shape: []int{h, w / 2}, Data: make([]byte, h*w)}
	idx := make([]int, 0, h/2)
	for j := 0; j < h; j += 2 {
		idx = append(idx, j)
	}
	dst := make([]byte, len(idx)*w)
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		if err := t.GatherRows(dst, idx); err != nil {
			b.Fatal(err)
		}
	}
}
