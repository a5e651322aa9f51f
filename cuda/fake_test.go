package cuda

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"offload/device"
)

// fake is the fake libcuda/libnvrtc/libcublas of testdata/fakecuda.c, built
// with gcc for the test and loaded through the same purego bindings (and the
// same OFFLOAD_LIB* variables) as the real libraries.
type fake struct {
	t   *testing.T
	lib *library
}

var (
	fakeOnce sync.Once
	fakePath string
	fakeErr  error
)

// TestMain removes the fake library built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if fakePath != "" {
		os.RemoveAll(filepath.Dir(fakePath))
	}
	os.Exit(code)
}

// buildFake compiles the fake once per test binary (skipping without gcc;
// CI has it) and points the OFFLOAD_LIB* variables at it. The library is
// loaded once, so its counters run across tests: tests compare deltas.
func buildFake(t *testing.T) *fake {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but gcc is missing: the fake driver test cannot run")
		}
		t.Skip("gcc not found: the fake driver test needs it")
	}
	fakeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fakecuda")
		if err != nil {
			fakeErr = err
			return
		}
		so := filepath.Join(dir, "libfakecuda.so")
		out, err := exec.Command(gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", so, "testdata/fakecuda.c").CombinedOutput()
		if err != nil {
			fakeErr = fmt.Errorf("gcc: %v\n%s", err, out)
			os.RemoveAll(dir)
			return
		}
		fakePath = so
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	t.Setenv(EnvLibCUDA, fakePath)
	t.Setenv(EnvLibNVRTC, fakePath)
	t.Setenv(EnvLibCUBLAS, fakePath)
	lib, err := openLibrary(fakePath, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fake{t: t, lib: lib}
}

// int calls a fake_* introspection function returning int.
//
//go:uintptrescapes
func (f *fake) int(name string, args ...uintptr) int {
	f.t.Helper()
	r, err := f.lib.call(name, args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return int(int32(r))
}

func (f *fake) u64(name string) uint64 {
	f.t.Helper()
	p := f.lib.sym(name)
	if p == 0 {
		f.t.Fatalf("fake lacks %s", name)
	}
	r, _, _ := purego.SyscallN(p)
	return uint64(r)
}

type launchRec struct {
	name   string
	dims   [6]uint32
	shmem  uint32
	stream uintptr
	params [16][8]byte
	count  int
}

// expect tells the fake the sizes of the next launch's parameters.
func (f *fake) expect(sizes ...int32) {
	f.int("fake_expect_params", uintptr(len(sizes)), uintptr(unsafe.Pointer(&sizes[0])))
}

func (f *fake) lastLaunch() launchRec {
	var r launchRec
	name := make([]byte, 64)
	r.count = f.int("fake_last_launch", uintptr(unsafe.Pointer(&name[0])), 64, uintptr(unsafe.Pointer(&r.dims[0])),
		uintptr(unsafe.Pointer(&r.shmem)), uintptr(unsafe.Pointer(&r.stream)), uintptr(unsafe.Pointer(&r.params[0][0])))
	r.name = string(bytes.TrimRight(name, "\x00"))
	return r
}

func (r launchRec) u64(i int) uint64 { return binary.LittleEndian.Uint64(r.params[i][:]) }
func (r launchRec) i32(i int) int32  { return int32(binary.LittleEndian.Uint32(r.params[i][:])) }
func (r launchRec) f32(i int) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(r.params[i][:]))
}

type gemmRec struct {
	ints   [13]int64 // transa transb m n k Atype lda Btype ldb Ctype ldc compute algo
	ptrs   [3]uint64
	ab     [2]float32
	stream uintptr
	count  int
}

func (f *fake) lastGemm() gemmRec {
	var g gemmRec
	g.count = f.int("fake_last_gemm", uintptr(unsafe.Pointer(&g.ints[0])), uintptr(unsafe.Pointer(&g.ptrs[0])),
		uintptr(unsafe.Pointer(&g.ab[0])), uintptr(unsafe.Pointer(&g.stream)))
	return g
}

type copyRec struct {
	dst, src, n uint64
	stream      uintptr
}

func (f *fake) lastCopy() copyRec {
	var c copyRec
	f.int("fake_last_copy", uintptr(unsafe.Pointer(&c.dst)), uintptr(unsafe.Pointer(&c.src)), uintptr(unsafe.Pointer(&c.n)), uintptr(unsafe.Pointer(&c.stream)))
	return c
}

