package engine

import (
	"context"
	"fmt"

	"offload/device"
	"offload/model"
	"offload/sparsity"
)

// pipeline is the streaming machinery: double-buffered layer slots on the
// device, pinned staging buffers on the host, the events that keep a slot
// from being overwritten before its layer has computed, and the copy of the
// next pass's first layer started while the current pass finishes.
type pipeline struct {
	slots     []device.Buffer
	slotSize  int64
	staging   [][]byte
	slotUsed  []device.Event // compute done with the slot's contents
	stageFree []device.Event // copies out of the staging buffer done
	// expect is the kind of the next pass, prefetch its first unit if
	// already copied; seqGen changes whenever streamed contents may
	// (a new sequence, a new Griffin set), invalidating a prefetch.
	expect   *FFNMode
	prefetch *prefetched
	seqGen   int
	// passCopies, recorded on the copy stream just before a prefetch is
	// enqueued, fires when the current pass's own copies are done: the
	// pass waits for it, not for the next pass's first layer, so that the
	// prefetch overlaps the host's work between passes (sampling, the
	// window policy) and each pass is timed without the next one's copy.
	passCopies device.Event
}

func (p *pipeline) allocate(dev device.Device, plan *Plan, noPrefetch bool) error {
	nslots := 2
	if noPrefetch {
		nslots = 1
	}
	if plan.SlotBytes > 0 {
		p.slotSize = plan.SlotBytes
		for i := 0; i < nslots; i++ {
			b, err := dev.Alloc(plan.SlotBytes, fmt.Sprintf("layer slot %d", i))
			if err != nil {
				return fmt.Errorf("layer slot: %w", err)
			}
			p.slots = append(p.slots, b)
		}
		p.slotUsed = make([]device.Event, nslots)
	}
	if plan.StagingBytes > 0 {
		for i := 0; i < nslots; i++ {
			s, err := dev.HostAlloc(plan.StagingBytes)
			if err != nil {
				return fmt.Errorf("staging: %w", err)
			}
			p.staging = append(p.staging, s)
		}
	}
	p.stageFree = make([]device.Event, max(nslots, 1))
	return nil
}

func (p *pipeline) free(dev device.Device) {
	for _, b := range p.slots {
		dev.Free(b)
	}
	for _, s := range p.staging {
		dev.HostFree(s)
	}
	p.slots, p.staging = nil, nil
}

// unit is what one step of the pipeline computes with: a layer's attention
// and FFN (each resident or in the unit's slot), or the LM head.
type unit struct {
	attn model.AttnWeights
	ffn  model.FFNWeights
	head model.HeadWeights
	// topk: only the gate is here; up and down come in a second transfer
	// once the neurons are chosen.
	topk bool
	// slotLo are the transfers into the slot (nil when nothing streams).
	slotLo *layout
	slot   int
	copied device.Event
	isHead bool
}

// prepare decides where unit u's weights come from in this pass and lays
// out what must stream into slot.
func (e *Engine) prepare(u int, ffn FFNMode) (*unit, error) {
	cfg, pp := e.cfg, &e.pipe
	un := &unit{}
	lo := &layout{}
	var buf device.Buffer
	slot := u % max(len(pp.slots), 1)
	if len(pp.slots) > 0 {
		buf = pp.slots[slot]
	}
	if u == cfg.Layers {
		un.isHead = true
		if e.res.head != nil {
			un.head = *e.res.head
			return un, nil
		}
		un.head = headLayout(lo, buf, e.M)
	} else {
		L := &e.M.Layers[u]
		res := &e.res.layers[u]
		if res.attn != nil {
			un.attn = *res.attn
		} else {
			un.attn = attnLayout(lo, buf, L)
		}
		switch {
		case ffn == FFNFull || e.opt.Sparsity == sparsity.PolicyDense:
			// A dense "sparse model" is the full one.
			if res.ffn != nil {
				un.ffn = *res.ffn
			} else {
				un.ffn = ffnLayout(lo, buf, L, cfg.Dim, cfg.Hidden, nil, e.opt.Workers)
			}
		case e.opt.Sparsity == sparsity.PolicyGriffin:
			switch {
			case res.packed != nil:
				un.ffn = *res.packed
			case res.ffn != nil:
				// The FFN is resident but its Griffin rows had no room
				// for a packed copy: draft with the whole FFN (no
				// transfer, only more compute).
				un.ffn = *res.ffn
			case e.grif.hostPacked != nil && e.grif.hostPacked[u] != nil:
				un.ffn = packedLayout(lo, buf, e.grif.hostPacked[u], len(e.grif.sel[u]), cfg.Dim, L)
			default:
				un.ffn = ffnLayout(lo, buf, L, cfg.Dim, cfg.Hidden, e.grif.sel[u], e.opt.Workers)
			}
		case e.opt.Sparsity == sparsity.PolicyTopK:
			un.topk = true
			if res.ffn != nil {
				un.ffn = *res.ffn
			} else {
				un.ffn.Gate = gateLayout(lo, buf, L, cfg.Dim, cfg.Hidden, e.opt.Workers)
				un.ffn.K = cfg.Hidden
			}
		default:
			return nil, fmt.Errorf("unknown sparsity policy %q", e.opt.Sparsity)
		}
	}
	if len(lo.items) > 0 {
		if buf == nil {
			return nil, fmt.Errorf("unit %d must stream but the plan has no layer slot", u)
		}
		if lo.off > pp.slotSize {
			return nil, fmt.Errorf("unit %d needs %d bytes of slot, slots hold %d", u, lo.off, pp.slotSize)
		}
		un.slotLo = lo
		un.slot = slot
	}
	return un, nil
}

