package pager

import (
	"fmt"
	"math/bits"
)

// DType is the element type of a tensor. Its values are the GGML type ids
// (ggml.h enum ggml_type), so a GGUF tensor's type field converts directly and
// the GGUF writer stores uint32(d). Only F32, F16 and BF16 are supported by
// the runtime; the other names exist so that errors can say which type a file
// uses, and so that Open can size (and skip past) quantised tensors.
type DType uint8

// GGML type ids. Gaps (4, 5, 31-33, 36-38) are types ggml has removed.
const (
	F32     DType = 0
	F16     DType = 1
	Q4_0    DType = 2
	Q4_1    DType = 3
	Q4_2    DType = 4 // removed from ggml
	Q4_3    DType = 5 // removed from ggml
	Q5_0    DType = 6
	Q5_1    DType = 7
	Q8_0    DType = 8
	Q8_1    DType = 9
	Q2_K    DType = 10
	Q3_K    DType = 11
	Q4_K    DType = 12
	Q5_K    DType = 13
	Q6_K    DType = 14
	Q8_K    DType = 15
	IQ2_XXS DType = 16
	IQ2_XS  DType = 17
	IQ3_XXS DType = 18
	IQ1_S   DType = 19
	IQ4_NL  DType = 20
	IQ3_S   DType = 21
	IQ2_S   DType = 22
	IQ4_XS  DType = 23
	I8      DType = 24
	I16     DType = 25
	I32     DType = 26
	I64     DType = 27
	F64     DType = 28
	IQ1_M   DType = 29
	BF16    DType = 30
	// 31-33 were Q4_0_4_4, Q4_0_4_8, Q4_0_8_8 (removed from ggml).
	TQ1_0 DType = 34
	TQ2_0 DType = 35
	// 36-38 were IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8 (removed from ggml).
	MXFP4 DType = 39
)

// dtypeInfo describes the storage of one GGML type: elements per block and
// bytes per block. block == 0 means the type is named but can no longer be
// sized (ggml removed it), so a file using it cannot be opened.
type dtypeInfo struct {
	name        string
	block, size int
}

var dtypes = map[DType]dtypeInfo{
	F32: {"F32", 1, 4}, F16: {"F16", 1, 2}, BF16: {"BF16", 1, 2}, F64: {"F64", 1, 8},
	I8: {"I8", 1, 1}, I16: {"I16", 1, 2}, I32: {"I32", 1, 4}, I64: {"I64", 1, 8},
	Q4_0: {"Q4_0", 32, 18}, Q4_1: {"Q4_1", 32, 20}, Q5_0: {"Q5_0", 32, 22}, Q5_1: {"Q5_1", 32, 24},
	Q8_0: {"Q8_0", 32, 34}, Q8_1: {"Q8_1", 32, 36},
	Q2_K: {"Q2_K", 256, 84}, Q3_K: {"Q3_K", 256, 110}, Q4_K: {"Q4_K", 256, 144},
	Q5_K: {"Q5_K", 256, 176}, Q6_K: {"Q6_K", 256, 210}, Q8_K: {"Q8_K", 256, 292},
	IQ2_XXS: {"IQ2_XXS", 256, 66}, IQ2_XS: {"IQ2_XS", 256, 74}, IQ3_XXS: {"IQ3_XXS", 256, 98},
	IQ1_S: {"IQ1_S", 256, 50}, IQ4_NL: {"IQ4_NL", 32, 18}, IQ3_S: {"IQ3_S", 256, 110},
	IQ2_S: {"IQ2_S", 256, 82}, IQ4_XS: {"IQ4_XS", 256, 136}, IQ1_M: {"IQ1_M", 256, 56},
	TQ1_0: {"TQ1_0", 256, 54}, TQ2_0: {"TQ2_0", 256, 66}, MXFP4: {"MXFP4", 32, 17},
	Q4_2: {"Q4_2", 0, 0}, Q4_3: {"Q4_3", 0, 0},
	31: {"Q4_0_4_4", 0, 0}, 32: {"Q4_0_4_8", 0, 0}, 33: {"Q4_0_8_8", 0, 0},
	36: {"IQ4_NL_4_4", 0, 0}, 37: {"IQ4_NL_4_8", 0, 0}, 38: {"IQ4_NL_8_8", 0, 0},
}

