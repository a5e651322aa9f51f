//go:build amd64 && !purego

package pager

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// streamAsm says whether the AVX2 non-temporal copy may run (tests clear it
// to hold the plain path to the same results).
var streamAsm = cpu.X86.HasAVX2

//go:noescape
func copyNTAVX2(dst, src *byte, n int)

// StreamCopy copies src into dst (len(dst) >= len(src)) for data that will
// not be read again soon by this CPU, such as rows gathered into a staging
// buffer that the copy engine reads next: non-temporal stores skip reading
// dst's cache lines first, which a plain copy of many small rows pays for.
func StreamCopy(dst, src []byte) {
	n := len(src)
	if !streamAsm || n < 4096 {
		copy(dst, src)
		return
	}
	dst = dst[:n]
	// Align the destination to 32 bytes with a plain copy of the head.
	head := int((32 - uintptr(unsafe.Pointer(&dst[0]))%32) % 32)
	copy(dst[:head], src[:head])
	body := (n - head) &^ 127
	if body > 0 {
		copyNTAVX2(&dst[head], &src[head], body)
	}
	copy(dst[head+body:], src[head+body:])
}
