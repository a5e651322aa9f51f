package pager

import (
	"fmt"
	"strconv"
	"strings"
)

// Neuron bundles of mixed types. In a quantized model the gate and up rows
// keep the file's block types, while the down column, cut across the down
// matrix's blocks, must be requantized along dim, possibly to another type
// (Q8_0 is often preferred for it). So a bundle row of such a model is three
// runs of blocks of different types: gate_j | up_j | down column j. Such a
// layer's bundle tensor is raw bytes, I8 [hidden, rowBytes], and the
// metadata key MetaFFNBundleTypes names the three part types of every layer.
// A bundle without that key is a plain tensor [hidden, 3*dim] whose parts
// share its dtype (what BundleFFN writes for F32/F16/BF16 models).

// MetaFFNBundleTypes is the GGUF key holding the part types of raw-byte
// bundles: an array of uint32 GGML type ids, three per layer (gate, up,
// down), layer 0 first.
const MetaFFNBundleTypes = "offload.ffn_bundle.types"

// Bundle parts, in row order.
const (
	PartGate = iota
	PartUp
	PartDown
)

// BundleParts describes one layer's bundle row: the type of each part and
// its size in bytes for dim elements.
type BundleParts struct {
	Types [3]DType
	Bytes [3]int
}

// NewBundleParts sizes the parts of a bundle row for a model of width dim.
// Every part type must be one the runtime computes with, and dim a whole
// number of its blocks.
func NewBundleParts(types [3]DType, dim int) (BundleParts, error) {
	b := BundleParts{Types: types}
	for i, t := range types {
		if !t.Supported() {
			return b, fmt.Errorf("bundle part %s has type %s, which is not supported (supported: %s)", partName(i), t, supportedNames)
		}
		n, err := t.RowBytes(int64(dim))
		if err != nil {
			return b, fmt.Errorf("bundle part %s: %w", partName(i), err)
		}
		if n > maxTensorBytes/8 {
			return b, fmt.Errorf("bundle part %s: %d bytes per row is too large", partName(i), n)
		}
		b.Bytes[i] = int(n)
	}
	return b, nil
}

func partName(i int) string { return [3]string{"gate", "up", "down"}[i] }

// RowBytes is the size of a whole bundle row.
func (b BundleParts) RowBytes() int { return b.Bytes[0] + b.Bytes[1] + b.Bytes[2] }

// Offset is where part i starts in a bundle row.
func (b BundleParts) Offset(i int) int {
	off := 0
	for j := 0; j < i; j++ {
		off += b.Bytes[j]
	}
	return off
}

// Part returns part i of a bundle row.
func (b BundleParts) Part(row []byte, i int) []byte {
	off := b.Offset(i)
	return row[off : off+b.Bytes[i] : off+b.Bytes[i]]
}

// Uniform says the three parts share one type.
func (b BundleParts) Uniform() bool {
	return b.Types[0] == b.Types[1] && b.Types[1] == b.Types[2]
}

// BundleTypesMeta encodes per-layer part types as MetaFFNBundleTypes's value.
func BundleTypesMeta(layers [][3]DType) []uint32 {
	out := make([]uint32, 0, 3*len(layers))
	for _, l := range layers {
		for _, t := range l {
			out = append(out, uint32(t))
		}
	}
	return out
}

// BundleTypes reads MetaFFNBundleTypes: nil when the key is absent (bundles,
// if any, are plain tensors), else three types per layer. The value must be
// an array of integers whose length is a multiple of 3; the types are
// checked by NewBundleParts when a layer is opened.
func (m *Model) BundleTypes() ([][3]DType, error) {
	v, ok := m.Meta[MetaFFNBundleTypes]
	if !ok {
		return nil, nil
	}
	var ids []int64
	switch a := v.(type) {
	case []uint32:
		for _, x := range a {
			ids = append(ids, int64(x))
		}
	case []int32:
		for _, x := range a {
			ids = append(ids, int64(x))
		}
	default:
		return nil, fmt.Errorf("%s %s: metadata %s is %T, want an array of uint32 type ids", m.Format, m.Path, MetaFFNBundleTypes, v)
	}
	if len(ids) == 0 || len(ids)%3 != 0 {
		return nil, fmt.Errorf("%s %s: metadata %s has %d entries, want three (gate, up, down) per layer", m.Format, m.Path, MetaFFNBundleTypes, len(ids))
	}
	out := make([][3]DType, len(ids)/3)
	for i, id := range ids {
		if id < 0 || id > 255 {
			return nil, fmt.Errorf("%s %s: metadata %s[%d] = %d is not a GGML type id", m.Format, m.Path, MetaFFNBundleTypes, i, id)
		}
		out[i/3][i%3] = DType(id)
	}
	return out, nil
}

