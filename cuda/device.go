package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/dustin/go-humanize"

	"offload/device"
)

// Options configures Open.
type Options struct {
	// Ordinal is the CUDA device number (0 for the first GPU).
	Ordinal int
	// Capacity is the device memory Alloc may hand out, in bytes; 0 means
	// the free memory at Open minus capacityMargin.
	Capacity int64
	// Pinned makes HostAlloc return page-locked memory (cuMemHostAlloc), from
	// which copies are truly asynchronous and run at the link's speed. With
	// Pinned false HostAlloc returns ordinary (pageable) Go memory, which is
	// how --pinned=false measures pageable copies.
	Pinned bool

	// LibCUDA, LibNVRTC and LibCUBLAS name the library files; "" uses
	// $OFFLOAD_LIBCUDA / $OFFLOAD_LIBNVRTC / $OFFLOAD_LIBCUBLAS, else the
	// usual sonames.
	LibCUDA, LibNVRTC, LibCUBLAS string
	// KernelCache is the directory compiled kernels are cached in; "" uses
	// $OFFLOAD_KERNEL_CACHE, else <user cache dir>/offload/kernels.
	KernelCache string
	// NoCUBLAS computes every product with our own kernels, even when
	// libcublas is present.
	NoCUBLAS bool
}

const (
	// capacityMargin is kept free when Capacity is 0: room for the context,
	// the module, cuBLAS workspaces and the per-stream scratch.
	capacityMargin = 768 << 20
	// gemvMaxRows is the largest batch our product kernels take when cuBLAS
	// is available. Their reduction order does not depend on the batch, so a
	// Sirius window check (16 rows) gives bit-identical logits to 16 decode
	// steps; only larger batches (prefill) use cuBLAS.
	gemvMaxRows = 64
	// scratchBytes is the per-stream device scratch that holds activations
	// converted to bf16/f16, or a panel of dequantized weights, for cuBLAS.
	scratchBytes = 32 << 20
	// maxGridY is CUDA's limit on gridDim.y.
	maxGridY = 65535
)

// errClosed is returned by every call on a closed device.
var errClosed = errors.New("cuda: device closed")

// Available reports whether a CUDA device can be opened: the driver loads,
// initialises and sees at least one GPU. The error is one line.
func Available() error {
	drv, err := loadDriver("")
	if err != nil {
		return err
	}
	n, err := drv.deviceCount()
	if err != nil {
		return fmt.Errorf("cuda: %v; run on the host backend instead", err)
	}
	if n == 0 {
		return errors.New("cuda: the NVIDIA driver sees no GPU; run on the host backend instead")
	}
	return nil
}

// loadDriver opens libcuda and calls cuInit.
func loadDriver(path string) (*driver, error) {
	lib, err := openLibrary(path, EnvLibCUDA, cudaCandidates)
	if err != nil {
		return nil, fmt.Errorf("cuda: no NVIDIA driver found (%v); run on the host backend instead", err)
	}
	drv := &driver{lib: lib}
	if err := drv.init(); err != nil {
		return nil, fmt.Errorf("cuda: NVIDIA driver %s failed to initialise (%v); run on the host backend instead", lib.path, err)
	}
	return drv, nil
}

// Device is one NVIDIA GPU. It implements device.Device; Convert, Argmax,
// Softmax and LogLikelihood are extra kernels the engine may use to keep
// logits on the device.
type Device struct {
	opts    Options
	drv     *driver
	blas    *cublas // nil: products use our kernels only
	dev     int32
	ctx     uintptr
	sm      int
	name    string
	info    string
	target  string
	mod     uintptr
	fns     map[string]uintptr
	base    uintptr // event recorded at Open: the zero of EventTime
	capTot  int64
	drvVer  int
	nvrtcV  string
	fromHit bool

	mu      sync.RWMutex
	used    int64
	peak    int64
	closed  bool
	bufs    map[*buffer]struct{}
	streams []*stream
	pinned  []hostRegion // sorted by start
}

var _ device.Device = (*Device)(nil)

// The CUDA backend registers as "cuda": the first GPU, page-locked staging
// unless the caller asks for pageable copies.
func init() {
	device.Register("cuda", func(c device.Config) (device.Device, error) {
		return Open(Options{Capacity: c.Capacity, Pinned: !c.Pageable})
	})
}

