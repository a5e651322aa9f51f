package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"offload/device"
	"offload/device/devicetest"
	"offload/internal/emu"
	"offload/internal/half"
)

// These tests run the CUDA backend on a real NVIDIA GPU when one is present,
// and otherwise on the CPU emulator of the driver, NVRTC and cuBLAS
// (internal/emu), which executes every kernel with poisoned memory, guard
// pages and the warp schedule of $EMU_SCHEDULE; scripts/emu-test.sh runs
// them under each schedule. OFFLOAD_EMU=1 picks the emulator even beside a
// GPU. OFFLOAD_REQUIRE_GPU=1 (scripts/gpu-check.sh sets it) demands a real
// GPU and makes a missing one a failure.

func needGPU(t testing.TB) {
	t.Helper()
	if os.Getenv("OFFLOAD_REQUIRE_GPU") == "1" {
		if err := Available(); err != nil {
			t.Fatalf("OFFLOAD_REQUIRE_GPU=1 but: %v", err)
		}
		return
	}
	if !emu.Forced() && Available() == nil {
		return
	}
	emu.Use(t)
	if err := Available(); err != nil {
		t.Fatalf("the emulated driver does not open: %v", err)
	}
}

func openGPU(t testing.TB, opts Options) *Device {
	t.Helper()
	needGPU(t)
	d, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

// TestGPUDeviceSuite runs the device conformance suite on the GPU, with
// pinned and with pageable host memory.
func TestGPUDeviceSuite(t *testing.T) {
	needGPU(t)
	for _, pinned := range []bool{true, false} {
		t.Run(fmt.Sprintf("pinned=%v", pinned), func(t *testing.T) {
			devicetest.Run(t, func(t *testing.T, capacity int64) device.Device {
				d, err := Open(Options{Capacity: capacity, Pinned: pinned})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				t.Logf("%s", d.Info())
				return d
			})
		})
	}
}

// gpuFixture is a device, a stream and helpers to move float32s.
type gpuFixture struct {
	t   *testing.T
	d   *Device
	s   device.Stream
	rng *rand.Rand
}

func newGPUFixture(t *testing.T, opts Options) *gpuFixture {
	d := openGPU(t, opts)
	t.Cleanup(func() { d.Close() })
	s, err := d.NewStream("test")
	if err != nil {
		t.Fatal(err)
	}
	return &gpuFixture{t: t, d: d, s: s, rng: rand.New(rand.NewPCG(7, 11))}
}

func (g *gpuFixture) tensor(dt device.DType, rows, cols int) device.Tensor {
	g.t.Helper()
	b, err := g.d.Alloc(int64(rows)*int64(cols)*dt.RowBytes(1), "t")
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { g.d.Free(b) })
	v, err := device.View(b, 0, dt, rows, cols)
	if err != nil {
		g.t.Fatal(err)
	}
	return v
}

func (g *gpuFixture) put(t device.Tensor, raw []byte) {
	g.t.Helper()
	if err := g.d.CopyToDevice(g.s, t.Buf, t.Off, raw); err != nil {
		g.t.Fatal(err)
	}
	if err := g.d.Synchronize(g.s); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gpuFixture) raw(t device.Tensor) []byte {
	g.t.Helper()
	out := make([]byte, t.Bytes())
	if err := g.d.CopyToHost(g.s, out, t.Buf, t.Off); err != nil {
		g.t.Fatal(err)
	}
	if err := g.d.Synchronize(g.s); err != nil {
		g.t.Fatal(err)
	}
	return out
}

