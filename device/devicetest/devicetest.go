// Package devicetest is the conformance suite every device.Device backend
// runs, in the style of testing/fstest.TestFS: a backend's test calls Run
// with a constructor, and the suite checks memory accounting, copies,
// ordering across streams, error reporting and every kernel against plain
// float64 references written here (independently of any backend's code).
//
// Beyond the interface's own docs, the suite holds a backend to these rules,
// which the engine relies on:
//   - Used counts exactly the requested sizes; a failed Alloc changes
//     neither Used nor Peak.
//   - Tensors may start at any element-aligned offset (a row slice of an
//     f16 matrix with an odd width starts 2-byte aligned); an offset that is
//     not element-aligned, a view past its buffer, a nil or freed buffer,
//     and every shape or dtype mismatch is an error at enqueue time, never a
//     panic, and enqueues nothing.
//   - Kernels write nothing outside their output tensor. Elementwise ops
//     (RMSNorm, SiLUMul, Add) may run in place (y == x, out == gate).
//   - Zero-length copies are accepted and do nothing.
//   - An index out of range in GatherRows/GatherColsT is an error, reported
//     by the call or by the next Synchronize; once reported it does not
//     poison later work on the stream.
//   - Device memory is never an alias of host memory: changing a copy's
//     source after it completed, or a CopyToHost destination, leaves the
//     device buffer as it was (invariant 1).
//
// Float kernels are compared against float64 references with a relative
// tolerance of 1e-5 of each element's scale (Σ|terms| for sums, the pair
// norm for RoPE, max|v| for attention); copies, Add and gathers are exact.
package devicetest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"offload/device"
	"offload/internal/half"
)

// Run runs every conformance test against devices made by newDev (a fresh
// device per subtest, with the given capacity in bytes). Run closes each
// device when its subtest ends, so newDev must not register its own Close.
func Run(t *testing.T, newDev func(t *testing.T, capacity int64) device.Device) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		capacity int64
		fn       func(*fixture)
	}{
		{"Memory/Accounting", 1 * mib, testAccounting},
		{"Memory/ManySmall", 1 * mib, testManySmall},
		{"Memory/MapHost", 1 * mib, testMapHost},
		{"Copy/RoundTrip", 16 * mib, testCopyRoundTrip},
		{"Copy/DeviceToDevice", 8 * mib, testCopyDevice},
		{"Copy/Snapshot", 1 * mib, testCopySnapshot},
		{"Copy/Large", 64 * mib, testCopyLarge},
		{"Stream/CopyThenCompute", 160 * mib, testCopyThenCompute},
		{"Stream/ComputeThenCopy", 160 * mib, testComputeThenCopy},
		{"Stream/Chain", 16 * mib, testChain},
		{"Stream/EventTime", 32 * mib, testEventTime},
		{"Stream/Errors", 1 * mib, testSyncErrors},
		{"Errors/Shapes", 4 * mib, testShapeErrors},
		{"Kernel/MatMul", 16 * mib, func(f *fixture) { testMatMul(f, false) }},
		{"Kernel/MatMulT", 16 * mib, func(f *fixture) { testMatMul(f, true) }},
		{"Kernel/MatMulQuant", 16 * mib, testMatMulQuant},
		{"Kernel/RMSNorm", 4 * mib, testRMSNorm},
		{"Kernel/RoPE", 4 * mib, testRoPE},
		{"Kernel/RoPEFreqs", 4 * mib, testRoPEFreqs},
		{"Kernel/Attention", 16 * mib, testAttention},
		{"Kernel/AttentionLong", 32 * mib, testAttentionLong},
		{"Kernel/SiLUMul", 4 * mib, testSiLUMul},
		{"Kernel/Add", 4 * mib, testAdd},
		{"Kernel/GatherRows", 4 * mib, testGatherRows},
		{"Kernel/GatherRowsQuant", 4 * mib, testGatherRowsQuant},
		{"Kernel/GatherColsT", 4 * mib, testGatherColsT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newDev, tc.capacity)
			tc.fn(f)
		})
	}
}

// fixture is one fresh device, a default stream and a deterministic RNG.
type fixture struct {
	t        *testing.T
	dev      device.Device
	s        device.Stream
	rng      *rand.Rand
	capacity int64
}