// hostRegion is one cuMemHostAlloc'd block.
type hostRegion struct {
	p           unsafe.Pointer
	start, size uintptr
}

// Open opens GPU opts.Ordinal: loads the libraries, retains the device's
// primary context, compiles (or loads from the cache) the kernels.
func Open(opts Options) (*Device, error) {
	if opts.Capacity < 0 {
		return nil, fmt.Errorf("cuda: capacity must not be negative, got %d", opts.Capacity)
	}
	drv, err := loadDriver(opts.LibCUDA)
	if err != nil {
		return nil, err
	}
	d := &Device{opts: opts, drv: drv, fns: map[string]uintptr{}, bufs: map[*buffer]struct{}{}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.open(); err != nil {
		d.release()
		return nil, err
	}
	return d, nil
}

func (d *Device) open() error {
	n, err := d.drv.deviceCount()
	if err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	if d.opts.Ordinal < 0 || d.opts.Ordinal >= n {
		return fmt.Errorf("cuda: device %d requested, the driver sees %d GPU(s)", d.opts.Ordinal, n)
	}
	if d.dev, err = d.drv.deviceGet(d.opts.Ordinal); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	devName, err := d.drv.deviceName(d.dev)
	if err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	major, err := d.drv.deviceAttr(d.dev, attrComputeMajor)
	if err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	minor, err := d.drv.deviceAttr(d.dev, attrComputeMinor)
	if err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	d.sm = major*10 + minor
	d.name = fmt.Sprintf("cuda:%d %s (sm_%d)", d.opts.Ordinal, devName, d.sm)
	d.drvVer, _ = d.drv.version()

	if d.ctx, err = d.drv.primaryCtxRetain(d.dev); err != nil {
		return fmt.Errorf("cuda: %s: %w", d.name, err)
	}
	if err := d.drv.ctxSetCurrent(d.ctx); err != nil {
		return fmt.Errorf("cuda: %s: %w", d.name, err)
	}

	free, total, err := d.drv.memGetInfo()
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", d.name, err)
	}
	d.capTot = int64(total)
	switch {
	case d.opts.Capacity == 0:
		margin := int64(capacityMargin)
		if int64(free) < 4*margin {
			margin = int64(free) / 4
		}
		d.opts.Capacity = int64(free) - margin
	case d.opts.Capacity > int64(free):
		return fmt.Errorf("cuda: %s: capacity %s exceeds the %s of free device memory",
			d.name, humanize.IBytes(uint64(d.opts.Capacity)), humanize.IBytes(free))
	}

	if err := d.loadKernels(); err != nil {
		return err
	}

	blasDesc := "off"
	if !d.opts.NoCUBLAS {
		if lib, err := openLibrary(d.opts.LibCUBLAS, EnvLibCUBLAS, cublasCandidates); err == nil {
			d.blas = &cublas{lib: lib}
			blasDesc = lib.path
		} else {
			blasDesc = "not found, own kernels for every product (" + err.Error() + ")"
		}
	}

	if d.base, err = d.drv.eventCreate(eventDefault); err != nil {
		return fmt.Errorf("cuda: %s: %w", d.name, err)
	}
	if err := d.drv.eventRecord(d.base, 0); err != nil {
		return fmt.Errorf("cuda: %s: %w", d.name, err)
	}
	if err := d.drv.eventSynchronize(d.base); err != nil {
		return fmt.Errorf("cuda: %s: %w", d.name, err)
	}

	host := "pageable host memory"
	if d.opts.Pinned {
		host = "pinned host memory"
	}
	src := "compiled by NVRTC " + d.nvrtcV
	if d.fromHit {
		src = "cached, NVRTC " + d.nvrtcV
	}
	d.info = fmt.Sprintf("%s, driver %d.%d, %s of %s, kernels %s (%s), cuBLAS %s, %s",
		d.name, d.drvVer/1000, d.drvVer%1000/10, humanize.IBytes(uint64(d.opts.Capacity)), humanize.IBytes(total),
		d.target, src, blasDesc, host)
	return nil
}

