package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

var testSizes = []int{1, 7, 8, 15, 16, 17, 63, 64, 65, 1000, 4099}

// impls runs f once per available implementation: plain Go, and the SIMD path
// when this CPU and build have one.
func impls(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := useAsm
	defer func() { useAsm = saved }()
	useAsm = false
	t.Run("generic", f)
	if saved {
		useAsm = true
		t.Run("simd", f)
	}
}

// withThreads runs f with SetThreads(n) and restores the previous value.
func withThreads(n int, f func()) {
	saved := Threads()
	SetThreads(n)
	defer SetThreads(saved)
	f()
}

func randF32(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func randBF16(r *rand.Rand, n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = F32ToBF16Scalar(float32(r.NormFloat64()))
	}
	return s
}

func randF16(r *rand.Rand, n int) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = F32ToF16Scalar(float32(r.NormFloat64()))
	}
	return s
}

// weightsF32 widens any weight slice to float32 for computing error bounds.
func weightsF32(wf []float32, wh []uint16, conv func(uint16) float32) []float32 {
	if wf != nil {
		return wf
	}
	out := make([]float32, len(wh))
	for i, h := range wh {
		out[i] = conv(h)
	}
	return out
}

// checkClose compares got to want element-wise with a tolerance relative to
// the sum of |terms| of each dot product (bound[i]), which is the scale any
// reordering of a float32 sum can move the result by.
func checkClose(t *testing.T, name string, got, want []float32, bound []float64) {
	t.Helper()
	bad := 0
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		tol := 1e-5*bound[i] + 1e-30
		if math.IsNaN(g) != math.IsNaN(w) || (!math.IsNaN(w) && math.Abs(g-w) > tol) {
			if bad < 5 {
				t.Errorf("%s: y[%d] = %g, want %g (tol %g)", name, i, g, w, tol)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements differ", name, bad, len(want))
	}
}

// absBound returns, per output, Σ|x·w| for the [out][in] (trans=false) or
// [in][out] (trans=true) layout.
func absBound(x, w []float32, n, in, out int, trans bool) []float64 {
	b := make([]float64, n*out)
	for r := range n {
		for o := range out {
			var s float64
			for i := range in {
				wv := w[o*in+i]
				if trans {
					wv = w[i*out+o]
				}
				s += math.Abs(float64(x[r*in+i]) * float64(wv))
			}
			b[r*out+o] = s
		}
	}
	return b
}

type shape struct{ n, in, out int }

func testShapes() []shape {
	var s []shape
	for _, in := range testSizes {
		for _, out := range []int{1, 17, 65} {
			for _, n := range []int{1, 3, 4, 5, 9} {
				s = append(s, shape{n, in, out})
			}
		}
	}
	for _, out := range testSizes {
		for _, in := range []int{1, 17, 65} {
			s = append(s, shape{1, in, out}, shape{5, in, out})
		}
	}
	// Large enough to go through the worker pool.
	s = append(s, shape{1, 1000, 4099}, shape{6, 257, 1000}, shape{16, 64, 1025})
	return s
}

type kernelCase struct {
	name   string
	trans  bool
	kind   wkind
	packed bool // MatMulPacked with a RowPacker widening f16
}

var kernelCases = []kernelCase{
	{"MatMulF32", false, kindF32, false},
	{"MatMulBF16", false, kindBF16, false},
	{"MatMulF16", false, kindF16, false},
	{"MatMulTF32", true, kindF32, false},
	{"MatMulTBF16", true, kindBF16, false},
	{"MatMulTF16", true, kindF16, false},
	{"MatMulPacked", false, kindF16, true},
}

// f16Packer is a RowPacker over f16 weights [out][in], standing in for a
// quantized type.
func f16Packer(w []uint16, in int) RowPacker {
	return func(dst []float32, ld, r0, nr, c0, nc int) {
		if c0%PackAlign != 0 || (nc%PackAlign != 0 && c0+nc != in) {
			panic(fmt.Sprintf("RowPacker asked for columns [%d,%d) of %d", c0, c0+nc, in))
		}
		for i := range nr {
			F16ToF32(dst[i*ld:i*ld+nc], w[(r0+i)*in+c0:(r0+i)*in+c0+nc])
		}
	}
}

// runFast calls the kernel under test.
func runFast(c kernelCase, y, x, wf []float32, wh []uint16, n, in, out int) {
	switch {
	case c.packed:
		MatMulPacked(y, x, n, in, out, f16Packer(wh, in))
	case !c.trans && c.kind == kindF32:
		MatMulF32(y, x, wf, n, in, out)
	case !c.trans && c.kind == kindBF16:
		MatMulBF16(y, x, wh, n, in, out)
	case !c.trans && c.kind == kindF16:
		MatMulF16(y, x, wh, n, in, out)
	case c.trans && c.kind == kindF32:
		MatMulTF32(y, x, wf, n, in, out)
	case c.trans && c.kind == kindBF16:
		MatMulTBF16(y, x, wh, n, in, out)
	case c.trans && c.kind == kindF16:
		MatMulTF16(y, x, wh, n, in, out)
	}
}

// runRef calls the kernel's reference.
func runRef(c kernelCase, y, x, wf []float32, wh []uint16, n, in, out int) {
	switch {
	case !c.trans && c.kind == kindF32:
		MatMulF32Ref(y, x, wf, n, in, out)
	case !c.trans && c.kind == kindBF16:
		MatMulBF16Ref(y, x, wh, n, in, out)
	case !c.trans && c.kind == kindF16:
		MatMulF16Ref(y, x, wh, n, in, out)
	case c.trans && c.kind == kindF32:
		MatMulTF32Ref(y, x, wf, n, in, out)
	case c.trans && c.kind == kindBF16:
		MatMulTBF16Ref(y, x, wh, n, in, out)
	case c.trans && c.kind == kindF16:
		MatMulTF16Ref(y, x, wh, n, in, out)
	}
}

func convFor(k wkind) func(uint16) float32 {
	if k == kindF16 {
		return F16ToF32Scalar
	}
	return BF16ToF32Scalar
}

// TestMatMulVsRef holds every product, with every kernel set (plain Go,
// AVX2, AVX-512) and both inline and pooled (1 and 3 threads), to its
// reference.
func TestMatMulVsRef(t *testing.T) {
	for _, c := range kernelCases {
		for _, s := range testShapes() {
			r := rand.New(rand.NewPCG(uint64(s.n*7919+s.in), uint64(s.out)))
			x := randF32(r, s.n*s.in)
			wf, wh := randWeights(r, c.kind, s.in*s.out)
			yref := make([]float32, s.n*s.out)
			runRef(c, yref, x, wf, wh, s.n, s.in, s.out)
			bound := absBound(x, weightsF32(wf, wh, convFor(c.kind)), s.n, s.in, s.out, c.trans)
			eachImpl(func(impl string) {
				for _, threads := range []int{1, 3} {
					y := make([]float32, s.n*s.out)
					for i := range y {
						y[i] = float32(math.NaN()) // must be overwritten
					}
					withThreads(threads, func() { runFast(c, y, x, wf, wh, s.n, s.in, s.out) })
					checkClose(t, fmt.Sprintf("%s %s threads=%d n=%d in=%d out=%d",
						c.name, impl, threads, s.n, s.in, s.out), y, yref, bound)
				}
			})
		}
	}
}

func TestDotF32(t *testing.T) {
	impls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range append([]int{0}, testSizes...) {
			a, b := randF32(r, n), randF32(r, n+3)
			got := DotF32(a, b)
			want := DotF32Ref(a, b)
			var bound float64
			for i := range a {
				bound += math.Abs(float64(a[i]) * float64(b[i]))
			}
			checkClose(t, fmt.Sprintf("DotF32 n=%d", n), []float32{got}, []float32{want}, []float64{bound})
		}
	})
}