func newFixture(t *testing.T, newDev func(*testing.T, int64) device.Device, capacity int64) *fixture {
	t.Helper()
	dev := newDev(t, capacity)
	if dev == nil {
		t.Fatal("newDev returned nil")
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	s, err := dev.NewStream("test")
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	return &fixture{t: t, dev: dev, s: s, rng: rand.New(rand.NewPCG(1, uint64(capacity))), capacity: capacity}
}

func (f *fixture) stream(name string) device.Stream {
	f.t.Helper()
	s, err := f.dev.NewStream(name)
	if err != nil {
		f.t.Fatalf("NewStream(%q): %v", name, err)
	}
	return s
}

func (f *fixture) alloc(size int64, label string) device.Buffer {
	f.t.Helper()
	b, err := f.dev.Alloc(size, label)
	if err != nil {
		f.t.Fatalf("Alloc(%d, %q): %v", size, label, err)
	}
	if b.Size() != size {
		f.t.Fatalf("Alloc(%d).Size() = %d", size, b.Size())
	}
	return b
}

func (f *fixture) sync(s device.Stream) {
	f.t.Helper()
	if err := f.dev.Synchronize(s); err != nil {
		f.t.Fatalf("Synchronize(%s): %v", s.Name(), err)
	}
}

// hostBytes returns HostAlloc'd memory holding data; it is freed at cleanup.
func (f *fixture) hostBytes(data []byte) []byte {
	f.t.Helper()
	h, err := f.dev.HostAlloc(int64(len(data)))
	if err != nil {
		f.t.Fatalf("HostAlloc(%d): %v", len(data), err)
	}
	if len(h) != len(data) {
		f.t.Fatalf("HostAlloc(%d) returned %d bytes", len(data), len(h))
	}
	copy(h, data)
	f.t.Cleanup(func() { f.dev.HostFree(h) })
	return h
}

// upload copies data into b at off on f.s and waits for it.
func (f *fixture) upload(b device.Buffer, off int64, data []byte) {
	f.t.Helper()
	if err := f.dev.CopyToDevice(f.s, b, off, f.hostBytes(data)); err != nil {
		f.t.Fatalf("CopyToDevice(off %d, %d bytes): %v", off, len(data), err)
	}
	f.sync(f.s)
}

// download reads n bytes of b at off on f.s.
func (f *fixture) download(b device.Buffer, off, n int64) []byte {
	f.t.Helper()
	h, err := f.dev.HostAlloc(n)
	if err != nil {
		f.t.Fatalf("HostAlloc(%d): %v", n, err)
	}
	defer f.dev.HostFree(h)
	if err := f.dev.CopyToHost(f.s, h, b, off); err != nil {
		f.t.Fatalf("CopyToHost(off %d, %d bytes): %v", off, n, err)
	}
	f.sync(f.s)
	return append([]byte(nil), h...)
}

func (f *fixture) randBytes(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := f.rng.Uint64()
		for j := i; j < min(i+8, n); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}

func (f *fixture) randVals(n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo + (hi-lo)*f.rng.Float64()
	}
	return v
}

// pad is the number of elements a test tensor is placed after in its buffer
// (and the number left free after it): tensors start at element-aligned but
// otherwise odd offsets, and writes outside a tensor are caught.
const pad = 3

const sentinel = 0xA5

// tensor allocates a rows x cols tensor of dt at an offset of pad elements in
// a buffer whose every byte is the sentinel.
func (f *fixture) tensor(dt device.DType, rows, cols int) device.Tensor {
	f.t.Helper()
	es := int64(dt.BlockBytes())
	size := (int64(rows)*int64(cols) + 2*pad) * es
	b := f.alloc(size, fmt.Sprintf("%s[%d,%d]", dt, rows, cols))
	f.upload(b, 0, bytes.Repeat([]byte{sentinel}, int(size)))
	t, err := device.View(b, pad*es, dt, rows, cols)
	if err != nil {
		f.t.Fatal(err)
	}
	return t
}

// encode converts vals to dt's bytes and returns the values the bytes hold
// (rounded to dt), which is what references must use.
func encode(dt device.DType, vals []float64) ([]byte, []float64) {
	out := make([]byte, len(vals)*dt.BlockBytes())
	held := make([]float64, len(vals))
	for i, v := range vals {
		switch dt {
		case device.F32:
			b := math.Float32bits(float32(v))
			out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(b), byte(b>>8), byte(b>>16), byte(b>>24)
			held[i] = float64(float32(v))
		case device.I32:
			b := uint32(int32(v))
			out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(b), byte(b>>8), byte(b>>16), byte(b>>24)
			held[i] = float64(int32(v))
		case device.F16:
			h := half.F32ToF16(float32(v))
			out[2*i], out[2*i+1] = byte(h), byte(h>>8)
			held[i] = float64(half.F16ToF32(h))
		case device.BF16:
			h := half.F32ToBF16(float32(v))
			out[2*i], out[2*i+1] = byte(h), byte(h>>8)
			held[i] = float64(half.BF16ToF32(h))
		}
	}
	return out, held
}

