package quant_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"offload/internal/fixtures"
	"offload/pager"
	"offload/quant"
)

// The fixtures are stories260K zero-padded to dim 256 and quantized by
// llama-quantize to every supported type; dequant.json holds, per file and
// tensor, ggml's own dequantization (hashes and leading values), checked
// there against ggml's C to_float.

type tensorOracle struct {
	Type       string    `json:"type"`
	TypeID     uint32    `json:"type_id"`
	Shape      []int     `json:"ggml_shape"`
	RawBytes   int       `json:"raw_bytes"`
	RawSHA     string    `json:"raw_sha256"`
	F32SHA     string    `json:"f32_sha256"`
	NegZero    int       `json:"neg_zero_count"`
	Sum        float64   `json:"sum"`
	AbsMax     float64   `json:"abs_max"`
	First16Hex []string  `json:"first16_bits"`
	First16    []float64 `json:"first16"`
}

type fileOracle struct {
	File    string                  `json:"file"`
	Tensors map[string]tensorOracle `json:"tensors"`
}

func quantDir(t testing.TB) string {
	return filepath.Join(fixtures.Shared(t), "models", "stories260K-q")
}

func loadOracle(t testing.TB) map[string]fileOracle {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(quantDir(t), "dequant.json"))
	if err != nil {
		t.Fatal(err)
	}
	var o map[string]fileOracle
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("dequant.json: %v", err)
	}
	if len(o) < 12 {
		t.Fatalf("dequant.json lists %d files, want 12", len(o))
	}
	return o
}

