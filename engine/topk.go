package engine

import (
	"fmt"
	"math"

	"offload/device"
	"offload/model"
	"offload/sparsity"
)

// topkFFN runs the CATS-like per-token selection for layer l: the whole gate
// is computed, the host picks the k neurons with the largest |silu(gate x)|
// (summed over the pass's rows, so beams share one set), and only those
// neurons' up rows and down columns are fetched: gathered on the device when
// the FFN is resident, otherwise streamed into the rest of the unit's slot.
// It leaves the chosen gate pre-activations in hb ([rows, k]).
func (e *Engine) topkFFN(l int, un *unit, rows int, pass *passRec) (model.FFNWeights, error) {
	cfg, d, s := e.cfg, e.dev, e.comp
	H, k := cfg.Hidden, e.grif.k
	g := tensorAt(e.act.HB.Buf, e.act.HB.Off, device.F32, rows, H)
	if err := d.MatMul(s, g, e.act.XB.Slice(0, rows), un.ffn.Gate); err != nil {
		return model.FFNWeights{}, err
	}
	host := grow(&e.topk.scratch.gate, int(g.Bytes()))
	if err := d.CopyToHost(s, host, g.Buf, g.Off); err != nil {
		return model.FFNWeights{}, err
	}
	if err := d.Synchronize(s); err != nil {
		return model.FFNWeights{}, err
	}
	pass.outputBytes += int64(len(host))
	gv := f32s(host)
	mag := f32s(grow(&e.topk.scratch.mag, 4*len(gv)))
	for i, x := range gv {
		mag[i] = float32(math.Abs(float64(x / (1 + float32(math.Exp(float64(-x)))))))
	}
	idx := e.topk.sel.TopKAbsSum(nil, mag, rows, k)
	// The selected gate pre-activations become hb's [rows, k].
	// The next layer reuses these buffers only after synchronizing the
	// compute stream, so the copies below have finished reading them.
	sel := grow(&e.topk.scratch.sel, rows*k*4)
	sv := f32s(sel)
	for r := 0; r < rows; r++ {
		for i, j := range idx {
			sv[r*k+i] = gv[r*H+int(j)]
		}
	}
	if err := d.CopyToDevice(s, e.act.HB.Buf, e.act.HB.Off, sel); err != nil {
		return model.FFNWeights{}, err
	}
	pass.inputBytes += int64(len(sel))
	f := model.FFNWeights{K: k, DownT: true}
	res := &e.res.layers[l]
	if res.ffn != nil {
		ib := grow(&e.topk.scratch.idx, 4*k)
		i32Bytes(ib, idx)
		if err := d.CopyToDevice(s, e.act.idx.Buf, e.act.idx.Off, ib); err != nil {
			return model.FFNWeights{}, err
		}
		pass.inputBytes += int64(len(ib))
		ix := tensorAt(e.act.idx.Buf, e.act.idx.Off, device.I32, 1, k)
		f.Up = tensorAt(e.act.sel.Buf, e.act.sel.Off, res.ffn.Up.DType, k, cfg.Dim)
		downType := res.ffn.Down.DType
		if downType.Quantized() && !res.ffn.DownT {
			downType = device.F32
		}
		f.Down = tensorAt(e.act.sel.Buf, e.act.sel.Off+alignUp(f.Up.Bytes()), downType, k, cfg.Dim)
		if err := d.GatherRows(s, f.Up, res.ffn.Up, ix); err != nil {
			return model.FFNWeights{}, err
		}
		switch {
		case res.ffn.Down.DType.Quantized() && !res.ffn.DownT:
			// Columns of a quantized matrix cut across its blocks: gather
			// them dequantized on the host from the file and send them.
			host := grow(&e.topk.scratch.down, int(f.Down.Bytes()))
			gatherDown(host, &e.M.Layers[l], cfg.Dim, H, k, func(i int) int { return int(idx[i]) }, e.opt.Workers)
			if err := d.CopyToDevice(s, f.Down.Buf, f.Down.Off, host); err != nil {
				return model.FFNWeights{}, err
			}
			pass.inputBytes += int64(len(host))
		case res.ffn.DownT:
			err := d.GatherRows(s, f.Down, res.ffn.Down, ix)
			if err != nil {
				return model.FFNWeights{}, err
			}
		default:
			if err := d.GatherColsT(s, f.Down, res.ffn.Down, ix); err != nil {
				return model.FFNWeights{}, err
			}
		}
		// Keep the device's copy of the selected gate values from being
		// overwritten before use: sel is synchronous here.
		if err := d.Synchronize(s); err != nil {
			return model.FFNWeights{}, err
		}
		return f, nil
	}
	// Stream the selected rows into the slot, after the gate.
	lo := &layout{off: un.slotLo.off}
	f.Up, f.Down = upDownLayout(lo, e.pipe.slots[un.slot], &e.M.Layers[l], cfg.Dim, H, idx, e.opt.Workers)
	if lo.off > e.pipe.slotSize {
		return model.FFNWeights{}, fmt.Errorf("top-k rows need %d bytes of slot, slots hold %d", lo.off, e.pipe.slotSize)
	}
	if int64(len(e.topk.stage)) < lo.staged {
		return model.FFNWeights{}, fmt.Errorf("top-k staging of %d bytes is too small for %d", len(e.topk.stage), lo.staged)
	}
	if err := e.fin.check(lo.items, e.opt.Workers); err != nil {
		return model.FFNWeights{}, err
	}
	start := d.Record(e.copy)
	var off, soff, n int64 = un.slotLo.off, 0, 0
	for _, it := range lo.items {
		src := e.topk.stage[soff : soff+it.bytes]
		if err := it.gather(src); err != nil {
			return model.FFNWeights{}, err
		}
		soff += alignUp(it.bytes)
		if err := d.CopyToDevice(e.copy, e.pipe.slots[un.slot], off, src); err != nil {
			return model.FFNWeights{}, err
		}
		off = alignUp(off + it.bytes)
		n += it.bytes
	}
	done := d.Record(e.copy)
	pass.copy(l, start, done, n)
	d.Wait(s, done)
	// The staging buffer is reused by the next layer: wait for the copy.
	if err := d.EventSynchronize(done); err != nil {
		return model.FFNWeights{}, err
	}
	return f, nil
}

// topkState is per-token top-k's working memory: the selector, the pinned
// staging for the chosen rows, and host buffers reused every layer (a hot
// path: no allocation per layer).
type topkState struct {
	sel     sparsity.Selector
	stage   []byte
	scratch struct{ gate, mag, sel, idx, stats, down []byte }
}

// grow returns (*b)[:n], reallocating only when the buffer is too small:
// per-token top-k runs for every layer of every token.
func grow(b *[]byte, n int) []byte {
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	return (*b)[:n]
}
