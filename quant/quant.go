// Package quant knows ggml's block-quantized weight formats (the tensor types
// of the GGUF files people download: Q8_0, Q4_K_M, ...): their sizes, exact
// dequantization, the reference quantizers, and a plain dot product.
//
// It exists so that every other package (the pager sizing tensors, the
// kernels reading quantized rows, the converter writing them, the tests
// holding all of them to ggml) shares one definition of the formats, written
// once and checked bit for bit against files made by ggml's own tools.
//
// Semantics follow ggml (ggml-common.h for the block layouts, ggml-quants.c for
// the arithmetic):
//   - DequantizeRow reproduces ggml's dequantize_row_* exactly, signed zeros
//     included: every value is computed with the same float32 operations in
//     the same order, with explicit conversions so that no multiply-add is
//     ever fused (Go may fuse x*y+z otherwise, e.g. with GOAMD64=v3).
//   - QuantizeRow follows ggml's reference quantizers without an importance
//     matrix (quantize_row_*_ref, what llama-quantize runs when it is given
//     no imatrix), with the same care, so its blocks are byte-identical.
//   - Dot is the plain definition the fast kernels are fuzzed against: each
//     block dequantized exactly, then a sequential float32 sum.
//
// The package is plain Go with no dependency on the rest of the module, so it
// can be imported from anywhere (and fuzzed on its own). Model files are
// untrusted: every entry point checks lengths and returns an error (or, for
// Dot, whose callers own the shapes, panics with a clear message); no input
// can make a decoder read outside the row it was given.
package quant

import (
	"errors"
	"fmt"
)

// Type is a tensor element type. Its values are the GGML type ids (ggml.h enum
// ggml_type), so a GGUF tensor's type field (and pager.DType) converts
// directly: quant.Type(d).
type Type uint32

// GGML type ids of the types this package computes with.
const (
	F32  Type = 0
	F16  Type = 1
	Q4_0 Type = 2
	Q4_1 Type = 3
	Q5_0 Type = 6
	Q5_1 Type = 7
	Q8_0 Type = 8
	Q2_K Type = 10
	Q3_K Type = 11
	Q4_K Type = 12
	Q5_K Type = 13
	Q6_K Type = 14
	BF16 Type = 30
)

// QK is the number of elements in a k-quant super-block (ggml's QK_K).
const QK = 256

// names holds every GGML type id ggml has defined, supported or not, so that
// errors can name the type a file uses. Ids 4, 5, 31-33 and 36-38 are types
// ggml has removed; they keep their historical names.
var names = map[Type]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_2", 5: "Q4_3", 6: "Q5_0", 7: "Q5_1",
	8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
	16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
	23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
	31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8", 34: "TQ1_0", 35: "TQ2_0",
	36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8", 39: "MXFP4",
}

// layout is the storage of one supported type: elements and bytes per block.
type layout struct{ elems, bytes int }

// layouts lists the supported types (ggml-common.h block structs).
var layouts = map[Type]layout{
	F32:  {1, 4},
	F16:  {1, 2},
	BF16: {1, 2},
	Q4_0: {32, 18},  // d f16, qs[16] (two 4-bit quants a byte)
	Q4_1: {32, 20},  // d f16, m f16, qs[16]
	Q5_0: {32, 22},  // d f16, qh[4] (fifth bits), qs[16]
	Q5_1: {32, 24},  // d f16, m f16, qh[4], qs[16]
	Q8_0: {32, 34},  // d f16, qs[32] int8
	Q2_K: {QK, 84},  // scales[16] (4-bit scale | 4-bit min), qs[64], d f16, dmin f16
	Q3_K: {QK, 110}, // hmask[32], qs[64], scales[12] (16 6-bit scales), d f16
	Q4_K: {QK, 144}, // d f16, dmin f16, scales[12] (8 6-bit scales, 8 6-bit mins), qs[128]
	Q5_K: {QK, 176}, // d f16, dmin f16, scales[12], qh[32], qs[128]
	Q6_K: {QK, 210}, // ql[128], qh[64], scales[16] int8, d f16
}

// Types lists the supported types in id order.
func Types() []Type {
	return []Type{F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16}
}

// String returns the GGML name of the type ("Q4_K", "IQ2_XS", ...), or
// "ggml type N" for an id ggml never defined.
func (t Type) String() string {
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("ggml type %d", uint32(t))
}

// Supported reports whether this package (and so the runtime) computes with t.
func (t Type) Supported() bool {
	_, ok := layouts[t]
	return ok
}

// Quantized reports whether t is a supported block-quantized type (not F32,
// F16 or BF16).
func (t Type) Quantized() bool { return t.Supported() && layouts[t].elems > 1 }

// ErrUnsupported is wrapped by every error about a type this package does not
// compute with; test for it with errors.Is.
var ErrUnsupported = errors.New("not supported yet")

// UnsupportedError says which type is not supported. Its text is
// "not supported yet: IQ2_XS"; callers add the file and tensor name.
type UnsupportedError struct{ Type Type }

func (e *UnsupportedError) Error() string { return "not supported yet: " + e.Type.String() }

// Unwrap makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// Check returns nil if the GGML type id is supported and an *UnsupportedError
// ("not supported yet: IQ2_XS") otherwise. It takes the raw id so that a
// value read from a file can be checked before it is converted.
func Check(id uint32) error {
	if Type(id).Supported() {
		return nil
	}
	return &UnsupportedError{Type(id)}
}

// BlockElems is the number of elements per block: 1 for F32/F16/BF16, 32 for
// the legacy types, 256 for the k-quants; 0 if t is not supported.
func (t Type) BlockElems() int { return layouts[t].elems }

// BlockBytes is the number of bytes per block; 0 if t is not supported.
func (t Type) BlockBytes() int { return layouts[t].bytes }

// maxRowElems bounds a row so that byte counts can never overflow an int,
// even on 32-bit platforms (2^28 elements of F32 is 1 GiB).
const maxRowElems = 1 << 28

// RowBytes is the number of bytes a row of cols elements occupies. It fails if
// t is not supported, cols is negative or too large, or cols is not a whole
// number of blocks.
func (t Type) RowBytes(cols int) (int, error) {
	l, ok := layouts[t]
	if !ok {
		return 0, &UnsupportedError{t}
	}
	if cols < 0 || cols > maxRowElems {
		return 0, fmt.Errorf("%s: row of %d elements is out of range", t, cols)
	}
	if cols%l.elems != 0 {
		return 0, fmt.Errorf("%s: row of %d elements is not a whole number of %d-element blocks", t, cols, l.elems)
	}
	return cols / l.elems * l.bytes, nil
}

// checkRow validates a (row bytes, elements) pair for the row functions.
func checkRow(op string, t Type, nbytes, elems int) error {
	want, err := t.RowBytes(elems)
	if err != nil {
		return fmt.Errorf("quant: %s: %w", op, err)
	}
	if nbytes != want {
		return fmt.Errorf("quant: %s: %s: row of %d elements is %d bytes, got %d", op, t, elems, want, nbytes)
	}
	return nil
}
