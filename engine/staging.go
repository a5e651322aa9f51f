package engine

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"offload/device"
	"offload/internal/fault"
	"offload/model"
	"offload/pager"
	"offload/quant"
)

// align is the alignment of every tensor placed in a device buffer (cuBLAS
// and vector loads like 256-byte boundaries).
const align = 256

func alignUp(n int64) int64 { return (n + align - 1) &^ (align - 1) }

// xfer is one host->device transfer into a slot or a resident buffer: either
// a contiguous slice of the mapping copied as is, or a gather that fills a
// staging buffer first (selected rows, bundles split into their three parts).
//
// Both read the memory-mapped file: a gather runs under fault.Guard (through
// parallel), and a direct copy is read by the backend, which guards its own
// copies. Either way a file truncated while mapped is an error, not a crash.
type xfer struct {
	bytes  int64
	direct []byte
	gather func(dst []byte) error
	// src are the file tensors the transfer reads, checked for NaN/Inf the
	// first time any of them is read (finiteChecker).
	src []*pager.Tensor
}

// layout accumulates tensors placed one after another in one device buffer.
type layout struct {
	off   int64
	items []xfer
	// staged is the number of staging bytes the gathers need.
	staged int64
	// mapHost, when set, maps whole file tensors in place (a device that
	// computes on host memory) instead of placing them for a copy; the
	// buffers it made are in mapped, its first failure in err.
	mapHost func(t *pager.Tensor) (device.Buffer, error)
	mapped  []device.Buffer
	err     error
}

func (lo *layout) place(dt device.DType, rows, cols int) (off int64) {
	off = lo.off
	lo.off = alignUp(off + int64(rows)*dt.RowBytes(cols))
	return off
}

func tensorAt(buf device.Buffer, off int64, dt device.DType, rows, cols int) device.Tensor {
	return device.Tensor{Buf: buf, Off: off, DType: dt, Rows: rows, Cols: cols}
}

// pagerShape gives a weight's 2-D device shape.
func pagerShape(t *pager.Tensor) (rows, cols int) {
	if len(t.Shape) == 1 {
		return 1, t.Shape[0]
	}
	return t.Rows(), t.Cols()
}

func mustDType(t *pager.Tensor) device.DType {
	dt, err := deviceType(t)
	if err != nil {
		panic(err) // New already refused such models
	}
	return dt
}