// loadKernels compiles (or finds in the cache) the kernel image for this
// card and loads every function of kernelSigs.
func (d *Device) loadKernels() error {
	var img []byte
	comp, cerr := NewCompiler(d.opts.LibNVRTC)
	if cerr == nil {
		d.nvrtcV = comp.Version()
		target, err := comp.Target(d.sm)
		if err != nil {
			return fmt.Errorf("cuda: %s: %w", d.name, err)
		}
		d.target = target
		if img, d.fromHit, err = comp.CompileCached(d.opts.KernelCache, target); err != nil {
			return fmt.Errorf("cuda: %s: %w", d.name, err)
		}
	} else {
		dir := cacheDir(d.opts.KernelCache)
		img, d.target = findCached(dir, d.sm)
		if img == nil {
			return fmt.Errorf("%v, and no cached kernels for sm_%d in %q; install NVRTC or fill the cache (OFFLOAD_KERNEL_CACHE)", cerr, d.sm, dir)
		}
		d.fromHit, d.nvrtcV = true, "absent"
	}
	if !strings.HasPrefix(d.target, "sm_") && (len(img) == 0 || img[len(img)-1] != 0) {
		img = append(img, 0) // PTX must be NUL-terminated
	}
	var err error
	if d.mod, err = d.drv.moduleLoadData(img); err != nil {
		return fmt.Errorf("cuda: %s: loading %s kernels: %w", d.name, d.target, err)
	}
	for _, name := range kernelNames() {
		f, err := d.drv.moduleGetFunction(d.mod, name)
		if err != nil {
			return fmt.Errorf("cuda: %s: kernel %s: %w", d.name, name, err)
		}
		d.fns[name] = f
	}
	return nil
}

// Name is e.g. "cuda:0 NVIDIA H200 (sm_90)".
func (d *Device) Name() string { return d.name }

// Info is one line for reports: driver version, capacity, kernel target,
// whether the kernels came from the cache, cuBLAS, pinned or pageable.
func (d *Device) Info() string { return d.info }

// KernelTarget is what the kernels were compiled for: "sm_XX" (a CUBIN) or
// "compute_XX" (PTX the driver JIT-compiled).
func (d *Device) KernelTarget() string { return d.target }

// TotalMemory is the card's memory in bytes.
func (d *Device) TotalMemory() int64 { return d.capTot }

// Capacity is the budget Alloc enforces.
func (d *Device) Capacity() int64 { return d.opts.Capacity }

// Used is the sum of the sizes of the live buffers.
func (d *Device) Used() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.used
}

// Peak is the most Used has ever been.
func (d *Device) Peak() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.peak
}

// enter makes the device's context current on a locked OS thread: CUDA
// contexts are per thread, and goroutines move between threads. The
// returned func unlocks the thread.
func (d *Device) enter() (func(), error) {
	runtime.LockOSThread()
	d.mu.RLock()
	closed := d.closed
	d.mu.RUnlock()
	if closed {
		runtime.UnlockOSThread()
		return nil, errClosed
	}
	if err := d.drv.ctxSetCurrent(d.ctx); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("cuda: %w", err)
	}
	return runtime.UnlockOSThread, nil
}

// buffer is one cuMemAlloc.
type buffer struct {
	dev   *Device
	ptr   uint64
	size  int64
	label string
	freed bool // guarded by dev.mu
}

func (b *buffer) Size() int64 { return b.size }

// Alloc reserves size bytes of device memory, failing with
// device.ErrOutOfMemory when Used()+size would exceed Capacity() (or the
// driver has no memory left).
func (d *Device) Alloc(size int64, label string) (device.Buffer, error) {
	if size < 0 {
		return nil, fmt.Errorf("cuda: alloc %q: negative size %d", label, size)
	}
	leave, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.used+size > d.opts.Capacity {
		return nil, fmt.Errorf("cuda: alloc %q of %s with %s of %s in use: %w", label,
			humanize.IBytes(uint64(size)), humanize.IBytes(uint64(d.used)), humanize.IBytes(uint64(d.opts.Capacity)), device.ErrOutOfMemory)
	}
	b := &buffer{dev: d, size: size, label: label}
	if size > 0 {
		p, err := d.drv.memAlloc(size)
		if err != nil {
			var ce *Error
			if errors.As(err, &ce) && ce.Code == cudaErrOOM {
				return nil, fmt.Errorf("cuda: alloc %q of %s: %v: %w", label, humanize.IBytes(uint64(size)), err, device.ErrOutOfMemory)
			}
			return nil, fmt.Errorf("cuda: alloc %q of %s: %w", label, humanize.IBytes(uint64(size)), err)
		}
		b.ptr = p
	}
	d.used += size
	d.peak = max(d.peak, d.used)
	d.bufs[b] = struct{}{}
	return b, nil
}