func f32s(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func f32raw(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func (g *gpuFixture) randF32(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (2*g.rng.Float32() - 1) * scale
	}
	return v
}

// weights returns raw weight bytes of dt and their exact f32 values.
func weights(dt device.DType, v []float32) ([]byte, []float32) {
	held := make([]float32, len(v))
	switch dt {
	case device.F32:
		copy(held, v)
		return f32raw(v), held
	}
	b := make([]byte, 2*len(v))
	for i, x := range v {
		var h uint16
		if dt == device.BF16 {
			h = half.F32ToBF16(x)
			held[i] = half.BF16ToF32(h)
		} else {
			h = half.F32ToF16(x)
			held[i] = half.F16ToF32(h)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b, held
}

// TestGPUBatchInvariance holds the property Sirius relies on: a product,
// norm and attention over 16 rows give bit-identical rows to the same
// computation one row at a time.
func TestGPUBatchInvariance(t *testing.T) {
	g := newGPUFixture(t, Options{Capacity: 256 << 20, Pinned: true})
	const n, in, out = 16, 512, 384
	for _, dt := range []device.DType{device.F32, device.BF16, device.F16} {
		w := g.tensor(dt, out, in)
		wb, _ := weights(dt, g.randF32(in*out, 0.1))
		g.put(w, wb)
		x := g.tensor(device.F32, n, in)
		g.put(x, f32raw(g.randF32(n*in, 1)))
		yb := g.tensor(device.F32, n, out)
		if err := g.d.MatMul(g.s, yb, x, w); err != nil {
			t.Fatal(err)
		}
		batch := f32s(g.raw(yb))
		y1 := g.tensor(device.F32, 1, out)
		for r := range n {
			if err := g.d.MatMul(g.s, y1, x.Slice(r, r+1), w); err != nil {
				t.Fatal(err)
			}
			one := f32s(g.raw(y1))
			for o := range out {
				if math.Float32bits(one[o]) != math.Float32bits(batch[r*out+o]) {
					t.Fatalf("%s: row %d col %d: batched %g, alone %g", dt, r, o, batch[r*out+o], one[o])
				}
			}
		}
	}
	// Attention: a window of 16 rows at pos0 against one row at a time.
	const heads, kv, hd, seq, pos0 = 8, 2, 64, 64, 20
	q := g.tensor(device.F32, n, heads*hd)
	kc := g.tensor(device.F32, seq, kv*hd)
	vc := g.tensor(device.F32, seq, kv*hd)
	g.put(q, f32raw(g.randF32(n*heads*hd, 1)))
	g.put(kc, f32raw(g.randF32(seq*kv*hd, 1)))
	g.put(vc, f32raw(g.randF32(seq*kv*hd, 1)))
	ob := g.tensor(device.F32, n, heads*hd)
	if err := g.d.Attention(g.s, ob, q, kc, vc, pos0, heads, kv, hd); err != nil {
		t.Fatal(err)
	}
	batch := f32s(g.raw(ob))
	o1 := g.tensor(device.F32, 1, heads*hd)
	for r := range n {
		if err := g.d.Attention(g.s, o1, q.Slice(r, r+1), kc, vc, pos0+r, heads, kv, hd); err != nil {
			t.Fatal(err)
		}
		for i, v := range f32s(g.raw(o1)) {
			if math.Float32bits(v) != math.Float32bits(batch[r*heads*hd+i]) {
				t.Fatalf("attention row %d elem %d: batched %g, alone %g", r, i, batch[r*heads*hd+i], v)
			}
		}
	}
}

// TestGPUCuBLASPath checks the cuBLAS products (batches above gemvMaxRows)
// against a float64 reference: exact-ish for f32 weights, within the
// rounding of x to the weight type for bf16/f16.
func TestGPUCuBLASPath(t *testing.T) {
	g := newGPUFixture(t, Options{Capacity: 256 << 20, Pinned: true})
	if g.d.blas == nil {
		t.Skip("libcublas not found: every product uses our kernels")
	}
	const n, in, out = 101, 321, 193 // no multiple of a block: conversions end mid-block
	for _, dt := range []device.DType{device.F32, device.BF16, device.F16} {
		for _, trans := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/trans=%v", dt, trans), func(t *testing.T) {
				xv := g.randF32(n*in, 1)
				wv := g.randF32(in*out, 0.1)
				rows, cols := out, in
				if trans {
					rows, cols = in, out
				}
				w := g.tensor(dt, rows, cols)
				wb, wh := weights(dt, wv)
				g.put(w, wb)
				x := g.tensor(device.F32, n, in)
				g.put(x, f32raw(xv))
				y := g.tensor(device.F32, n, out)
				var err error
				if trans {
					err = g.d.MatMulT(g.s, y, x, w)
				} else {
					err = g.d.MatMul(g.s, y, x, w)
				}
				if err != nil {
					t.Fatal(err)
				}
				got := f32s(g.raw(y))
				tol := 1e-5
				if dt != device.F32 {
					tol = 1e-2 // x rounded to the weight type (8 or 11 bits)
				}
				for r := range n {
					for o := range out {
						var s, a float64
						for i := range in {
							wi := wh[o*in+i]
							if trans {
								wi = wh[i*out+o]
							}
							p := float64(wi) * float64(xv[r*in+i])
							s += p
							a += math.Abs(p)
						}
						if d := math.Abs(float64(got[r*out+o]) - s); d > tol*a+1e-6 {
							t.Fatalf("y[%d][%d] = %g, want %g (diff %g, scale %g)", r, o, got[r*out+o], s, d, a)
						}
					}
				}
			})
		}
	}
}

