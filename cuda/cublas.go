package cuda

import (
	"runtime"
	"unsafe"
)

// cublas wraps the cuBLAS entry points used for batched products (prefill).
// Decoding and window checks use our own kernels instead (see matmul in
// ops.go for why).
type cublas struct{ lib *library }

// cuBLAS and CUDA library enums (cublas_api.h, library_types.h).
const (
	cublasOpN             = 0
	cublasOpT             = 1
	cudaR32F              = 0          // CUDA_R_32F
	cudaR16F              = 2          // CUDA_R_16F
	cudaR16BF             = 14         // CUDA_R_16BF
	cublasCompute32F      = 68         // CUBLAS_COMPUTE_32F: plain fp32 accumulation, no TF32
	cublasGemmDefaultBits = 0xFFFFFFFF // CUBLAS_GEMM_DEFAULT (-1) as a 32-bit C int
)

func (c *cublas) check(fn string, r uint32, err error) error {
	if err != nil {
		return err
	}
	if r == 0 {
		return nil
	}
	return &Error{Func: fn, Code: r, Name: goString(c.lib.callPtr("cublasGetStatusName", uintptr(r)))}
}

//go:uintptrescapes
func (c *cublas) do(fn string, args ...uintptr) error {
	r, err := c.lib.call(fn, args...)
	return c.check(fn, r, err)
}

func (c *cublas) create() (uintptr, error) {
	var h uintptr
	err := c.do("cublasCreate_v2", uintptr(unsafe.Pointer(&h)))
	return h, err
}

func (c *cublas) destroy(h uintptr) error           { return c.do("cublasDestroy_v2", h) }
func (c *cublas) setStream(h, stream uintptr) error { return c.do("cublasSetStream_v2", h, stream) }

// gemmArgs are cublasGemmEx's arguments (column-major, cuBLAS's convention).
type gemmArgs struct {
	transA, transB int
	m, n, k        int
	a              uint64
	aType, lda     int
	b              uint64
	bType, ldb     int
	c              uint64
	cType, ldc     int
	beta           float32 // C = A·B + beta C
}

// gemmEx computes C = A·B + g.beta C (alpha 1) with fp32 accumulation. It passes
// all 19 arguments of cublasGemmEx; alpha and beta are host pointers (the
// default CUBLAS_POINTER_MODE_HOST).
func (c *cublas) gemmEx(h uintptr, g gemmArgs) error {
	alpha, beta := new(float32), new(float32)
	*alpha, *beta = 1, g.beta
	err := c.do("cublasGemmEx", h,
		uintptr(g.transA), uintptr(g.transB),
		uintptr(g.m), uintptr(g.n), uintptr(g.k),
		uintptr(unsafe.Pointer(alpha)),
		uintptr(g.a), uintptr(g.aType), uintptr(g.lda),
		uintptr(g.b), uintptr(g.bType), uintptr(g.ldb),
		uintptr(unsafe.Pointer(beta)),
		uintptr(g.c), uintptr(g.cType), uintptr(g.ldc),
		uintptr(cublasCompute32F), uintptr(cublasGemmDefaultBits))
	runtime.KeepAlive(alpha)
	runtime.KeepAlive(beta)
	return err
}