func ptrOf(t *testing.T, b device.Buffer) uint64 {
	t.Helper()
	cb, ok := b.(*buffer)
	if !ok {
		t.Fatalf("buffer is %T", b)
	}
	return cb.ptr
}

const gib = int64(1) << 30

func openFake(t *testing.T, f *fake, cache string) *Device {
	t.Helper()
	f.int("fake_set_device", 8, 9, uintptr(64*gib), uintptr(80*gib))
	d, err := Open(Options{Capacity: 40 * gib, Pinned: true, KernelCache: cache})
	if err != nil {
		t.Fatalf("Open with the fake driver: %v", err)
	}
	return d
}

// TestFakeDriverOpenAndCache: Open goes through cuInit, device queries, the
// primary context, NVRTC (compiling for the card's sm_89) and module loading;
// a second Open finds the kernels in the cache and does not compile.
func TestFakeDriverOpenAndCache(t *testing.T) {
	f := buildFake(t)
	cache := t.TempDir()
	compiles := f.int("fake_compiles")
	d := openFake(t, f, cache)
	if got, want := d.Name(), "cuda:0 Fake GPU (sm_89)"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
	if d.KernelTarget() != "sm_89" {
		t.Errorf("KernelTarget() = %q, want sm_89", d.KernelTarget())
	}
	if d.TotalMemory() != 80*gib || d.Capacity() != 40*gib {
		t.Errorf("TotalMemory %d Capacity %d, want %d and %d (64-bit sizes from cuMemGetInfo_v2)", d.TotalMemory(), d.Capacity(), 80*gib, 40*gib)
	}
	img := make([]byte, 64)
	if n := f.int("fake_module_image", uintptr(unsafe.Pointer(&img[0])), 64); n != 1 {
		t.Errorf("%d modules loaded, want 1", n)
	}
	if got := string(bytes.TrimRight(img, "\x00")); got != "FAKECUBIN sm_89" {
		t.Errorf("module image %q, want the fake NVRTC's CUBIN for sm_89", got)
	}
	if n := f.int("fake_compiles") - compiles; n != 1 {
		t.Errorf("%d NVRTC compilations, want 1", n)
	}
	if !strings.Contains(d.Info(), "driver 12.4") || !strings.Contains(d.Info(), "compiled by NVRTC 11.8") {
		t.Errorf("Info() = %q", d.Info())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if n := f.int("fake_module_image", uintptr(unsafe.Pointer(&img[0])), 64); n != 0 {
		t.Errorf("%d modules loaded after Close, want 0", n)
	}

	d2 := openFake(t, f, cache)
	defer d2.Close()
	if n := f.int("fake_compiles") - compiles; n != 1 {
		t.Errorf("second Open compiled again (%d compilations): the cache was not used", n)
	}
	if !strings.Contains(d2.Info(), "cached") {
		t.Errorf("Info() = %q, want it to say the kernels were cached", d2.Info())
	}

	// Without NVRTC, Open still finds the cached CUBIN.
	t.Setenv(EnvLibNVRTC, filepath.Join(t.TempDir(), "libnvrtc-missing.so"))
	d3 := openFake(t, f, cache)
	if d3.KernelTarget() != "sm_89" {
		t.Errorf("without NVRTC: KernelTarget %q, want sm_89 from the cache", d3.KernelTarget())
	}
	d3.Close()
	_, err := Open(Options{Capacity: gib, KernelCache: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no cached kernels for sm_89") {
		t.Errorf("Open without NVRTC and an empty cache: %v", err)
	}
}

// TestFakeDriverMemoryAndCopies: 64-bit sizes and pointers reach the driver
// intact, copies land at buffer+offset on the right stream, bytes round-trip,
// and Close frees everything.
func TestFakeDriverMemoryAndCopies(t *testing.T) {
	f := buildFake(t)
	d := openFake(t, f, t.TempDir())
	s, err := d.NewStream("copy")
	if err != nil {
		t.Fatal(err)
	}
	sh := s.(*stream).h

	big, err := d.Alloc(5*gib+3, "big")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.u64("fake_last_alloc_size"); got != uint64(5*gib+3) {
		t.Errorf("cuMemAlloc_v2 saw size %d, want %d", got, 5*gib+3)
	}
	if _, err := d.Alloc(36*gib, "too much"); !errors.Is(err, device.ErrOutOfMemory) {
		t.Errorf("Alloc past Capacity: %v, want ErrOutOfMemory", err)
	}
	if d.Used() != 5*gib+3 || d.Peak() != 5*gib+3 {
		t.Errorf("Used %d Peak %d", d.Used(), d.Peak())
	}
	bp := ptrOf(t, big)
	d.Free(big)
	d.Free(big) // twice: no-op
	if got := f.u64("fake_last_freed"); got != bp {
		t.Errorf("cuMemFree_v2 saw %#x, want %#x", got, bp)
	}
	if d.Used() != 0 {
		t.Errorf("Used %d after Free", d.Used())
	}

	b, err := d.Alloc(4096, "small")
	if err != nil {
		t.Fatal(err)
	}
	src, err := d.HostAlloc(1000)
	if err != nil {
		t.Fatal(err)
	}
	if !d.IsPinned(src) || !d.IsPinned(src[10:20]) || d.IsPinned(make([]byte, 8)) {
		t.Error("IsPinned does not recognise HostAlloc'd memory")
	}
	for i := range src {
		src[i] = byte(i*7 + 1)
	}
	if err := d.CopyToDevice(s, b, 100, src); err != nil {
		t.Fatal(err)
	}
	c := f.lastCopy()
	if c.dst != ptrOf(t, b)+100 || c.src != uint64(uintptr(unsafe.Pointer(&src[0]))) || c.n != 1000 || c.stream != sh {
		t.Errorf("cuMemcpyHtoDAsync_v2 saw dst %#x src %#x n %d stream %#x; want %#x %p 1000 %#x", c.dst, c.src, c.n, c.stream, ptrOf(t, b)+100, &src[0], sh)
	}
	back := make([]byte, 1000)
	if err := d.CopyToHost(s, back, b, 100); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, src) {
		t.Error("bytes did not round-trip through the fake device")
	}
	if err := d.CopyDevice(s, b, 2000, b, 100, 1000); err != nil {
		t.Fatal(err)
	}
	if err := d.CopyToHost(s, back, b, 2000); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, src) {
		t.Error("device-to-device copy did not move the bytes")
	}
	if err := d.CopyDevice(s, b, 150, b, 100, 1000); err == nil {
		t.Error("overlapping device copy accepted")
	}
	if err := d.CopyToDevice(s, b, 4000, src); err == nil {
		t.Error("copy past the end accepted")
	}
	d.HostFree(src)
	if n := f.int("fake_host_allocs"); n != 1 { // the stream's error word
		t.Errorf("%d pinned host blocks live, want 1 (the stream's error word)", n)
	}

	// Event times come from cuEventElapsedTime's float out-parameter.
	e1, e2 := d.Record(s), d.Record(s)
	t1, err := d.EventTime(e1)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := d.EventTime(e2)
	if err != nil {
		t.Fatal(err)
	}
	if t2-t1 != 1500*time.Microsecond {
		t.Errorf("EventTime difference %v, want 1.5ms (the fake's step)", t2-t1)
	}
	d.Wait(s, e2)
	if err := d.Synchronize(s); err != nil {
		t.Fatal(err)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"fake_live_allocs", "fake_live_streams", "fake_host_allocs", "fake_cublas_handles"} {
		if n := f.int(c); n != 0 {
			t.Errorf("%s = %d after Close, want 0", c, n)
		}
	}
	if _, err := d.Alloc(16, "after close"); err == nil {
		t.Error("Alloc after Close succeeded")
	}
}

