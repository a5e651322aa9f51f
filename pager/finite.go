package pager

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// NonFinite returns the index of the first element of data (elements of
// dtype d) that is NaN or infinite, or -1 when all are finite. For a
// block-quantised type it checks each block's f16 scales (the only floats a
// block holds) and returns the first element of the first bad block; types
// it does not know the layout of return -1.
//
// It is meant to run over every weight once, as it is first read: it tests
// eight bytes at a time for an all-ones exponent (for each lane, masking
// the exponent and adding one unit of it carries into the sign bit exactly
// when the exponent was all ones), and looks for the element only once a
// block is known to hold one.
func NonFinite(d DType, data []byte) int {
	var mask, unit, sign uint64
	var es int
	switch d {
	case F32:
		mask, unit, sign, es = 0x7f8000007f800000, 0x0080000000800000, 0x8000000080000000, 4
	case F16:
		mask, unit, sign, es = 0x7c007c007c007c00, 0x0400040004000400, 0x8000800080008000, 2
	case BF16:
		mask, unit, sign, es = 0x7f807f807f807f80, 0x0080008000800080, 0x8000800080008000, 2
	default:
		return nonFiniteBlocks(d, data)
	}
	// Scan whole aligned words (a misaligned *uint64 is not allowed): the
	// bytes before the first 8-byte boundary go the slow way, and so does a
	// tensor whose elements do not line up with word boundaries.
	head := int((8 - uintptr(unsafe.Pointer(unsafe.SliceData(data)))%8) % 8)
	if head%es != 0 || head >= len(data) {
		return nonFiniteSlow(d, data, es)
	}
	if i := nonFiniteSlow(d, data[:head], es); i >= 0 {
		return i
	}
	if i := nonFiniteAligned(d, data[head:], mask, unit, sign, es); i >= 0 {
		return head/es + i
	}
	return -1
}

func nonFiniteAligned(d DType, data []byte, mask, unit, sign uint64, es int) int {
	const block = 256 // words per block
	words := len(data) / 8
	var w []uint64
	if words > 0 {
		w = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(data))), words)
	}
	for b0 := 0; b0 < words; b0 += block {
		blk := w[b0:min(b0+block, words)]
		var a0, a1, a2, a3 uint64
		k := 0
		for ; k+4 <= len(blk); k += 4 {
			a0 |= blk[k]&mask + unit
			a1 |= blk[k+1]&mask + unit
			a2 |= blk[k+2]&mask + unit
			a3 |= blk[k+3]&mask + unit
		}
		for ; k < len(blk); k++ {
			a0 |= blk[k]&mask + unit
		}
		acc := (a0 | a1 | a2 | a3) & sign
		if acc != 0 {
			if i := nonFiniteSlow(d, data[b0*8:(b0+len(blk))*8], es); i >= 0 {
				return b0*8/es + i
			}
		}
	}
	tail := words * 8
	if i := nonFiniteSlow(d, data[tail:], es); i >= 0 {
		return tail/es + i
	}
	return -1
}

func nonFiniteSlow(d DType, data []byte, es int) int {
	for i := 0; i+es <= len(data); i += es {
		var bad bool
		switch d {
		case F32:
			bad = binary.LittleEndian.Uint32(data[i:])&0x7f800000 == 0x7f800000
		case F16:
			bad = binary.LittleEndian.Uint16(data[i:])&0x7c00 == 0x7c00
		case BF16:
			bad = binary.LittleEndian.Uint16(data[i:])&0x7f80 == 0x7f80
		}
		if bad {
			return i / es
		}
	}
	return -1
}

// CheckFinite returns an error naming the tensor and the first NaN or
// infinite weight in it, if any.
func (t *Tensor) CheckFinite() error {
	i := NonFinite(t.DType, t.Data)
	if i < 0 {
		return nil
	}
	es := t.DType.Size()
	var v float64
	switch t.DType {
	case F32:
		v = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[i*es:])))
	case F16:
		if binary.LittleEndian.Uint16(t.Data[i*es:])&0x3ff != 0 {
			v = math.NaN()
		} else {
			v = math.Inf(1)
		}
	case BF16:
		v = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[i*es:])) << 16))
	}
	at := fmt.Sprintf("element %d", i)
	if c := t.Cols(); len(t.Shape) >= 2 && c > 0 {
		at = fmt.Sprintf("row %d, column %d", i/c, i%c)
	}
	if t.DType.BlockSize() > 1 {
		return fmt.Errorf("tensor %s (%s %v) holds a non-finite weight (the scale of the block at %s): the file is corrupt", t.Name, t.DType, t.Shape, at)
	}
	return fmt.Errorf("tensor %s (%s %v) holds a non-finite weight (%g at %s): the file is corrupt", t.Name, t.DType, t.Shape, v, at)
}

// quantScales are the byte offsets of the f16 scales in one block of each
// quantised type the runtime computes with (ggml's block layouts: d, and m
// or dmin where the block has one).
var quantScales = map[DType][]int{
	Q4_0: {0}, Q4_1: {0, 2}, Q5_0: {0}, Q5_1: {0, 2}, Q8_0: {0},
	Q2_K: {80, 82}, Q3_K: {108}, Q4_K: {0, 2}, Q5_K: {0, 2}, Q6_K: {208},
}

func nonFiniteBlocks(d DType, data []byte) int {
	offs, ok := quantScales[d]
	info := dtypes[d]
	if !ok || info.size == 0 {
		return -1
	}
	for b, o := 0, 0; o+info.size <= len(data); b, o = b+1, o+info.size {
		for _, so := range offs {
			if binary.LittleEndian.Uint16(data[o+so:])&0x7c00 == 0x7c00 {
				return b * info.block
			}
		}
	}
	return -1
}
