package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dustin/go-humanize"

	"offload/device"
	"offload/model"
	"offload/pager"
	"offload/plan"
	"offload/sparsity"
)

// Plan is the residency plan: which weight blocks stay on the device and
// how big the streaming slots and staging buffers are. It is decided once,
// from how often each byte is used per generated token in the chosen mode.
type Plan struct {
	Budget       int64
	Fixed        int64 // activations + KV caches (+ top-k scratch)
	Head         bool
	Attn         []bool
	FFN          []bool // the whole FFN
	Packed       []bool // the per-sequence Griffin rows
	SlotBytes    int64  // per slot; 0 when nothing streams
	Slots        int
	StagingBytes int64 // per staging buffer (host, pinned)
	Resident     int64 // bytes of resident weights
	Blocks       []PlanBlock
}

// PlanBlock is one candidate block and its fate.
type PlanBlock struct {
	Name     string
	Bytes    int64
	Uses     float64 // uses per generated token
	Resident bool
}

func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "residency plan: budget %s, fixed %s (activations, KV cache), resident weights %s, slots %d x %s, staging %d x %s\n",
		humanize.IBytes(uint64(p.Budget)), humanize.IBytes(uint64(p.Fixed)), humanize.IBytes(uint64(p.Resident)),
		p.Slots, humanize.IBytes(uint64(p.SlotBytes)), p.Slots, humanize.IBytes(uint64(p.StagingBytes)))
	fmt.Fprintf(&b, "  %-22s %12s %10s  %s\n", "block", "bytes", "uses/tok", "where")
	// Group consecutive layers with the same fate to keep 80-layer plans short.
	type row struct {
		kind, where string
		uses        float64
		bytes       int64
		from, to    int
	}
	var rows []row
	for _, bl := range p.Blocks {
		kind, layer := bl.Name, -1
		if i := strings.IndexByte(bl.Name, '.'); i > 0 && bl.Name[0] == 'L' {
			fmt.Sscanf(bl.Name[1:i], "%d", &layer)
			kind = bl.Name[i+1:]
		}
		where := "streams"
		if bl.Resident {
			where = "resident"
		}
		if n := len(rows); n > 0 && layer >= 0 && rows[n-1].kind == kind && rows[n-1].where == where && rows[n-1].to == layer-1 {
			rows[n-1].to = layer
			rows[n-1].bytes += bl.Bytes
			continue
		}
		rows = append(rows, row{kind, where, bl.Uses, bl.Bytes, layer, layer})
	}
	for _, r := range rows {
		name := r.kind
		if r.from >= 0 {
			name = fmt.Sprintf("layers %d-%d %s", r.from, r.to, r.kind)
			if r.from == r.to {
				name = fmt.Sprintf("layer %d %s", r.from, r.kind)
			}
		}
		fmt.Fprintf(&b, "  %-22s %12s %10.3f  %s\n", name, humanize.IBytes(uint64(r.bytes)), r.uses, r.where)
	}
	return b.String()
}

// blockSizes measures what each block occupies on the device.
func (e *Engine) blockSizes() (head int64, attn, ffn, packed, gate, upDown []int64) {
	cfg := e.cfg
	L := cfg.Layers
	attn, ffn, packed, gate, upDown = make([]int64, L), make([]int64, L), make([]int64, L), make([]int64, L), make([]int64, L)
	var lo layout
	headLayout(&lo, nil, e.M)
	head = lo.off
	for l := 0; l < L; l++ {
		ml := &e.M.Layers[l]
		lo = layout{}
		attnLayout(&lo, nil, ml)
		attn[l] = lo.off
		lo = layout{}
		ffnLayout(&lo, nil, ml, cfg.Dim, cfg.Hidden, nil, 1)
		ffn[l] = lo.off
		lo = layout{}
		idx := make([]int32, e.grif.k)
		ffnLayout(&lo, nil, ml, cfg.Dim, cfg.Hidden, idx, 1)
		packed[l] = lo.off
		lo = layout{}
		gateLayout(&lo, nil, ml, cfg.Dim, cfg.Hidden, 1)
		upDownLayout(&lo, nil, ml, cfg.Dim, cfg.Hidden, idx, 1)
		upDown[l] = lo.off
		lo = layout{}
		gateLayout(&lo, nil, ml, cfg.Dim, cfg.Hidden, 1)
		gate[l] = lo.off
		upDown[l] -= gate[l]
	}
	return
}

