package host

import (
	"fmt"
	"testing"
	"time"

	"offload/device"
)

var copySizes = []int{64 << 20, 512 << 20}

func touched(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = byte(i >> 12)
	}
	return b
}

// BenchmarkMemcpy is the ceiling: a plain copy() between touched slices.
func BenchmarkMemcpy(b *testing.B) {
	for _, n := range copySizes {
		b.Run(fmt.Sprintf("%dMiB", n>>20), func(b *testing.B) {
			dst, src := touched(n), touched(n)
			copy(dst, src)
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}

// BenchmarkCopyToDevice is an unpaced CopyToDevice plus Synchronize. Its
// vs-memcpy metric is the time of a plain copy() of the same bytes, run
// (untimed) after each iteration, over the time of the device copy: paired
// this way the ratio holds up on a machine shared with other work.
func BenchmarkCopyToDevice(b *testing.B) {
	for _, n := range copySizes {
		b.Run(fmt.Sprintf("%dMiB", n>>20), func(b *testing.B) {
			d, err := New(Options{Capacity: int64(n)})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			s, _ := d.NewStream("copy")
			buf, err := d.Alloc(int64(n), "dst")
			if err != nil {
				b.Fatal(err)
			}
			src, _ := d.HostAlloc(int64(n))
			copy(src, touched(n))
			plain := touched(n)
			copyOnce := func() {
				if err := d.CopyToDevice(s, buf, 0, src); err != nil {
					b.Fatal(err)
				}
				if err := d.Synchronize(s); err != nil {
					b.Fatal(err)
				}
			}
			copyOnce() // touch the device pages
			var dev, ref time.Duration
			b.SetBytes(int64(n))
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				copyOnce()
				t1 := time.Now()
				b.StopTimer()
				copy(plain, src)
				ref += time.Since(t1)
				dev += t1.Sub(t0)
				b.StartTimer()
			}
			b.ReportMetric(ref.Seconds()/dev.Seconds(), "vs-memcpy")
		})
	}
}

// BenchmarkAttention is one decode step of an 8192-wide model (64 heads,
// 8 KV heads of 128) over 4096 cached positions.
func BenchmarkAttention(b *testing.B) {
	const heads, kvHeads, hd, seq = 64, 8, 128, 4096
	d, err := New(Options{Capacity: 2*seq*kvHeads*hd*4 + 2*heads*hd*4})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	s, _ := d.NewStream("compute")
	mk := func(rows, cols int) device.Tensor {
		buf, err := d.Alloc(int64(rows*cols*4), "t")
		if err != nil {
			b.Fatal(err)
		}
		t, _ := device.View(buf, 0, device.F32, rows, cols)
		return t
	}
	q, out := mk(1, heads*hd), mk(1, heads*hd)
	k, v := mk(seq, kvHeads*hd), mk(seq, kvHeads*hd)
	b.SetBytes(2 * seq * kvHeads * hd * 4)
	for b.Loop() {
		if err := d.Attention(s, out, q, k, v, seq-1, heads, kvHeads, hd); err != nil {
			b.Fatal(err)
		}
		if err := d.Synchronize(s); err != nil {
			b.Fatal(err)
		}
	}
}