// TestGPUExtras checks Convert, Argmax, Softmax and LogLikelihood against
// Go references, for a Llama-2-sized vocabulary and for rows whose length
// is not a multiple of the block (1001) or shorter than a warp (7).
func TestGPUExtras(t *testing.T) {
	for _, sh := range []struct{ n, vocab int }{{5, 32000}, {3, 1001}, {2, 7}} {
		t.Run(fmt.Sprintf("n=%d/vocab=%d", sh.n, sh.vocab), func(t *testing.T) {
			testExtras(t, sh.n, sh.vocab)
		})
	}
}

func testExtras(t *testing.T, n, vocab int) {
	g := newGPUFixture(t, Options{Capacity: 256 << 20, Pinned: true})
	xv := g.randF32(n*vocab, 8)
	xv[(n-2)*vocab+77%vocab] = 100                // a clear winner
	xv[(n-1)*vocab+2], xv[(n-1)*vocab+5] = 50, 50 // a tie: the first wins
	x := g.tensor(device.F32, n, vocab)
	g.put(x, f32raw(xv))
	am := g.tensor(device.I32, 1, n)
	if err := g.d.Argmax(g.s, am, x); err != nil {
		t.Fatal(err)
	}
	amv := g.raw(am)
	for r := range n {
		best := 0
		for i := 1; i < vocab; i++ {
			if xv[r*vocab+i] > xv[r*vocab+best] {
				best = i
			}
		}
		if got := int(int32(binary.LittleEndian.Uint32(amv[4*r:]))); got != best {
			t.Errorf("Argmax row %d = %d, want %d", r, got, best)
		}
	}

	const temp = 0.6
	sm := g.tensor(device.F32, n, vocab)
	if err := g.d.Softmax(g.s, sm, x, temp); err != nil {
		t.Fatal(err)
	}
	smv := f32s(g.raw(sm))
	tokens := make([]int32, n)
	for i := range tokens {
		tokens[i] = int32([]int{0, 1234, vocab - 1, 77, 9}[i%5] % vocab)
	}
	tb := make([]byte, 4*n)
	for i, tk := range tokens {
		binary.LittleEndian.PutUint32(tb[4*i:], uint32(tk))
	}
	tt := g.tensor(device.I32, 1, n)
	g.put(tt, tb)
	ll := g.tensor(device.F32, 1, n)
	if err := g.d.LogLikelihood(g.s, ll, x, tt, temp); err != nil {
		t.Fatal(err)
	}
	llv := f32s(g.raw(ll))
	for r := range n {
		m := math.Inf(-1)
		for i := range vocab {
			m = math.Max(m, float64(xv[r*vocab+i])/temp)
		}
		var s float64
		for i := range vocab {
			s += math.Exp(float64(xv[r*vocab+i])/temp - m)
		}
		bad := 0
		for i := range vocab {
			want := math.Exp(float64(xv[r*vocab+i])/temp-m) / s
			if d := math.Abs(float64(smv[r*vocab+i]) - want); !(d <= 1e-5*want+1e-9) && bad < 5 {
				t.Errorf("Softmax[%d][%d] = %g, want %g", r, i, smv[r*vocab+i], want)
				bad++
			}
		}
		want := float64(xv[r*vocab+int(tokens[r])])/temp - m - math.Log(s)
		if d := math.Abs(float64(llv[r]) - want); d > 1e-4*math.Max(1, math.Abs(want)) {
			t.Errorf("LogLikelihood[%d] = %g, want %g", r, llv[r], want)
		}
	}

	// Conversions round-trip: f32 -> bf16/f16 matches the Go rounding, and
	// back to f32 is exact.
	for _, dt := range []device.DType{device.BF16, device.F16} {
		h := g.tensor(dt, n, vocab)
		if err := g.d.Convert(g.s, h, x); err != nil {
			t.Fatal(err)
		}
		wantRaw, held := weights(dt, xv)
		gotRaw := g.raw(h)
		for i := 0; i < len(wantRaw); i += 2 {
			if gotRaw[i] != wantRaw[i] || gotRaw[i+1] != wantRaw[i+1] {
				t.Fatalf("%s conversion of %g: got %02x%02x, want %02x%02x", dt, xv[i/2], gotRaw[i+1], gotRaw[i], wantRaw[i+1], wantRaw[i])
			}
		}
		back := g.tensor(device.F32, n, vocab)
		if err := g.d.Convert(g.s, back, h); err != nil {
			t.Fatal(err)
		}
		for i, v := range f32s(g.raw(back)) {
			if v != held[i] {
				t.Fatalf("%s to f32 of element %d: %g, want %g", dt, i, v, held[i])
			}
		}
	}

	// A token out of range is an error at Synchronize.
	binary.LittleEndian.PutUint32(tb[0:], uint32(vocab))
	g.put(tt, tb)
	if err := g.d.LogLikelihood(g.s, ll, x, tt, temp); err != nil {
		t.Fatal(err)
	}
	if err := g.d.Synchronize(g.s); err == nil {
		t.Error("LogLikelihood with a token past the vocabulary: no error")
	}
}

