// Package plan decides where a model's weights live while it decodes, and
// predicts what that costs, without running anything.
//
// It is the "deciding" half of the offload runtime, in the sense of etcd
// raft's split between a pure state machine and the code that does I/O: the
// engine asks [Blocks] and [Residency] which weight blocks to keep on the
// device and streams the rest; `offload plan` asks [Predict] how many bytes
// each generated token moves over the host->device link and how long that
// takes, per decoding mode. Nothing here touches a device or a weight file
// (model metadata is read by [LoadModelInfo], headers only).
//
// The cost model is the one the paper's offloading runs are bound by: at
// batch 1, every weight byte that is not resident crosses the link each time
// it is used, and layers are double-buffered, so layer l+1 copies while layer
// l computes and a layer costs the larger of its link time and its compute
// time. A token costs the sum over layers (see [Predict]).
package plan

import (
	"fmt"
	"math"
	"sort"

	"offload/corrector"
	"offload/model"
)

// Mode is a decoding mode: which weights a generated token uses. It is the
// corrector's enum (one mode type for the whole program).
type Mode = corrector.Mode

// The modes. Dense streams the full model for every token. Sparse uses
// attention and the per-sequence Griffin FFN rows (keep*FFN) for every token,
// and never the other FFN rows. Sirius drafts window-1 tokens with the sparse
// model, then checks the whole window with one batched full pass; per window
// it advances AAL tokens on average, so a byte used by every pass is used
// window/AAL times per generated token, and a row used only by the check
// 1/AAL times.
const (
	Dense  = corrector.Dense
	Sparse = corrector.Sparse
	Sirius = corrector.Sirius
)

// Modes lists every mode in display order.
var Modes = []Mode{Dense, Sparse, Sirius}

// ParseMode reads a mode name ("full" is dense).
func ParseMode(s string) (Mode, error) { return corrector.ParseMode(s) }

// Block kinds. A block is the unit the residency planner places.
const (
	KindEmbed = "embed" // token embedding table; a token uses one row
	KindHead  = "head"  // LM head (absent when tied to the embeddings)
	KindNorms = "norms" // every RMSNorm weight, all layers and the final one
	KindAttn  = "attn"  // q, k, v, o of one layer
	// KindFFNSel is the keep*FFN neurons the sequence selected (gate and up
	// rows, down columns). The set is chosen per sequence, so a resident
	// copy is re-gathered once per sequence after prefill. In dense mode the
	// split is only a size split: any keep*FFN neurons may stay resident.
	KindFFNSel = "ffn.griffin"
	KindFFNRst = "ffn.rest" // the other FFN neurons: used only by full passes
)

// kindOrder breaks ties between blocks used equally often: blocks the
// per-layer pipeline cannot stream (head, norms) come first, then the parts
// of a layer in the order the layer needs them.
var kindOrder = map[string]int{KindNorms: 0, KindHead: 1, KindAttn: 2, KindFFNSel: 3, KindFFNRst: 4, KindEmbed: 5}

// A Block is a unit of weights the planner places, e.g. "embed", "head",
// "norms", "L12.attn", "L12.ffn.griffin", "L12.ffn.rest".
type Block struct {
	Name  string
	Layer int // -1 for blocks that belong to no layer
	Kind  string
	Bytes int64
	// UsesPerToken is the expected number of times each byte of the block is
	// needed per generated token in the mode the blocks were made for. It is
	// what residency ranks by: keeping a block resident saves
	// Bytes*UsesPerToken of link traffic per token.
	UsesPerToken float64
	// Required blocks must be resident: the layer pipeline only streams
	// transformer layers through its slots, so the LM head and the norms
	// (tiny, read by every layer) always stay on the device.
	Required bool
}

// Geometry is the per-layer sizing derived from a config, in elements.
type Geometry struct {
	AttnParams int64 // q, k, v, o
	FFNParams  int64 // 3 * dim * hidden
	Kept       int   // Griffin neurons kept per layer: round(keep*hidden), at least 1
	SelParams  int64 // 3 * dim * kept
	RestParams int64 // FFNParams - SelParams
	NormParams int64 // 2*dim per layer * layers + dim (final norm)
	EmbedParam int64 // vocab * dim
	HeadParams int64 // vocab * dim, 0 when tied
}

// GeometryOf sizes cfg's blocks for a Griffin keep fraction.
func GeometryOf(cfg model.Config, keep float64) Geometry {
	attn, ffn, norms := cfg.LayerParams()
	kept := int(math.Round(keep * float64(cfg.Hidden)))
	if kept < 1 {
		kept = 1
	}
	if kept > cfg.Hidden {
		kept = cfg.Hidden
	}
	sel := 3 * int64(cfg.Dim) * int64(kept)
	g := Geometry{
		AttnParams: attn, FFNParams: ffn, Kept: kept, SelParams: sel, RestParams: ffn - sel,
		NormParams: int64(cfg.Layers)*norms + int64(cfg.Dim),
		EmbedParam: int64(cfg.Vocab) * int64(cfg.Dim),
	}
	if !cfg.TiedEmbeddings {
		g.HeadParams = g.EmbedParam
	}
	return g
}

// sizeOf is the byte size of n weights at dtypeBytes per weight (fractional
// for block-quantized types), rounded up.
func sizeOf(n int64, dtypeBytes float64) int64 {
	return int64(math.Ceil(float64(n) * dtypeBytes))
}

