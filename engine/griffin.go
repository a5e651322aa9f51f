package engine

import (
	"fmt"

	"offload/device"
	"offload/model"
	"offload/sparsity"
)

// griffinState is the per-sequence Griffin sparse model: statistics
// gathered by the prefill, then the frozen neuron set of every layer and
// its packed rows (on the device for the layers the plan keeps, in host
// memory for the ones that stream).
type griffinState struct {
	k          int                 // neurons kept per layer
	stats      []*sparsity.Griffin // per layer, while the prefill runs
	sel        [][]int32           // per layer, once frozen
	hostPacked [][]byte            // per layer: rows packed in host memory
}

// start begins collecting statistics for a new sequence.
func (g *griffinState) start(layers, hidden int) {
	g.stats = make([]*sparsity.Griffin, layers)
	for l := range g.stats {
		g.stats[l] = sparsity.NewGriffin(hidden)
	}
}

// reset forgets the sequence's set and frees its device copies (host packs
// are kept for reuse by the next sequence: same sizes).
func (g *griffinState) reset(dev device.Device, layers []layerRes) {
	g.sel, g.stats = nil, nil
	for l := range layers {
		if layers[l].packedBuf != nil {
			dev.Free(layers[l].packedBuf)
			layers[l].packedBuf, layers[l].packed = nil, nil
		}
	}
}

func (g *griffinState) free(dev device.Device) {
	for _, b := range g.hostPacked {
		if b != nil {
			dev.HostFree(b)
		}
	}
	g.hostPacked = nil
}

// collect is the prefill's hook into the FFN: it adds layer l's hidden
// activations to the statistics (a full pass of the sequence's prompt, before
// the set is frozen).
func (e *Engine) collect(l int) func(h device.Tensor) error {
	return func(h device.Tensor) error {
		host := grow(&e.topk.scratch.stats, int(h.Bytes()))
		if err := e.dev.CopyToHost(e.comp, host, h.Buf, h.Off); err != nil {
			return err
		}
		if err := e.dev.Synchronize(e.comp); err != nil {
			return err
		}
		return e.grif.stats[l].Add(f32s(host), h.Rows)
	}
}

// packGriffin freezes the Griffin neuron set after the prefill and packs the
// selected neurons of the layers the plan keeps resident (once per
// sequence): on the device when the whole FFN is resident, otherwise through
// staging.
func (e *Engine) packGriffin() error {
	if e.grif.sel != nil {
		return nil
	}
	if e.grif.stats == nil {
		return fmt.Errorf("no prefill statistics for the Griffin neuron set")
	}
	cfg := e.cfg
	if e.pipe.prefetch != nil {
		// A prefetch may still be reading the packed rows rewritten below.
		if err := e.dev.Synchronize(e.copy); err != nil {
			return err
		}
	}
	e.pipe.seqGen++
	e.grif.sel = make([][]int32, cfg.Layers)
	for l := range e.grif.sel {
		e.grif.sel[l] = e.grif.stats[l].Select(e.opt.Keep)
	}
	if err := e.packHost(); err != nil {
		return err
	}
	for l := 0; l < cfg.Layers; l++ {
		res := &e.res.layers[l]
		if !res.packedPlanned {
			continue
		}
		var lo layout
		ffnLayout(&lo, nil, &e.M.Layers[l], cfg.Dim, cfg.Hidden, e.grif.sel[l], 1)
		buf, err := e.dev.Alloc(lo.off, fmt.Sprintf("layer %d griffin rows", l))
		if err != nil {
			return fmt.Errorf("griffin rows: %w", err)
		}
		res.packedBuf = buf
		if res.ffn != nil && !(res.ffn.Down.DType.Quantized() && !res.ffn.DownT) {
			// Gather on the device from the resident FFN (rows of any
			// type; the columns of a quantized down matrix cannot be cut
			// out on the device, so that case is packed on the host below).
			k := len(e.grif.sel[l])
			var pl layout
			f := model.FFNWeights{Gate: tensorAt(buf, pl.place(res.ffn.Gate.DType, k, cfg.Dim), res.ffn.Gate.DType, k, cfg.Dim),
				Up:   tensorAt(buf, pl.place(res.ffn.Up.DType, k, cfg.Dim), res.ffn.Up.DType, k, cfg.Dim),
				Down: tensorAt(buf, pl.place(res.ffn.Down.DType, k, cfg.Dim), res.ffn.Down.DType, k, cfg.Dim), DownT: true, K: k}
			ib := make([]byte, 4*k)
			i32Bytes(ib, e.grif.sel[l])
			d, s := e.dev, e.comp
			if err := d.CopyToDevice(s, e.act.idx.Buf, e.act.idx.Off, ib); err != nil {
				return err
			}
			e.Prof.addSetup(int64(len(ib)))
			ix := tensorAt(e.act.idx.Buf, e.act.idx.Off, device.I32, 1, k)
			if err := d.GatherRows(s, f.Gate, res.ffn.Gate, ix); err != nil {
				return err
			}
			if err := d.GatherRows(s, f.Up, res.ffn.Up, ix); err != nil {
				return err
			}
			if res.ffn.DownT {
				err = d.GatherRows(s, f.Down, res.ffn.Down, ix)
			} else {
				err = d.GatherColsT(s, f.Down, res.ffn.Down, ix)
			}
			if err != nil {
				return err
			}
			if err := d.Synchronize(s); err != nil {
				return err
			}
			res.packed = &f
			continue
		}
		lo = layout{}
		f := ffnLayout(&lo, buf, &e.M.Layers[l], cfg.Dim, cfg.Hidden, e.grif.sel[l], e.opt.Workers)
		n, err := e.sendLayout(buf, &lo)
		if err != nil {
			return err
		}
		e.Prof.addSetup(n)
		res.packed = &f
	}
	return nil
}