// Free returns b to the budget. Freeing twice, nil, or a buffer of another
// device does nothing.
func (d *Device) Free(b device.Buffer) {
	cb, ok := b.(*buffer)
	if !ok || cb == nil || cb.dev != d {
		return
	}
	leave, err := d.enter()
	if err != nil {
		return
	}
	defer leave()
	d.mu.Lock()
	defer d.mu.Unlock()
	if cb.freed {
		return
	}
	cb.freed = true
	d.used -= cb.size
	delete(d.bufs, cb)
	if cb.ptr != 0 {
		_ = d.drv.memFree(cb.ptr) // only fails for a bad pointer, which we never pass
	}
}

// bufOf checks that b is a live buffer of d.
func (d *Device) bufOf(b device.Buffer, what string) (*buffer, error) {
	cb, ok := b.(*buffer)
	if !ok || cb == nil {
		return nil, fmt.Errorf("cuda: %s: not a buffer of this device (%T)", what, b)
	}
	if cb.dev != d {
		return nil, fmt.Errorf("cuda: %s: buffer %q belongs to another device", what, cb.label)
	}
	d.mu.RLock()
	freed := cb.freed
	d.mu.RUnlock()
	if freed {
		return nil, fmt.Errorf("cuda: %s: buffer %q was freed", what, cb.label)
	}
	return cb, nil
}

// span checks that [off, off+n) lies in b and returns its device address.
func (d *Device) span(b device.Buffer, off, n int64, what string) (uint64, error) {
	cb, err := d.bufOf(b, what)
	if err != nil {
		return 0, err
	}
	if off < 0 || n < 0 || off > cb.size || n > cb.size-off {
		return 0, fmt.Errorf("cuda: %s: %d bytes at offset %d do not fit buffer %q of %d bytes", what, n, off, cb.label, cb.size)
	}
	return cb.ptr + uint64(off), nil
}

// tensor checks a view and returns its device address.
func (d *Device) tensor(t device.Tensor, what string) (devPtr, error) {
	if err := device.CheckTensor(what, "tensor", t); err != nil {
		return 0, fmt.Errorf("cuda: %w", err)
	}
	p, err := d.span(t.Buf, t.Off, t.Bytes(), what)
	return devPtr(p), err
}

// stream is a CUDA stream plus what the backend keeps per stream.
type stream struct {
	name string
	h    uintptr
	// errDev is a pair of int32 (code, value) in device memory that kernels
	// raise errors into; Synchronize copies it into errHost (pinned) on the
	// stream, reads it, and clears it when set. Device memory rather than
	// mapped host memory: atomics on host memory over PCIe are not portable.
	errDev  uint64
	errHost unsafe.Pointer

	mu      sync.Mutex // guards the fields below
	pending error      // first enqueue-side error of Record/Wait, reported by Synchronize
	blas    uintptr    // cuBLAS handle bound to this stream (lazy)
	scratch uint64     // scratch for cuBLAS (lazy, scratchBytes)
}

func (s *stream) Name() string { return s.name }

func (s *stream) fail(err error) {
	s.mu.Lock()
	if s.pending == nil {
		s.pending = err
	}
	s.mu.Unlock()
}