// deviceType is a weight's device dtype, or an error naming the tensor.
func deviceType(t *pager.Tensor) (device.DType, error) {
	dt, err := model.DType(t.DType)
	if err != nil {
		return 0, fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	return dt, nil
}

// weightTensors lists every tensor the device may compute with as it is
// stored (bundles are not: their parts are, see weightTypes).
func weightTensors(m *model.Model) []*pager.Tensor {
	ts := []*pager.Tensor{m.OutNorm, m.Head}
	for i := range m.Layers {
		L := &m.Layers[i]
		for _, t := range []*pager.Tensor{L.AttnNorm, L.Q, L.K, L.V, L.O, L.FFNNorm, L.Gate, L.Up, L.Down} {
			if t != nil {
				ts = append(ts, t)
			}
		}
	}
	return ts
}

// checkWeightTypes says which weight the backend cannot compute with.
func checkWeightTypes(m *model.Model, dev device.Device) error {
	for _, t := range weightTensors(m) {
		dt, err := deviceType(t)
		if err != nil {
			return err
		}
		if !dev.Caps().SupportsWeights(dt) {
			return fmt.Errorf("tensor %s is %s, which the %s backend does not compute with", t.Name, dt, dev.Name())
		}
	}
	for i := range m.Layers {
		L := &m.Layers[i]
		if L.Bundle == nil {
			continue
		}
		for p := range 3 {
			if dt, _ := L.BundlePart(p); !dev.Caps().SupportsWeights(dt) {
				return fmt.Errorf("tensor %s: part %d is %s, which the %s backend does not compute with", L.Bundle.Name, p, dt, dev.Name())
			}
		}
	}
	return nil
}

// direct places a whole file tensor, copied as is (or mapped in place).
func (lo *layout) direct(buf device.Buffer, t *pager.Tensor) device.Tensor {
	r, c := pagerShape(t)
	dt := mustDType(t)
	if lo.mapHost != nil && lo.err == nil {
		b, err := lo.mapHost(t)
		if err == nil {
			lo.mapped = append(lo.mapped, b)
			return tensorAt(b, 0, dt, r, c)
		}
		lo.err = err
	}
	off := lo.place(dt, r, c)
	lo.items = append(lo.items, xfer{bytes: int64(len(t.Data)), direct: t.Data, src: []*pager.Tensor{t}})
	return tensorAt(buf, off, dt, r, c)
}

// stagingNeed is the staging the layout's transfers use: the gathers, plus
// every contiguous piece when all copies are staged.
func (lo *layout) stagingNeed(stageAll bool) int64 {
	if stageAll {
		return lo.off
	}
	return lo.staged
}

func (lo *layout) gathered(bytes int64, fill func(dst []byte) error, src ...*pager.Tensor) {
	lo.items = append(lo.items, xfer{bytes: bytes, gather: fill, src: src})
	lo.staged += alignUp(bytes)
}

// attnLayout places a layer's attention block.
func attnLayout(lo *layout, buf device.Buffer, L *model.Layer) model.AttnWeights {
	return model.AttnWeights{
		AttnNorm: lo.direct(buf, L.AttnNorm),
		Q:        lo.direct(buf, L.Q),
		K:        lo.direct(buf, L.K),
		V:        lo.direct(buf, L.V),
		O:        lo.direct(buf, L.O),
		FFNNorm:  lo.direct(buf, L.FFNNorm),
	}
}

// ffnLayout places a layer's FFN restricted to the neurons in idx (nil: all
// of them). A file-layout FFN with idx == nil is copied as is; everything
// else is gathered into staging: rows of gate and up, columns of down
// (transposed into rows), or whole neuron bundles split into their parts.
// Gate, up and down keep their own types (quantized files mix them), except
// that columns of a quantized down matrix cut across its blocks: they are
// dequantized to f32 rows (correct, if four to eight times the bytes of a
// bundle that stores them requantized).
func ffnLayout(lo *layout, buf device.Buffer, L *model.Layer, dim, hidden int, idx []int32, workers int) model.FFNWeights {
	if L.Bundle == nil && idx == nil {
		g := lo.direct(buf, L.Gate)
		u := lo.direct(buf, L.Up)
		d := lo.direct(buf, L.Down)
		return model.FFNWeights{Gate: g, Up: u, Down: d, K: hidden}
	}
	k := hidden
	if idx != nil {
		k = len(idx)
	}
	row := func(i int) int {
		if idx == nil {
			return i
		}
		return int(idx[i])
	}
	if L.Bundle != nil {
		// One contiguous read per neuron: gate_j | up_j | downT_j, each part
		// in its own type.
		bp := &L.BundleParts
		gt, gRow := L.BundlePart(pager.PartGate)
		ut, uRow := L.BundlePart(pager.PartUp)
		dt, dRow := L.BundlePart(pager.PartDown)
		gPart, uPart := alignUp(int64(k)*int64(gRow)), alignUp(int64(k)*int64(uRow))
		gOff, uOff, dOff := lo.place(gt, k, dim), lo.place(ut, k, dim), lo.place(dt, k, dim)
		lo.gathered(gPart+uPart+int64(k)*int64(dRow), func(dst []byte) error {
			return parallel(k, workers, func(i0, i1 int) {
				for i := i0; i < i1; i++ {
					b := L.Bundle.Row(row(i))
					pager.StreamCopy(dst[int64(i)*int64(gRow):], bp.Part(b, pager.PartGate))
					pager.StreamCopy(dst[gPart+int64(i)*int64(uRow):], bp.Part(b, pager.PartUp))
					pager.StreamCopy(dst[gPart+uPart+int64(i)*int64(dRow):], bp.Part(b, pager.PartDown))
				}
			})
		}, L.Bundle)
		return model.FFNWeights{Gate: tensorAt(buf, gOff, gt, k, dim), Up: tensorAt(buf, uOff, ut, k, dim),
			Down: tensorAt(buf, dOff, dt, k, dim), DownT: true, K: k}
	}
	gt, ut, dt := mustDType(L.Gate), mustDType(L.Up), downRowType(L)
	gOff, uOff, dOff := lo.place(gt, k, dim), lo.place(ut, k, dim), lo.place(dt, k, dim)
	gRow, uRow := gt.RowBytes(dim), ut.RowBytes(dim)
	gPart, uPart := alignUp(int64(k)*gRow), alignUp(int64(k)*uRow)
	lo.gathered(gPart+uPart+int64(k)*dt.RowBytes(dim), func(dst []byte) error {
		err := parallel(k, workers, func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				j := row(i)
				pager.StreamCopy(dst[int64(i)*gRow:], L.Gate.Row(j))
				pager.StreamCopy(dst[gPart+int64(i)*uRow:], L.Up.Row(j))
			}
		})
		if err != nil {
			return err
		}
		return gatherDown(dst[gPart+uPart:], L, dim, hidden, k, row, workers)
	}, L.Gate, L.Up, L.Down)
	return model.FFNWeights{Gate: tensorAt(buf, gOff, gt, k, dim), Up: tensorAt(buf, uOff, ut, k, dim),
		Down: tensorAt(buf, dOff, dt, k, dim), DownT: true, K: k}
}