// packHost gathers, once per sequence, the Griffin rows of every layer that
// streams them into (pinned) host memory, so that each sparse step copies one
// contiguous block per layer instead of gathering rows again. It is skipped
// when the packed rows would take more host memory than Options.HostPack.
func (e *Engine) packHost() error {
	// Buffers from the previous sequence are reused (the set has the same
	// size): allocating and faulting in gigabytes of pinned memory per
	// sequence would cost more than the gather itself.
	old := e.grif.hostPacked
	e.grif.hostPacked = nil
	reuse := func(l int, n int64) []byte {
		if l < len(old) && old[l] != nil && int64(len(old[l])) == n {
			b := old[l]
			old[l] = nil
			return b
		}
		return nil
	}
	defer func() {
		for _, b := range old {
			if b != nil {
				e.dev.HostFree(b)
			}
		}
	}()
	cfg := e.cfg
	var need int64
	var los []*layout
	for l := 0; l < cfg.Layers; l++ {
		if r := e.res.layers[l]; r.packedPlanned || r.ffn != nil {
			los = append(los, nil) // packed on the device, or drafting with the resident FFN
			continue
		}
		lo := &layout{}
		ffnLayout(lo, nil, &e.M.Layers[l], cfg.Dim, cfg.Hidden, e.grif.sel[l], e.opt.Workers)
		need += lo.staged
		los = append(los, lo)
	}
	if need == 0 || need > e.opt.HostPack {
		return nil
	}
	e.grif.hostPacked = make([][]byte, cfg.Layers)
	for l, lo := range los {
		if lo == nil {
			continue
		}
		b := reuse(l, lo.items[0].bytes)
		if b == nil {
			var err error
			if b, err = e.dev.HostAlloc(lo.items[0].bytes); err != nil {
				return fmt.Errorf("packing griffin rows on the host: %w", err)
			}
		}
		if err := e.fin.check(lo.items, e.opt.Workers); err != nil {
			e.dev.HostFree(b)
			return err
		}
		if err := lo.items[0].gather(b); err != nil {
			e.dev.HostFree(b)
			return err
		}
		e.grif.hostPacked[l] = b
	}
	return nil
}

// packedLayout places a layer's host-packed Griffin rows (laid out as
// ffnLayout's staging: gate, up and down rows at aligned offsets) as one
// contiguous transfer.
func packedLayout(lo *layout, buf device.Buffer, packed []byte, k, dim int, L *model.Layer) model.FFNWeights {
	tmp := layout{off: lo.off}
	f := ffnLayout(&tmp, buf, L, dim, 0, make([]int32, k), 1) // placement only: nothing is gathered here
	lo.off = tmp.off
	lo.items = append(lo.items, xfer{bytes: int64(len(packed)), direct: packed})
	return f
}