func decode(dt device.DType, b []byte) []float64 {
	n := len(b) / dt.BlockBytes()
	out := make([]float64, n)
	for i := range out {
		switch dt {
		case device.F32:
			out[i] = float64(math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24))
		case device.I32:
			out[i] = float64(int32(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24))
		case device.F16:
			out[i] = float64(half.F16ToF32(uint16(b[2*i]) | uint16(b[2*i+1])<<8))
		case device.BF16:
			out[i] = float64(half.BF16ToF32(uint16(b[2*i]) | uint16(b[2*i+1])<<8))
		}
	}
	return out
}

// set writes vals into t and returns the values as stored in t's dtype.
func (f *fixture) set(t device.Tensor, vals []float64) []float64 {
	f.t.Helper()
	if int64(len(vals)) != int64(t.Rows)*int64(t.Cols) {
		f.t.Fatalf("set: %d values for a %d x %d tensor", len(vals), t.Rows, t.Cols)
	}
	b, held := encode(t.DType, vals)
	f.upload(t.Buf, t.Off, b)
	return held
}

// input makes a tensor holding random values in [-1, 1).
func (f *fixture) input(dt device.DType, rows, cols int) (device.Tensor, []float64) {
	f.t.Helper()
	t := f.tensor(dt, rows, cols)
	return t, f.set(t, f.randVals(rows*cols, -1, 1))
}

func (f *fixture) index(idx []int32) device.Tensor {
	f.t.Helper()
	t := f.tensor(device.I32, 1, len(idx))
	v := make([]float64, len(idx))
	for i, x := range idx {
		v[i] = float64(x)
	}
	f.set(t, v)
	return t
}

func (f *fixture) get(t device.Tensor) []float64 {
	f.t.Helper()
	return decode(t.DType, f.download(t.Buf, t.Off, t.Bytes()))
}

// checkPad fails if anything in t's buffer outside t was written.
func (f *fixture) checkPad(t device.Tensor, what string) {
	f.t.Helper()
	all := f.download(t.Buf, 0, t.Buf.Size())
	for i, b := range all {
		if (int64(i) < t.Off || int64(i) >= t.Off+t.Bytes()) && b != sentinel {
			f.t.Errorf("%s: byte %d outside the output tensor [%d, %d) was overwritten", what, i, t.Off, t.Off+t.Bytes())
			return
		}
	}
}

// near compares got with want: element i may differ by tol*scale[i]; with a
// nil scale the comparison is exact. NaN never matches.
func (f *fixture) near(what string, got, want, scale []float64, tol float64) {
	f.t.Helper()
	if len(got) != len(want) {
		f.t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		lim := 0.0
		if scale != nil {
			lim = tol * scale[i]
		}
		if d := math.Abs(got[i] - want[i]); !(d <= lim) {
			if bad < 5 {
				f.t.Errorf("%s: element %d = %.9g, want %.9g (diff %.3g, allowed %.3g)", what, i, got[i], want[i], d, lim)
			}
			bad++
		}
	}
	if bad > 5 {
		f.t.Errorf("%s: %d of %d elements differ", what, bad, len(got))
	}
}

func checkOOM(f *fixture, size int64, wantUsed int64) {
	f.t.Helper()
	peak := f.dev.Peak()
	b, err := f.dev.Alloc(size, "too big")
	if err == nil {
		f.t.Errorf("Alloc(%d) with %d of %d used succeeded", size, wantUsed, f.capacity)
		f.dev.Free(b)
		return
	}
	if !errors.Is(err, device.ErrOutOfMemory) {
		f.t.Errorf("Alloc(%d) error %v does not wrap ErrOutOfMemory", size, err)
	}
	if u := f.dev.Used(); u != wantUsed {
		f.t.Errorf("Used() after a failed Alloc = %d, want %d", u, wantUsed)
	}
	if p := f.dev.Peak(); p != peak {
		f.t.Errorf("Peak() changed by a failed Alloc: %d -> %d", peak, p)
	}
}

func (f *fixture) wantUsage(used, peak int64) {
	f.t.Helper()
	if u := f.dev.Used(); u != used {
		f.t.Errorf("Used() = %d, want %d", u, used)
	}
	if p := f.dev.Peak(); p != peak {
		f.t.Errorf("Peak() = %d, want %d", p, peak)
	}
}
