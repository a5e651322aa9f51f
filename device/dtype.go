package device

import "fmt"

// DType is the storage type of a tensor in device memory. Activations are
// always F32 and index lists I32; weights may be F32, F16, BF16 or one of
// ggml's block-quantized types.
//
// A block-quantized type stores BlockElems elements in BlockBytes bytes
// (scales included), so sizes are computed per row with RowBytes and never
// as "elements times element size": a row of a quantized tensor must be a
// whole number of blocks. Plain types are blocks of one element.
type DType uint8

const (
	F32 DType = iota
	F16
	BF16
	I32
	// Block-quantized weight types, with ggml's block layouts
	// (ggml-common.h): 32-element blocks ...
	Q4_0
	Q4_1
	Q5_0
	Q5_1
	Q8_0
	// ... and 256-element super-blocks.
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
	numDTypes
)

type dtypeInfo struct {
	name         string
	elems, bytes int
}

var dtypeInfos = [numDTypes]dtypeInfo{
	F32: {"f32", 1, 4}, F16: {"f16", 1, 2}, BF16: {"bf16", 1, 2}, I32: {"i32", 1, 4},
	Q4_0: {"q4_0", 32, 18}, Q4_1: {"q4_1", 32, 20}, Q5_0: {"q5_0", 32, 22}, Q5_1: {"q5_1", 32, 24},
	Q8_0: {"q8_0", 32, 34},
	Q2_K: {"q2_k", 256, 84}, Q3_K: {"q3_k", 256, 110}, Q4_K: {"q4_k", 256, 144},
	Q5_K: {"q5_k", 256, 176}, Q6_K: {"q6_k", 256, 210},
}

// Valid says whether d is one of the types above.
func (d DType) Valid() bool { return d < numDTypes }

// BlockElems is the number of elements in one block (1 for plain types, 0 for
// an invalid type).
func (d DType) BlockElems() int {
	if !d.Valid() {
		return 0
	}
	return dtypeInfos[d].elems
}

// BlockBytes is the size of one block in bytes (the element size for plain
// types, 0 for an invalid type).
func (d DType) BlockBytes() int {
	if !d.Valid() {
		return 0
	}
	return dtypeInfos[d].bytes
}

// Quantized says whether d is a block-quantized type.
func (d DType) Quantized() bool { return d.BlockElems() > 1 }

// RowBytes is the size in bytes of cols elements. For a quantized type cols
// must be a multiple of BlockElems (see WholeBlocks); a partial block is
// counted whole.
func (d DType) RowBytes(cols int) int64 {
	e := d.BlockElems()
	if e == 0 {
		return 0
	}
	return (int64(cols) + int64(e) - 1) / int64(e) * int64(d.BlockBytes())
}

// WholeBlocks says whether cols elements are a whole number of blocks.
func (d DType) WholeBlocks(cols int) bool {
	e := d.BlockElems()
	return e > 0 && cols%e == 0
}

// BitsPerWeight is 8*BlockBytes/BlockElems (4.5 for q4_k).
func (d DType) BitsPerWeight() float64 {
	if !d.Valid() {
		return 0
	}
	return 8 * float64(d.BlockBytes()) / float64(d.BlockElems())
}

func (d DType) String() string {
	if !d.Valid() {
		return fmt.Sprintf("dtype(%d)", uint8(d))
	}
	return dtypeInfos[d].name
}

// WeightTypes are the types a weight tensor may have; which of them a backend
// computes with is in its Capabilities.
var WeightTypes = []DType{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K}
