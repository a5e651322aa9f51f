package kernels

import "unsafe"

// unsafeWords views a float32 slice as uint64 words (benchmarks only).
func unsafeWords(f []float32) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(f))), len(f)/2)
}

// unsafeWords16 views a uint16 slice as uint64 words (benchmarks only).
func unsafeWords16(h []uint16) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(h))), len(h)/4)
}
