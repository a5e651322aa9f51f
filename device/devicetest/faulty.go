package devicetest

import (
	"errors"
	"fmt"
	"sync"

	"offload/device"
)

// ErrInjected is wrapped by every error a Faulty device injects.
var ErrInjected = errors.New("devicetest: injected fault")

// Op is a kind of device call a Faulty device can fail.
type Op uint8

const (
	// OpAlloc is Alloc and HostAlloc.
	OpAlloc Op = iota
	// OpCopy is CopyToDevice, CopyToHost and CopyDevice.
	OpCopy
	// OpKernel is every Kernels method.
	OpKernel
	// OpSync is Synchronize and EventSynchronize.
	OpSync
	NumOps
)

func (o Op) String() string {
	return [...]string{"alloc", "copy", "kernel", "synchronize"}[o]
}

// Faulty wraps a device and fails the Nth call of one kind, the way
// pebble's vfs/errorfs injects I/O errors: a caller's error paths are run
// one at a time, each at a point where the real backend could fail (out of
// memory, a launch failure, an error raised by queued work). It counts every
// call of every kind, so a clean run first says how many fault points there
// are.
//
// A failing Alloc, copy or kernel returns an error wrapping ErrInjected and
// enqueues nothing. A failing Synchronize or EventSynchronize first waits
// for the work as the real call would, then returns the error, as if that
// work had raised it. Everything else passes through to the wrapped device.
type Faulty struct {
	device.Device

	mu     sync.Mutex
	calls  [NumOps]int
	failOp Op
	failAt int // 1-based call of failOp to fail; 0: never
	fired  bool
}

// NewFaulty wraps d. It injects nothing until FailAt is called.
func NewFaulty(d device.Device) *Faulty { return &Faulty{Device: d} }

// FailAt arms the device to fail the n-th call (counting from 1) of op
// made from now on, and resets the counts. n = 0 disarms it.
func (f *Faulty) FailAt(op Op, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = [NumOps]int{}
	f.failOp, f.failAt, f.fired = op, n, false
}

// Calls returns how many calls of op were made since the last FailAt (or
// since NewFaulty).
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Fired says whether the armed fault has been injected.
func (f *Faulty) Fired() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired
}

// hit counts a call of op and says whether it is the one to fail.
func (f *Faulty) hit(op Op, what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.failAt > 0 && op == f.failOp && f.calls[op] == f.failAt {
		f.fired = true
		return fmt.Errorf("%s (%s call %d): %w", what, op, f.failAt, ErrInjected)
	}
	return nil
}

func (f *Faulty) Alloc(size int64, label string) (device.Buffer, error) {
	if err := f.hit(OpAlloc, "alloc "+label); err != nil {
		return nil, err
	}
	return f.Device.Alloc(size, label)
}

func (f *Faulty) HostAlloc(size int64) ([]byte, error) {
	if err := f.hit(OpAlloc, "host alloc"); err != nil {
		return nil, err
	}
	return f.Device.HostAlloc(size)
}

func (f *Faulty) CopyToDevice(s device.Stream, dst device.Buffer, off int64, src []byte) error {
	if err := f.hit(OpCopy, "copy to device"); err != nil {
		return err
	}
	return f.Device.CopyToDevice(s, dst, off, src)
}

func (f *Faulty) CopyToHost(s device.Stream, dst []byte, src device.Buffer, off int64) error {
	if err := f.hit(OpCopy, "copy to host"); err != nil {
		return err
	}
	return f.Device.CopyToHost(s, dst, src, off)
}

func (f *Faulty) CopyDevice(s device.Stream, dst device.Buffer, dstOff int64, src device.Buffer, srcOff int64, n int64) error {
	if err := f.hit(OpCopy, "copy device"); err != nil {
		return err
	}
	return f.Device.CopyDevice(s, dst, dstOff, src, srcOff, n)
}

func (f *Faulty) Synchronize(s device.Stream) error {
	inj := f.hit(OpSync, "synchronize")
	err := f.Device.Synchronize(s)
	if inj != nil {
		return inj
	}
	return err
}

func (f *Faulty) EventSynchronize(e device.Event) error {
	inj := f.hit(OpSync, "event synchronize")
	err := f.Device.EventSynchronize(e)
	if inj != nil {
		return inj
	}
	return err
}

func (f *Faulty) MatMul(s device.Stream, y, x, w device.Tensor) error {
	if err := f.hit(OpKernel, "MatMul"); err != nil {
		return err
	}
	return f.Device.MatMul(s, y, x, w)
}

func (f *Faulty) MatMulT(s device.Stream, y, x, w device.Tensor) error {
	if err := f.hit(OpKernel, "MatMulT"); err != nil {
		return err
	}
	return f.Device.MatMulT(s, y, x, w)
}

func (f *Faulty) RMSNorm(s device.Stream, y, x, w device.Tensor, eps float32) error {
	if err := f.hit(OpKernel, "RMSNorm"); err != nil {
		return err
	}
	return f.Device.RMSNorm(s, y, x, w, eps)
}

func (f *Faulty) RoPE(s device.Stream, x device.Tensor, pos0, headDim int, theta float32, style device.RopeStyle) error {
	if err := f.hit(OpKernel, "RoPE"); err != nil {
		return err
	}
	return f.Device.RoPE(s, x, pos0, headDim, theta, style)
}

func (f *Faulty) RoPEFreqs(s device.Stream, x device.Tensor, pos0, headDim int, freqs device.Tensor, style device.RopeStyle) error {
	if err := f.hit(OpKernel, "RoPEFreqs"); err != nil {
		return err
	}
	return f.Device.RoPEFreqs(s, x, pos0, headDim, freqs, style)
}

func (f *Faulty) Attention(s device.Stream, out, q, k, v device.Tensor, pos0, nHeads, nKVHeads, headDim int) error {
	if err := f.hit(OpKernel, "Attention"); err != nil {
		return err
	}
	return f.Device.Attention(s, out, q, k, v, pos0, nHeads, nKVHeads, headDim)
}

func (f *Faulty) SiLUMul(s device.Stream, out, gate, up device.Tensor) error {
	if err := f.hit(OpKernel, "SiLUMul"); err != nil {
		return err
	}
	return f.Device.SiLUMul(s, out, gate, up)
}

func (f *Faulty) Add(s device.Stream, y, x device.Tensor) error {
	if err := f.hit(OpKernel, "Add"); err != nil {
		return err
	}
	return f.Device.Add(s, y, x)
}

func (f *Faulty) GatherRows(s device.Stream, dst, src, idx device.Tensor) error {
	if err := f.hit(OpKernel, "GatherRows"); err != nil {
		return err
	}
	return f.Device.GatherRows(s, dst, src, idx)
}

func (f *Faulty) GatherColsT(s device.Stream, dst, src, idx device.Tensor) error {
	if err := f.hit(OpKernel, "GatherColsT"); err != nil {
		return err
	}
	return f.Device.GatherColsT(s, dst, src, idx)
}

var _ device.Device = (*Faulty)(nil)
