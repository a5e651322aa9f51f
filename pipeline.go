package offload

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"offload/device"
	"offload/sparsity"
)

// unit is what one step of the pipeline computes with: a layer's attention
// and FFN (each resident or in the unit's slot), or the LM head.
type unit struct {
	attn devAttn
	ffn  devFFN
	// gate only (per-token top-k): up and down come in a second transfer.
	topk bool
	// slotLo are the transfers into the slot (nil when nothing streams).
	slotLo *layout
	slot   int
	copied device.Event
	head   bool
}

// prepare decides where unit u's weights come from in this pass and lays
// out what must stream into slot.
func (e *Engine) prepare(u int, ffn FFNMode) (*unit, error) {
	cfg := e.cfg
	un := &unit{}
	lo := &layout{}
	var buf device.Buffer
	slot := u % max(len(e.slots), 1)
	if len(e.slots) > 0 {
		buf = e.slots[slot]
	}
	if u == cfg.Layers {
		un.head = true
		if e.headRes {
			un.attn.AttnNorm, un.ffn.Gate = e.head.norm, e.head.w
			return un, nil
		}
		un.attn.AttnNorm, un.ffn.Gate = headLayout(lo, buf, e.M)
	} else {
		L := &e.M.Layers[u]
		res := &e.layers[u]
		if res.attn != nil {
			un.attn = *res.attn
		} else {
			un.attn = attnLayout(lo, buf, L)
		}
		switch {
		case ffn == FFNFull:
			if res.ffn != nil {
				un.ffn = *res.ffn
			} else {
				un.ffn = ffnLayout(lo, buf, L, cfg.Dim, cfg.Hidden, nil, e.opt.Workers)
			}
		case e.opt.Policy == sparsity.PolicyGriffin:
			switch {
			case res.packed != nil:
				un.ffn = *res.packed
			case e.hostPacked != nil && e.hostPacked[u] != nil:
				un.ffn = packedLayout(lo, buf, e.hostPacked[u], len(e.sel[u]), cfg.Dim, mustDType(ffnSource(L)))
			default:
				un.ffn = ffnLayout(lo, buf, L, cfg.Dim, cfg.Hidden, e.sel[u], e.opt.Workers)
			}
		case e.opt.Policy == sparsity.PolicyTopK:
			un.topk = true
			if res.ffn != nil {
				un.ffn = *res.ffn
			} else {
				un.ffn.Gate = gateLayout(lo, buf, L, cfg.Dim, cfg.Hidden, e.opt.Workers)
				un.ffn.K = cfg.Hidden
			}
		default: // dense policy: the sparse model is the full one
			if res.ffn != nil {
				un.ffn = *res.ffn
			} else {
				un.ffn = ffnLayout(lo, buf, L, cfg.Dim, cfg.Hidden, nil, e.opt.Workers)
			}
		}
	}
	if len(lo.items) > 0 {
		if buf == nil {
			return nil, fmt.Errorf("unit %d must stream but the plan has no layer slot", u)
		}
		if lo.off > e.slotSize {
			return nil, fmt.Errorf("unit %d needs %d bytes of slot, slots hold %d", u, lo.off, e.slotSize)
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
	i := un.slot
	var staging []byte
	if un.slotLo.stagingNeed(e.opt.StageAll) > 0 {
		si := i % len(e.staging)
		if ev := e.stageFree[si]; ev != nil {
			if err := e.dev.EventSynchronize(ev); err != nil {
				return err
			}
		}
		staging = e.staging[si]
	}
	if ev := e.slotUsed[i]; ev != nil {
		e.dev.Wait(e.copy, ev)
	}
	start := e.dev.Record(e.copy)
	n, err := enqueue(e.dev, e.copy, e.slots[i], un.slotLo, staging, e.opt.StageAll, e.opt.Workers)
	if err != nil {
		return fmt.Errorf("unit %d: %w", u, err)
	}
	un.copied = e.dev.Record(e.copy)
	if staging != nil {
		e.stageFree[i%len(e.staging)] = un.copied
	}
	pass.copy(u, start, un.copied, n)
	return nil
}

// layersForward runs every layer and leaves the final hidden state in act.x.
func (e *Engine) layersForward(seqs []Seq, rows int, phase Phase, ffn FFNMode, pass *passRec) error {
	if ffn == FFNSparse && e.opt.Policy == sparsity.PolicyGriffin && e.sel == nil {
		return fmt.Errorf("no Griffin set")
	}
	n := e.cfg.Layers + 1 // the head is the last unit
	ahead := 1
	if e.opt.NoPrefetch || len(e.slots) < 2 {
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
		if u+ahead < n {
			if err := get(u + ahead); err != nil {
				return err
			}
		} else if u+ahead == n && ahead == 1 {
			// The link would idle through the last layer and the head:
			// start the next pass's first layer now.
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
		if un.head {
			err = e.headForward(seqs, rows, un)
		} else {
			err = e.layerForward(u, seqs, rows, phase, un, pass)
		}
		if err != nil {
			return fmt.Errorf("layer %d: %w", u, err)
		}
		done := e.dev.Record(e.comp)
		if un.slotLo != nil {
			e.slotUsed[un.slot] = done
		}
		pass.compute(u, start, done)
	}
	return nil
}

func (e *Engine) layerForward(l int, seqs []Seq, rows int, phase Phase, un *unit, pass *passRec) error {
	cfg, d, s := e.cfg, e.dev, e.comp
	a := e.act
	x, xb, xb2 := a.x.Slice(0, rows), a.xb.Slice(0, rows), a.xb2.Slice(0, rows)
	q, k, v, at := a.q.Slice(0, rows), a.k.Slice(0, rows), a.v.Slice(0, rows), a.at.Slice(0, rows)
	chk := func(err error) {
		if err != nil && pass.err == nil {
			pass.err = err
		}
	}
	chk(d.RMSNorm(s, xb, x, un.attn.AttnNorm, cfg.NormEps))
	chk(d.MatMul(s, q, xb, un.attn.Q))
	chk(d.MatMul(s, k, xb, un.attn.K))
	chk(d.MatMul(s, v, xb, un.attn.V))
	r := 0
	for _, sq := range seqs {
		nr := len(sq.Toks)
		qs, ks, vs := q.Slice(r, r+nr), k.Slice(r, r+nr), v.Slice(r, r+nr)
		if a.ropeFreqs.Rows > 0 {
			chk(d.RoPEFreqs(s, qs, sq.Pos, cfg.HeadDim, a.ropeFreqs, cfg.RopeStyle))
			chk(d.RoPEFreqs(s, ks, sq.Pos, cfg.HeadDim, a.ropeFreqs, cfg.RopeStyle))
		} else {
			chk(d.RoPE(s, qs, sq.Pos, cfg.HeadDim, cfg.RopeTheta, cfg.RopeStyle))
			chk(d.RoPE(s, ks, sq.Pos, cfg.HeadDim, cfg.RopeTheta, cfg.RopeStyle))
		}
		c := e.kv[sq.Branch][l]
		ck, cv := c.k.Slice(sq.Pos, sq.Pos+nr), c.v.Slice(sq.Pos, sq.Pos+nr)
		chk(d.CopyDevice(s, ck.Buf, ck.Off, ks.Buf, ks.Off, ks.Bytes()))
		chk(d.CopyDevice(s, cv.Buf, cv.Off, vs.Buf, vs.Off, vs.Bytes()))
		chk(d.Attention(s, at.Slice(r, r+nr), qs, c.k, c.v, sq.Pos, cfg.Heads, cfg.KVHeads, cfg.HeadDim))
		r += nr
	}
	chk(d.MatMul(s, xb2, at, un.attn.O))
	chk(d.Add(s, x, xb2))
	chk(d.RMSNorm(s, xb, x, un.attn.FFNNorm, cfg.NormEps))
	if pass.err != nil {
		return pass.err
	}
	f := un.ffn
	if un.topk {
		// Per-token top-k leaves the chosen neurons' gate pre-activations
		// in hb and returns the FFN restricted to them.
		var err error
		if f, err = e.topkFFN(l, un, rows, pass); err != nil {
			return err
		}
	}
	hb := tensorAt(a.hb.Buf, a.hb.Off, device.F32, rows, f.K)
	hb2 := tensorAt(a.hb2.Buf, a.hb2.Off, device.F32, rows, f.K)
	if !un.topk {
		chk(d.MatMul(s, hb, xb, f.Gate))
	}
	chk(d.MatMul(s, hb2, xb, f.Up))
	chk(d.SiLUMul(s, hb, hb, hb2))
	if pass.err != nil {
		return pass.err
	}
	if phase == PhasePrefill && e.griffin != nil && e.sel == nil && f.K == cfg.Hidden {
		host := grow(&e.scratch.stats, int(hb.Bytes()))
		chk(d.CopyToHost(s, host, hb.Buf, hb.Off))
		if err := d.Synchronize(s); err != nil {
			return err
		}
		if err := e.griffin[l].Add(f32s(host), rows); err != nil {
			return err
		}
	}
	if f.DownT {
		chk(d.MatMulT(s, xb2, hb, f.Down))
	} else {
		chk(d.MatMul(s, xb2, hb, f.Down))
	}
	chk(d.Add(s, x, xb2))
	return pass.err
}

// headForward computes the logits of the rows that want them.
func (e *Engine) headForward(seqs []Seq, rows int, un *unit) error {
	cfg, d, s := e.cfg, e.dev, e.comp
	a := e.act
	if err := d.RMSNorm(s, a.xb.Slice(0, rows), a.x.Slice(0, rows), un.attn.AttnNorm, cfg.NormEps); err != nil {
		return err
	}
	r, o := 0, 0
	for _, sq := range seqs {
		nr := len(sq.Toks)
		if sq.Logits {
			from := r
			if sq.LastOnly {
				from = r + nr - 1
			}
			cnt := r + nr - from
			if err := d.MatMul(s, a.logits.Slice(o, o+cnt), a.xb.Slice(from, r+nr), un.ffn.Gate); err != nil {
				return err
			}
			o += cnt
		}
		r += nr
	}
	return nil
}

// logits brings the computed logits back and splits them per sequence.
func (e *Engine) logits(seqs []Seq, rows int, pass *passRec) ([][][]float32, error) {
	V := e.cfg.Vocab
	total := logitRows(seqs)
	out := make([][][]float32, len(seqs))
	if total > 0 {
		host := e.outHost[:total*V*4]
		if err := e.dev.CopyToHost(e.comp, host, e.act.logits.Buf, e.act.logits.Off); err != nil {
			return nil, err
		}
		pass.outputBytes += int64(len(host))
	}
	if err := e.dev.Synchronize(e.comp); err != nil {
		return nil, err
	}
	if err := e.dev.Synchronize(e.copy); err != nil {
		return nil, err
	}
	if pass.err != nil {
		return nil, pass.err
	}
	all := f32s(e.outHost[:total*V*4])
	o := 0
	for i, sq := range seqs {
		if !sq.Logits {
			continue
		}
		cnt := len(sq.Toks)
		if sq.LastOnly {
			cnt = 1
		}
		out[i] = make([][]float32, cnt)
		for j := range cnt {
			row := make([]float32, V)
			copy(row, all[(o+j)*V:(o+j+1)*V])
			out[i][j] = row
		}
		o += cnt
	}
	return out, nil
}

// f32s views little-endian bytes as float32s (amd64 and arm64 are little
// endian; the byte slice comes from make and is suitably aligned).
func f32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func putI32s(dst []byte, v []int32) {
	for i, x := range v {
		binary.LittleEndian.PutUint32(dst[4*i:], uint32(x))
	}
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
	e.expect = &ffn
}

// startPrefetch copies the expected next pass's first unit into its slot.
func (e *Engine) startPrefetch() error {
	if e.expect == nil || e.prefetch != nil || len(e.slots) < 2 {
		return nil
	}
	ffn := *e.expect
	if ffn == FFNSparse && e.opt.Policy == sparsity.PolicyGriffin && e.sel == nil {
		return nil
	}
	un, err := e.prepare(0, ffn)
	if err != nil || un.slotLo == nil {
		return err
	}
	rec := &passRec{}
	if err := e.copyUnit(0, un, rec); err != nil {
		return err
	}
	e.prefetch = &prefetched{un: un, ffn: ffn, gen: e.seqGen, rec: rec}
	return nil
}

// takePrefetch returns the prefetched first unit if it is what this pass
// needs; a mismatch is dropped and its bytes are counted as wasted.
func (e *Engine) takePrefetch(ffn FFNMode) *prefetched {
	pf := e.prefetch
	e.prefetch = nil
	if pf == nil {
		return nil
	}
	if pf.ffn == ffn && pf.gen == e.seqGen {
		return pf
	}
	e.Prof.wasted(pf.rec)
	return nil
}

// dropPrefetch counts a pending prefetch as wasted and forgets it.
func (e *Engine) dropPrefetch() {
	if e.prefetch != nil {
		e.Prof.wasted(e.prefetch.rec)
		e.prefetch = nil
	}
	e.expect = nil
}