// TestFakeDriverKernelParams: each kernel's parameter array carries the
// right device pointers (buffer + view offset), 64-bit counts, ints and
// floats, in the order of kernels.cu; launch geometry follows the shapes.
func TestFakeDriverKernelParams(t *testing.T) {
	f := buildFake(t)
	d := openFake(t, f, t.TempDir())
	defer d.Close()
	s, err := d.NewStream("compute")
	if err != nil {
		t.Fatal(err)
	}
	sh := s.(*stream).h
	view := func(b device.Buffer, off int64, dt device.DType, r, c int) device.Tensor {
		t.Helper()
		v, err := device.View(b, off, dt, r, c)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// SiLUMul over 5·2^30 elements (20 GiB, unbacked in the fake): the count
	// only fits a 64-bit parameter.
	huge, err := d.Alloc(20*gib+64, "huge")
	if err != nil {
		t.Fatal(err)
	}
	hp := ptrOf(t, huge)
	x := view(huge, 16, device.F32, 1, int(5*gib))
	f.expect(8, 8, 8, 8)
	if err := d.SiLUMul(s, x, x, x); err != nil {
		t.Fatal(err)
	}
	l := f.lastLaunch()
	if l.name != "silu_mul" || l.stream != sh {
		t.Fatalf("launched %q on %#x, want silu_mul on %#x", l.name, l.stream, sh)
	}
	for i := range 3 {
		if l.u64(i) != hp+16 {
			t.Errorf("silu_mul param %d = %#x, want %#x", i, l.u64(i), hp+16)
		}
	}
	if l.u64(3) != uint64(5*gib) {
		t.Errorf("silu_mul count = %d, want %d", l.u64(3), 5*gib)
	}
	if l.dims[3] != threads || l.dims[0] == 0 {
		t.Errorf("silu_mul geometry %v", l.dims)
	}
	d.Free(huge)

	buf, err := d.Alloc(1<<20, "small")
	if err != nil {
		t.Fatal(err)
	}
	bp := ptrOf(t, buf)

	// RMSNorm with bf16 weights: ints and a float.
	xn := view(buf, 0, device.F32, 3, 96)
	yn := view(buf, 4096, device.F32, 3, 96)
	wn := view(buf, 8192+6, device.BF16, 1, 96)
	f.expect(8, 8, 8, 4, 4)
	if err := d.RMSNorm(s, yn, xn, wn, 1e-5); err != nil {
		t.Fatal(err)
	}
	l = f.lastLaunch()
	if l.name != "rmsnorm_bf16" || l.u64(0) != bp+4096 || l.u64(1) != bp || l.u64(2) != bp+8198 || l.i32(3) != 96 || l.f32(4) != 1e-5 || l.dims[0] != 3 {
		t.Errorf("rmsnorm launch %s dims %v params %#x %#x %#x %d %g", l.name, l.dims, l.u64(0), l.u64(1), l.u64(2), l.i32(3), l.f32(4))
	}

	// Attention: eleven parameters, ints and the scale.
	q := view(buf, 0, device.F32, 2, 8*16)
	kc := view(buf, 16384, device.F32, 40, 2*16)
	vc := view(buf, 65536, device.F32, 40, 2*16)
	o := view(buf, 131072, device.F32, 2, 8*16)
	f.expect(8, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4)
	if err := d.Attention(s, o, q, kc, vc, 30, 8, 2, 16); err != nil {
		t.Fatal(err)
	}
	l = f.lastLaunch()
	wantI := []int32{30, 8, 2, 16, 128, 32}
	for i, w := range wantI {
		if l.i32(4+i) != w {
			t.Errorf("attention param %d = %d, want %d", 4+i, l.i32(4+i), w)
		}
	}
	if l.u64(0) != bp+131072 || l.u64(1) != bp || l.u64(2) != bp+16384 || l.u64(3) != bp+65536 || l.f32(10) != 0.25 {
		t.Errorf("attention pointers/scale: %#x %#x %#x %#x %g", l.u64(0), l.u64(1), l.u64(2), l.u64(3), l.f32(10))
	}
	if l.dims[0] != 8 || l.dims[1] != 2 || l.dims[3] != attnThreads {
		t.Errorf("attention geometry %v", l.dims)
	}

	// GatherRows picks 16-bit words for a bf16 view at an odd offset and
	// passes the stream's error word; an error a kernel writes there comes
	// back from Synchronize, once.
	src := view(buf, 2, device.BF16, 10, 6)
	dst := view(buf, 1000, device.BF16, 3, 6)
	idx := view(buf, 2048, device.I32, 1, 3)
	f.expect(8, 8, 8, 4, 4, 4, 8)
	if err := d.GatherRows(s, dst, src, idx); err != nil {
		t.Fatal(err)
	}
	l = f.lastLaunch()
	if l.name != "gather_rows_u16" || l.i32(3) != 3 || l.i32(4) != 6 || l.i32(5) != 10 || l.dims[1] != 3 {
		t.Errorf("gather launch %s dims %v k %d words %d rows %d", l.name, l.dims, l.i32(3), l.i32(4), l.i32(5))
	}
	cs := s.(*stream)
	if l.u64(6) != cs.errDev {
		t.Errorf("gather error word %#x, want the stream's %#x", l.u64(6), cs.errDev)
	}
	// What the kernel would do on a bad index: write (ERR_INDEX, index).
	word := [2]int32{errIndex, 42}
	if err := d.drv.memcpyHtoDAsync(cs.errDev, unsafe.Pointer(&word), 8, cs.h); err != nil {
		t.Fatal(err)
	}
	if err := d.Synchronize(s); err == nil || !strings.Contains(err.Error(), "index 42 out of range") {
		t.Errorf("Synchronize after a kernel error: %v", err)
	}
	if err := d.Synchronize(s); err != nil {
		t.Errorf("second Synchronize: %v (the error must be reported once)", err)
	}

	// Small batches use our product kernel.
	w := view(buf, 200000, device.BF16, 48, 96)
	x1 := view(buf, 0, device.F32, 1, 96)
	y1 := view(buf, 400000, device.F32, 1, 48)
	f.expect(8, 8, 8, 4, 4, 4)
	if err := d.MatMul(s, y1, x1, w); err != nil {
		t.Fatal(err)
	}
	l = f.lastLaunch()
	if l.name != "matmul_bf16" || l.i32(3) != 1 || l.i32(4) != 96 || l.i32(5) != 48 || l.dims[0] != 48*32/threads {
		t.Errorf("gemv launch %s dims %v n %d in %d out %d", l.name, l.dims, l.i32(3), l.i32(4), l.i32(5))
	}

	// A prefill-sized batch goes to cublasGemmEx (all 19 arguments) after
	// converting x to bf16 in the stream's scratch.
	const n = 100
	xb := view(buf, 0, device.F32, n, 96)
	yb := view(buf, 500000, device.F32, n, 48)
	f.expect(8, 8, 8)
	if err := d.MatMul(s, yb, xb, w); err != nil {
		t.Fatal(err)
	}
	l = f.lastLaunch()
	g := f.lastGemm()
	gemms := g.count
	scratch := s.(*stream).scratch
	if l.name != "f32_to_bf16_k" || l.u64(0) != scratch || l.u64(1) != bp || l.u64(2) != n*96 {
		t.Errorf("conversion launch %s params %#x %#x %d, want scratch %#x", l.name, l.u64(0), l.u64(1), l.u64(2), scratch)
	}
	want := [13]int64{cublasOpT, cublasOpN, 48, n, 96, cudaR16BF, 96, cudaR16BF, 96, cudaR32F, 48, cublasCompute32F, -1}
	if g.ints != want {
		t.Errorf("cublasGemmEx #%d ints %v, want %v", g.count, g.ints, want)
	}
	if g.ptrs != [3]uint64{bp + 200000, scratch, bp + 500000} || g.ab != [2]float32{1, 0} || g.stream != sh {
		t.Errorf("cublasGemmEx ptrs %#x alpha/beta %v stream %#x", g.ptrs, g.ab, g.stream)
	}

	// MatMulT with f32 weights: no conversion, W untransposed, lda = out.
	wt := view(buf, 600000, device.F32, 96, 48)
	if err := d.MatMulT(s, yb, xb, wt); err != nil {
		t.Fatal(err)
	}
	g = f.lastGemm()
	want = [13]int64{cublasOpN, cublasOpN, 48, n, 96, cudaR32F, 48, cudaR32F, 96, cudaR32F, 48, cublasCompute32F, -1}
	if g.count != gemms+1 || g.ints != want || g.ptrs != [3]uint64{bp + 600000, bp, bp + 500000} {
		t.Errorf("cublasGemmEx (MatMulT) #%d ints %v ptrs %#x", g.count, g.ints, g.ptrs)
	}
	if err := d.Synchronize(s); err != nil {
		t.Fatal(err)
	}
}

// TestNoDriver: without libcuda, Open and Available fail with one line that
// says what is missing and what to do.
func TestNoDriver(t *testing.T) {
	t.Setenv(EnvLibCUDA, filepath.Join(t.TempDir(), "libcuda.so.1"))
	for name, err := range map[string]error{
		"Open":      func() error { _, err := Open(Options{}); return err }(),
		"Available": Available(),
	} {
		if err == nil {
			t.Fatalf("%s succeeded without a driver", name)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "cuda: no NVIDIA driver found (") || !strings.HasSuffix(msg, "; run on the host backend instead") {
			t.Errorf("%s error is not one clear line: %q", name, msg)
		}
	}
}
