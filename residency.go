package offload

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dustin/go-humanize"

	"offload/device"
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
		idx := make([]int32, e.selK)
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
		alignUp(int64(e.opt.LogitRows)*int64(cfg.Vocab)*4) + alignUp(int64(cfg.Hidden)*4)
	if e.opt.Policy == sparsity.PolicyTopK {
		act += alignUp(int64(2*e.selK) * int64(cfg.Dim) * 4)
	}
	if cfg.RopeFreqs != nil {
		act += alignUp(int64(len(cfg.RopeFreqs)) * 4)
	}
	kv := int64(e.opt.Branches) * 2 * int64(cfg.Layers) * int64(e.opt.Context) * int64(cfg.KVDim()) * 4
	return act + kv
}

// planResidency ranks blocks by uses per generated token and keeps the most
// used resident until the budget is spent (DESIGN.md, "Residency").
func (e *Engine) planResidency(budget int64) (*Plan, error) {
	cfg, opt := e.cfg, e.opt
	L := cfg.Layers
	headB, attnB, ffnB, packB, gateB, udB := e.blockSizes()
	K := float64(opt.Window)
	sparse := opt.Policy != sparsity.PolicyDense
	var uFFN, uPack float64
	switch opt.Mode {
	case ModeDense:
		uFFN = 1
	case ModeSparse:
		if !sparse {
			uFFN = 1
		} else if opt.Policy == sparsity.PolicyTopK {
			uFFN = 1
		} else {
			uPack = 1
		}
	case ModeSirius:
		uFFN = 1 / K
		if !sparse || opt.Policy == sparsity.PolicyTopK {
			uFFN = 1
		} else {
			uPack = (K - 1) / K
		}
	}
	p := &Plan{Budget: budget, Fixed: e.fixedBytes(), Attn: make([]bool, L), FFN: make([]bool, L), Packed: make([]bool, L)}
	type cand struct {
		name, kind string
		layer      int
		bytes      int64
		uses       float64
		set        func()
	}
	var cands []cand
	cands = append(cands, cand{"head", "head", -1, headB, 1, func() { p.Head = true }})
	for l := 0; l < L; l++ {
		cands = append(cands, cand{fmt.Sprintf("L%d.attention", l), "attn", l, attnB[l], 1, func() { p.Attn[l] = true }})
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
		return nil, fmt.Errorf("device budget %s is too small: the KV cache and activations alone need %s (lower --ctx or raise --device-mem)",
			humanize.IBytes(uint64(budget)), humanize.IBytes(uint64(p.Fixed)))
	}
	// Everything needed by some mode fits: no streaming at all.
	if (all <= avail && !opt.StreamAll) || opt.ResidentAll {
		if all > avail {
			return nil, fmt.Errorf("--resident needs %s of device memory, the budget leaves %s", humanize.IBytes(uint64(all)), humanize.IBytes(uint64(avail)))
		}
		for _, c := range cands {
			c.set()
			p.Resident += c.bytes
			p.Blocks = append(p.Blocks, PlanBlock{c.name, c.bytes, c.uses, true})
		}
		return p, nil
	}
	if avail < nslots*slot {
		return nil, fmt.Errorf("device budget %s is too small: %d layer slots of %s plus %s of KV cache and activations need %s (raise --device-mem or lower --ctx)",
			humanize.IBytes(uint64(budget)), nslots, humanize.IBytes(uint64(slot)), humanize.IBytes(uint64(p.Fixed)),
			humanize.IBytes(uint64(p.Fixed+nslots*slot)))
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

// packGriffin freezes the Griffin neuron set after the prefill and packs the
// selected neurons of the layers the plan keeps resident (once per
// sequence): on the device when the whole FFN is resident, otherwise through
// staging.
func (e *Engine) packGriffin() error {
	if e.sel != nil {
		return nil
	}
	if e.griffin == nil {
		return fmt.Errorf("no prefill statistics for the Griffin neuron set")
	}
	cfg := e.cfg
	e.seqGen++
	e.sel = make([][]int32, cfg.Layers)
	for l := range e.sel {
		e.sel[l] = e.griffin[l].Select(e.opt.Keep)
	}
	if err := e.packHost(); err != nil {
		return err
	}
	for l := 0; l < cfg.Layers; l++ {
		res := &e.layers[l]
		if !res.packedPlanned {
			continue
		}
		var lo layout
		ffnLayout(&lo, nil, &e.M.Layers[l], cfg.Dim, cfg.Hidden, e.sel[l], 1)
		buf, err := e.dev.Alloc(lo.off, fmt.Sprintf("layer %d griffin rows", l))
		if err != nil {
			return fmt.Errorf("griffin rows: %w", err)
		}
		res.packedBuf = buf
		if res.ffn != nil {
			// Gather on the device from the resident FFN.
			k := len(e.sel[l])
			dt := res.ffn.Gate.DType
			rowB := alignUp(int64(k) * dt.RowBytes(cfg.Dim))
			f := devFFN{Gate: tensorAt(buf, 0, dt, k, cfg.Dim), Up: tensorAt(buf, rowB, dt, k, cfg.Dim), Down: tensorAt(buf, 2*rowB, dt, k, cfg.Dim), DownT: true, K: k}
			ib := make([]byte, 4*k)
			putI32s(ib, e.sel[l])
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
		f := ffnLayout(&lo, buf, &e.M.Layers[l], cfg.Dim, cfg.Hidden, e.sel[l], e.opt.Workers)
		staging, err := e.dev.HostAlloc(max(lo.stagingNeed(e.opt.StageAll), 1))
		if err != nil {
			return err
		}
		n, err := enqueue(e.dev, e.copy, buf, &lo, staging, e.opt.StageAll, e.opt.Workers)
		if err == nil {
			err = e.dev.Synchronize(e.copy)
		}
		e.dev.HostFree(staging)
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
	old := e.hostPacked
	e.hostPacked = nil
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
		if e.layers[l].packedPlanned {
			los = append(los, nil)
			continue
		}
		lo := &layout{}
		ffnLayout(lo, nil, &e.M.Layers[l], cfg.Dim, cfg.Hidden, e.sel[l], e.opt.Workers)
		need += lo.staged
		los = append(los, lo)
	}
	if need == 0 || need > e.opt.HostPack {
		return nil
	}
	e.hostPacked = make([][]byte, cfg.Layers)
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
		lo.items[0].gather(b)
		e.hostPacked[l] = b
	}
	return nil
}

// packedLayout places a layer's host-packed Griffin rows (laid out as
// ffnLayout's staging: gate, up and down rows at aligned offsets) as one
// contiguous transfer.
func packedLayout(lo *layout, buf device.Buffer, packed []byte, k, dim int, dt device.DType) devFFN {
	g := lo.place(dt, k, dim)
	u := lo.place(dt, k, dim)
	d := lo.place(dt, k, dim)
	lo.items = append(lo.items, xfer{bytes: int64(len(packed)), direct: packed})
	return devFFN{Gate: tensorAt(buf, g, dt, k, dim), Up: tensorAt(buf, u, dt, k, dim), Down: tensorAt(buf, d, dt, k, dim), DownT: true, K: k}
}
