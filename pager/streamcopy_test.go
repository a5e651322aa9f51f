package pager

import (
	"bytes"
	"testing"
)

// TestStreamCopy checks every head/tail alignment and length class against
// a plain copy, with the SIMD path on and off.
func TestStreamCopy(t *testing.T) {
	src := make([]byte, 1<<16+300)
	for i := range src {
		src[i] = byte(i*31 + 7)
	}
	for _, asm := range []bool{false, true} {
		old := streamAsm
		streamAsm = asm && old
		for _, off := range []int{0, 1, 7, 31, 32, 33} {
			for _, n := range []int{0, 1, 4095, 4096, 4097, 5000, 1 << 15, 1<<16 + 200} {
				dst := make([]byte, n+off+64)
				for i := range dst {
					dst[i] = 0xee
				}
				StreamCopy(dst[off:off+n], src[:n])
				if !bytes.Equal(dst[off:off+n], src[:n]) {
					t.Fatalf("asm=%v off=%d n=%d: copy differs", asm, off, n)
				}
				for i := 0; i < off; i++ {
					if dst[i] != 0xee {
						t.Fatalf("asm=%v off=%d n=%d: wrote before dst", asm, off, n)
					}
				}
				for i := off + n; i < len(dst); i++ {
					if dst[i] != 0xee {
						t.Fatalf("asm=%v off=%d n=%d: wrote past the end", asm, off, n)
					}
				}
			}
		}
		streamAsm = old
	}
}

func FuzzStreamCopy(f *testing.F) {
	f.Add([]byte("hello"), uint8(3))
	f.Add(bytes.Repeat([]byte{1, 2, 3}, 3000), uint8(17))
	f.Fuzz(func(t *testing.T, src []byte, off uint8) {
		dst := make([]byte, len(src)+int(off))
		StreamCopy(dst[off:], src)
		if !bytes.Equal(dst[off:], src) {
			t.Fatal("StreamCopy differs from copy")
		}
	})
}
