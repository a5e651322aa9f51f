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

// BenchmarkAttention runs the host Attention on decode, check-pass and
// prefill shapes: stories260K (8 heads of 8, 4 KV heads) and Llama-3-8B (32
// heads of 128, 8 KV heads) at n query rows after pos0 cached positions,
// and a decode step of an 8192-wide model (64 heads, 8 KV heads) over 4096
// positions. GFLOP/s counts the causal products (4 flops per head, head
// element and attended position).
//
//	go test ./device/host -run '^$' -bench Attention -benchtime 20x
func BenchmarkAttention(b *testing.B) {
	for _, c := range []struct{ heads, kvHeads, hd, pos0, n int }{
		{8, 4, 8, 150, 1}, {8, 4, 8, 150, 16},
		{32, 8, 128, 1000, 1}, {32, 8, 128, 1000, 16}, {32, 8, 128, 0, 256},
		{64, 8, 128, 4095, 1},
	} {
		b.Run(fmt.Sprintf("heads=%d/kv=%d/hd=%d/pos0=%d/n=%d", c.heads, c.kvHeads, c.hd, c.pos0, c.n), func(b *testing.B) {
			seq := c.pos0 + c.n
			d, err := New(Options{Capacity: int64(2*seq*c.kvHeads*c.hd*4 + 2*c.n*c.heads*c.hd*4)})
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
			q, out := mk(c.n, c.heads*c.hd), mk(c.n, c.heads*c.hd)
			k, v := mk(seq, c.kvHeads*c.hd), mk(seq, c.kvHeads*c.hd)
			flops := 0.0
			for r := range c.n {
				flops += 4 * float64(c.heads*c.hd*(c.pos0+r+1))
			}
			for b.Loop() {
				if err := d.Attention(s, out, q, k, v, c.pos0, c.heads, c.kvHeads, c.hd); err != nil {
					b.Fatal(err)
				}
				if err := d.Synchronize(s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
