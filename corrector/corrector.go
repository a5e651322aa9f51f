// Package corrector implements Sirius (contextual sparsity with correction) as
// pure decoding logic over a small Model interface, in the way etcd's raft
// separates deciding from doing: this package decides which tokens to run
// through which model, which drafts to keep and how far to roll the KV cache
// back; the engine does the forward passes and owns the caches.
//
// One loop, Generate, runs every decoding mode so that they all produce the
// same statistics:
//
//   - Dense: every token from the full model, one token per pass.
//   - Sparse: every token from the sparse model, never checked.
//   - Sirius: the sparse model drafts up to Window-1 tokens one at a time,
//     then the full model checks the whole window in one batched pass, keeps
//     the leading drafts it finds likely enough, rewrites their KV entries
//     with its own, rolls back the rest and appends its own token (a
//     correction at the first rejection, a bonus when every draft was kept).
//     With PolicyFixed every window drafts Window-1 tokens, as in the paper;
//     with PolicyAdaptive (policy.go) each window's length and width are
//     chosen from measured costs and the acceptance seen so far, down to
//     plain dense steps when drafting does not pay, and width > 1 drafts a
//     token tree (tree.go).
//
// See REFERENCE.md §2 for the algorithm and the published numbers.
//
// # KV caches and branches
//
// The engine keeps one KV cache per branch. Branch 0 is the sequence itself
// and the only one used at width 1. With width w > 1 (beam/tree drafting)
// branches 1..w-1 hold the other beams of the current window: when a beam's
// child moves into another branch slot the corrector calls Fork(dst, src) to
// make dst's cache a copy of src's, and after the check it makes branch 0 the
// winner (Truncate then Fork(0, winner)). Outside a window only branch 0
// matters. A branch's positions at or after the window start may be stale
// (sparse K/V, or another beam's tokens); Verify overwrites them, so Verify
// must write a window's K/V before attending to it, as any batched causal pass
// does. Engines can make Fork cheap by tracking, per branch, the positions
// written since it last matched its source.
package corrector

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Model is what the engine implements over the real model. Positions are
// absolute (0-based) sequence positions; every call for branch b at position
// pos appends or overwrites at pos in branch b's cache.
type Model interface {
	// Prefill runs the FULL model over the prompt (positions 0..len-1) into
	// branch 0's cache and returns the logits of the last position.
	Prefill(prompt []int) ([]float32, error)
	// Draft runs the SPARSE model in one batched pass: for each branch b in
	// 0..len(toks)-1, token toks[b] at position pos of branch b, appending its
	// K/V (the cache length of b becomes pos+1). It returns next-token logits
	// per branch. Batching the beams lets one set of FFN rows serve them all.
	Draft(toks []int, pos int) ([][]float32, error)
	// Verify runs the FULL model in ONE batched pass over, for each branch b in
	// 0..len(toks)-1, the tokens toks[b] at positions pos..pos+len(toks[b])-1,
	// overwriting those cache slots (KV rewriting; the cache length of b
	// becomes pos+len(toks[b])), and returns logits per branch per token.
	Verify(toks [][]int, pos int) ([][][]float32, error)
	// Truncate sets branch b's cache length to n positions (rollback).
	Truncate(b int, n int) error
	// Fork makes branch dst's cache a copy of branch src's (beams).
	Fork(dst, src int) error
}

// Mode selects how tokens are produced.
type Mode int

const (
	// Sirius drafts with the sparse model and checks windows with the full one.
	Sirius Mode = iota
	// Dense produces every token with the full model, one token per pass.
	Dense
	// Sparse produces every token with the sparse model and never checks.
	Sparse
)

var modeNames = []string{Sirius: "sirius", Dense: "dense", Sparse: "sparse"}

