package plan

import (
	"fmt"
	"math"

	"offload/model"
)

// The paper's offloading setting (REFERENCE.md §2-3): Sirius period 16, and
// the average advance length it published for Llama-3-8B-Instruct on GSM8K
// with Griffin at keep 0.5.
const (
	PaperWindow = 16
	PaperAAL    = 15.22
	PaperKeep   = 0.5
)

// DefaultAAL is the AAL assumed when none is given: the paper's acceptance
// (15.22 of 16, 95%) applied to the window. It is a published figure for one
// model and task, not a law; pass --aal from a real run (`offload bench`
// prints it) when you have one.
func DefaultAAL(window int) float64 {
	a := PaperAAL / PaperWindow * float64(window)
	if a < 1 {
		a = 1
	}
	return a
}

// DefaultContext is the KV cache length planned for when the model allows
// more: a long chat, not the full 128K context of Llama 3.1, whose F32 cache
// alone would not fit a consumer card.
const DefaultContext = 4096

// kvBytesPerElem is the KV cache element size: the device contract keeps
// caches in F32 (device.Kernels).
const kvBytesPerElem = 4

// Params are the inputs of a prediction. Zero values take the defaults
// documented on each field.
type Params struct {
	Model string // display name of the model
	GPU   GPU    // rates and memory; zero means LookupGPU(DefaultGPU)
	// FLOPS and MemBW, when set, replace the GPU's achieved rates (they are
	// used as given: no efficiency factor is applied).
	FLOPS, MemBW float64
	GPUMem       int64   // device memory budget in bytes; 0 means GPU.Mem
	Link         float64 // host->device bytes/s; required
	DType        string  // display name of the weight type; "" means bf16
	DTypeBytes   float64 // bytes per weight; 0 means 2 (bf16)
	// Weights, when set, sizes every block (a real file's tensors, or a
	// llama.cpp mix); else every weight takes DTypeBytes.
	Weights *Weights
	Window  int     // Sirius period K; 0 means 16
	Keep    float64 // Griffin fraction of FFN neurons; 0 means 0.5
	AAL     float64 // Sirius average advance length; 0 means DefaultAAL(Window)
	Context int     // KV cache positions; 0 means min(model's, DefaultContext)
	// Paper is the paper's offloading setting: only embeddings, head and
	// norms stay resident, whatever the budget, and layers stream through
	// two slots.
	Paper bool
	// Measured, when set, supplies per-layer compute times and copy rates
	// recorded by `offload bench --json` for the modes it holds; the rest
	// come from the tables.
	Measured *Measured
}

func (p Params) withDefaults(cfg model.Config) (Params, error) {
	if p.GPU.Name == "" {
		g, err := LookupGPU(DefaultGPU)
		if err != nil {
			return p, err
		}
		p.GPU = g
	}
	if p.FLOPS == 0 {
		p.FLOPS = p.GPU.AchievedFLOPS()
	}
	if p.MemBW == 0 {
		p.MemBW = p.GPU.AchievedMemBW()
	}
	if p.GPUMem == 0 {
		p.GPUMem = p.GPU.Mem
	}
	if p.Weights != nil {
		if p.DTypeBytes == 0 {
			p.DTypeBytes = p.Weights.BytesPerWeight
		}
		if p.DType == "" {
			p.DType = p.Weights.Name
		}
	}
	if p.DTypeBytes == 0 {
		p.DType, p.DTypeBytes = "bf16", 2
	}
	if p.DType == "" {
		p.DType = fmt.Sprintf("%.4g B/weight", p.DTypeBytes)
	}
	if p.Weights == nil {
		w := UniformWeights(cfg, p.DType, p.DTypeBytes)
		p.Weights = &w
	} else if err := p.Weights.validate(cfg); err != nil {
		return p, err
	}
	if p.Window == 0 {
		p.Window = PaperWindow
	}
	if p.Keep == 0 {
		p.Keep = PaperKeep
	}
	if p.AAL == 0 {
		p.AAL = DefaultAAL(p.Window)
	}
	if p.Context == 0 {
		p.Context = DefaultContext
		if cfg.MaxSeq > 0 && cfg.MaxSeq < p.Context {
			p.Context = cfg.MaxSeq
		}
	}
	switch {
	case !(p.Link > 0) || math.IsInf(p.Link, 0):
		return p, fmt.Errorf("plan: link rate %v B/s, want > 0 (e.g. pcie4 or 25GB/s)", p.Link)
	case !(p.FLOPS > 0) || !(p.MemBW > 0) || math.IsInf(p.FLOPS, 0) || math.IsInf(p.MemBW, 0):
		return p, fmt.Errorf("plan: GPU %q has no compute rates: give its FLOP/s and memory bandwidth", p.GPU.Name)
	case p.GPUMem <= 0:
		return p, fmt.Errorf("plan: GPU memory %d bytes, want > 0 (--gpu-mem)", p.GPUMem)
	case !(p.DTypeBytes > 0) || p.DTypeBytes > 8:
		return p, fmt.Errorf("plan: %v bytes per weight is not a weight type", p.DTypeBytes)
	case p.Window < 1 || p.Window > 1024:
		return p, fmt.Errorf("plan: window %d, want 1..1024", p.Window)
	case !(p.Keep > 0 && p.Keep <= 1):
		return p, fmt.Errorf("plan: keep %v, want a fraction in (0, 1]", p.Keep)
	case !(p.AAL >= 1 && p.AAL <= float64(p.Window)):
		return p, fmt.Errorf("plan: AAL %v, want 1..window (%d): a window advances at least the check's token and at most window tokens", p.AAL, p.Window)
	case p.Context < 1 || p.Context > 1<<24:
		return p, fmt.Errorf("plan: context %d, want 1..%d", p.Context, 1<<24)
	}
	return p, nil
}