// fixedBytes is what the engine needs whatever the plan: activations and
// the KV caches.
func (e *Engine) fixedBytes() int64 {
	cfg := e.cfg
	N := int64(e.opt.MaxBatch)
	a := func(cols int) int64 { return alignUp(N * int64(cols) * 4) }
	act := 3*a(cfg.Dim) + 2*a(cfg.Heads*cfg.HeadDim) + 2*a(cfg.KVDim()) + 2*a(cfg.Hidden) +
		alignUp(int64(e.logitRows())*int64(cfg.Vocab)*4) + alignUp(int64(cfg.Hidden)*4)
	if e.opt.Sparsity == sparsity.PolicyTopK {
		act += alignUp(int64(2*e.grif.k) * int64(cfg.Dim) * 4)
	}
	if cfg.RopeFreqs != nil {
		act += alignUp(int64(len(cfg.RopeFreqs)) * 4)
	}
	return act + kvBytes(cfg, e.opt.Width, e.opt.Context)
}

// planResidency ranks blocks by uses per generated token and keeps the most
// used resident until the budget is spent (DESIGN.md, "Residency").
func (e *Engine) planResidency(budget int64) (*Plan, error) {
	cfg, opt := e.cfg, e.opt
	L := cfg.Layers
	headB, attnB, ffnB, packB, gateB, udB := e.blockSizes()
	// How often each block is used per generated token: plan's formula
	// (PassesPerToken), shared with `offload plan`. The whole FFN serves
	// full passes, the packed Griffin rows sparse ones; per-token top-k and
	// a dense "sparse model" read the whole FFN in every pass.
	sp, full := plan.PassesPerToken(opt.Mode, opt.Window, float64(opt.Window))
	var uFFN, uPack float64
	switch {
	case opt.Sparsity == sparsity.PolicyDense || opt.Sparsity == sparsity.PolicyTopK:
		uFFN = sp + full
	default:
		uFFN, uPack = full, sp
	}
	uAttn := sp + full
	p := &Plan{Budget: budget, Fixed: e.fixedBytes(), Attn: make([]bool, L), FFN: make([]bool, L), Packed: make([]bool, L)}
	type cand struct {
		name, kind string
		layer      int
		bytes      int64
		uses       float64
		set        func()
	}
	var cands []cand
	cands = append(cands, cand{"head", "head", -1, headB, uAttn, func() { p.Head = true }})
	for l := 0; l < L; l++ {
		cands = append(cands, cand{fmt.Sprintf("L%d.attention", l), "attn", l, attnB[l], uAttn, func() { p.Attn[l] = true }})
	}
	if uPack > 0 {
		for l := 0; l < L; l++ {
			cands = append(cands, cand{fmt.Sprintf("L%d.ffn-griffin", l), "ffn.griffin", l, packB[l], uPack, func() { p.Packed[l] = true }})
		}
	}
	for l := 0; l < L; l++ {
		cands = append(cands, cand{fmt.Sprintf("L%d.ffn", l), "ffn.rest", l, ffnB[l], uFFN, func() { p.FFN[l] = true }})
	}
	// Listed most used first, as plan.Residency ranks them.
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].uses > cands[j].uses })
	var all int64
	for _, c := range cands {
		all += c.bytes
	}
	// Largest slot any streamed unit could need, and its staging.
	var slot, stage int64
	for l := 0; l < L; l++ {
		slot = max(slot, attnB[l]+ffnB[l], attnB[l]+packB[l], attnB[l]+gateB[l]+udB[l])
		if e.M.Bundled {
			stage = max(stage, ffnB[l])
		}
		stage = max(stage, packB[l], gateB[l])
	}
	slot = max(slot, headB)
	nslots := int64(2)
	if opt.NoPrefetch {
		nslots = 1
	}
	avail := budget - p.Fixed
	if avail < 0 {
		return nil, &plan.BudgetError{What: "the KV cache and activations", Need: p.Fixed, Have: budget}
	}
	// Everything needed by some mode fits: no streaming at all.
	if all <= avail && !opt.StreamAll {
		for _, c := range cands {
			c.set()
			p.Resident += c.bytes
			p.Blocks = append(p.Blocks, PlanBlock{c.name, c.bytes, c.uses, true})
		}
		return p, nil
	}
	// The whole model fits, but not with a second, packed copy of every
	// layer's Griffin rows: keep the model resident with no slots (so a
	// dense step, which the adaptive policy falls back to when drafts do not
	// pay, costs what it costs in dense mode), and pack the layers whose
	// copy still fits, most used first. A layer without one drafts with its
	// full FFN.
	var whole int64
	for _, c := range cands {
		if c.kind != "ffn.griffin" {
			whole += c.bytes
		}
	}
	if (whole <= avail && !opt.StreamAll) || opt.ResidentAll {
		if whole > avail {
			return nil, &plan.BudgetError{What: "keeping every weight resident (with the KV cache and activations)", Need: whole + p.Fixed, Have: budget}
		}
		left := avail - whole
		for _, c := range cands {
			keep := c.kind != "ffn.griffin" || c.bytes <= left
			if keep {
				c.set()
				p.Resident += c.bytes
				if c.kind == "ffn.griffin" {
					left -= c.bytes
				}
			}
			p.Blocks = append(p.Blocks, PlanBlock{c.name, c.bytes, c.uses, keep})
		}
		return p, nil
	}
	if avail < nslots*slot {
		return nil, &plan.BudgetError{What: fmt.Sprintf("%d layer slots of %s plus the KV cache and activations", nslots, humanize.IBytes(uint64(slot))),
			Need: p.Fixed + nslots*slot, Have: budget}
	}
	if opt.StageAll {
		stage = slot // every streamed byte goes through staging
	}
	p.SlotBytes, p.Slots, p.StagingBytes = slot, int(nslots), stage
	// The ranking itself is plan.Residency's, shared with `offload plan`.
	blocks := make([]plan.Block, len(cands))
	for i, c := range cands {
		uses := c.uses
		if opt.StreamAll && c.kind != "head" {
			uses = 0 // never resident
		}
		blocks[i] = plan.Block{Name: c.name, Layer: c.layer, Kind: c.kind, Bytes: c.bytes, UsesPerToken: uses}
	}
	res, err := plan.Residency(blocks, budget-p.Fixed, nslots*slot)
	if err != nil {
		return nil, err
	}
	for i, c := range cands {
		if res[i] {
			c.set()
			p.Resident += c.bytes
		}
		p.Blocks = append(p.Blocks, PlanBlock{c.name, c.bytes, c.uses, res[i]})
	}
	return p, nil
}

