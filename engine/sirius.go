package engine

import (
	"context"
	"fmt"
	"math"
	"time"

	"offload/corrector"
	"offload/sparsity"
)

// siriusModel adapts the Engine to corrector.Model: drafts are sparse
// passes, verifications are batched full passes, rollback truncates the KV
// caches. It also times the prefill apart from decoding.
type siriusModel struct {
	e          *Engine
	ctx        context.Context
	drafts     int // drafts since the last check
	planned    int // drafts the window policy planned for this window
	prefillDur time.Duration
	firstPlan  bool // the next WindowPlanned is the sequence's first
	then       int  // the policy's guess at the next window's drafts
}

// The engine tells the corrector what its passes cost, measured, so the
// adaptive window policy can weigh drafting against plain decoding; it
// hears each window's plan in return, to prefetch the right next pass.
var (
	_ corrector.Costs          = (*siriusModel)(nil)
	_ corrector.WindowObserver = (*siriusModel)(nil)
)

func (m *siriusModel) DraftCost(branches int) time.Duration { return m.e.costs.DraftCost(branches) }
func (m *siriusModel) CheckCost(rows int) time.Duration     { return m.e.costs.CheckCost(rows) }

// WindowPlanned records how many drafts the coming window may run.
func (m *siriusModel) WindowPlanned(p corrector.Plan) {
	if m.firstPlan {
		m.firstPlan = false
		m.e.firstDrafts = p.Drafts
	}
	m.planned, m.then = p.Drafts, p.Then
	m.drafts = 0
	m.expectNext()
}

// expectNext tells the engine what the corrector will run next, so that the
// engine can copy that pass's first layer during the end of this one.
func (m *siriusModel) expectNext() {
	switch mode := m.e.opt.Mode; {
	case mode == corrector.Dense:
		m.e.Expect(FFNFull)
	case mode == corrector.Sparse || m.drafts < m.planned:
		m.e.Expect(FFNSparse)
	default:
		m.e.Expect(FFNFull)
	}
}

func (m *siriusModel) Prefill(prompt []int) ([]float32, error) {
	start := time.Now()
	defer func() { m.prefillDur += time.Since(start) }()
	e := m.e
	e.Reset()
	if len(prompt) > e.opt.Context {
		return nil, fmt.Errorf("%w: the prompt has %d tokens, the context holds %d", ErrContextFull, len(prompt), e.opt.Context)
	}
	chunk := e.act.MaxRows
	var last []float32
	m.drafts, m.planned = 0, e.opt.Window-1
	if e.opt.Policy == corrector.PolicyAdaptive {
		// The first window is planned only after the prefill, whose end
		// already prefetches the next pass: guess it from the previous
		// sequence's first window (the costs the policy plans with are
		// kept across sequences), or a draft, which is what the policy
		// plans on unmeasured costs. A wrong guess costs one layer's copy.
		m.planned, m.firstPlan = e.firstDrafts, true
		if m.planned < 0 {
			m.planned = 1
		}
	}
	for p := 0; p < len(prompt); p += chunk {
		end := min(p+chunk, len(prompt))
		if end == len(prompt) {
			m.expectNext()
		} else {
			e.Expect(FFNFull)
		}
		// A prefill chunk is not timed as a check of as many rows: it also
		// gathers the Griffin statistics and takes the first page faults,
		// and a cold, inflated point would keep the policy from ever
		// trying longer windows.
		out, err := e.Forward(m.ctx, []Seq{{Toks: prompt[p:end], Pos: p, Logits: end == len(prompt), LastOnly: true}}, PhasePrefill, FFNFull)
		if err != nil {
			return nil, err
		}
		if end == len(prompt) {
			last = out[0][0]
		}
		if e.opt.PrefillProgress != nil {
			e.opt.PrefillProgress(end, len(prompt))
		}
	}
	// Freezing and packing the Griffin set is per-sequence work, like the
	// prefill: do it now so that decoding is timed alone.
	if e.opt.Mode != corrector.Dense && e.opt.Sparsity == sparsity.PolicyGriffin {
		if err := e.packGriffin(); err != nil {
			return nil, err
		}
	}
	return last, nil
}

func (m *siriusModel) Draft(toks []int, pos int) ([][]float32, error) {
	seqs := make([]Seq, len(toks))
	for b, t := range toks {
		seqs[b] = Seq{Branch: b, Toks: []int{t}, Pos: pos, Logits: true}
	}
	m.drafts++
	m.expectNext()
	t0, wasted := time.Now(), m.e.Prof.WastedBytes
	out, err := m.e.Forward(m.ctx, seqs, PhaseDraft, FFNSparse)
	if err != nil {
		return nil, err
	}
	if m.e.Prof.WastedBytes == wasted {
		// A pass that first waited for a mispredicted prefetch (its bytes
		// count as wasted) is not a measure of its kind: one such draft
		// (the first after a dense stretch) made a streamed draft look
		// dearer than a dense step and kept the policy from drafting.
		m.e.costs.ObserveDraft(len(toks), time.Since(t0))
	}
	res := make([][]float32, len(toks))
	for b := range out {
		res[b] = out[b][0]
	}
	return res, nil
}