// PassesPerToken is how many sparse and full passes a generated token costs
// in a mode, on average: dense runs one full pass per token; sparse one
// sparse pass; Sirius, per window of window passes (window-1 sparse drafts,
// one full check), advances aal tokens. It is the one formula behind every
// "uses per token": a byte read by both kinds of pass is used sparse+full
// times per token, a byte only the full model reads full times. The engine's
// residency and `offload plan` both rank blocks by it.
func PassesPerToken(mode Mode, window int, aal float64) (sparse, full float64) {
	switch mode {
	case Sparse:
		return 1, 0
	case Sirius:
		if aal <= 0 {
			aal = DefaultAAL(window)
		}
		return float64(window-1) / aal, 1 / aal
	}
	return 0, 1
}

// LayerName is the name of a layer block, e.g. "L12.attn".
func LayerName(layer int, kind string) string { return fmt.Sprintf("L%d.%s", layer, kind) }

// Blocks lists cfg's weights as placeable blocks, with how often each byte is
// used per generated token in mode. w sizes them (UniformWeights(cfg, "",
// 2) for bf16, FileWeights for a real file). keep is the Griffin fraction of
// FFN neurons, window the Sirius period K and aal its average advance length
// (both ignored outside Sirius).
//
// Uses per token: dense uses everything once. Sparse uses attention, norms,
// head and the Griffin rows once and the other FFN rows never. Sirius runs
// window passes per window (window-1 sparse steps and one check), each
// touching attention, norms, head and the Griffin rows, and the check touches
// the other rows too; a window yields aal tokens. The embedding table is used
// one row per token, so its per-byte use is 1/vocab: it is worth keeping only
// when everything else already fits (the engine can copy the rows it needs).
// The head is a separate block only when not tied; a tied table is "head".
func Blocks(cfg model.Config, w Weights, mode Mode, keep float64, window int, aal float64) []Block {
	g := GeometryOf(cfg, keep)
	sparse, full := PassesPerToken(mode, window, aal)
	every, checkOnly := sparse+full, full // uses per token of every-pass bytes and of full-only bytes
	var bs []Block
	if cfg.TiedEmbeddings {
		bs = append(bs, Block{Name: KindHead, Layer: -1, Kind: KindHead, Bytes: w.Embed, UsesPerToken: every, Required: true})
	} else {
		bs = append(bs,
			Block{Name: KindEmbed, Layer: -1, Kind: KindEmbed, Bytes: w.Embed, UsesPerToken: 1 / float64(cfg.Vocab)},
			Block{Name: KindHead, Layer: -1, Kind: KindHead, Bytes: w.Head, UsesPerToken: every, Required: true})
	}
	bs = append(bs, Block{Name: KindNorms, Layer: -1, Kind: KindNorms, Bytes: w.Norms, UsesPerToken: every, Required: true})
	for l := 0; l < cfg.Layers; l++ {
		lw := w.Layers[l]
		bs = append(bs,
			Block{Name: LayerName(l, KindAttn), Layer: l, Kind: KindAttn, Bytes: lw.Attn, UsesPerToken: every},
			Block{Name: LayerName(l, KindFFNSel), Layer: l, Kind: KindFFNSel, Bytes: lw.selBytes(g.Kept), UsesPerToken: every})
		if g.RestParams > 0 {
			bs = append(bs, Block{Name: LayerName(l, KindFFNRst), Layer: l, Kind: KindFFNRst, Bytes: lw.restBytes(g.Kept, cfg.Hidden), UsesPerToken: checkOnly})
		}
	}
	return bs
}

// BudgetError says that the device cannot hold what the plan needs at the
// least; Need and Have are in bytes.
type BudgetError struct {
	What       string
	Need, Have int64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("device memory %s is too small: %s needs %s (%s short)",
		memStr(e.Have), e.What, memStr(e.Need), memStr(e.Need-e.Have))
}

// Residency decides which blocks stay on the device. reserved is what the
// device must keep free for other things (layer slots for streaming, KV
// cache, activations). Required blocks are placed first; it is an error if
// they and reserved do not fit in budget. The rest are ranked by
// UsesPerToken, most used first (ties: kind order norms, head, attn,
// ffn.griffin, ffn.rest, embed, then layer ascending: deterministic, and at
// equal use every byte saves the same link time, so the order only has to be
// stable), and each is kept if it
// still fits: first fit, so a block too big for the remainder does not stop
// smaller, equally used ones behind it. Blocks never used (UsesPerToken 0)
// are never resident: they would only take memory.
func Residency(blocks []Block, budget, reserved int64) (resident []bool, err error) {
	resident = make([]bool, len(blocks))
	var req int64
	for i, b := range blocks {
		if b.Required {
			req += b.Bytes
			resident[i] = true
		}
	}
	if reserved+req > budget {
		what := fmt.Sprintf("%s reserved (layer slots, KV cache, activations)", memStr(reserved))
		if req > 0 {
			what += fmt.Sprintf(" + %s of head and norms", memStr(req))
		}
		return nil, &BudgetError{What: what, Need: reserved + req, Have: budget}
	}
	left := budget - reserved - req
	order := make([]int, 0, len(blocks))
	for i, b := range blocks {
		if !b.Required && b.UsesPerToken > 0 {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := blocks[order[i]], blocks[order[j]]
		if a.UsesPerToken != b.UsesPerToken {
			return a.UsesPerToken > b.UsesPerToken
		}
		if kindOrder[a.Kind] != kindOrder[b.Kind] {
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		return a.Layer < b.Layer
	})
	for _, i := range order {
		if blocks[i].Bytes <= left {
			resident[i] = true
			left -= blocks[i].Bytes
		}
	}
	return resident, nil
}