// FFNBundle returns layer l's bundle tensor and the layout of its rows, for
// a model of width dim and FFN size hidden. It checks everything a reader
// of the rows relies on: the model is bundled, the tensor exists, its part
// types are supported and divide dim into whole blocks, and the tensor is
// exactly hidden rows of the bundle row size (I8 [hidden, rowBytes] for
// raw-byte bundles, [hidden, 3*dim] of its own dtype otherwise).
func (m *Model) FFNBundle(l, dim, hidden int) (*Tensor, BundleParts, error) {
	fail := func(format string, args ...any) (*Tensor, BundleParts, error) {
		return nil, BundleParts{}, fmt.Errorf("%s %s: %s", m.Format, m.Path, fmt.Sprintf(format, args...))
	}
	if b, _ := m.Meta[MetaFFNBundled].(bool); !b {
		return fail("the model is not FFN-bundled (%s is not true)", MetaFFNBundled)
	}
	name := BundleName(l)
	t, ok := m.Tensor(name)
	if !ok {
		return fail("missing tensor %s", name)
	}
	types, err := m.BundleTypes()
	if err != nil {
		return nil, BundleParts{}, err
	}
	if dim <= 0 || hidden <= 0 {
		return fail("tensor %s: dim %d and hidden %d must be positive", name, dim, hidden)
	}
	if types == nil {
		if t.DType == I8 {
			return fail("tensor %s is raw bytes (I8) but %s is missing", name, MetaFFNBundleTypes)
		}
		parts, err := NewBundleParts([3]DType{t.DType, t.DType, t.DType}, dim)
		if err != nil {
			return fail("tensor %s: %v", name, err)
		}
		if len(t.Shape) != 2 || t.Shape[0] != hidden || t.Shape[1] != 3*dim {
			return fail("tensor %s: shape %v, want [%d %d]", name, t.Shape, hidden, 3*dim)
		}
		return t, parts, nil
	}
	if l < 0 || l >= len(types) {
		return fail("metadata %s describes %d layers, not layer %d", MetaFFNBundleTypes, len(types), l)
	}
	parts, err := NewBundleParts(types[l], dim)
	if err != nil {
		return fail("tensor %s: %v", name, err)
	}
	if t.DType != I8 {
		return fail("tensor %s is %s; with %s a bundle is raw bytes (I8)", name, t.DType, MetaFFNBundleTypes)
	}
	if len(t.Shape) != 2 || t.Shape[0] != hidden || t.Shape[1] != parts.RowBytes() {
		return fail("tensor %s: shape %v, want [%d %d] (%s %s | %s %s | %s %s rows of %d elements)", name, t.Shape, hidden, parts.RowBytes(),
			parts.Types[0], "gate", parts.Types[1], "up", parts.Types[2], "down", dim)
	}
	if t.RowBytes() != parts.RowBytes() {
		return fail("tensor %s: %d bytes per row, want %d", name, t.RowBytes(), parts.RowBytes())
	}
	return t, parts, nil
}

// isRawBundle says whether t is a raw-byte bundle tensor of a model that
// describes its part types (CheckDTypes lets those through; FFNBundle
// checks them).
func (m *Model) isRawBundle(t *Tensor) bool {
	if t.DType != I8 {
		return false
	}
	if _, ok := m.Meta[MetaFFNBundleTypes]; !ok {
		return false
	}
	rest, ok := strings.CutPrefix(t.Name, "blk.")
	if !ok {
		return false
	}
	num, tail, _ := strings.Cut(rest, ".")
	if tail != "ffn_bundle.weight" || !isLayerNumber(num) {
		return false
	}
	_, err := strconv.Atoi(num)
	return err == nil
}