func openModel(t testing.TB, name string) *pager.Model {
	t.Helper()
	m, err := pager.Open(filepath.Join(quantDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// dequantTensor dequantizes a whole tensor: its blocks are contiguous, so
// the tensor is one long row.
func dequantTensor(t testing.TB, tn *pager.Tensor) []float32 {
	t.Helper()
	typ := quant.Type(tn.DType)
	if err := quant.Check(uint32(tn.DType)); err != nil {
		t.Fatalf("%s: %v", tn.Name, err)
	}
	out := make([]float32, tn.Elements())
	if err := quant.DequantizeRow(typ, out, tn.Data); err != nil {
		t.Fatalf("%s: %v", tn.Name, err)
	}
	return out
}

// TestDequantizeFixtures checks every tensor of every fixture file against
// ggml's dequantization: SHA-256 of the float32 values (signed zeros
// included), the first 16 values' bits, the count of -0.0, and the two
// tensors dumped in full.
func TestDequantizeFixtures(t *testing.T) {
	oracle := loadOracle(t)
	seen := map[string]int{} // type name -> tensors checked
	for _, ft := range sortedKeys(oracle) {
		fo := oracle[ft]
		t.Run(ft, func(t *testing.T) {
			m := openModel(t, fo.File)
			if len(m.Tensors) != len(fo.Tensors) {
				t.Errorf("%s has %d tensors, dequant.json lists %d", fo.File, len(m.Tensors), len(fo.Tensors))
			}
			for _, name := range sortedKeys(fo.Tensors) {
				want := fo.Tensors[name]
				tn, ok := m.Tensor(name)
				if !ok {
					t.Errorf("%s: no tensor %s", fo.File, name)
					continue
				}
				if uint32(tn.DType) != want.TypeID || quant.Type(tn.DType).String() != want.Type {
					t.Errorf("%s: type %s (%d), want %s (%d)", name, quant.Type(tn.DType), tn.DType, want.Type, want.TypeID)
					continue
				}
				raw := sha256.Sum256(tn.Data)
				if hex.EncodeToString(raw[:]) != want.RawSHA || len(tn.Data) != want.RawBytes {
					t.Errorf("%s: raw bytes differ from dequant.json (the fixture file is not the one described)", name)
					continue
				}
				// RowBytes must agree with the file's layout.
				if rb, err := quant.Type(tn.DType).RowBytes(want.Shape[0]); err != nil || rb*(len(tn.Data)/max(rb, 1)) != len(tn.Data) || rb != tn.RowBytes() {
					t.Errorf("%s: RowBytes(%d) = %d, %v; tensor rows are %d bytes", name, want.Shape[0], rb, err, tn.RowBytes())
				}
				got := dequantTensor(t, tn)
				sum := sha256.Sum256(f32Bytes(got))
				if hex.EncodeToString(sum[:]) != want.F32SHA {
					t.Errorf("%s (%s): f32_sha256 %x, want %s", name, want.Type, sum[:8], want.F32SHA[:16])
				}
				negz := 0
				for _, v := range got {
					if v == 0 && math.Signbit(float64(v)) {
						negz++
					}
				}
				if negz != want.NegZero {
					t.Errorf("%s: %d negative zeros, want %d", name, negz, want.NegZero)
				}
				for i, h := range want.First16Hex {
					if g := fmt.Sprintf("%08x", math.Float32bits(got[i])); g != h {
						t.Errorf("%s[%d] = %s (%g), want %s (%g)", name, i, g, got[i], h, want.First16[i])
					}
				}
				seen[want.Type]++
				// The full dumps, for files that have them.
				dump := filepath.Join(quantDir(t), "dequant_"+ft+"_"+name+".f32")
				if b, err := os.ReadFile(dump); err == nil {
					if !bytes.Equal(b, f32Bytes(got)) {
						t.Errorf("%s: differs from %s", name, filepath.Base(dump))
					}
					seen["dump"]++
				}
			}
		})
	}
	for _, typ := range quant.Types() {
		if typ == quant.F16 || typ == quant.BF16 {
			continue // no fixture file uses them; see TestHalfRoundTrip
		}
		if seen[typ.String()] == 0 {
			t.Errorf("no fixture tensor of type %s was checked", typ)
		}
	}
	if seen["dump"] != 22 {
		t.Errorf("checked %d full .f32 dumps, want 22", seen["dump"])
	}
	t.Logf("tensors checked per type: %v", seen)
}

// quantMatch counts, per type, the tensors whose requantized bytes equal the
// file's (the F32 source quantized with QuantizeRow).
func quantMatch(t *testing.T) (match, total map[quant.Type]int, firstDiff map[quant.Type]string) {
	oracle := loadOracle(t)
	src := openModel(t, oracle["F32"].File)
	match, total, firstDiff = map[quant.Type]int{}, map[quant.Type]int{}, map[quant.Type]string{}
	for _, ft := range sortedKeys(oracle) {
		if ft == "F32" {
			continue
		}
		m := openModel(t, oracle[ft].File)
		for _, tn := range m.Tensors {
			typ := quant.Type(tn.DType)
			if !typ.Quantized() {
				continue
			}
			f, ok := src.Tensor(tn.Name)
			if !ok || f.DType != pager.F32 {
				t.Fatalf("F32 file lacks %s", tn.Name)
			}
			x := dequantTensor(t, f)
			out := make([]byte, len(tn.Data))
			if err := quant.QuantizeRow(typ, out, x); err != nil {
				t.Fatalf("%s %s: %v", ft, tn.Name, err)
			}
			total[typ]++
			if bytes.Equal(out, tn.Data) {
				match[typ]++
			} else if firstDiff[typ] == "" {
				i := 0
				for out[i] == tn.Data[i] {
					i++
				}
				bb := typ.BlockBytes()
				firstDiff[typ] = fmt.Sprintf("%s %s: first difference at byte %d (block %d, offset %d): %#02x, want %#02x",
					ft, tn.Name, i, i/bb, i%bb, out[i], tn.Data[i])
			}
		}
	}
	return match, total, firstDiff
}

// TestQuantizeFixtures requantizes the F32 fixture's weights to each
// quantized file's per-tensor types and compares bytes with llama-quantize's
// output. Every supported block type must match exactly.
func TestQuantizeFixtures(t *testing.T) {
	match, total, diff := quantMatch(t)
	for _, typ := range quant.Types() {
		if !typ.Quantized() {
			continue
		}
		if total[typ] == 0 {
			t.Errorf("%s: no fixture tensor of this type", typ)
			continue
		}
		t.Logf("%-5s %3d/%3d tensors byte-identical", typ, match[typ], total[typ])
		if match[typ] != total[typ] {
			t.Errorf("%s: %d of %d tensors differ from the reference quantizer; %s", typ, total[typ]-match[typ], total[typ], diff[typ])
		}
	}
}