// Reserved is device memory the weights may not use.
type Reserved struct {
	Slots       int64 // two layer buffers for double-buffered streaming (0 when nothing streams)
	KVCache     int64 // F32 keys and values for Context positions
	Activations int64 // per-pass scratch for a batch of window rows, plus Griffin index lists
}

// Total is the sum of the parts.
func (r Reserved) Total() int64 { return r.Slots + r.KVCache + r.Activations }

// Prediction is the plan and its predicted cost for every mode.
type Prediction struct {
	Model  string
	Config model.Config
	Params Params // with defaults filled in
	Modes  []ModePrediction
	// HostMem is the host memory the most demanding mode needs beyond the
	// process: pinned staging plus page cache for the streamed weights.
	HostMem int64
}

// ModePrediction is one decoding mode's residency plan and cost.
type ModePrediction struct {
	Mode   Mode
	Source string // "tables", "measured", or "measured+tables" (the stages the file lacked)
	// Blocks and Resident are the residency plan: Resident[i] says whether
	// Blocks[i] stays on the device.
	Blocks   []Block
	Resident []bool
	Reserved Reserved
	// ResidentBytes is the weights kept on the device; StreamedBytes the
	// weights this mode uses that are not (each crosses the link per use).
	ResidentBytes, StreamedBytes int64
	Phases                       []PhasePrediction
	// Layers is the per-token cost of each pipeline stage, transformer layers
	// in order then the head stage (Layer -1).
	Layers []LayerPrediction
	// Per generated token, summed over stages and phases.
	BytesPerToken          float64 // bytes over the link
	LinkSecondsPerToken    float64 // sum of stage link times
	ComputeSecondsPerToken float64 // sum of stage compute times
	SecondsPerToken        float64 // sum of max(link, compute) per stage
	// Host memory: pinned staging for two slots, and page cache holding every
	// streamed weight so that decoding never waits on the disk.
	HostPinned, HostPageCache int64
}

// PhasePrediction is one kind of pass and what one pass costs.
type PhasePrediction struct {
	Phase          string  // PhaseFull, PhaseSparse or PhaseCheck
	PerToken       float64 // passes per generated token
	Rows           int     // tokens processed by one pass (window for a check)
	StreamedBytes  int64   // bytes over the link in one pass
	LinkSeconds    float64
	ComputeSeconds float64
	Seconds        float64 // sum over stages of max(link, compute)
	// Stages is one pass's cost per pipeline stage (layers, then the head).
	Stages []StageCost
}

// StageCost is one stage of one pass.
type StageCost struct {
	Layer          int // -1 for the head stage
	StreamedBytes  int64
	LinkSeconds    float64
	ComputeSeconds float64
}