// downRowType is the type of a gathered down column: the file's for plain
// types, f32 for quantized ones.
func downRowType(L *model.Layer) device.DType {
	if dt := mustDType(L.Down); !dt.Quantized() {
		return dt
	}
	return device.F32
}

// gatherDown writes down columns row(i), i < k, of L.Down ([dim, hidden]) as
// rows i of dst ([k, dim] of downRowType).
func gatherDown(dst []byte, L *model.Layer, dim, hidden, k int, row func(int) int, workers int) error {
	dt := mustDType(L.Down)
	if !dt.Quantized() {
		return parallel(k, workers, func(i0, i1 int) {
			gatherColsT(dst, L.Down.Data, dim, hidden, dt.BlockBytes(), i0, i1, row)
		})
	}
	// Each source row is dequantized once and its selected elements are
	// scattered into the k destination rows.
	qt := quant.Type(L.Down.DType)
	out := f32s(dst[:int64(k)*int64(dim)*4])
	return parallel(dim, workers, func(r0, r1 int) {
		buf := make([]float32, hidden)
		for r := r0; r < r1; r++ {
			if err := quant.DequantizeRow(qt, buf, L.Down.Row(r)); err != nil {
				panic(err) // sizes were checked when the model opened
			}
			for i := range k {
				out[i*dim+r] = buf[row(i)]
			}
		}
	})
}

// gateLayout places only the gate matrix (per-token top-k needs all of it to
// choose the neurons before it can fetch their up rows and down columns).
func gateLayout(lo *layout, buf device.Buffer, L *model.Layer, dim, hidden, workers int) device.Tensor {
	if L.Bundle == nil {
		return lo.direct(buf, L.Gate)
	}
	dt, rowB := L.BundlePart(pager.PartGate)
	off := lo.place(dt, hidden, dim)
	lo.gathered(int64(hidden)*int64(rowB), func(dst []byte) error {
		return parallel(hidden, workers, func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				pager.StreamCopy(dst[int64(i)*int64(rowB):], L.BundleParts.Part(L.Bundle.Row(i), pager.PartGate))
			}
		})
	}, L.Bundle)
	return tensorAt(buf, off, dt, hidden, dim)
}

// upDownLayout places the up rows and down columns of the selected neurons.
func upDownLayout(lo *layout, buf device.Buffer, L *model.Layer, dim, hidden int, idx []int32, workers int) (up, downT device.Tensor) {
	k := len(idx)
	row := func(i int) int { return int(idx[i]) }
	if L.Bundle != nil {
		bp := &L.BundleParts
		ut, uRow := L.BundlePart(pager.PartUp)
		dt, dRow := L.BundlePart(pager.PartDown)
		uPart := alignUp(int64(k) * int64(uRow))
		uOff, dOff := lo.place(ut, k, dim), lo.place(dt, k, dim)
		lo.gathered(uPart+int64(k)*int64(dRow), func(dst []byte) error {
			return parallel(k, workers, func(i0, i1 int) {
				for i := i0; i < i1; i++ {
					b := L.Bundle.Row(row(i))
					pager.StreamCopy(dst[int64(i)*int64(uRow):], bp.Part(b, pager.PartUp))
					pager.StreamCopy(dst[uPart+int64(i)*int64(dRow):], bp.Part(b, pager.PartDown))
				}
			})
		}, L.Bundle)
		return tensorAt(buf, uOff, ut, k, dim), tensorAt(buf, dOff, dt, k, dim)
	}
	ut, dt := mustDType(L.Up), downRowType(L)
	uRow := ut.RowBytes(dim)
	uPart := alignUp(int64(k) * uRow)
	uOff, dOff := lo.place(ut, k, dim), lo.place(dt, k, dim)
	lo.gathered(uPart+int64(k)*dt.RowBytes(dim), func(dst []byte) error {
		err := parallel(k, workers, func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				pager.StreamCopy(dst[int64(i)*uRow:], L.Up.Row(row(i)))
			}
		})
		if err != nil {
			return err
		}
		return gatherDown(dst[uPart:], L, dim, hidden, k, row, workers)
	}, L.Up, L.Down)
	return tensorAt(buf, uOff, ut, k, dim), tensorAt(buf, dOff, dt, k, dim)
}

// headLayout places the final norm and the LM head.
func headLayout(lo *layout, buf device.Buffer, m *model.Model) model.HeadWeights {
	return model.HeadWeights{Norm: lo.direct(buf, m.OutNorm), Out: lo.direct(buf, m.Head)}
}

