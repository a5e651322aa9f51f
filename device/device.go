// Package device defines the accelerator abstraction the engine computes on:
// a bounded memory, streams that run work in order, events that order work
// across streams, and the handful of kernels a Llama forward pass needs.
//
// Two backends implement it: the host backend (package device/host), which
// keeps a bounded arena in RAM so that CPU runs obey the same rules as a GPU,
// and the CUDA backend (package cuda). Both must pass device/devicetest. They
// register themselves by name (Register) and programs open them with Open,
// so nothing above this package names a backend's types. The argument checks
// of the kernel contract are written once, here (check.go), and every backend
// calls them. DType knows block-quantized types' sizes (dtype.go).
//
// Rules every backend keeps (see DESIGN.md, invariants 1-3):
//   - Kernels read only device buffers. Weights reach them through an explicit
//     CopyToDevice, which is the only way host bytes enter the device.
//   - Alloc fails (wrapping ErrOutOfMemory) once Used()+size would exceed
//     Capacity(); nothing is ever allocated behind the caller's back.
//   - Work enqueued on one stream runs in order; work on different streams is
//     ordered only by Record/Wait.
//   - Every call is asynchronous unless its doc says otherwise. Errors raised
//     while running queued work are returned by the next Synchronize.
package device

import (
	"errors"
	"fmt"
	"time"
)

// ErrOutOfMemory is wrapped by Alloc when the capacity would be exceeded.
var ErrOutOfMemory = errors.New("device memory exhausted")

// ErrUnsupported is returned by optional operations a backend does not have.
var ErrUnsupported = errors.New("not supported by this device")

// Buffer is a region of device memory returned by Alloc. Its concrete type is
// private to the backend that made it.
type Buffer interface {
	Size() int64
}

// Tensor is a row-major 2-D view into a Buffer: Rows x Cols elements of DType
// starting Off bytes into Buf. A vector is a 1 x n tensor. Views are values:
// slicing rows is cheap (see Slice).
type Tensor struct {
	Buf        Buffer
	Off        int64
	DType      DType
	Rows, Cols int
}

// Bytes is the size of the view in bytes.
func (t Tensor) Bytes() int64 { return int64(t.Rows) * t.RowBytes() }

// RowBytes is the size of one row in bytes (for a block-quantized type, Cols
// must be a whole number of blocks; CheckTensor enforces it).
func (t Tensor) RowBytes() int64 { return t.DType.RowBytes(t.Cols) }

// Slice returns rows [from, to) of t as a new view.
func (t Tensor) Slice(from, to int) Tensor {
	if from < 0 || to > t.Rows || from > to {
		panic(fmt.Sprintf("device: Slice(%d,%d) of %d rows", from, to, t.Rows))
	}
	return Tensor{Buf: t.Buf, Off: t.Off + int64(from)*t.RowBytes(), DType: t.DType, Rows: to - from, Cols: t.Cols}
}

// View makes a tensor over a whole buffer, or fails if it does not fit.
func View(b Buffer, off int64, dt DType, rows, cols int) (Tensor, error) {
	t := Tensor{Buf: b, Off: off, DType: dt, Rows: rows, Cols: cols}
	if off < 0 || rows < 0 || cols < 0 || off+t.Bytes() > b.Size() {
		return Tensor{}, fmt.Errorf("device: view of %d x %d %s at %d does not fit a %d-byte buffer", rows, cols, dt, off, b.Size())
	}
	return t, nil
}

// Stream is an in-order queue of work on a device.
type Stream interface {
	Name() string
}

// Event marks a point in a stream's queue; it fires when all work enqueued
// on that stream before Record has completed.
type Event interface{}

// RopeStyle says how RoPE pairs the elements of a head.
type RopeStyle uint8

const (
	// RopeInterleaved rotates pairs (v[2i], v[2i+1]). llama2.c checkpoints and
	// GGUF files (whose converters permute HF q/k rows) use it.
	RopeInterleaved RopeStyle = iota
	// RopeHalf rotates pairs (v[i], v[i+d/2]) ("rotate_half"). Hugging Face
	// checkpoints use it: their q/k rows are stored permuted for it.
	RopeHalf
)