// LayerPrediction is one pipeline stage's cost per generated token.
type LayerPrediction struct {
	Layer          int     // -1: embedding rows, final norm and head
	StreamedBytes  float64 // per token
	LinkSeconds    float64
	ComputeSeconds float64
	Seconds        float64 // sum over phases of max(link, compute) per pass, per token
}

// Mode returns the prediction for m, or nil.
func (p *Prediction) Mode(m Mode) *ModePrediction {
	for i := range p.Modes {
		if p.Modes[i].Mode == m {
			return &p.Modes[i]
		}
	}
	return nil
}

// SiriusRatio is Sirius s/token over dense s/token (0 if either is missing).
func (p *Prediction) SiriusRatio() float64 {
	d, s := p.Mode(Dense), p.Mode(Sirius)
	if d == nil || s == nil || d.SecondsPerToken == 0 {
		return 0
	}
	return s.SecondsPerToken / d.SecondsPerToken
}

type phaseSpec struct {
	name     string
	perToken float64
	rows     int
	full     bool // uses the FFN rows outside the Griffin set
}

func phasesOf(m Mode, window int, aal float64) []phaseSpec {
	switch m {
	case Dense:
		return []phaseSpec{{PhaseFull, 1, 1, true}}
	case Sparse:
		return []phaseSpec{{PhaseSparse, 1, 1, false}}
	}
	var ps []phaseSpec
	if window > 1 {
		ps = append(ps, phaseSpec{PhaseSparse, float64(window-1) / aal, 1, false})
	}
	return append(ps, phaseSpec{PhaseCheck, 1 / aal, window, true})
}

// Predict plans residency for every mode and predicts its cost per
// generated token.
//
// Residency: the blocks of [Blocks] placed by [Residency] within GPUMem less
// [Reserved] (or, with Paper, only embeddings, head and norms). Layer slots
// are reserved only when something streams: two buffers of the largest layer
// a pass can stream (a full layer when the mode runs full passes).
//
// Cost: a token is a sequence of passes (dense: one full pass; sparse: one
// sparse pass; Sirius: (K-1)/AAL sparse passes and 1/AAL checks of K rows).
// A pass is a pipeline of stages, one per layer and one for the head; the
// copy of stage l+1 overlaps the compute of stage l, so a pass costs the sum
// over stages of max(link, compute). Link = streamed bytes / link rate.
// Compute = max(bytes touched / memory bandwidth, FLOPs / FLOP rate): a
// batch-1 pass is bound by reading the weights (and KV cache) once, a check
// of K rows reads each layer once but does K rows of math. The pipeline's
// fill (the first stage's copy) is not modelled: it is one stage of ~80.
func Predict(cfg model.Config, p Params) (Prediction, error) {
	if err := cfg.Validate(); err != nil {
		return Prediction{}, fmt.Errorf("plan: %w", err)
	}
	p, err := p.withDefaults(cfg)
	if err != nil {
		return Prediction{}, err
	}
	pred := Prediction{Model: p.Model, Config: cfg, Params: p}
	for _, m := range Modes {
		mp, err := predictMode(cfg, p, m)
		if err != nil {
			return Prediction{}, fmt.Errorf("plan %s: %w", m, err)
		}
		pred.Modes = append(pred.Modes, mp)
		if h := mp.HostPinned + mp.HostPageCache; h > pred.HostMem {
			pred.HostMem = h
		}
	}
	return pred, nil
}