// copyUnit enqueues unit un's transfers on the copy stream: after the
// compute stream has finished with the slot's previous contents, and after
// the copies out of the staging buffer it reuses have completed.
func (e *Engine) copyUnit(u int, un *unit, pass *passRec) error {
	if un.slotLo == nil {
		return nil
	}
	pp := &e.pipe
	i := un.slot
	var staging []byte
	if un.slotLo.stagingNeed(e.opt.StageAll) > 0 {
		si := i % len(pp.staging)
		if ev := pp.stageFree[si]; ev != nil {
			if err := e.dev.EventSynchronize(ev); err != nil {
				return err
			}
		}
		staging = pp.staging[si]
	}
	if ev := pp.slotUsed[i]; ev != nil {
		e.dev.Wait(e.copy, ev)
	}
	if err := e.fin.check(un.slotLo.items, e.opt.Workers); err != nil {
		return err
	}
	start := e.dev.Record(e.copy)
	n, err := enqueue(e.dev, e.copy, pp.slots[i], un.slotLo, staging, e.opt.StageAll, e.opt.Workers)
	if err != nil {
		return fmt.Errorf("unit %d: %w", u, err)
	}
	un.copied = e.dev.Record(e.copy)
	if staging != nil {
		pp.stageFree[i%len(pp.staging)] = un.copied
	}
	pass.copy(u, start, un.copied, n)
	return nil
}

// layersForward runs every layer and the head, leaving the logits of the
// rows that want them in the activations. A cancelled ctx stops it between
// units.
func (e *Engine) layersForward(ctx context.Context, seqs []Seq, rows int, phase Phase, ffn FFNMode, pass *passRec) error {
	if ffn == FFNSparse && e.opt.Sparsity == sparsity.PolicyGriffin && e.grif.sel == nil {
		return fmt.Errorf("no Griffin set")
	}
	n := e.cfg.Layers + 1 // the head is the last unit
	ahead := 1
	if e.opt.NoPrefetch || len(e.pipe.slots) < 2 {
		ahead = 0
	}
	units := make([]*unit, n)
	get := func(u int) error {
		un, err := e.prepare(u, ffn)
		if err != nil {
			return err
		}
		units[u] = un
		return e.copyUnit(u, un, pass)
	}
	if ahead == 1 {
		if pf := e.takePrefetch(ffn); pf != nil {
			// Layer 0's weights were sent while the previous pass was
			// still computing: the copy belongs to this pass.
			units[0] = pf.un
			pass.copies = append(pass.copies, pf.rec.copies...)
		} else if err := get(0); err != nil {
			return err
		}
	}
	for u := 0; u < n; u++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if u+ahead < n {
			if err := get(u + ahead); err != nil {
				return err
			}
		} else if u+ahead == n && ahead == 1 && !slotPending(units[u], 0) {
			// The link would idle through the last layer and the head:
			// start the next pass's first layer now (into slot 0, unless
			// the unit about to compute was copied there: a streamed head
			// after an even number of layers; then after it, below).
			if err := e.startPrefetch(); err != nil {
				return err
			}
		}
		un := units[u]
		if un.copied != nil {
			e.dev.Wait(e.comp, un.copied)
		}
		start := e.dev.Record(e.comp)
		var err error
		if un.isHead {
			err = e.cfg.Head(e.dev, e.comp, &e.act.Activations, &un.head, rows, headRows(seqs))
		} else {
			err = e.layerForward(u, seqs, rows, phase, un, pass)
		}
		if err != nil {
			return fmt.Errorf("layer %d: %w", u, err)
		}
		if e.diag != nil {
			if err := e.diag(u); err != nil {
				return err
			}
		}
		done := e.dev.Record(e.comp)
		if un.slotLo != nil {
			e.pipe.slotUsed[un.slot] = done
		}
		pass.compute(u, start, done)
		if u == n-1 && ahead == 1 && slotPending(un, 0) {
			if err := e.startPrefetch(); err != nil {
				return err
			}
		}
	}
	return nil
}