// Device is one accelerator (or the host pretending to be one).
type Device interface {
	// Name says what this is, e.g. "host" or "cuda:0 NVIDIA H200 (sm_90)".
	Name() string
	// Capacity is the most device memory Alloc will hand out, in bytes.
	Capacity() int64
	// Used is the memory currently allocated; Peak the most ever allocated.
	Used() int64
	Peak() int64

	// Alloc reserves size bytes; label names the buffer in errors and traces.
	// It fails, wrapping ErrOutOfMemory, when Used()+size > Capacity().
	Alloc(size int64, label string) (Buffer, error)
	// Free returns a buffer. Work that still uses it must have completed.
	Free(b Buffer)

	// NewStream creates an in-order work queue.
	NewStream(name string) (Stream, error)
	// Record enqueues an event on s.
	Record(s Stream) Event
	// Wait makes work enqueued on s after this call wait until e has fired.
	Wait(s Stream, e Event)
	// Synchronize blocks until all work enqueued on s has completed and
	// returns the first error any of it raised.
	Synchronize(s Stream) error
	// EventSynchronize blocks until e has fired.
	EventSynchronize(e Event) error
	// EventTime is when e fired, measured from the device's creation (its
	// clock is the device's: on a GPU, cuEventElapsedTime from a base event).
	// It is valid once e has fired; the profiler and --trace build the
	// per-stream timeline from it.
	EventTime(e Event) (time.Duration, error)

	// MapHost returns a read-only buffer whose contents are the host memory
	// b, without copying, when the backend computes on host memory
	// (Capabilities.MapsHost): resident weights then need no second copy of
	// a memory-mapped file. It counts against Capacity like Alloc, Free
	// releases it, and writing into it (a copy or a kernel output) is an
	// error. b must stay valid and unchanged until Free. Backends that
	// cannot return ErrUnsupported.
	MapHost(b []byte, label string) (Buffer, error)

	// HostAlloc returns host memory suited as a copy source (pinned, page
	// locked on a GPU). HostFree releases it.
	HostAlloc(size int64) ([]byte, error)
	HostFree(b []byte)

	// CopyToDevice enqueues a copy of src into dst at byte offset off. src
	// must stay unchanged until the copy has completed (Record an event after
	// it and wait on that before reusing src).
	CopyToDevice(s Stream, dst Buffer, off int64, src []byte) error
	// CopyToHost enqueues a copy of len(dst) bytes from src at byte offset off.
	// dst is valid once the stream is synchronized (or an event after it fired).
	CopyToHost(s Stream, dst []byte, src Buffer, off int64) error
	// CopyDevice enqueues a device-to-device copy of n bytes.
	CopyDevice(s Stream, dst Buffer, dstOff int64, src Buffer, srcOff int64, n int64) error

	// Caps says what this backend can do, so that callers choose a path by
	// capability rather than by probing for a concrete type.
	Caps() Capabilities

	Kernels

	// Close frees everything. The device is unusable afterwards.
	Close() error
}

// Capabilities describe what a backend can do beyond the common contract.
type Capabilities struct {
	// WeightTypes are the dtypes MatMul (and RMSNorm's weight) accept.
	WeightTypes []DType
	// PrefersStaging says host->device copies should come from HostAlloc
	// buffers (page-locked on a GPU): copies straight from other host memory,
	// such as a memory-mapped file, take a slower path.
	PrefersStaging bool
	// MapsHost says MapHost works: the kernels read host memory in place.
	MapsHost bool
}

// SupportsWeights says whether dt is one of c.WeightTypes.
func (c Capabilities) SupportsWeights(dt DType) bool {
	for _, t := range c.WeightTypes {
		if t == dt {
			return true
		}
	}
	return false
}

// Kernels are the compute operations of the Llama forward pass. All are
// enqueued on a stream and run asynchronously. Activations (x, y, q, caches,
// out) are F32; weight tensors (w) may be any of the backend's
// Capabilities.WeightTypes; idx tensors are I32. Shapes are checked at
// enqueue time (the Check functions) and a mismatch is returned as an error
// without enqueuing anything.
type Kernels interface {
	// MatMul computes y[r] = W x[r] for every row r: w is [out, in],
	// x is [n, in], y is [n, out]. This is the layout of every Llama weight.
	MatMul(s Stream, y, x, w Tensor) error
	// MatMulT computes y[r] = x[r] W with w stored [in, out]: x is [n, in],
	// y is [n, out]. It serves the FFN down projection when its columns were
	// gathered as rows (neuron bundles, sparse decoding).
	MatMulT(s Stream, y, x, w Tensor) error
	// RMSNorm computes y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for every
	// row; w is a [1, cols] weight (any weight dtype).
	RMSNorm(s Stream, y, x, w Tensor, eps float32) error
	// RoPE rotates x in place: x is [n, heads*headDim], row r is at position
	// pos0+r. theta is the base (10000 for Llama 2, 500000 for Llama 3).
	RoPE(s Stream, x Tensor, pos0, headDim int, theta float32, style RopeStyle) error
	// RoPEFreqs is RoPE with explicit inverse frequencies: freqs is a
	// [1, headDim/2] F32 tensor and pair i of every head of row r turns by
	// (pos0+r)*freqs[i]. Scaled RoPE (Llama 3.1's rope_freqs, linear
	// scaling) uses it; RoPE with theta is RoPEFreqs with
	// freqs[i] = theta^(-2i/headDim).
	RoPEFreqs(s Stream, x Tensor, pos0, headDim int, freqs Tensor, style RopeStyle) error
	// Attention computes causal GQA attention: q is [n, nHeads*headDim] with
	// row r at position pos0+r; k and v caches are [maxSeq, nKVHeads*headDim]
	// and already hold positions 0..pos0+n-1; row r attends to 0..pos0+r.
	// Query head h uses KV head h / (nHeads/nKVHeads). out is shaped like q.
	Attention(s Stream, out, q, k, v Tensor, pos0, nHeads, nKVHeads, headDim int) error
	// SiLUMul computes out = silu(gate) * up elementwise (same shapes).
	SiLUMul(s Stream, out, gate, up Tensor) error
	// Add computes y += x elementwise (same shapes).
	Add(s Stream, y, x Tensor) error
	// GatherRows sets dst[i] = src[idx[i]] for every i; idx is a [1, k] I32
	// tensor, dst is [k, cols] of src's dtype. Embedding lookup and packing
	// resident FFN rows use it.
	GatherRows(s Stream, dst, src, idx Tensor) error
	// GatherColsT sets dst[i][r] = src[r][idx[i]]: the selected columns of src
	// ([rows, cols]) become the rows of dst ([k, rows], src's dtype). It packs
	// the selected columns of a resident FFN down matrix for MatMulT.
	GatherColsT(s Stream, dst, src, idx Tensor) error
}