// TestGPUArgmaxPositions puts the maximum of each of 256 rows under a
// different thread of the block (and in a different pass of its loop), with
// equal values later in the row, under a neighbouring lane and under
// another warp, that must lose the tie: every lane and warp of the
// reduction, and the merge across warps, decides some row.
func TestGPUArgmaxPositions(t *testing.T) {
	g := newGPUFixture(t, Options{Capacity: 96 << 20, Pinned: true})
	for _, vocab := range []int{1001, 32000} {
		const n = threads
		xv := g.randF32(n*vocab, 8)
		want := make([]int, n)
		for r := range n {
			m := (r + threads*(r%4)) % vocab
			want[r] = m
			xv[r*vocab+m] = 100
			for _, tie := range []int{m + 1 + threads, m + 3*32 + threads} {
				if tie < vocab {
					xv[r*vocab+tie] = 100
				}
			}
		}
		x := g.tensor(device.F32, n, vocab)
		g.put(x, f32raw(xv))
		am := g.tensor(device.I32, 1, n)
		if err := g.d.Argmax(g.s, am, x); err != nil {
			t.Fatal(err)
		}
		got := g.raw(am)
		for r := range n {
			if a := int(int32(binary.LittleEndian.Uint32(got[4*r:]))); a != want[r] {
				t.Errorf("vocab %d: Argmax row %d = %d, want %d (thread %d)", vocab, r, a, want[r], want[r]%threads)
			}
		}
	}

	// NaNs never win, wherever they are; an all-NaN row gives 0, and so
	// does a row of -Inf (its first element).
	const vocab = 300
	nan, inf := float32(math.NaN()), float32(math.Inf(-1))
	rows := [][]float32{make([]float32, vocab), make([]float32, vocab), make([]float32, vocab), make([]float32, vocab)}
	for i := range vocab {
		rows[0][i] = float32(i % 7)
		rows[1][i], rows[2][i], rows[3][i] = nan, inf, nan
	}
	rows[0][0], rows[0][6], rows[0][299] = nan, nan, nan // 6 and 13 hold 6: 13 wins
	rows[3][280] = -5                                    // the only number, in a second pass
	want := []int32{13, 0, 0, 280}
	var xv []float32
	for _, r := range rows {
		xv = append(xv, r...)
	}
	x := g.tensor(device.F32, len(rows), vocab)
	g.put(x, f32raw(xv))
	am := g.tensor(device.I32, 1, len(rows))
	if err := g.d.Argmax(g.s, am, x); err != nil {
		t.Fatal(err)
	}
	got := g.raw(am)
	for r := range rows {
		if a := int32(binary.LittleEndian.Uint32(got[4*r:])); a != want[r] {
			t.Errorf("Argmax of NaN/-Inf row %d = %d, want %d", r, a, want[r])
		}
	}
}

// BenchmarkH2D measures host-to-device copy bandwidth from pinned
// (cuMemHostAlloc) and from pageable (Go) memory, 256 MiB per copy.
func BenchmarkH2D(b *testing.B) {
	const size = 256 << 20
	for _, pinned := range []bool{true, false} {
		b.Run(fmt.Sprintf("pinned=%v", pinned), func(b *testing.B) {
			d := openGPU(b, Options{Capacity: size + 64<<20, Pinned: pinned})
			defer d.Close()
			s, err := d.NewStream("copy")
			if err != nil {
				b.Fatal(err)
			}
			src, err := d.HostAlloc(size)
			if err != nil {
				b.Fatal(err)
			}
			defer d.HostFree(src)
			for i := range src {
				src[i] = byte(i)
			}
			dst, err := d.Alloc(size, "dst")
			if err != nil {
				b.Fatal(err)
			}
			// Warm up (first touch, TLBs) outside the timing.
			if err := d.CopyToDevice(s, dst, 0, src); err != nil {
				b.Fatal(err)
			}
			if err := d.Synchronize(s); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ResetTimer()
			start := d.Record(s)
			for range b.N {
				if err := d.CopyToDevice(s, dst, 0, src); err != nil {
					b.Fatal(err)
				}
			}
			end := d.Record(s)
			if err := d.Synchronize(s); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			t0, err0 := d.EventTime(start)
			t1, err1 := d.EventTime(end)
			if err0 == nil && err1 == nil && t1 > t0 {
				b.ReportMetric(float64(size)*float64(b.N)/(t1-t0).Seconds()/1e9, "GB/s(events)")
			}
		})
	}
}