// slotPending says whether unit un was copied into slot i and so holds it
// until its compute is enqueued (and slotUsed records it).
func slotPending(un *unit, i int) bool { return un.slotLo != nil && un.slot == i }

// layerForward runs block l: attention over each sequence's own cache, then
// the FFN the pass asks for (top-k chooses its neurons first; a prefill
// feeds the Griffin statistics).
func (e *Engine) layerForward(l int, seqs []Seq, rows int, phase Phase, un *unit, pass *passRec) error {
	spans := make([]model.Span, len(seqs))
	r := 0
	for i, sq := range seqs {
		k, v := e.kv.Layer(sq.Branch, l)
		spans[i] = model.Span{Row: r, N: len(sq.Toks), Pos: sq.Pos, K: k, V: v}
		r += len(sq.Toks)
	}
	a := &e.act.Activations
	if err := e.cfg.Attention(e.dev, e.comp, a, &un.attn, spans, rows); err != nil {
		return err
	}
	f := un.ffn
	var hooks model.FFNHooks
	if un.topk {
		// Per-token top-k leaves the chosen neurons' gate pre-activations
		// in HB and returns the FFN restricted to them.
		var err error
		if f, err = e.topkFFN(l, un, rows, pass); err != nil {
			return err
		}
		hooks.GateDone = true
	}
	if phase == PhasePrefill && e.grif.stats != nil && e.grif.sel == nil && f.K == e.cfg.Hidden {
		hooks.Hidden = e.collect(l)
	}
	return e.cfg.FFN(e.dev, e.comp, a, &f, rows, hooks)
}

// headRows says which rows of a pass want logits and where they go.
func headRows(seqs []Seq) []model.HeadRows {
	var out []model.HeadRows
	r, o := 0, 0
	for _, sq := range seqs {
		nr := len(sq.Toks)
		if sq.Logits {
			from := r
			if sq.LastOnly {
				from = r + nr - 1
			}
			out = append(out, model.HeadRows{Row: from, N: r + nr - from, Out: o})
			o += r + nr - from
		}
		r += nr
	}
	return out
}

// prefetched is the next pass's first unit, copied ahead across passes.
type prefetched struct {
	un  *unit
	ffn FFNMode
	gen int
	rec *passRec
}

// Expect tells the engine which kind of pass comes next, so the copy of its
// first layer can overlap the end of the current pass (the Sirius adapter
// knows: drafts until the window is full, then a check).
func (e *Engine) Expect(ffn FFNMode) {
	e.pipe.expect = &ffn
}

// startPrefetch copies the expected next pass's first unit into its slot.
func (e *Engine) startPrefetch() error {
	pp := &e.pipe
	if pp.expect == nil || pp.prefetch != nil || len(pp.slots) < 2 {
		return nil
	}
	ffn := *pp.expect
	if ffn == FFNSparse && e.opt.Sparsity == sparsity.PolicyGriffin && e.grif.sel == nil {
		return nil
	}
	un, err := e.prepare(0, ffn)
	if err != nil || un.slotLo == nil {
		return err
	}
	pp.passCopies = e.dev.Record(e.copy)
	rec := &passRec{}
	if err := e.copyUnit(0, un, rec); err != nil {
		return err
	}
	pp.prefetch = &prefetched{un: un, ffn: ffn, gen: pp.seqGen, rec: rec}
	return nil
}

// takePrefetch returns the prefetched first unit if it is what this pass
// needs; a mismatch is dropped and its bytes are counted as wasted.
func (e *Engine) takePrefetch(ffn FFNMode) *prefetched {
	pf := e.pipe.prefetch
	e.pipe.prefetch = nil
	if pf == nil {
		return nil
	}
	if pf.ffn == ffn && pf.gen == e.pipe.seqGen {
		return pf
	}
	e.Prof.wasted(pf.rec)
	return nil
}

// dropPrefetch counts a pending prefetch as wasted and forgets it.
func (e *Engine) dropPrefetch() {
	if e.pipe.prefetch != nil {
		e.Prof.wasted(e.pipe.prefetch.rec)
		e.pipe.prefetch = nil
	}
	e.pipe.expect = nil
}