// supportedNames is the list quoted in "not supported" errors.
const supportedNames = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K"

// String returns the GGML name of the type ("F32", "Q4_K", ...), or
// "dtype(N)" for an id ggml never defined.
func (d DType) String() string {
	if info, ok := dtypes[d]; ok {
		return info.name
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Known reports whether d is a GGML type this package can size.
func (d DType) Known() bool {
	info, ok := dtypes[d]
	return ok && info.block > 0
}

// Supported reports whether the runtime computes with d: F32, F16, BF16 and
// ggml's block-quantized Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K..Q6_K (which
// llama.cpp's quantizer mixes per tensor in its *_K_S/M/L files).
func (d DType) Supported() bool {
	switch d {
	case F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K:
		return true
	}
	return false
}

// Float reports whether d is a plain float type (F32, F16, BF16): the types
// safetensors files hold and the ones whose columns can be cut out of a row.
func (d DType) Float() bool { return d == F32 || d == F16 || d == BF16 }

// Size is the number of bytes per element for unquantised types (F32: 4,
// F16/BF16: 2, I8..F64), and 0 for block-quantised or unknown types, whose
// elements do not have a whole-byte size; use RowBytes for those.
func (d DType) Size() int {
	if info, ok := dtypes[d]; ok && info.block == 1 {
		return info.size
	}
	return 0
}

// BlockSize is the number of elements per quantisation block (1 for plain
// types, 32 or 256 for the quantised ones, 0 if unknown).
func (d DType) BlockSize() int { return dtypes[d].block }

// BlockBytes is the number of bytes per block (0 if unknown).
func (d DType) BlockBytes() int { return dtypes[d].size }

// maxTensorBytes bounds any single tensor (and total sizes computed from
// untrusted headers) so that int64 arithmetic can never overflow.
const maxTensorBytes = int64(1) << 50

// RowBytes returns the number of bytes that n consecutive elements along the
// innermost dimension occupy. n must be a multiple of the block size.
func (d DType) RowBytes(n int64) (int64, error) {
	info, ok := dtypes[d]
	if !ok || info.block == 0 {
		return 0, fmt.Errorf("dtype %s has no known size", d)
	}
	if n < 0 {
		return 0, fmt.Errorf("negative element count %d", n)
	}
	if n%int64(info.block) != 0 {
		return 0, fmt.Errorf("%d elements is not a multiple of the %s block size %d", n, d, info.block)
	}
	b, ok := mulCheck(n/int64(info.block), int64(info.size))
	if !ok {
		return 0, fmt.Errorf("%d elements of %s overflow", n, d)
	}
	return b, nil
}

// mulCheck multiplies two non-negative int64 values and reports false if the
// product exceeds maxTensorBytes (which also rules out overflow).
func mulCheck(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > uint64(maxTensorBytes) {
		return 0, false
	}
	return int64(lo), true
}

// tensorBytes computes the byte size of a tensor with the given shape
// (outermost first), checking the block constraint on the innermost dim and
// bounding every product.
func tensorBytes(d DType, shape []int) (int64, error) {
	if len(shape) == 0 {
		return d.RowBytes(1)
	}
	for _, s := range shape {
		if s < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
	}
	row, err := d.RowBytes(int64(shape[len(shape)-1]))
	if err != nil {
		return 0, fmt.Errorf("shape %v: %w", shape, err)
	}
	total := row
	for _, s := range shape[:len(shape)-1] {
		var ok bool
		if total, ok = mulCheck(total, int64(s)); !ok {
			return 0, fmt.Errorf("shape %v of %s is too large", shape, d)
		}
	}
	return total, nil
}