// TestZeroShapes checks that empty products neither panic nor write.
func TestZeroShapes(t *testing.T) {
	y := []float32{42}
	MatMulF32(y, nil, nil, 1, 0, 1)
	if y[0] != 0 {
		t.Errorf("in=0: y = %v, want 0 (empty sum)", y[0])
	}
	MatMulBF16(nil, nil, make([]uint16, 25), 0, 5, 5)
	MatMulTF16(nil, make([]float32, 15), nil, 3, 5, 0)
	y[0] = 42
	MatMulTF32(y, nil, nil, 1, 0, 1)
	if y[0] != 0 {
		t.Errorf("T in=0: y = %v, want 0 (empty sum)", y[0])
	}
}

func TestShortSlicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MatMulF32 with a short w did not panic")
		}
	}()
	MatMulF32(make([]float32, 4), make([]float32, 4), make([]float32, 3), 1, 4, 1)
}

// TestConcurrentCallers runs pooled products from several goroutines at once
// (the host backend has one per stream) and checks each against the reference.
func TestConcurrentCallers(t *testing.T) {
	const n, in, out = 5, 300, 700 // large enough to use the pool
	withThreads(3, func() {
		r := rand.New(rand.NewPCG(5, 6))
		x := randF32(r, n*in)
		w := randBF16(r, in*out)
		want := make([]float32, n*out)
		MatMulBF16Ref(want, x, w, n, in, out)
		wantT := make([]float32, n*out)
		MatMulTBF16Ref(wantT, x, w, n, in, out)
		bound := absBound(x, weightsF32(nil, w, BF16ToF32Scalar), n, in, out, false)
		boundT := absBound(x, weightsF32(nil, w, BF16ToF32Scalar), n, in, out, true)
		errs := make(chan string, 8)
		done := make(chan struct{})
		for g := range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				y := make([]float32, n*out)
				for range 20 {
					if g%2 == 0 {
						MatMulBF16(y, x, w, n, in, out)
						if d := maxExcess(y, want, bound); d != "" {
							errs <- "MatMulBF16: " + d
							return
						}
					} else {
						MatMulTBF16(y, x, w, n, in, out)
						if d := maxExcess(y, wantT, boundT); d != "" {
							errs <- "MatMulTBF16: " + d
							return
						}
					}
				}
			}()
		}
		for range 4 {
			<-done
		}
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}