func predictMode(cfg model.Config, p Params, m Mode) (ModePrediction, error) {
	g := GeometryOf(cfg, p.Keep)
	blocks := Blocks(cfg, *p.Weights, m, p.Keep, p.Window, p.AAL)
	phases := phasesOf(m, p.Window, p.AAL)
	anyFull := false
	for _, ph := range phases {
		anyFull = anyFull || ph.full
	}

	// Reserved memory.
	rows := 1
	if m == Sirius {
		rows = p.Window
	}
	var res Reserved
	res.KVCache = 2 * int64(cfg.Layers) * int64(cfg.KVDim()) * kvBytesPerElem * int64(p.Context)
	res.Activations = kvBytesPerElem * int64(rows) *
		(4*int64(cfg.Dim) + 2*int64(cfg.KVDim()) + 2*int64(cfg.Hidden) + int64(cfg.Vocab) + int64(cfg.Heads)*int64(p.Context))
	if m != Dense {
		res.Activations += 4 * int64(cfg.Layers) * int64(g.Kept) // I32 Griffin index lists
	}
	var slotLayer int64 // the largest layer a pass streams
	for _, lw := range p.Weights.Layers {
		b := lw.Attn + lw.selBytes(g.Kept)
		if anyFull {
			b += lw.restBytes(g.Kept, cfg.Hidden)
		}
		slotLayer = max(slotLayer, b)
	}

	var resident []bool
	if p.Paper {
		resident = make([]bool, len(blocks))
		var need int64
		for i, b := range blocks {
			if b.Layer < 0 {
				resident[i] = true
				need += b.Bytes
			}
		}
		res.Slots = 2 * slotLayer
		if need+res.Total() > p.GPUMem {
			return ModePrediction{}, &BudgetError{
				What: fmt.Sprintf("the paper's setting (embeddings, head and norms %s + two layer slots %s + KV cache %s + activations %s)",
					memStr(need), memStr(res.Slots), memStr(res.KVCache), memStr(res.Activations)),
				Need: need + res.Total(), Have: p.GPUMem}
		}
	} else {
		// Everything this mode uses fits without streaming: no slots.
		var used int64
		for _, b := range blocks {
			if b.UsesPerToken > 0 {
				used += b.Bytes
			}
		}
		if used+res.Total() <= p.GPUMem {
			resident, err := Residency(blocks, p.GPUMem, res.Total())
			if err != nil {
				return ModePrediction{}, err
			}
			return finish(cfg, p, m, g, blocks, resident, res, phases)
		}
		res.Slots = 2 * slotLayer
		var err error
		resident, err = Residency(blocks, p.GPUMem, res.Total())
		if err != nil {
			var be *BudgetError
			if asBudget(err, &be) {
				be.What = fmt.Sprintf("two layer slots %s (2 x %s) + KV cache %s (%d positions) + activations %s + head and norms %s",
					memStr(res.Slots), memStr(slotLayer), memStr(res.KVCache), p.Context, memStr(res.Activations), memStr(be.Need-res.Total()))
			}
			return ModePrediction{}, err
		}
	}
	return finish(cfg, p, m, g, blocks, resident, res, phases)
}

func asBudget(err error, be **BudgetError) bool {
	b, ok := err.(*BudgetError)
	if ok {
		*be = b
	}
	return ok
}