func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode maps "sirius", "dense" or "sparse" (case-insensitive; "full" is
// dense) to a Mode. This is the one mode enum: the engine, the planner and
// the command line all use it.
func ParseMode(s string) (Mode, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "full" {
		t = "dense"
	}
	i := slices.Index(modeNames, t)
	if i < 0 {
		return 0, fmt.Errorf("corrector: unknown mode %q (valid: %s)", s, strings.Join(modeNames, ", "))
	}
	return Mode(i), nil
}

// MarshalText writes the mode's name, so JSON says "sirius", not 0.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads a mode name.
func (m *Mode) UnmarshalText(b []byte) error {
	x, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = x
	return nil
}

// Accept selects the rule that decides which drafts a check keeps.
type Accept int

const (
	// AcceptThreshold keeps the leading drafts whose full-model likelihood at
	// LikelihoodTemp is at least Threshold (Sirius's rule). With sampling
	// (Temperature > 0) it is the speculative-sampling rule instead, which
	// leaves the output distributed exactly as the full model's.
	AcceptThreshold Accept = iota
	// AcceptStrict keeps a draft only if it equals the full model's argmax, so
	// the output is exactly dense greedy decoding. With sampling it uses the
	// speculative-sampling rule, already exact in distribution.
	AcceptStrict
	// AcceptAll keeps every draft (AAL = Window): a diagnostic that measures
	// the mechanism's bytes and time regardless of quality.
	AcceptAll
)

var acceptNames = []string{AcceptThreshold: "threshold", AcceptStrict: "strict", AcceptAll: "all"}

func (a Accept) String() string {
	if a >= 0 && int(a) < len(acceptNames) {
		return acceptNames[a]
	}
	return fmt.Sprintf("Accept(%d)", int(a))
}

// ParseAccept maps "threshold", "strict" or "all" (case-insensitive).
func ParseAccept(s string) (Accept, error) {
	i := slices.Index(acceptNames, strings.ToLower(strings.TrimSpace(s)))
	if i < 0 {
		return 0, fmt.Errorf("corrector: unknown acceptance rule %q (valid: %s)", s, strings.Join(acceptNames, ", "))
	}
	return Accept(i), nil
}

// Defaults from the Sirius paper's system runs.
const (
	DefaultWindow         = 16
	DefaultThreshold      = 0.1
	DefaultLikelihoodTemp = 0.6
)

// Config is one generation's settings. Zero values of Window, Threshold,
// LikelihoodTemp and Width mean the defaults (16, 0.1, 0.6, 1); to keep every
// draft use AcceptAll rather than a zero threshold. The zero Policy is
// PolicyFixed.
type Config struct {
	Mode Mode
	// Window is K: each check covers the last checked token and K-1 drafts
	// (PolicyFixed), or at most K-1 drafts (PolicyAdaptive).
	Window int
	// Policy chooses each window's length and width (Sirius mode only).
	Policy WindowPolicy
	// Threshold is the minimum full-model likelihood of a kept draft.
	Threshold float64
	// LikelihoodTemp is the temperature of that likelihood.
	LikelihoodTemp float64
	Accept         Accept
	// Width is the number of beams drafted per window with PolicyFixed
	// (greedy only), or the most paths of a token tree with PolicyAdaptive
	// (greedy or sampled). It is ignored outside Sirius mode.
	Width int
	// Temperature 0 is greedy decoding; otherwise tokens are sampled with
	// run.c's sampler (temperature, then top-p when 0 < TopP < 1) seeded
	// with Seed, so the same seed gives the same output.
	Temperature float64
	TopP        float64
	Seed        uint64
	// MaxTokens bounds the generated tokens (EOS excluded); must be >= 1.
	// Positions used stay below len(prompt)+MaxTokens-1.
	MaxTokens int
	// EOS lists end-of-generation ids: never drafted, generation ends when the
	// full model (or, in Sparse mode, the sparse model) produces one; it is
	// not emitted.
	EOS []int
	// Stop, if set, is asked after each final token with everything generated
	// so far (e.g. to detect a stop string); true ends generation after that
	// token. It is consulted only for final tokens (never for unchecked
	// drafts), one token at a time, so a stop lands where dense decoding
	// would land. The slice is the corrector's own: read it, do not keep or
	// modify it.
	Stop func(generated []int) bool

	// plan, if set (tests only), replaces the adaptive policy's choice of
	// each window's shape; room is the most drafts the window may have.
	plan func(room int) Plan
}

// DefaultConfig returns Sirius greedy decoding with the paper's settings
// (a fixed window of 16); set Policy to PolicyAdaptive for windows chosen
// from measured costs.
func DefaultConfig() Config {
	return Config{
		Mode: Sirius, Policy: PolicyFixed, Window: DefaultWindow, Threshold: DefaultThreshold,
		LikelihoodTemp: DefaultLikelihoodTemp, Accept: AcceptThreshold, Width: 1, MaxTokens: 256,
	}
}

// withDefaults fills zero values and validates.
func (c Config) withDefaults() (Config, error) {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.LikelihoodTemp == 0 {
		c.LikelihoodTemp = DefaultLikelihoodTemp
	}
	if c.Width == 0 || c.Mode != Sirius {
		c.Width = 1
	}
	var errs []error
	if c.Mode < Sirius || c.Mode > Sparse {
		errs = append(errs, fmt.Errorf("unknown mode %d", int(c.Mode)))
	}
	if c.Accept < AcceptThreshold || c.Accept > AcceptAll {
		errs = append(errs, fmt.Errorf("unknown acceptance rule %d", int(c.Accept)))
	}
	if c.Window < 1 {
		errs = append(errs, fmt.Errorf("window %d must be >= 1", c.Window))
	}
	if !(c.Threshold > 0 && c.Threshold <= 1) {
		errs = append(errs, fmt.Errorf("threshold %v must be in (0, 1]", c.Threshold))
	}
	if !(c.LikelihoodTemp > 0) || math.IsInf(c.LikelihoodTemp, 0) {
		errs = append(errs, fmt.Errorf("likelihood temperature %v must be positive", c.LikelihoodTemp))
	}
	if c.Width < 1 {
		errs = append(errs, fmt.Errorf("width %d must be >= 1", c.Width))
	}
	if !(c.Temperature >= 0) || math.IsInf(c.Temperature, 0) {
		errs = append(errs, fmt.Errorf("temperature %v must be >= 0", c.Temperature))
	}
	if math.IsNaN(c.TopP) {
		errs = append(errs, errors.New("top-p is NaN"))
	}
	if c.Policy != PolicyAdaptive && c.Policy != PolicyFixed {
		errs = append(errs, fmt.Errorf("unknown window policy %d", int(c.Policy)))
	}
	if c.Width > 1 && c.Temperature > 0 && c.Policy == PolicyFixed {
		errs = append(errs, fmt.Errorf("width %d needs greedy decoding (temperature 0, got %v): fixed-policy beams have no exact sampling rule; the adaptive policy's trees do", c.Width, c.Temperature))
	}
	if c.MaxTokens < 1 {
		errs = append(errs, fmt.Errorf("max tokens %d must be >= 1", c.MaxTokens))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("corrector: config: %w", err)
	}
	return c, nil
}

// CheckRecord describes one check (one full pass; in Dense mode, one token).
type CheckRecord struct {
	Start     int  // position of the window's first token (the last final token)
	Drafted   int  // drafts in the window (K-1, fewer near MaxTokens)
	Accepted  int  // leading drafts kept
	Branch    int  // branch whose drafts were kept (0 at width 1)
	Corrected bool // a draft was rejected and replaced by the full model's token
	Token     int  // the full model's token appended after the kept drafts
}

// Stats are one generation's counters.
type Stats struct {
	Mode   Mode
	Window int // K (1 in Dense mode)
	Width  int

	Generated   int // tokens emitted (EOS excluded)
	Checks      int // full passes after prefill (Dense: one per token)
	Drafted     int // drafts proposed for checking (per window depth, not per beam)
	Accepted    int // drafts kept
	Corrections int // checks that rejected a draft
	Advance     int // tokens made final by checks (sum of kept drafts + 1)
	// AAL is the average advance length, Advance/Checks (at most Window);
	// 0 when there were no checks (Sparse mode).
	AAL float64

	SparsePasses int // Draft calls
	SparseTokens int // tokens through the sparse model (beams count each)
	FullTokens   int // tokens through Verify (beams count each), prefill excluded
	PromptTokens int

	StopReason string // "eos", "max_tokens" or "stop"
	PerCheck   []CheckRecord

	// Policy says what the window policy chose (Sirius mode).
	Policy PolicyStats
}

// CorrectionsPer100 is the number of corrections per 100 generated tokens.
func (s Stats) CorrectionsPer100() float64 {
	if s.Generated == 0 {
		return 0
	}
	return 100 * float64(s.Corrections) / float64(s.Generated)
}

// EffectiveDensity is the fraction of the full model's parameters used per
// generated token, given the sparse model's density dSparse and the full
// model's dFull (1, or less when counting only streamed weights):
// ((K-1)*dSparse + dFull)/AAL in Sirius mode with the fixed policy
// (REFERENCE.md §2; it counts one sparse pass per draft and assumes beams
// share one neuron set), the same with the sparse passes and checks actually
// run with the adaptive one, dFull in Dense mode and dSparse in Sparse mode.
func (s Stats) EffectiveDensity(dSparse, dFull float64) float64 {
	switch s.Mode {
	case Dense:
		return dFull
	case Sparse:
		return dSparse
	}
	if s.AAL == 0 {
		return 0
	}
	if s.Policy.Policy == PolicyAdaptive && s.Advance > 0 {
		return (float64(s.SparsePasses)*dSparse + float64(s.Checks)*dFull) / float64(s.Advance)
	}
	return (float64(s.Window-1)*dSparse + dFull) / s.AAL
}

// Stop reasons.
const (
	StopEOS       = "eos"
	StopMaxTokens = "max_tokens"
	StopString    = "stop"
)

// Generate decodes from prompt with m and cfg, calling emit with each token
// as soon as it is final (in order). It returns the statistics even when it
// fails part way.
func Generate(m Model, prompt []int, cfg Config, emit func(tok int) error) (Stats, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	if len(prompt) == 0 {
		return Stats{}, errors.New("corrector: empty prompt (it needs at least a BOS token)")
	}
	g := &gen{m: m, cfg: cfg, emit: emit, sampler: NewSampler(cfg.Temperature, cfg.TopP, cfg.Seed)}
	g.st.Mode, g.st.Window, g.st.Width, g.st.PromptTokens = cfg.Mode, cfg.Window, cfg.Width, len(prompt)
	g.st.Policy.Policy = cfg.Policy
	if cfg.Mode == Dense {
		g.st.Window = 1
	}
	if cfg.Mode == Sirius && cfg.Policy == PolicyAdaptive {
		costs, _ := m.(Costs)
		g.pol = newPolicy(cfg.Window-1, cfg.Width, costs, &g.st.Policy)
	}
	err = g.run(prompt)
	if g.st.Checks > 0 {
		g.st.AAL = float64(g.st.Advance) / float64(g.st.Checks)
	}
	if g.pol != nil {
		g.st.Policy.Alpha = g.pol.acc.alpha()
	}
	return g.st, err
}

type gen struct {
	m       Model
	cfg     Config
	emit    func(int) error
	sampler *Sampler
	st      Stats
	out     []int
	vocab   int
	done    bool

	// pos is the committed cache length of branch 0: every position before it
	// holds full-model K/V of a final token. last is the newest final token,
	// which belongs at position pos and is not in the cache yet.
	pos  int
	last int

	q      [][]float64 // sparse distributions of the window's drafts (sampling)
	p, res []float64   // scratch

	pol *policy // the adaptive window policy (nil with PolicyFixed)
}

func (g *gen) run(prompt []int) error {
	logits, err := g.m.Prefill(prompt)
	if err != nil {
		return fmt.Errorf("corrector: prefill of %d tokens: %w", len(prompt), err)
	}
	g.vocab = len(logits)
	if g.vocab == 0 {
		return errors.New("corrector: prefill returned no logits")
	}
	g.pos = len(prompt)
	g.last = g.sampler.Sample(logits)
	if err := g.commit(g.last); err != nil || g.done {
		return err
	}
	for !g.done {
		switch g.cfg.Mode {
		case Dense:
			err = g.denseStep()
		case Sparse:
			err = g.sparseStep()
		default:
			switch {
			case g.pol != nil:
				err = g.adaptiveWindow()
			case g.cfg.Width > 1:
				err = g.beamWindow()
			default:
				err = g.chain(g.depth(), nil)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// commit makes tok final: it ends generation on EOS (not emitted), otherwise
// emits it and evaluates MaxTokens and Stop.
func (g *gen) commit(tok int) error {
	if slices.Contains(g.cfg.EOS, tok) {
		g.done, g.st.StopReason = true, StopEOS
		return nil
	}
	if err := g.emit(tok); err != nil {
		g.done = true
		return fmt.Errorf("corrector: emit token %d: %w", tok, err)
	}
	g.out = append(g.out, tok)
	g.st.Generated++
	switch {
	case len(g.out) >= g.cfg.MaxTokens:
		g.done, g.st.StopReason = true, StopMaxTokens
	case g.cfg.Stop != nil && g.cfg.Stop(g.out):
		g.done, g.st.StopReason = true, StopString
	}
	return nil
}

// commitAll commits toks in order, stopping as soon as generation ends.
func (g *gen) commitAll(toks ...int) error {
	for _, t := range toks {
		if err := g.commit(t); err != nil || g.done {
			return err
		}
	}
	return nil
}

func (g *gen) draft(toks []int, pos int) ([][]float32, error) {
	out, err := g.m.Draft(toks, pos)
	if err != nil {
		return nil, fmt.Errorf("corrector: sparse draft at position %d: %w", pos, err)
	}
	if len(out) != len(toks) {
		return nil, fmt.Errorf("corrector: sparse draft at position %d returned %d branches, want %d", pos, len(out), len(toks))
	}
	for b, l := range out {
		if len(l) != g.vocab {
			return nil, fmt.Errorf("corrector: sparse draft at position %d branch %d: %d logits, want %d", pos, b, len(l), g.vocab)
		}
	}
	g.st.SparsePasses++
	g.st.SparseTokens += len(toks)
	return out, nil
}

func (g *gen) verify(toks [][]int, pos int) ([][][]float32, error) {
	out, err := g.m.Verify(toks, pos)
	if err != nil {
		return nil, fmt.Errorf("corrector: full check at position %d: %w", pos, err)
	}
	if len(out) != len(toks) {
		return nil, fmt.Errorf("corrector: full check at position %d returned %d branches, want %d", pos, len(out), len(toks))
	}
	for b := range toks {
		if len(out[b]) != len(toks[b]) {
			return nil, fmt.Errorf("corrector: full check at position %d branch %d: %d rows, want %d", pos, b, len(out[b]), len(toks[b]))
		}
		for _, l := range out[b] {
			if len(l) != g.vocab {
				return nil, fmt.Errorf("corrector: full check at position %d branch %d: %d logits, want %d", pos, b, len(l), g.vocab)
			}
		}
		g.st.FullTokens += len(toks[b])
	}
	g.st.Checks++
	return out, nil
}

func (g *gen) truncate(b, n int) error {
	if err := g.m.Truncate(b, n); err != nil {
		return fmt.Errorf("corrector: roll back branch %d to %d positions: %w", b, n, err)
	}
	return nil
}

// denseStep is plain decoding with the full model: one token per pass.
func (g *gen) denseStep() error {
	lg, err := g.verify([][]int{{g.last}}, g.pos)
	if err != nil {
		return err
	}
	tok := g.sampler.Sample(lg[0][0])
	g.record(CheckRecord{Start: g.pos, Token: tok}, 1)
	g.pos++
	g.last = tok
	return g.commit(tok)
}

// sparseStep is plain decoding with the sparse model, never checked: its
// tokens are final, so EOS is not masked.
func (g *gen) sparseStep() error {
	lg, err := g.draft([]int{g.last}, g.pos)
	if err != nil {
		return err
	}
	tok := g.sampler.Sample(lg[0])
	g.st.Drafted++
	g.pos++
	g.last = tok
	return g.commit(tok)
}

func (g *gen) record(r CheckRecord, advance int) {
	g.st.PerCheck = append(g.st.PerCheck, r)
	g.st.Advance += advance
}

// depth is the number of drafts for the next window: K-1, or fewer so that
// the window's n+1 final tokens never overshoot MaxTokens.
func (g *gen) depth() int {
	return max(0, min(g.cfg.Window-1, g.cfg.MaxTokens-len(g.out)-1))
}

// adaptiveWindow asks the policy for the next window's shape and runs it.
func (g *gen) adaptiveWindow() error {
	var pl Plan
	if g.cfg.plan != nil {
		pl = g.cfg.plan(g.depth())
		pl.Drafts, pl.Width = min(max(pl.Drafts, 0), g.depth()), min(max(pl.Width, 1), g.cfg.Width)
	} else {
		pl = g.pol.next(g.depth(), len(g.out))
	}
	pl.a, pl.g = g.pol.acc.alpha(), g.pol.acc.gamma()
	if o, ok := g.m.(WindowObserver); ok {
		o.WindowPlanned(pl)
	}
	ps := &g.st.Policy
	ps.Windows = bump(ps.Windows, pl.Drafts+1)
	switch {
	case pl.Probe:
		ps.Probes++
	case pl.Drafts == 0 && g.depth() > 0:
		ps.DenseSteps++
	}
	if pl.Width > 1 && pl.Drafts > 0 {
		return g.treeWindow(&pl)
	}
	return g.chain(pl.Drafts, &pl)
}

// windowDone records an adaptive window's shape for the statistics: d
// drafts per path over paths paths, of which kept were kept.
func (g *gen) windowDone(pl *Plan, d, paths, kept int) {
	g.pol.ran(paths*(d+1), paths)
	g.pol.spent(d, paths, kept+1)
	ps := &g.st.Policy
	ps.Lengths = bump(ps.Lengths, d+1)
	ps.Widths = bump(ps.Widths, paths)
	ps.Expected += pl.Expected
	if d < pl.Drafts {
		ps.EarlyStops++
	}
	if pl.Probe {
		g.pol.afterProbe(kept, d)
	}
}

// judged tells the policy and the statistics the fate of a first candidate
// drafted with sparse top probability conf.
func (g *gen) judged(conf float64, kept bool) {
	g.pol.acc.observeTop(conf, kept)
	g.st.Policy.Judged++
	if kept {
		g.st.Policy.Kept++
	}
}

// chain runs one Sirius window at width 1: draft up to d tokens, check,
// accept, roll back, append the full model's token, commit. With a plan
// (adaptive policy) drafting stops after a draft whose sparse top
// probability is below pl.StopBelow, and the outcome is observed; without
// one (fixed policy) it drafts exactly d tokens.
func (g *gen) chain(d int, pl *Plan) error {
	sampling := !g.sampler.Greedy()
	win := append(make([]int, 0, d+1), g.last)
	var conf []float64
	var alt []int // greedy: the sparse runner-up at each draft (-1 if none)
	for i := range d {
		lg, err := g.draft(win[i:i+1], g.pos+i)
		if err != nil {
			return err
		}
		var x int
		if sampling {
			g.q = grow(g.q, i+1)
			g.q[i] = g.sampler.Distribution(g.q[i], lg[0], g.cfg.EOS)
			x = sampleDist(g.q[i], g.sampler.RNG.F32())
		} else {
			x = argmaxExcept(lg[0], g.cfg.EOS)
		}
		if x < 0 {
			return fmt.Errorf("corrector: every token of the vocabulary is an EOS id; nothing to draft")
		}
		win = append(win, x)
		if pl == nil {
			continue
		}
		var c float64
		if sampling {
			c = slices.Max(g.q[i])
		} else {
			c = Likelihood(lg[0], x, 1)
			alt = append(alt, secondExcept(lg[0], x, g.cfg.EOS))
		}
		conf = append(conf, c)
		g.pol.acc.drafted(c)
		if c < pl.StopBelow {
			break
		}
	}
	d = len(win) - 1
	g.st.Drafted += d
	lgs, err := g.verify([][]int{win}, g.pos)
	if err != nil {
		return err
	}
	var n, tok int
	if sampling {
		n, tok = g.speculate(win, lgs[0])
	} else {
		n = g.acceptGreedy(win, lgs[0])
		tok = Argmax(lgs[0][n])
	}
	if pl != nil {
		for i := range min(n+1, d) {
			g.judged(conf[i], i < n)
		}
		// Would the runner-up have been kept where the draft was not? That
		// is what a tree would have gained here.
		if n < d && !sampling && alt[n] >= 0 {
			g.pol.acc.observeAlt(g.keeps(lgs[0][n], alt[n]))
		}
		g.windowDone(pl, d, 1, n)
	}
	if n < d {
		// Roll back: the cache keeps the window's first token and the kept
		// drafts, all with the full model's K/V written by Verify.
		if err := g.truncate(0, g.pos+n+1); err != nil {
			return err
		}
	}
	return g.finishCheck(win[1:n+1], tok, 0, d)
}

// finishCheck updates the statistics and position after a check that kept
// kept and appended tok from branch b, then commits them.
func (g *gen) finishCheck(kept []int, tok, b, d int) error {
	n := len(kept)
	g.record(CheckRecord{Start: g.pos, Drafted: d, Accepted: n, Branch: b, Corrected: n < d, Token: tok}, n+1)
	g.st.Accepted += n
	if n < d {
		g.st.Corrections++
	}
	g.pos += n + 1
	g.last = tok
	return g.commitAll(append(slices.Clone(kept), tok)...)
}

// acceptGreedy counts the leading drafts win[1:] that the rule keeps, given
// the full model's logits over the window (row i predicts win[i+1]).
func (g *gen) acceptGreedy(win []int, rows [][]float32) int {
	d := len(win) - 1
	for i := range d {
		if !g.keeps(rows[i], win[i+1]) {
			return i
		}
	}
	return d
}

// keeps applies the greedy acceptance rule to draft x given the full
// model's logits at its position.
func (g *gen) keeps(row []float32, x int) bool {
	switch g.cfg.Accept {
	case AcceptAll:
		return true
	case AcceptStrict:
		return Argmax(row) == x
	default:
		return Likelihood(row, x, g.cfg.LikelihoodTemp) >= g.cfg.Threshold
	}
}

// speculate applies the speculative-sampling rule to a sampled window: keep
// draft x with probability min(1, p(x)/q(x)); at the first rejection sample
// from normalize(max(0, p-q)); if all are kept sample a bonus from p. p is
// the full model's distribution with the run's temperature/top-p, q the one
// the draft was sampled from (EOS masked). It returns the number kept and the
// full model's token.
func (g *gen) speculate(win []int, rows [][]float32) (int, int) {
	d := len(win) - 1
	if g.cfg.Accept != AcceptAll {
		for i := range d {
			x := win[i+1]
			g.p = g.sampler.Distribution(g.p, rows[i], nil)
			q := g.q[i]
			coin := float64(g.sampler.RNG.F32())
			if q[x] <= g.p[x] || coin < g.p[x]/q[x] {
				continue
			}
			g.res = slices.Grow(g.res[:0], len(q))[:len(q)]
			var sum float64
			for j := range q {
				g.res[j] = max(0, g.p[j]-q[j])
				sum += g.res[j]
			}
			if !(sum > 0) { // rounding left no residual mass: fall back to p
				return i, sampleDist(g.p, g.sampler.RNG.F32())
			}
			return i, sampleDist(normalize(g.res), g.sampler.RNG.F32())
		}
	}
	return d, g.sampler.Sample(rows[d])
}

// Likelihood is softmax(logits/temp)[tok], computed in float64.
func Likelihood(logits []float32, tok int, temp float64) float64 {
	if tok < 0 || tok >= len(logits) {
		return 0
	}
	m := math.Inf(-1)
	for _, v := range logits {
		m = max(m, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp((float64(v) - m) / temp)
	}
	return math.Exp((float64(logits[tok])-m)/temp) / sum
}

// secondExcept is the best id other than first and those in skip (-1 if
// none is left).
func secondExcept(x []float32, first int, skip []int) int {
	best := -1
	for i, v := range x {
		if i != first && (best < 0 || v > x[best]) && !slices.Contains(skip, i) {
			best = i
		}
	}
	return best
}

// argmaxExcept is Argmax over the ids not in skip (-1 if none is left).
func argmaxExcept(x []float32, skip []int) int {
	best := -1
	for i, v := range x {
		if (best < 0 || v > x[best]) && !slices.Contains(skip, i) {
			best = i
		}
	}
	return best
}

func grow(q [][]float64, n int) [][]float64 {
	for len(q) < n {
		q = append(q, nil)
	}
	return q
}