// maxExcess is checkClose for goroutines that may not call t.Error.
func maxExcess(got, want []float32, bound []float64) string {
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= 1e-5*bound[i]+1e-30) {
			return fmt.Sprintf("y[%d] = %g, want %g", i, got[i], want[i])
		}
	}
	return ""
}

func TestSetThreads(t *testing.T) {
	saved := Threads()
	defer SetThreads(saved)
	SetThreads(7)
	if got := Threads(); got != 7 {
		t.Errorf("after SetThreads(7): Threads() = %d", got)
	}
	SetThreads(0)
	if got, want := Threads(), runtime.GOMAXPROCS(0); got != want {
		t.Errorf("after SetThreads(0): Threads() = %d, want GOMAXPROCS %d", got, want)
	}
}

// TestSetPlain checks the switch to the plain kernels and back.
func TestSetPlain(t *testing.T) {
	simd := Impl()
	was := SetPlain(true)
	defer SetPlain(was)
	if Impl() != "plain" {
		t.Errorf("after SetPlain(true): Impl() = %q", Impl())
	}
	if !SetPlain(false) {
		t.Error("SetPlain(false) did not report the plain setting it replaced")
	}
	if Impl() != simd {
		t.Errorf("after SetPlain(false): Impl() = %q, want %q", Impl(), simd)
	}
}

// randWeights makes n random weights of kind: f32 in wf, or the 16-bit
// encodings in wh.
func randWeights(r *rand.Rand, kind wkind, n int) (wf []float32, wh []uint16) {
	switch kind {
	case kindF32:
		wf = randF32(r, n)
	case kindBF16:
		wh = randBF16(r, n)
	case kindF16:
		wh = randF16(r, n)
	}
	return wf, wh
}