// stage indexes: 0..Layers-1 are layers, Layers is the head stage.
func finish(cfg model.Config, p Params, m Mode, g Geometry, blocks []Block, resident []bool, res Reserved, phases []phaseSpec) (ModePrediction, error) {
	mp := ModePrediction{Mode: m, Source: "tables", Blocks: blocks, Resident: resident, Reserved: res}
	nst := cfg.Layers + 1
	// Per stage: bytes of each kind, and whether resident.
	type stageW struct{ attn, sel, rest, attnS, selS, restS int64 }
	st := make([]stageW, cfg.Layers)
	var embedRes, headRes bool
	var headBytes int64
	for i, b := range blocks {
		r := resident[i]
		if r {
			mp.ResidentBytes += b.Bytes
		} else if b.UsesPerToken > 0 {
			mp.StreamedBytes += b.Bytes
			mp.HostPageCache += b.Bytes
		}
		switch b.Kind {
		case KindEmbed:
			embedRes = r
		case KindHead:
			headRes, headBytes = r, b.Bytes
		case KindAttn:
			st[b.Layer].attn = b.Bytes
			if !r {
				st[b.Layer].attnS = b.Bytes
			}
		case KindFFNSel:
			st[b.Layer].sel = b.Bytes
			if !r {
				st[b.Layer].selS = b.Bytes
			}
		case KindFFNRst:
			st[b.Layer].rest = b.Bytes
			if !r {
				st[b.Layer].restS = b.Bytes
			}
		}
	}
	if cfg.TiedEmbeddings {
		embedRes = headRes
	}
	if p.Paper {
		embedRes = true
	}
	rowBytes := p.Weights.EmbedRow

	mm := p.Measured.mode(m)
	if p.Measured != nil {
		for _, ph := range mm.phasesOrNil() {
			for _, l := range ph.Layers {
				if l.Layer >= cfg.Layers {
					return mp, fmt.Errorf("measured %s phase %s has layer %d but the model has %d layers: was it recorded on this model?",
						m, ph.Phase, l.Layer, cfg.Layers)
				}
			}
		}
	}
	fromTables, fromFile := 0, 0

	mp.Layers = make([]LayerPrediction, nst)
	var maxStream int64
	attnFlops := func(rows int) float64 { // QK^T and AV against Context cached positions
		return float64(rows) * 4 * float64(cfg.Heads) * float64(cfg.HeadDim) * float64(p.Context)
	}
	kvRead := float64(2*cfg.KVDim()*kvBytesPerElem) * float64(p.Context)
	for _, ph := range phases {
		pp := PhasePrediction{Phase: ph.name, PerToken: ph.perToken, Rows: ph.rows}
		var mph *MeasuredPhase
		if mm != nil {
			mph = mm.phase(ph.name)
		}
		for s := 0; s < nst; s++ {
			var streamed, touched int64
			var flops float64
			if s < cfg.Layers {
				w := st[s]
				streamed = w.attnS + w.selS
				touched = w.attn + w.sel
				params := g.AttnParams + g.SelParams
				if ph.full {
					streamed += w.restS
					touched += w.rest
					params += g.RestParams
				}
				flops = float64(ph.rows)*2*float64(params) + attnFlops(ph.rows)
			} else {
				touched = headBytes + int64(ph.rows)*rowBytes
				if !embedRes {
					streamed += int64(ph.rows) * rowBytes
				}
				if !headRes {
					streamed += headBytes
				}
				flops = float64(ph.rows) * 2 * float64(cfg.Vocab) * float64(cfg.Dim)
			}
			if streamed > maxStream {
				maxStream = streamed
			}
			link := float64(streamed) / p.Link
			read := float64(touched)
			if s < cfg.Layers {
				read += kvRead // a batch of rows reads the cache once
			}
			compute := math.Max(read/p.MemBW, flops/p.FLOPS)
			layer := s
			if s == cfg.Layers {
				layer = -1
			}
			if ml := measuredLayer(mph, layer); ml != nil {
				fromFile++
				compute = ml.ComputeSeconds / float64(mph.Count)
				rate := p.Link
				if p.Measured.LinkGBps > 0 {
					rate = p.Measured.LinkGBps * 1e9
				}
				if ml.CopyBytes > 0 && ml.CopySeconds > 0 {
					rate = float64(ml.CopyBytes) / ml.CopySeconds
				}
				link = float64(streamed) / rate
			} else {
				fromTables++
			}
			t := math.Max(link, compute)
			pp.Stages = append(pp.Stages, StageCost{Layer: layer, StreamedBytes: streamed, LinkSeconds: link, ComputeSeconds: compute})
			pp.StreamedBytes += streamed
			pp.LinkSeconds += link
			pp.ComputeSeconds += compute
			pp.Seconds += t
			lp := &mp.Layers[s]
			lp.Layer = layer
			lp.StreamedBytes += ph.perToken * float64(streamed)
			lp.LinkSeconds += ph.perToken * link
			lp.ComputeSeconds += ph.perToken * compute
			lp.Seconds += ph.perToken * t
		}
		mp.Phases = append(mp.Phases, pp)
		mp.BytesPerToken += ph.perToken * float64(pp.StreamedBytes)
		mp.LinkSecondsPerToken += ph.perToken * pp.LinkSeconds
		mp.ComputeSecondsPerToken += ph.perToken * pp.ComputeSeconds
		mp.SecondsPerToken += ph.perToken * pp.Seconds
	}
	switch {
	case fromFile > 0 && fromTables > 0:
		mp.Source = "measured+tables"
	case fromFile > 0:
		mp.Source = "measured"
	}
	mp.HostPinned = 2 * maxStream
	if maxStream == 0 {
		mp.HostPageCache = 0
	}
	return mp, nil
}

func measuredLayer(ph *MeasuredPhase, layer int) *MeasuredLayer {
	if ph == nil {
		return nil
	}
	return ph.layer(layer)
}

func (mm *MeasuredMode) phasesOrNil() []MeasuredPhase {
	if mm == nil {
		return nil
	}
	return mm.Phases
}