// prefaultSink keeps the page-touching reads of prefault from being
// optimised away.
var prefaultSink atomic.Uint32

// prefault reads one byte of every page of b, so that the page faults of a
// tensor mapped in place are paid at setup (as a copy's would be), not
// inside the first pass that uses it. b is the mapped file: a fault is
// returned as an error.
func prefault(b []byte, workers int) error {
	const page = 4096
	pages := (len(b) + page - 1) / page
	return parallel(pages, workers, func(p0, p1 int) {
		var x byte
		for p := p0; p < p1; p++ {
			x ^= b[p*page]
		}
		prefaultSink.Add(uint32(x))
	})
}

// parallel splits [0, n) into up to workers chunks run concurrently. f
// reads the mapped model file, so each chunk runs under fault.Guard: a
// fault (the file was truncated meanwhile) is returned as an error.
func parallel(n, workers int, f func(i0, i1 int)) error {
	if workers < 1 {
		workers = 1
	}
	if n < 256 || workers == 1 {
		return fault.Guard(func() { f(0, n) })
	}
	workers = min(workers, n)
	chunk := (n + workers - 1) / workers
	return fault.Go((n+chunk-1)/chunk, func(c int) {
		f(c*chunk, min((c+1)*chunk, n))
	})
}

// enqueue issues lo's transfers into buf on stream s, gathering into staging
// first where needed. It returns the bytes sent.
func enqueue(dev device.Device, s device.Stream, buf device.Buffer, lo *layout, staging []byte, stageAll bool, workers int) (int64, error) {
	var off, soff, total int64
	for _, it := range lo.items {
		var src []byte
		switch {
		case it.direct != nil && stageAll:
			// Pinned staging: the copy engine reads only page-locked memory.
			if soff+it.bytes > int64(len(staging)) {
				return total, fmt.Errorf("staging buffer of %d bytes is too small for %d", len(staging), soff+it.bytes)
			}
			src = staging[soff : soff+it.bytes]
			d := it.direct
			err := parallel(int((it.bytes+(1<<20)-1)>>20), workers, func(c0, c1 int) {
				lo, hi := int64(c0)<<20, min(int64(c1)<<20, it.bytes)
				pager.StreamCopy(src[lo:hi], d[lo:hi])
			})
			if err != nil {
				return total, err
			}
			soff += alignUp(it.bytes)
		case it.direct != nil:
			src = it.direct
		default:
			if soff+it.bytes > int64(len(staging)) {
				return total, fmt.Errorf("staging buffer of %d bytes is too small for %d", len(staging), soff+it.bytes)
			}
			src = staging[soff : soff+it.bytes]
			if err := it.gather(src); err != nil {
				return total, err
			}
			soff += alignUp(it.bytes)
		}
		if err := dev.CopyToDevice(s, buf, off, src); err != nil {
			return total, err
		}
		total += it.bytes
		off = alignUp(off + it.bytes)
	}
	return total, nil
}

// gatherColsT writes columns row(i) of src ([dim, hidden], es-byte
// elements) as rows i0..i1-1 of dst ([k, dim]). It works in tiles of 64
// selected columns: for each source row it reads the few cache lines that
// hold the tile's columns and writes one element into each of 64 destination
// rows, whose lines stay in L1 across consecutive source rows. (Walking all
// selected columns per row block instead touches a new destination page on
// every write and ran ~10x slower.)
func gatherColsT(dst, src []byte, dim, hidden, es, i0, i1 int, row func(i int) int) {
	cols := make([]int, i1-i0)
	for i := range cols {
		cols[i] = row(i0 + i)
	}
	switch es {
	case 2:
		gatherColsTTiles(asElems[uint16](dst), asElems[uint16](src), cols, dim, hidden, i0)
	case 4:
		gatherColsTTiles(asElems[uint32](dst), asElems[uint32](src), cols, dim, hidden, i0)
	default:
		panic(fmt.Sprintf("gatherColsT: element size %d", es))
	}
}

func asElems[T uint16 | uint32](b []byte) []T {
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/int(unsafe.Sizeof(z)))
}

func gatherColsTTiles[T uint16 | uint32](d, sv []T, cols []int, dim, hidden, i0 int) {
	const tile = 64
	for c0 := 0; c0 < len(cols); c0 += tile {
		tc := cols[c0:min(c0+tile, len(cols))]
		base := (i0 + c0) * dim
		for r := 0; r < dim; r++ {
			srow := sv[r*hidden : (r+1)*hidden]
			o := base + r
			for _, j := range tc {
				d[o] = srow[j]
				o += dim
			}
		}
	}
}