func (m *siriusModel) Verify(toks [][]int, pos int) ([][][]float32, error) {
	seqs := make([]Seq, len(toks))
	for b, t := range toks {
		seqs[b] = Seq{Branch: b, Toks: t, Pos: pos, Logits: true}
	}
	rows := 0
	for _, t := range toks {
		rows += len(t)
	}
	phase := PhaseCheck
	if m.e.opt.Mode == corrector.Dense || (rows == 1 && m.planned == 0 && m.e.opt.Policy == corrector.PolicyAdaptive) {
		phase = PhaseDecode // a plain step (the adaptive policy's dense fallback too)
	}
	m.drafts = 0
	if m.e.opt.Policy == corrector.PolicyFixed {
		m.planned = m.e.opt.Window - 1
	} else {
		// The pass after this check is the next window's first: a draft
		// if the policy expects to draft again (or to probe).
		m.planned = m.then
	}
	m.expectNext()
	t0, wasted := time.Now(), m.e.Prof.WastedBytes
	out, err := m.e.Forward(m.ctx, seqs, phase, FFNFull)
	if err == nil && m.e.Prof.WastedBytes == wasted {
		m.e.costs.ObserveCheck(rows, time.Since(t0))
	}
	return out, err
}

func (m *siriusModel) Truncate(b, n int) error { return m.e.Truncate(b, n) }
func (m *siriusModel) Fork(dst, src int) error { return m.e.Fork(dst, src) }

// Result is one generation's tokens, statistics and timings.
type Result struct {
	// CappedFrom is the requested token count when the context could not
	// hold it (0 otherwise); Tokens then stops at what fits.
	CappedFrom int
	Tokens     []int
	Stats      corrector.Stats
	Prefill    time.Duration
	Decode     time.Duration
}

// Decoded is the number of tokens made by decode passes: all but the first,
// which the prefill produces.
func (r *Result) Decoded() int { return max(0, r.Stats.Generated-1) }

// Generate decodes from req.Prompt with the corrector's loop over this
// engine (dense, sparse or Sirius, as the engine's Decoding says), calling
// emit for each final token. A cancelled ctx stops it at the next layer
// boundary; the tokens made so far are in the result, with ctx's error.
func (e *Engine) Generate(ctx context.Context, req Request, emit func(tok int) error) (_ *Result, err error) {
	defer func() { err = plainFault(err) }()
	if err := req.Validate(); err != nil {
		return nil, err
	}
	cfg := e.opt.Decoding.corrector(req)
	r := &Result{}
	if need := len(req.Prompt) + cfg.MaxTokens + cfg.Window; need > e.opt.Context {
		if len(req.Prompt)+cfg.Window+1 > e.opt.Context {
			return nil, fmt.Errorf("%w: the prompt has %d tokens; with a window of %d the context of %d positions has no room to generate",
				ErrContextFull, len(req.Prompt), cfg.Window, e.opt.Context)
		}
		r.CappedFrom = cfg.MaxTokens
		cfg.MaxTokens = e.opt.Context - len(req.Prompt) - cfg.Window
	}
	m := &siriusModel{e: e, ctx: ctx}
	start := time.Now()
	st, err := corrector.Generate(m, req.Prompt, cfg, func(tok int) error {
		r.Tokens = append(r.Tokens, tok)
		if emit != nil {
			return emit(tok)
		}
		return nil
	})
	e.dropPrefetch()
	r.Stats = st
	r.Prefill = m.prefillDur
	r.Decode = time.Since(start) - m.prefillDur
	return r, err
}

// SparseDensity is the fraction of the model's parameters the sparse model
// uses per token (embeddings included, as the paper counts it).
func (e *Engine) SparseDensity() float64 {
	cfg := e.cfg
	if e.opt.Sparsity == sparsity.PolicyDense {
		return 1
	}
	_, ffn, _ := cfg.LayerParams()
	total := float64(cfg.Params())
	used := total - float64(cfg.Layers)*float64(ffn)*(1-float64(e.grif.k)/float64(cfg.Hidden))
	if e.opt.Sparsity == sparsity.PolicyTopK {
		// The gate is read in full.
		used += float64(cfg.Layers) * float64(cfg.Dim) * float64(cfg.Hidden) * (1 - float64(e.grif.k)/float64(cfg.Hidden))
	}
	return used / total
}

// Score is the mean negative log-likelihood, under this engine's full model,
// of gen following prompt (natural log, per generated token). It runs
// batched full passes over prompt+gen, so it costs about a prefill.
func (e *Engine) Score(ctx context.Context, prompt, gen []int) (_ float64, err error) {
	defer func() { err = plainFault(err) }()
	if len(gen) == 0 {
		return 0, nil
	}
	seq := append(append([]int{}, prompt...), gen...)
	if len(seq) > e.opt.Context {
		return 0, fmt.Errorf("%w: scoring %d tokens, the context holds %d", ErrContextFull, len(seq), e.opt.Context)
	}
	e.Reset()
	defer e.dropPrefetch()
	chunk := e.act.MaxLogitRows
	var nll float64
	for p := 0; p < len(seq)-1; p += chunk {
		end := min(p+chunk, len(seq)-1)
		out, err := e.Forward(ctx, []Seq{{Toks: seq[p:end], Pos: p, Logits: true}}, PhasePrefill, FFNFull)
		if err != nil {
			return 0, err
		}
		for i, row := range out[0] {
			pos := p + i // logits for position pos+1
			if pos+1 < len(prompt) {
				continue
			}
			nll -= logSoftmaxAt(row, seq[pos+1])
		}
	}
	e.Reset()
	return nll / float64(len(gen)), nil
}

func logSoftmaxAt(x []float32, i int) float64 {
	m := float64(x[0])
	for _, v := range x {
		m = max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return float64(x[i]) - m - math.Log(s)
}
