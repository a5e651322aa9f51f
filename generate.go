package offload

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"offload/corrector"
	"offload/sparsity"
)

// engineModel adapts the Engine to corrector.Model: drafts are sparse
// passes, verifications are batched full passes, rollback truncates the KV
// caches. It also times the prefill apart from decoding.
type engineModel struct {
	e          *Engine
	dense      bool
	mode       corrector.Mode
	window     int
	drafts     int // drafts since the last check
	prefillDur time.Duration
}

// expectNext tells the engine what the corrector will run next, so that the
// engine can copy that pass's first layer during the end of this one.
func (m *engineModel) expectNext() {
	switch {
	case m.mode == corrector.Dense:
		m.e.Expect(FFNFull)
	case m.mode == corrector.Sparse || m.drafts < m.window-1:
		m.e.Expect(FFNSparse)
	default:
		m.e.Expect(FFNFull)
	}
}

func (m *engineModel) Prefill(prompt []int) ([]float32, error) {
	start := time.Now()
	defer func() { m.prefillDur += time.Since(start) }()
	e := m.e
	e.Reset()
	if len(prompt) > e.opt.Context {
		return nil, fmt.Errorf("%w: the prompt has %d tokens, the context holds %d (raise --ctx)", ErrContextFull, len(prompt), e.opt.Context)
	}
	chunk := e.act.rows
	var last []float32
	m.drafts = 0
	for p := 0; p < len(prompt); p += chunk {
		end := min(p+chunk, len(prompt))
		if end == len(prompt) {
			m.expectNext()
		} else {
			e.Expect(FFNFull)
		}
		out, err := e.Forward([]Seq{{Toks: prompt[p:end], Pos: p, Logits: end == len(prompt), LastOnly: true}}, PhasePrefill, FFNFull)
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
	if m.mode != corrector.Dense && e.opt.Policy == sparsity.PolicyGriffin {
		if err := e.packGriffin(); err != nil {
			return nil, err
		}
	}
	return last, nil
}

func (m *engineModel) Draft(toks []int, pos int) ([][]float32, error) {
	seqs := make([]Seq, len(toks))
	for b, t := range toks {
		seqs[b] = Seq{Branch: b, Toks: []int{t}, Pos: pos, Logits: true}
	}
	m.drafts++
	m.expectNext()
	out, err := m.e.Forward(seqs, PhaseDraft, FFNSparse)
	if err != nil {
		return nil, err
	}
	res := make([][]float32, len(toks))
	for b := range out {
		res[b] = out[b][0]
	}
	return res, nil
}

func (m *engineModel) Verify(toks [][]int, pos int) ([][][]float32, error) {
	seqs := make([]Seq, len(toks))
	for b, t := range toks {
		seqs[b] = Seq{Branch: b, Toks: t, Pos: pos, Logits: true}
	}
	phase := PhaseCheck
	if m.dense {
		phase = PhaseDecode
	}
	m.drafts = 0
	m.expectNext()
	return m.e.Forward(seqs, phase, FFNFull)
}

func (m *engineModel) Truncate(b, n int) error { return m.e.Truncate(b, n) }
func (m *engineModel) Fork(dst, src int) error { return m.e.Fork(dst, src) }

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

// Generate decodes from prompt with the corrector's loop over this engine
// (dense, sparse or Sirius per cfg.Mode), calling emit for each final token.
func (e *Engine) Generate(prompt []int, cfg corrector.Config, emit func(tok int) error) (*Result, error) {
	if cfg.Mode == corrector.Sirius && cfg.Width > len(e.kv) {
		return nil, fmt.Errorf("width %d needs %d KV caches; the engine was built with %d", cfg.Width, cfg.Width, len(e.kv))
	}
	r := &Result{}
	if need := len(prompt) + cfg.MaxTokens + cfg.Window; need > e.opt.Context {
		if len(prompt)+cfg.Window+1 > e.opt.Context {
			return nil, fmt.Errorf("%w: the prompt has %d tokens, the context holds %d (raise --ctx)", ErrContextFull, len(prompt), e.opt.Context)
		}
		r.CappedFrom = cfg.MaxTokens
		cfg.MaxTokens = e.opt.Context - len(prompt) - cfg.Window
	}
	m := &engineModel{e: e, dense: cfg.Mode == corrector.Dense, mode: cfg.Mode, window: cfg.Window}
	start := time.Now()
	st, err := corrector.Generate(m, prompt, cfg, func(tok int) error {
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

// DecodeBytes is what crossed host->device for decoding (prefill excluded).
func (p *Profiler) DecodeBytes() int64 {
	var n int64
	for ph, s := range p.Phases {
		if Phase(ph) != PhasePrefill {
			n += s.Bytes()
		}
	}
	return n
}

// Report builds the end-of-run report for a generation.
func (e *Engine) Report(r *Result, modelName string) *Report {
	rep := &Report{
		Model: modelName, Device: e.dev.Name(), Mode: e.modeString(r.Stats.Mode),
		PromptTokens: r.Stats.PromptTokens, GeneratedTokens: r.Stats.Generated,
		PrefillSeconds: r.Prefill.Seconds(), DecodeSeconds: r.Decode.Seconds(),
		PeakRSS: PeakRSS(), PeakDevice: e.dev.Peak(), DeviceBudget: e.Prof.Plan.Budget,
		ResidentBytes: e.Prof.Plan.Resident, SetupBytes: e.Prof.SetupBytes, WastedBytes: e.Prof.WastedBytes, Phases: e.Prof.PhaseReports(),
	}
	rep.PrefillTokPerS = safeDiv(float64(rep.PromptTokens), rep.PrefillSeconds)
	// The first token comes out of the prefill; decoding speed and bytes are
	// per token made by decode passes.
	rep.DecodeTokPerS = safeDiv(float64(r.Decoded()), rep.DecodeSeconds)
	rep.BytesPerToken = safeDiv(float64(e.Prof.DecodeBytes()), float64(r.Decoded()))
	if r.Stats.Mode != corrector.Dense && !e.M.Bundled && e.opt.Policy != sparsity.PolicyDense && e.Prof.Plan.SlotBytes > 0 && e.hostPacked == nil {
		rep.Notes = append(rep.Notes, "this model's FFN is not bundled, so every sparse step gathers strided down-projection columns on the CPU; "+
			"run `offload convert` once to store each neuron contiguously")
	}
	if r.CappedFrom > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d tokens were asked for, but the KV cache holds %d positions: generation stopped at %d (raise --ctx)",
			r.CappedFrom, e.opt.Context, r.Stats.Generated))
	}
	if r.Stats.Mode == corrector.Sirius {
		ds := e.SparseDensity()
		rep.Sirius = &SiriusReport{Window: r.Stats.Window, Checks: r.Stats.Checks, AAL: r.Stats.AAL,
			CorrectionsPer100: r.Stats.CorrectionsPer100(), EffectiveDensity: r.Stats.EffectiveDensity(ds, 1), SparseDensity: ds}
	}
	return rep
}

func (e *Engine) modeString(m corrector.Mode) string {
	switch m {
	case corrector.Dense:
		return "dense"
	case corrector.Sparse:
		return fmt.Sprintf("sparse (%s, keep %g)", e.opt.Policy, e.opt.Keep)
	}
	return fmt.Sprintf("sirius (%s, keep %g, window %d)", e.opt.Policy, e.opt.Keep, e.opt.Window)
}

// SparseDensity is the fraction of the model's parameters the sparse model
// uses per token (embeddings included, as the paper counts it).
func (e *Engine) SparseDensity() float64 {
	cfg := e.cfg
	if e.opt.Policy == sparsity.PolicyDense {
		return 1
	}
	_, ffn, _ := cfg.LayerParams()
	total := float64(cfg.Params())
	used := total - float64(cfg.Layers)*float64(ffn)*(1-float64(e.selK)/float64(cfg.Hidden))
	if e.opt.Policy == sparsity.PolicyTopK {
		// The gate is read in full.
		used += float64(cfg.Layers) * float64(cfg.Dim) * float64(cfg.Hidden) * (1 - float64(e.selK)/float64(cfg.Hidden))
	}
	return used / total
}

// PeakRSS reads the process's peak resident set (Linux), or 0.
func PeakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// Score is the mean negative log-likelihood, under this engine's full model,
// of gen following prompt (natural log, per generated token). It runs
// batched full passes over prompt+gen, so it costs about a prefill.
func (e *Engine) Score(prompt, gen []int) (float64, error) {
	if len(gen) == 0 {
		return 0, nil
	}
	seq := append(append([]int{}, prompt...), gen...)
	if len(seq) > e.opt.Context {
		return 0, fmt.Errorf("%w: scoring %d tokens, the context holds %d", ErrContextFull, len(seq), e.opt.Context)
	}
	e.Reset()
	defer e.dropPrefetch()
	chunk := e.opt.LogitRows
	var nll float64
	for p := 0; p < len(seq)-1; p += chunk {
		end := min(p+chunk, len(seq)-1)
		out, err := e.Forward([]Seq{{Toks: seq[p:end], Pos: p, Logits: true}}, PhasePrefill, FFNFull)
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
