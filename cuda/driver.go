package cuda

import (
	"fmt"
	"runtime"
	"unsafe"
)

// driver wraps the few entry points of the CUDA driver API (libcuda) that
// the backend uses. Each method returns a *Error for a failing CUresult.
type driver struct{ lib *library }

// CUresult codes the backend tells apart.
const (
	cudaSuccess     = 0
	cudaErrOOM      = 2
	cudaErrNoDevice = 100
	cudaErrNotReady = 600
)

// Driver API constants (cuda.h).
const (
	attrComputeMajor    = 75 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	attrComputeMinor    = 76 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
	streamNonBlocking   = 1  // CU_STREAM_NON_BLOCKING
	eventDefault        = 0  // CU_EVENT_DEFAULT (timing enabled)
	eventDisableTiming  = 2  // CU_EVENT_DISABLE_TIMING
	hostAllocPortable   = 1  // CU_MEMHOSTALLOC_PORTABLE
	maxDeviceNameLength = 256
)

// Error is a failing CUDA driver, NVRTC or cuBLAS call.
type Error struct {
	Func string // the entry point, e.g. "cuMemAlloc_v2"
	Code uint32
	Name string // e.g. "CUDA_ERROR_OUT_OF_MEMORY", when the library can say
}

func (e *Error) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("%s: %s (%d)", e.Func, e.Name, e.Code)
	}
	return fmt.Sprintf("%s: error %d", e.Func, e.Code)
}

// check turns a CUresult into an error.
func (d *driver) check(fn string, r uint32, err error) error {
	if err != nil {
		return err
	}
	if r == cudaSuccess {
		return nil
	}
	e := &Error{Func: fn, Code: r}
	var s uintptr
	if rr, err := d.lib.call("cuGetErrorName", uintptr(r), uintptr(unsafe.Pointer(&s))); err == nil && rr == 0 {
		e.Name = goString(s)
	}
	return e
}

//go:uintptrescapes
func (d *driver) do(fn string, args ...uintptr) error {
	r, err := d.lib.call(fn, args...)
	return d.check(fn, r, err)
}

func (d *driver) init() error { return d.do("cuInit", 0) }

func (d *driver) version() (int, error) {
	var v int32
	err := d.do("cuDriverGetVersion", uintptr(unsafe.Pointer(&v)))
	return int(v), err
}

func (d *driver) deviceCount() (int, error) {
	var n int32
	err := d.do("cuDeviceGetCount", uintptr(unsafe.Pointer(&n)))
	return int(n), err
}

func (d *driver) deviceGet(ordinal int) (int32, error) {
	var dev int32
	err := d.do("cuDeviceGet", uintptr(unsafe.Pointer(&dev)), uintptr(ordinal))
	return dev, err
}

func (d *driver) deviceName(dev int32) (string, error) {
	buf := make([]byte, maxDeviceNameLength)
	if err := d.do("cuDeviceGetName", uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(dev)); err != nil {
		return "", err
	}
	for i, c := range buf {
		if c == 0 {
			return string(buf[:i]), nil
		}
	}
	return string(buf), nil
}

func (d *driver) deviceAttr(dev int32, attr int) (int, error) {
	var v int32
	err := d.do("cuDeviceGetAttribute", uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(dev))
	return int(v), err
}

func (d *driver) primaryCtxRetain(dev int32) (uintptr, error) {
	var ctx uintptr
	err := d.do("cuDevicePrimaryCtxRetain", uintptr(unsafe.Pointer(&ctx)), uintptr(dev))
	return ctx, err
}

func (d *driver) primaryCtxRelease(dev int32) error {
	return d.do("cuDevicePrimaryCtxRelease_v2", uintptr(dev))
}

func (d *driver) ctxSetCurrent(ctx uintptr) error { return d.do("cuCtxSetCurrent", ctx) }

func (d *driver) memGetInfo() (free, total uint64, err error) {
	err = d.do("cuMemGetInfo_v2", uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total)))
	return
}

func (d *driver) memAlloc(size int64) (uint64, error) {
	var p uint64
	err := d.do("cuMemAlloc_v2", uintptr(unsafe.Pointer(&p)), uintptr(size))
	return p, err
}

func (d *driver) memFree(p uint64) error { return d.do("cuMemFree_v2", uintptr(p)) }

