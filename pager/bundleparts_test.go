package pager

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"
)

// rawBundleGGUF writes a one-layer llama GGUF with a raw-byte bundle whose
// parts have the given types, and returns its path.
func rawBundleGGUF(t testing.TB, dir string, dim, hidden int, types [3]DType, meta map[string]any, shape []int) string {
	t.Helper()
	m := map[string]any{
		"general.architecture": "llama", "llama.embedding_length": uint32(dim), "llama.feed_forward_length": uint32(hidden),
		"llama.block_count": uint32(1), "llama.attention.head_count": uint32(1), "llama.context_length": uint32(16),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
	}
	m[MetaFFNBundled] = true
	m[MetaFFNBundleTypes] = BundleTypesMeta([][3]DType{types})
	for k, v := range meta {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	if shape == nil {
		parts, err := NewBundleParts(types, dim)
		if err != nil {
			t.Fatal(err)
		}
		shape = []int{hidden, parts.RowBytes()}
	}
	specs := []TensorSpec{{"token_embd.weight", F32, []int{2, dim}}, {BundleName(0), I8, shape}}
	path := filepath.Join(dir, "b.gguf")
	err := WriteGGUF(path, m, specs, func(i int, w io.Writer) error {
		n, _ := tensorBytes(specs[i].DType, specs[i].Shape)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(j)
		}
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFFNBundleParts(t *testing.T) {
	dir := t.TempDir()
	types := [3]DType{Q4_K, Q4_K, Q8_0}
	m := openT(t, rawBundleGGUF(t, dir, 256, 64, types, nil, nil))
	if err := m.CheckDTypes(); err != nil {
		t.Fatalf("CheckDTypes refused a described raw bundle: %v", err)
	}
	bt, parts, err := m.FFNBundle(0, 256, 64)
	if err != nil {
		t.Fatal(err)
	}
	if parts.Types != types || parts.Bytes != [3]int{144, 144, 272} || parts.RowBytes() != 560 {
		t.Fatalf("parts %+v", parts)
	}
	if parts.Offset(PartGate) != 0 || parts.Offset(PartUp) != 144 || parts.Offset(PartDown) != 288 {
		t.Errorf("offsets %d %d %d", parts.Offset(0), parts.Offset(1), parts.Offset(2))
	}
	row := bt.Row(63)
	if got := parts.Part(row, PartDown); len(got) != 272 || &got[0] != &row[288] {
		t.Error("Part(down) is not the row's last 272 bytes")
	}
	if parts.Uniform() {
		t.Error("Q4_K/Q4_K/Q8_0 reported uniform")
	}

	// A legacy bundle: one dtype, [hidden, 3*dim].
	g := openT(t, storiesPath(t, "stories260K.gguf"))
	out := filepath.Join(dir, "f.gguf")
	if err := BundleFFN(g, out, nil); err != nil {
		t.Fatal(err)
	}
	fb := openT(t, out)
	p, _ := fb.LlamaParams()
	if _, parts, err := fb.FFNBundle(1, p.Dim, p.Hidden); err != nil || parts.Types != [3]DType{F32, F32, F32} || parts.RowBytes() != 3*4*p.Dim {
		t.Fatalf("legacy bundle: %+v %v", parts, err)
	}
	if _, _, err := g.FFNBundle(0, p.Dim, p.Hidden); err == nil {
		t.Fatal("an unbundled model gave a bundle")
	}
}

func TestFFNBundleRefusals(t *testing.T) {
	q := [3]DType{Q4_K, Q4_K, Q8_0}
	for _, c := range []struct {
		name        string
		types       [3]DType
		meta        map[string]any
		shape       []int
		dim, hidden int
		want        string
	}{
		{"types missing", q, map[string]any{MetaFFNBundleTypes: nil}, nil, 256, 64, "is raw bytes (I8) but offload.ffn_bundle.types is missing"},
		{"types not an array", q, map[string]any{MetaFFNBundleTypes: "Q4_K"}, nil, 256, 64, "is string, want an array of uint32"},
		{"types not by three", q, map[string]any{MetaFFNBundleTypes: []uint32{12, 12}}, nil, 256, 64, "has 2 entries, want three"},
		{"unsupported part", q, map[string]any{MetaFFNBundleTypes: []uint32{12, 16, 8}}, nil, 256, 64, "bundle part up has type IQ2_XXS, which is not supported"},
		{"unknown id", q, map[string]any{MetaFFNBundleTypes: []uint32{12, 12, 200}}, nil, 256, 64, "bundle part down has type dtype(200)"},
		{"id out of range", q, map[string]any{MetaFFNBundleTypes: []uint32{12, 12, 1 << 20}}, nil, 256, 64, "1048576 is not a GGML type id"},
		{"dim not whole blocks", q, nil, []int{64, 10}, 96, 64, "96 elements is not a multiple of the Q4_K block size 256"},
		{"row size", q, nil, []int{64, 559}, 256, 64, "shape [64 559], want [64 560]"},
		{"row count", q, nil, []int{63, 560}, 256, 64, "shape [63 560], want [64 560]"},
		{"layer out of range", q, nil, nil, 256, 64, "describes 1 layers, not layer 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := openT(t, rawBundleGGUF(t, t.TempDir(), 256, 64, c.types, c.meta, c.shape))
			l := 0
			if c.name == "layer out of range" {
				l = 1
				m.byName[BundleName(1)] = m.byName[BundleName(0)]
			}
			_, _, err := m.FFNBundle(l, c.dim, c.hidden)
			wantErr(t, err, c.want, m.Path)
		})
	}
	// Without the types key, an I8 bundle is an unsupported dtype.
	m := openT(t, rawBundleGGUF(t, t.TempDir(), 256, 64, q, map[string]any{MetaFFNBundleTypes: nil}, nil))
	wantErr(t, m.CheckDTypes(), "tensor blk.0.ffn_bundle.weight: dtype not supported yet: I8")
}

// FuzzFFNBundle opens bundle descriptions of any part types, sizes and
// tensor shapes: FFNBundle either refuses them or returns parts that fit
// every row of the tensor exactly.
func FuzzFFNBundle(f *testing.F) {
	f.Add([]byte{12, 12, 8}, uint16(256), uint16(64), uint16(64), uint16(560), uint8(I8))
	f.Add([]byte{0, 0, 0}, uint16(4), uint16(8), uint16(8), uint16(48), uint8(I8))
	f.Add([]byte{14, 12, 2, 14, 12, 2}, uint16(256), uint16(8), uint16(8), uint16(498), uint8(I8))
	f.Add([]byte{}, uint16(4), uint16(8), uint16(8), uint16(12), uint8(F32))
	f.Add([]byte{12, 12}, uint16(256), uint16(4), uint16(4), uint16(768), uint8(Q4_K))
	f.Fuzz(func(t *testing.T, ids []byte, dim, hidden, rows, cols uint16, dt uint8) {
		meta := map[string]any{MetaFFNBundled: true}
		if len(ids) > 0 {
			types := make([]uint32, len(ids))
			for i, b := range ids {
				types[i] = uint32(b)
			}
			meta[MetaFFNBundleTypes] = types
		}
		m := &Model{Path: "fuzz.gguf", Format: "gguf", Meta: meta}
		shape := []int{int(rows), int(cols)}
		n, err := tensorBytes(DType(dt), shape)
		if err != nil || n > 1<<20 {
			return
		}
		bt := &Tensor{Name: BundleName(0), DType: DType(dt), Shape: shape, Data: make([]byte, n)}
		if err := m.add(bt); err != nil {
			t.Fatal(err)
		}
		_ = m.CheckDTypes()
		for l := 0; l < 2; l++ {
			got, parts, err := m.FFNBundle(l, int(dim), int(hidden))
			if err != nil {
				continue
			}
			if got.Rows() != int(hidden) || got.RowBytes() != parts.RowBytes() {
				t.Fatalf("%d rows of %d bytes for hidden %d, parts %+v", got.Rows(), got.RowBytes(), hidden, parts)
			}
			for i := 0; i < 3; i++ {
				want, err := parts.Types[i].RowBytes(int64(dim))
				if err != nil || int64(parts.Bytes[i]) != want || !parts.Types[i].Supported() {
					t.Fatalf("part %d: %s, %d bytes for %d elements (%v)", i, parts.Types[i], parts.Bytes[i], dim, err)
				}
				if hidden > 0 {
					_ = parts.Part(got.Row(int(hidden)-1), i) // in bounds
				}
			}
		}
	})
}

// TestBundleTypesMetaRoundTrip: the metadata written for a bundled model is
// read back as the same types.
func TestBundleTypesMetaRoundTrip(t *testing.T) {
	in := [][3]DType{{Q4_K, Q4_K, Q6_K}, {Q4_K, Q4_K, Q8_0}, {F16, F16, F16}}
	m := &Model{Path: "x", Format: "gguf", Meta: map[string]any{MetaFFNBundleTypes: BundleTypesMeta(in)}}
	got, err := m.BundleTypes()
	if err != nil || fmt.Sprint(got) != fmt.Sprint(in) {
		t.Fatalf("got %v, %v", got, err)
	}
}