// residency is what of the model stays on the device for the engine's life.
type residency struct {
	layers []layerRes
	head   *model.HeadWeights // nil: the head streams
	bufs   []device.Buffer
}

// layerRes is what of a layer stays on the device.
type layerRes struct {
	attn   *model.AttnWeights
	ffn    *model.FFNWeights // the whole FFN
	packed *model.FFNWeights // the Griffin neurons, packed once per sequence
	// packedPlanned says packed gets a resident buffer once the set is known.
	packedPlanned bool
	packedBuf     device.Buffer
}

func (r *residency) free(dev device.Device) {
	for _, b := range r.bufs {
		dev.Free(b)
	}
	r.bufs = nil
	for i := range r.layers {
		if b := r.layers[i].packedBuf; b != nil {
			dev.Free(b)
			r.layers[i].packedBuf, r.layers[i].packed = nil, nil
		}
	}
}

// loadResident copies the resident blocks to the device (once).
func (e *Engine) loadResident(p *Plan) error {
	cfg := e.cfg
	mapsHost := e.dev.Caps().MapsHost && !e.opt.CopyResident
	place := func(label string, build func(lo *layout, buf device.Buffer)) error {
		if mapsHost {
			// The device reads host memory: map the file's tensors in place
			// rather than hold a second copy. Blocks that need gathering
			// (bundles, packed rows) are copied as usual.
			// A corrupt tensor or a fault reading the file fails the
			// engine; only a mapping the device refuses falls back to a copy.
			var hard error
			lo := layout{mapHost: func(t *pager.Tensor) (device.Buffer, error) {
				if err := e.fin.checkTensors([]*pager.Tensor{t}, e.opt.Workers); err != nil {
					hard = err
					return nil, err
				}
				b, err := e.dev.MapHost(t.Data, label+" "+t.Name)
				if err == nil {
					if perr := prefault(t.Data, e.opt.Workers); perr != nil {
						e.dev.Free(b)
						hard = perr
						return nil, perr
					}
				}
				return b, err
			}}
			build(&lo, nil)
			if hard != nil {
				for _, b := range lo.mapped {
					e.dev.Free(b)
				}
				return hard
			}
			if lo.err == nil && len(lo.items) == 0 {
				e.res.bufs = append(e.res.bufs, lo.mapped...)
				for _, b := range lo.mapped {
					e.Prof.MappedBytes += b.Size()
				}
				return nil
			}
			for _, b := range lo.mapped {
				e.dev.Free(b)
			}
		}
		var lo layout
		build(&lo, nil)
		if lo.off == 0 {
			return nil
		}
		buf, err := e.dev.Alloc(lo.off, label)
		if err != nil {
			return fmt.Errorf("resident %s: %w", label, err)
		}
		e.res.bufs = append(e.res.bufs, buf)
		lo = layout{}
		build(&lo, buf)
		n, err := e.sendLayout(buf, &lo)
		if err != nil {
			return err
		}
		e.Prof.addSetup(n)
		return nil
	}
	if p.Head {
		var h model.HeadWeights
		if err := place("lm head", func(lo *layout, buf device.Buffer) { h = headLayout(lo, buf, e.M) }); err != nil {
			return err
		}
		e.res.head = &h
	}
	for l := 0; l < cfg.Layers; l++ {
		L := &e.M.Layers[l]
		if p.Attn[l] {
			var a model.AttnWeights
			if err := place(fmt.Sprintf("layer %d attention", l), func(lo *layout, buf device.Buffer) { a = attnLayout(lo, buf, L) }); err != nil {
				return err
			}
			e.res.layers[l].attn = &a
		}
		if p.FFN[l] {
			var f model.FFNWeights
			if err := place(fmt.Sprintf("layer %d ffn", l), func(lo *layout, buf device.Buffer) {
				f = ffnLayout(lo, buf, L, cfg.Dim, cfg.Hidden, nil, e.opt.Workers)
			}); err != nil {
				return err
			}
			e.res.layers[l].ffn = &f
		}
		e.res.layers[l].packedPlanned = p.Packed[l]
	}
	return nil
}

// sendLayout copies a layout into buf once (resident weights, packed rows)
// through a staging buffer of its own, and waits for it.
func (e *Engine) sendLayout(buf device.Buffer, lo *layout) (int64, error) {
	if err := e.fin.check(lo.items, e.opt.Workers); err != nil {
		return 0, err
	}
	staging, err := e.dev.HostAlloc(max(lo.stagingNeed(e.opt.StageAll), 1))
	if err != nil {
		return 0, err
	}
	defer e.dev.HostFree(staging)
	n, err := enqueue(e.dev, e.copy, buf, lo, staging, e.opt.StageAll, e.opt.Workers)
	if err != nil {
		return n, err
	}
	return n, e.dev.Synchronize(e.copy)
}