// memHostAlloc returns page-locked host memory (C memory, never moved).
func (d *driver) memHostAlloc(size int64, flags uint32) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	err := d.do("cuMemHostAlloc", uintptr(unsafe.Pointer(&p)), uintptr(size), uintptr(flags))
	return p, err
}

func (d *driver) memFreeHost(p unsafe.Pointer) error { return d.do("cuMemFreeHost", uintptr(p)) }

// memcpyHtoDAsync copies from host address src. For pageable memory the
// driver returns once src has been copied into its own staging buffer, so Go
// memory may be passed: it is not read after the call returns.
func (d *driver) memcpyHtoDAsync(dst uint64, src unsafe.Pointer, n int64, stream uintptr) error {
	err := d.do("cuMemcpyHtoDAsync_v2", uintptr(dst), uintptr(src), uintptr(n), stream)
	runtime.KeepAlive(src)
	return err
}

// memcpyDtoHAsync copies to host address dst. For pageable memory the call
// returns only once the copy has completed (CUDA's documented behaviour).
func (d *driver) memcpyDtoHAsync(dst unsafe.Pointer, src uint64, n int64, stream uintptr) error {
	err := d.do("cuMemcpyDtoHAsync_v2", uintptr(dst), uintptr(src), uintptr(n), stream)
	runtime.KeepAlive(dst)
	return err
}

func (d *driver) memcpyDtoDAsync(dst, src uint64, n int64, stream uintptr) error {
	return d.do("cuMemcpyDtoDAsync_v2", uintptr(dst), uintptr(src), uintptr(n), stream)
}

func (d *driver) streamCreate(flags uint32) (uintptr, error) {
	var s uintptr
	err := d.do("cuStreamCreate", uintptr(unsafe.Pointer(&s)), uintptr(flags))
	return s, err
}

func (d *driver) streamDestroy(s uintptr) error     { return d.do("cuStreamDestroy_v2", s) }
func (d *driver) streamSynchronize(s uintptr) error { return d.do("cuStreamSynchronize", s) }
func (d *driver) streamWaitEvent(s, e uintptr) error {
	return d.do("cuStreamWaitEvent", s, e, 0)
}

func (d *driver) eventCreate(flags uint32) (uintptr, error) {
	var e uintptr
	err := d.do("cuEventCreate", uintptr(unsafe.Pointer(&e)), uintptr(flags))
	return e, err
}

func (d *driver) eventRecord(e, s uintptr) error   { return d.do("cuEventRecord", e, s) }
func (d *driver) eventSynchronize(e uintptr) error { return d.do("cuEventSynchronize", e) }
func (d *driver) eventDestroy(e uintptr) error     { return d.do("cuEventDestroy_v2", e) }
func (d *driver) eventElapsed(start, end uintptr) (float32, error) {
	var ms float32
	err := d.do("cuEventElapsedTime", uintptr(unsafe.Pointer(&ms)), start, end)
	return ms, err
}

// moduleLoadData loads a CUBIN, or a NUL-terminated PTX image (JIT-compiled
// by the driver).
func (d *driver) moduleLoadData(image []byte) (uintptr, error) {
	var m uintptr
	err := d.do("cuModuleLoadData", uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&image[0])))
	runtime.KeepAlive(image)
	return m, err
}

func (d *driver) moduleGetFunction(mod uintptr, name string) (uintptr, error) {
	var f uintptr
	cname := cString(name)
	err := d.do("cuModuleGetFunction", uintptr(unsafe.Pointer(&f)), mod, uintptr(unsafe.Pointer(&cname[0])))
	runtime.KeepAlive(cname)
	return f, err
}

func (d *driver) moduleUnload(mod uintptr) error { return d.do("cuModuleUnload", mod) }

// launchKernel enqueues f. params holds one pointer per kernel parameter,
// each to that parameter's value; the driver copies the values during the
// call, so params may live in Go memory (pinned for the call by the caller).
func (d *driver) launchKernel(f uintptr, grid, block [3]uint32, shmem uint32, stream uintptr, params unsafe.Pointer) error {
	err := d.do("cuLaunchKernel", f,
		uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]),
		uintptr(shmem), stream, uintptr(params), 0)
	runtime.KeepAlive(params)
	return err
}