// NewStream creates a non-blocking stream (it never synchronises with the
// legacy default stream).
func (d *Device) NewStream(name string) (device.Stream, error) {
	leave, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	h, err := d.drv.streamCreate(streamNonBlocking)
	if err != nil {
		return nil, fmt.Errorf("cuda: stream %q: %w", name, err)
	}
	s := &stream{name: name, h: h}
	if s.errHost, err = d.drv.memHostAlloc(8, hostAllocPortable); err != nil {
		_ = d.drv.streamDestroy(h)
		return nil, fmt.Errorf("cuda: stream %q error word: %w", name, err)
	}
	if s.errDev, err = d.drv.memAlloc(8); err == nil {
		err = d.clearErrWord(s)
	}
	if err != nil {
		if s.errDev != 0 {
			_ = d.drv.memFree(s.errDev)
		}
		_ = d.drv.memFreeHost(s.errHost)
		_ = d.drv.streamDestroy(h)
		return nil, fmt.Errorf("cuda: stream %q error word: %w", name, err)
	}
	d.mu.Lock()
	d.streams = append(d.streams, s)
	d.mu.Unlock()
	return s, nil
}

func (d *Device) streamOf(s device.Stream) (*stream, error) {
	cs, ok := s.(*stream)
	if !ok || cs == nil {
		return nil, fmt.Errorf("cuda: not a stream of this device (%T)", s)
	}
	return cs, nil
}

// event is a recorded CUDA event. Events are destroyed when the garbage
// collector finds them unreachable (device.Event has no Destroy).
type event struct {
	h   uintptr
	err error
}

// Record enqueues a timing event on s. A failure is kept on the event (and
// on s) and reported by EventSynchronize / Synchronize.
func (d *Device) Record(s device.Stream) device.Event {
	cs, err := d.streamOf(s)
	if err != nil {
		return &event{err: err}
	}
	leave, err := d.enter()
	if err != nil {
		cs.fail(err)
		return &event{err: err}
	}
	defer leave()
	h, err := d.drv.eventCreate(eventDefault)
	if err != nil {
		err = fmt.Errorf("cuda: record on %q: %w", cs.name, err)
		cs.fail(err)
		return &event{err: err}
	}
	e := &event{h: h}
	runtime.AddCleanup(e, d.destroyEvent, h)
	if err := d.drv.eventRecord(h, cs.h); err != nil {
		e.err = fmt.Errorf("cuda: record on %q: %w", cs.name, err)
		cs.fail(e.err)
	}
	return e
}

// destroyEvent runs on the cleanup goroutine.
func (d *Device) destroyEvent(h uintptr) {
	leave, err := d.enter()
	if err != nil {
		return // closed: the context and its events are gone
	}
	defer leave()
	_ = d.drv.eventDestroy(h)
}

func eventOf(e device.Event) (*event, error) {
	ce, ok := e.(*event)
	if !ok || ce == nil {
		return nil, fmt.Errorf("cuda: not an event of this device (%T)", e)
	}
	return ce, ce.err
}

// Wait makes later work on s wait for e.
func (d *Device) Wait(s device.Stream, e device.Event) {
	cs, err := d.streamOf(s)
	if err != nil {
		return
	}
	ce, err := eventOf(e)
	if err != nil {
		cs.fail(err)
		return
	}
	leave, err := d.enter()
	if err != nil {
		cs.fail(err)
		return
	}
	defer leave()
	if err := d.drv.streamWaitEvent(cs.h, ce.h); err != nil {
		cs.fail(fmt.Errorf("cuda: wait on %q: %w", cs.name, err))
	}
	runtime.KeepAlive(ce)
}

// Synchronize waits for s and returns the first error its work raised: a
// failed Record/Wait, a driver error, or an error a kernel wrote to the
// stream's error word (e.g. an index out of range).
func (d *Device) Synchronize(s device.Stream) error {
	cs, err := d.streamOf(s)
	if err != nil {
		return err
	}
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	w := (*[2]int32)(cs.errHost)
	*w = [2]int32{}
	serr := d.drv.memcpyDtoHAsync(cs.errHost, cs.errDev, 8, cs.h)
	if err := d.drv.streamSynchronize(cs.h); err != nil {
		serr = err
	}
	code, val := w[0], w[1]
	if serr == nil && code != 0 {
		serr = d.clearErrWord(cs) // report the error once
	}
	cs.mu.Lock()
	pending := cs.pending
	cs.pending = nil
	cs.mu.Unlock()
	switch {
	case pending != nil:
		return pending
	case serr != nil:
		return fmt.Errorf("cuda: stream %q: %w", cs.name, serr)
	case code == 1:
		return fmt.Errorf("cuda: stream %q: index %d out of range", cs.name, val)
	case code != 0:
		return fmt.Errorf("cuda: stream %q: kernel error %d (value %d)", cs.name, code, val)
	}
	return nil
}

// clearErrWord zeroes s's device error word and waits for it; the context
// must be current. The source is pageable Go memory, which the driver has
// read by the time the call returns.
func (d *Device) clearErrWord(s *stream) error {
	var zero [2]int32
	if err := d.drv.memcpyHtoDAsync(s.errDev, unsafe.Pointer(&zero), 8, s.h); err != nil {
		return err
	}
	return d.drv.streamSynchronize(s.h)
}

// EventSynchronize blocks until e has fired.
func (d *Device) EventSynchronize(e device.Event) error {
	ce, err := eventOf(e)
	if err != nil {
		return err
	}
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	err = d.drv.eventSynchronize(ce.h)
	runtime.KeepAlive(ce)
	if err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return nil
}

// EventTime is the time from Open's base event to e (cuEventElapsedTime,
// about half a microsecond of resolution).
func (d *Device) EventTime(e device.Event) (time.Duration, error) {
	ce, err := eventOf(e)
	if err != nil {
		return 0, err
	}
	leave, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	ms, err := d.drv.eventElapsed(d.base, ce.h)
	runtime.KeepAlive(ce)
	if err != nil {
		return 0, fmt.Errorf("cuda: event time: %w", err)
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

// HostAlloc returns page-locked memory when Options.Pinned, else Go memory.
func (d *Device) HostAlloc(size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("cuda: host alloc: negative size %d", size)
	}
	if !d.opts.Pinned || size == 0 {
		return make([]byte, size), nil
	}
	leave, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	p, err := d.drv.memHostAlloc(size, hostAllocPortable)
	if err != nil {
		return nil, fmt.Errorf("cuda: pinned host alloc of %s: %w", humanize.IBytes(uint64(size)), err)
	}
	d.mu.Lock()
	i := sort.Search(len(d.pinned), func(i int) bool { return d.pinned[i].start > uintptr(p) })
	d.pinned = append(d.pinned, hostRegion{})
	copy(d.pinned[i+1:], d.pinned[i:])
	d.pinned[i] = hostRegion{p: p, start: uintptr(p), size: uintptr(size)}
	d.mu.Unlock()
	return unsafe.Slice((*byte)(p), size), nil
}

// HostFree releases memory from HostAlloc. Go memory is left to the GC.
func (d *Device) HostFree(b []byte) {
	if len(b) == 0 {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	d.mu.Lock()
	i := sort.Search(len(d.pinned), func(i int) bool { return d.pinned[i].start >= p })
	found := i < len(d.pinned) && d.pinned[i].start == p
	var hp unsafe.Pointer
	if found {
		hp = d.pinned[i].p
		d.pinned = append(d.pinned[:i], d.pinned[i+1:]...)
	}
	d.mu.Unlock()
	if !found {
		return
	}
	leave, err := d.enter()
	if err != nil {
		return
	}
	defer leave()
	_ = d.drv.memFreeHost(hp)
}

// MapHost is not supported: GPU kernels read device memory.
func (d *Device) MapHost([]byte, string) (device.Buffer, error) {
	return nil, fmt.Errorf("cuda: mapping host memory: %w", device.ErrUnsupported)
}

// Caps reports the weight types the kernels compute with and, with pinned
// memory, that copies should come from HostAlloc memory: with
// Pinned set, copies from pageable memory (such as a memory-mapped model)
// would go through the driver's bounce buffer at about half the link's
// speed, so the engine stages even contiguous weights.
func (d *Device) Caps() device.Capabilities {
	return device.Capabilities{WeightTypes: weightTypes, PrefersStaging: d.opts.Pinned}
}

// IsPinned reports whether b lies in memory from HostAlloc with Pinned set.
func (d *Device) IsPinned(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	d.mu.RLock()
	defer d.mu.RUnlock()
	i := sort.Search(len(d.pinned), func(i int) bool { return d.pinned[i].start > p }) - 1
	return i >= 0 && p+uintptr(len(b)) <= d.pinned[i].start+d.pinned[i].size
}

// CopyToDevice enqueues a host-to-device copy (cuMemcpyHtoDAsync). From
// pinned memory it is asynchronous; from pageable memory the driver stages
// it and returns once src has been read.
func (d *Device) CopyToDevice(s device.Stream, dst device.Buffer, off int64, src []byte) error {
	cs, err := d.streamOf(s)
	if err != nil {
		return err
	}
	p, err := d.span(dst, off, int64(len(src)), "copy to device")
	if err != nil {
		return err
	}
	if len(src) == 0 {
		return nil
	}
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := d.drv.memcpyHtoDAsync(p, unsafe.Pointer(unsafe.SliceData(src)), int64(len(src)), cs.h); err != nil {
		return fmt.Errorf("cuda: copy %d bytes to device: %w", len(src), err)
	}
	return nil
}

// CopyToHost enqueues a device-to-host copy. Into pageable memory it
// completes before returning (CUDA's rule); into pinned memory dst is valid
// once the stream is synchronised.
func (d *Device) CopyToHost(s device.Stream, dst []byte, src device.Buffer, off int64) error {
	cs, err := d.streamOf(s)
	if err != nil {
		return err
	}
	p, err := d.span(src, off, int64(len(dst)), "copy to host")
	if err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := d.drv.memcpyDtoHAsync(unsafe.Pointer(unsafe.SliceData(dst)), p, int64(len(dst)), cs.h); err != nil {
		return fmt.Errorf("cuda: copy %d bytes to host: %w", len(dst), err)
	}
	return nil
}

// CopyDevice enqueues a device-to-device copy. Overlapping ranges of one
// buffer are rejected: cuMemcpyDtoD does not define them.
func (d *Device) CopyDevice(s device.Stream, dst device.Buffer, dstOff int64, src device.Buffer, srcOff int64, n int64) error {
	cs, err := d.streamOf(s)
	if err != nil {
		return err
	}
	dp, err := d.span(dst, dstOff, n, "device copy destination")
	if err != nil {
		return err
	}
	sp, err := d.span(src, srcOff, n, "device copy source")
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if dp < sp+uint64(n) && sp < dp+uint64(n) && dp != sp {
		return fmt.Errorf("cuda: device copy of %d bytes between overlapping ranges (offsets %d and %d)", n, srcOff, dstOff)
	}
	if dp == sp {
		return nil
	}
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := d.drv.memcpyDtoDAsync(dp, sp, n, cs.h); err != nil {
		return fmt.Errorf("cuda: device copy of %d bytes: %w", n, err)
	}
	return nil
}

// Close frees every buffer, stream, pinned block and the module, and
// releases the primary context. The device is unusable afterwards.
func (d *Device) Close() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	if err := d.drv.ctxSetCurrent(d.ctx); err != nil {
		return fmt.Errorf("cuda: close: %w", err)
	}
	return d.release()
}

// release undoes whatever Open got done; the context must be current.
func (d *Device) release() error {
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = fmt.Errorf("cuda: close: %w", err)
		}
	}
	for _, s := range d.streams {
		note(d.drv.streamSynchronize(s.h))
		if s.blas != 0 && d.blas != nil {
			note(d.blas.destroy(s.blas))
		}
		if s.scratch != 0 {
			note(d.drv.memFree(s.scratch))
		}
		note(d.drv.memFree(s.errDev))
		note(d.drv.memFreeHost(s.errHost))
		note(d.drv.streamDestroy(s.h))
	}
	d.streams = nil
	for b := range d.bufs {
		if b.ptr != 0 {
			note(d.drv.memFree(b.ptr))
		}
		b.freed = true
	}
	d.bufs = map[*buffer]struct{}{}
	d.used = 0
	for _, r := range d.pinned {
		note(d.drv.memFreeHost(r.p))
	}
	d.pinned = nil
	if d.base != 0 {
		note(d.drv.eventDestroy(d.base))
		d.base = 0
	}
	if d.mod != 0 {
		note(d.drv.moduleUnload(d.mod))
		d.mod = 0
	}
	if d.ctx != 0 {
		note(d.drv.primaryCtxRelease(d.dev))
		d.ctx = 0
	}
	return first
}
