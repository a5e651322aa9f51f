package corrector

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// This file is the window policy: before each Sirius window it chooses how
// many tokens to draft and how wide a tree to draft, from what the passes
// cost and how often drafts have been accepted so far in this sequence. It
// is pure: given the same costs and the same observations it makes the same
// choices, so it is table-tested with scripted models and costs.
//
// The model behind it:
//
//   - Each draft is kept with probability α: the observed rate, with a
//     Jeffreys prior (1/2) and exponential forgetting (about the last 50
//     judged drafts), so that a sequence whose drafts improve or degrade is
//     followed. A chain of d drafts then makes E = 1 + α + ... + α^d tokens
//     final per check (the 1 is the full model's own token: the correction
//     or the bonus).
//   - Confidence: every draft's sparse top probability is recorded, and the
//     acceptance of judged drafts is calibrated per tenth of confidence. A
//     stop level τ means drafting goes on after a draft only if its
//     confidence was at least τ; the share π of drafts above τ and their
//     acceptance α_τ give E = 1 + α(1 + r + ... + r^(d-1)) with r = π·α_τ,
//     for 1 + π + ... + π^(d-1) drafts on average. τ = 0 is the plain chain.
//   - A tree of W paths adds, for each extra path, the chance that it
//     rescues a rejected position: at the j-th draft it is reached with r^j,
//     the top draft is rejected with 1-α and the alternative kept with γ
//     (observed too, also from chains: would the runner-up have been kept
//     where the draft was not? prior 1/4), after which its own chain goes on.
//   - A window costs its sparse passes at the tree's width plus one full
//     pass over all its rows (Costs); plain dense decoding makes 1 token per
//     one-row pass. Every depth, width and stop level is tried and the plan
//     with the most expected tokens per second wins; dense (K = 1) is one of
//     the candidates, so the policy never plans to be slower than dense.
//   - It plans with an optimistic α (mean plus one posterior standard
//     deviation), so that good drafts reach long windows within a few
//     windows, and within a trust region: a check of at most four times the
//     rows (trustGrowth), and a tree of at most twice the paths, of the
//     largest run so far, so that a cost extrapolated wrongly is paid once
//     and small. A chain of perfect drafts so reaches a 16-token window in
//     its third check (2, 8, 16 rows) instead of its fourth.
//   - While dense wins no drafts are observed, so the policy probes: after
//     a few dense steps it drafts one token. A fruitless probe doubles the
//     wait (up to maxProbeEvery), so on a model whose drafts are always
//     rejected probes cost well under 2% of the time; a probe whose drafts
//     were all kept is followed at once by one twice as long, so a sequence
//     whose drafts became good leaves dense decoding within a few windows.
//   - Optimism and probes are exploration, and exploration is paid from a
//     budget: each window's cost is weighed (with the measured costs) against
//     the dense steps that would have made its tokens, and the difference,
//     plus explorationShare of the window's time, is banked (from
//     explorationAllowance dense steps, at most maxBank). A plan chosen
//     with the optimistic α, or a probe, whose expected loss at the mean α
//     is more than the bank is not run: the policy plans with the mean (or
//     waits to probe). Where drafts are good they pay for themselves and
//     nothing changes; where drafting barely loses (drafts nearly as dear
//     as dense steps, acceptance near the break-even: stories260K on a CPU)
//     exploring costs at most about explorationShare of the time instead
//     of a 7-draft window on one lucky draft and a probe every few tokens.
//   - Costs are timed on machines that are rarely quiet, so a drafting plan
//     must expect to beat dense decoding by minGain, and while drafting wins
//     by a small margin a dense step is timed again now and then
//     (recheckDue): nothing else times one while drafting goes on, and a
//     one-row cost measured in a slow moment would otherwise keep a losing
//     plan for good.

// WindowPolicy says how each window's length and width are chosen.
type WindowPolicy int

const (
	// PolicyFixed drafts exactly Window-1 tokens per check (beams when
	// Width > 1), as the Sirius paper does: use it to reproduce its numbers.
	// It is the zero value and DefaultConfig's, so that code written before
	// the adaptive policy keeps its behaviour; the CLI's --window-policy
	// (default adaptive) chooses for users.
	PolicyFixed WindowPolicy = iota
	// PolicyAdaptive chooses each window's drafts (K-1, up to Window-1) and
	// width (up to Width) from measured costs and the acceptance observed so
	// far, stops drafting early on low sparse confidence, and falls back to
	// dense decoding when drafting does not pay. It drafts token trees when
	// Width > 1. With sampling (or threshold acceptance) the tokens then
	// depend on the costs the engine measures, so runs are not repeatable
	// token for token unless the costs are; strict greedy output always
	// equals dense greedy.
	PolicyAdaptive
)

var policyNames = []string{PolicyFixed: "fixed", PolicyAdaptive: "adaptive"}

func (p WindowPolicy) String() string {
	if p >= 0 && int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("WindowPolicy(%d)", int(p))
}

// ParseWindowPolicy maps "adaptive" or "fixed" (case-insensitive).
func ParseWindowPolicy(s string) (WindowPolicy, error) {
	i := slices.Index(policyNames, strings.ToLower(strings.TrimSpace(s)))
	if i < 0 {
		return 0, fmt.Errorf("corrector: unknown window policy %q (valid: %s)", s, strings.Join(policyNames, ", "))
	}
	return WindowPolicy(i), nil
}

// Costs is how the engine tells the adaptive policy what its passes cost.
// A Model that implements it is asked before every window; one that does
// not gets the prior costs below. Both methods return the expected wall time
// of one call as the engine runs it now (measured, e.g. a moving average of
// the profiler's per-pass times), or 0 when it has no estimate; CostTable
// does the bookkeeping. Costs must be cheap to call (a table lookup).
type Costs interface {
	// DraftCost is the time of one Draft call over branches branches (one
	// sparse pass; the tree's paths are batched in it).
	DraftCost(branches int) time.Duration
	// CheckCost is the time of one Verify call over rows tokens in total
	// (the sum of len(toks[b]) over branches; a dense step is 1 row).
	CheckCost(rows int) time.Duration
}

// Prior costs, used for what Costs does not know (or when the Model does not
// implement it): a check over r rows costs (1 + (r-1)/32) one-row passes,
// and a draft over w branches half a one-row pass, plus a tenth per extra
// branch. Only the ratios matter.
const (
	priorDraftRatio   = 0.5
	priorDraftPerPath = 0.1
	priorRowsPerPass  = 32
)

// WindowObserver may be implemented by a Model that wants to know each
// window's plan before its first pass (to prefetch the weights of the pass
// that comes next). Plan.Drafts is an upper bound: drafting may stop early.
type WindowObserver interface {
	WindowPlanned(p Plan)
}

// Plan is the policy's choice for one window.
type Plan struct {
	// Drafts is the most tokens each path drafts (K-1); 0 is a plain dense
	// step (one full pass over one token).
	Drafts int
	// Width is the most paths (KV branches) the tree may open; 1 is a chain.
	Width int
	// StopBelow ends drafting after a draft whose sparse top probability is
	// below it (that draft is still checked). 0 never stops early.
	StopBelow float64
	// BranchBelow: a tree opens new paths only at nodes whose sparse top
	// probability is below it (where the sparse model is least sure).
	BranchBelow float64
	// Rate is the plan's expected tokens per second (the value every extra
	// draft and path is held to); Expected its expected tokens per check.
	Rate, Expected float64
	// Probe marks a window drafted only to measure acceptance while dense
	// decoding wins.
	Probe bool
	// Then is the drafts the policy expects to plan for the next window if
	// what this one shows does not change its mind (0: a dense step): a
	// hint for an engine that starts copying the next pass's weights before
	// this window ends. A probe's hint is 0 (most probes fail).
	Then int
	// Reason says why the plan is dense (empty otherwise).
	Reason string

	a, g float64 // the acceptance estimates it was made with
}

// Policy tuning. The forgetting factor keeps about 1/(1-rho) = 50 recent
// judged drafts; confidence is calibrated in tenths.
const (
	rho           = 0.98
	priorAlphaA   = 0.5  // Jeffreys Beta(1/2,1/2): α prior 1/2 with weight 1
	priorAlphaN   = 1.0  //
	priorGammaA   = 0.25 // γ prior 1/4 with weight 1
	priorGammaN   = 1.0  //
	binPrior      = 1.0  // weight of α in each confidence bin
	confBins      = 10   //
	probeEvery    = 4    // dense steps before the first probe
	maxProbeEvery = 128  // the interval doubles up to this
	// hopelessProbeFactor stretches the probe interval when the costs say
	// drafting cannot pay at any acceptance.
	hopelessProbeFactor = 8
	maxFallbacks        = 16 // fallback events kept in PolicyStats
	// The exploration budget, in dense steps: what a sequence starts with,
	// the share of its time it may lose to exploring, and the most it banks.
	explorationAllowance = 2.0
	explorationShare     = 0.03
	maxBank              = 16.0
	worthEps             = 1e-9 // relative margin for "better than"
	// minGain is how much faster than dense decoding a drafting plan must
	// expect to be: a plan that wins by less rests on cost estimates
	// noisier than that on a busy machine, and loses as often as it wins.
	minGain = 0.03
)

type counts struct{ a, n float64 }

func (c *counts) add(ok bool) {
	c.a, c.n = rho*c.a, rho*c.n+1
	if ok {
		c.a++
	}
}

// acceptModel is the acceptance estimate of one sequence.
type acceptModel struct {
	top  counts           // the first candidate at a node: kept?
	alt  counts           // the top was rejected and there were others: one kept?
	bins [confBins]counts // the first candidate by its sparse confidence: kept?
	seen [confBins]float64
	// changed: a draft was judged since the policy last planned in full.
	changed bool
}

func (m *acceptModel) alpha() float64 { return (m.top.a + priorAlphaA) / (m.top.n + priorAlphaN) }

// optimistic is α plus one standard deviation of its Beta posterior: the
// acceptance the policy plans with. Optimism while little is known makes a
// sequence with good drafts reach long windows within a few windows; the
// bonus shrinks as drafts are judged (about 0.07 at α = 1/2 with the 50
// judged drafts the forgetting keeps), and bad drafts pull the mean down as
// fast as before.
func (m *acceptModel) optimistic() float64 {
	a, n := m.top.a+priorAlphaA, m.top.n+priorAlphaN
	mean := a / n
	return min(mean+math.Sqrt(mean*(1-mean)/(n+1)), 0.999)
}
func (m *acceptModel) gamma() float64 { return (m.alt.a + priorGammaA) / (m.alt.n + priorGammaN) }

func bin(conf float64) int { return min(max(int(conf*confBins), 0), confBins-1) }

// calBin is the calibrated chance that a first candidate drafted with
// sparse top probability in bin b is kept (prior: α). Acceptance is assumed
// not to fall as confidence rises, so a bin is credited with the best bin
// below it (a running maximum): an empty or unlucky bin above well-measured
// ones does not make the policy stop on confident drafts.
func (m *acceptModel) calBin(b int) float64 {
	best := 0.0
	for i := 0; i <= b; i++ {
		c := m.bins[i]
		best = max(best, (c.a+binPrior*m.alpha())/(c.n+binPrior))
	}
	return best
}

func (m *acceptModel) cal(conf float64) float64 { return m.calBin(bin(conf)) }

// calAll is calBin of every bin.
func (m *acceptModel) calAll() [confBins]float64 {
	var c [confBins]float64
	for b := range c {
		c[b] = m.calBin(b)
	}
	return c
}

// above is what the policy knows of drafts whose confidence is at least
// tau: the share of drafts that have it (pi) and their acceptance (a),
// given the bins' calibration cal. With no confidences seen yet it is (1, α).
func (m *acceptModel) above(tau float64, cal *[confBins]float64) (pi, a float64) {
	var all, hi, acc float64
	for b, n := range m.seen {
		all += n
		if float64(b)/confBins >= tau-1e-12 {
			hi += n
			acc += n * cal[b]
		}
	}
	if all <= 0 {
		return 1, m.alpha()
	}
	if hi <= 0 {
		return 0, 0
	}
	return hi / all, acc / hi
}

// separates says whether the drafts judged so far show that confidence
// below tau predicts rejection: enough of them on each side (minSide), and
// acceptance above tau higher by minGap. Without that evidence a stop level
// is calibration noise, and each early stop costs more than the drafts it
// saves: the engine had already started copying the next draft's weights,
// and the check waits for that copy (planted 8B-shape model behind a 4 GB/s
// link: 13 early stops in 64 tokens, 0.78 of a fixed window's speed).
func (m *acceptModel) separates(tau float64) bool {
	var lo, hi counts
	for b, c := range m.bins {
		if float64(b)/confBins >= tau-1e-12 {
			hi.a, hi.n = hi.a+c.a, hi.n+c.n
		} else {
			lo.a, lo.n = lo.a+c.a, lo.n+c.n
		}
	}
	return lo.n >= minSide && hi.n >= minSide && hi.a/hi.n-lo.a/lo.n >= minGap
}

// Evidence an early-stop level needs (separates).
const (
	minSide = 8
	minGap  = 0.15
)

// level is the lowest confidence whose calibrated acceptance is at least
// want (1 when none is).
func (m *acceptModel) level(want float64) float64 {
	for b := range confBins {
		if m.calBin(b) >= want {
			return float64(b) / confBins
		}
	}
	return 1
}

// drafted records a draft's confidence (whether or not a check judges it).
func (m *acceptModel) drafted(conf float64) {
	for b := range m.seen {
		m.seen[b] *= rho
	}
	m.seen[bin(conf)]++
}

func (m *acceptModel) observeTop(conf float64, ok bool) {
	m.changed = true
	m.top.add(ok)
	m.bins[bin(conf)].add(ok)
}

func (m *acceptModel) observeAlt(ok bool) { m.alt.add(ok) }

// policy is the adaptive window policy of one generation.
type policy struct {
	maxDrafts, maxWidth int
	costs               Costs
	acc                 acceptModel

	sinceProbe, probeEvery, probeDrafts int
	drafting                            bool // the last non-probe plan drafted
	planned                             bool // a plan was made
	st                                  *PolicyStats

	// The largest check (rows) and tree (paths) run so far: plans stay
	// within twice these, so costs are extrapolated only a little.
	maxRows, maxPaths int
	reason            string // why the policy last fell back to dense

	// While dense decoding wins, the plan is reused until a draft is
	// judged or replanEvery dense steps have passed (costs drift slowly),
	// so that the policy costs next to nothing per dense token.
	stale int // dense steps since the last full plan

	// Costs resolved once per window (seconds; index: rows or branches).
	checks, drafts []float64

	// bank is the exploration budget left, in dense steps (see the file
	// comment).
	bank float64
	// sinceDense counts windows since the last dense step, timedDense the
	// dense steps this sequence has run (recheckDue).
	sinceDense, timedDense int
}

// resolveCosts asks Costs (or the prior) once for every row count and
// width a plan of this policy can use, so that planning does not call
// into the engine thousands of times.
func (p *policy) resolveCosts() {
	p.checks, p.drafts = p.checks[:0], p.drafts[:0]
	rows := p.maxWidth*(p.maxDrafts+1) + 1
	c := make([]float64, rows+1)
	for r := 1; r <= rows; r++ {
		c[r] = p.checkRaw(r)
	}
	d := make([]float64, p.maxWidth+2)
	p.checks = c // draftRaw's prior reads check(1)
	for w := 1; w < len(d); w++ {
		d[w] = p.draftRaw(w)
	}
	p.drafts = d
}

func newPolicy(maxDrafts, maxWidth int, costs Costs, st *PolicyStats) *policy {
	return &policy{maxDrafts: maxDrafts, maxWidth: maxWidth, costs: costs, probeEvery: probeEvery, probeDrafts: 1, st: st,
		bank: explorationAllowance}
}

// check is the time of a full pass over rows tokens, in seconds.
func (p *policy) check(rows int) float64 {
	if rows >= 1 && rows < len(p.checks) {
		return p.checks[rows]
	}
	return p.checkRaw(rows)
}

// draft is the time of a sparse pass over w branches, in seconds.
func (p *policy) draft(w int) float64 {
	if w >= 1 && w < len(p.drafts) {
		return p.drafts[w]
	}
	return p.draftRaw(w)
}

func (p *policy) checkRaw(rows int) float64 {
	if p.costs != nil {
		if d := p.costs.CheckCost(rows); d > 0 {
			return d.Seconds()
		}
	}
	base := 1.0
	if p.costs != nil {
		if d := p.costs.CheckCost(1); d > 0 {
			base = d.Seconds()
		}
	}
	return base * (1 + float64(rows-1)/priorRowsPerPass)
}

// checkF is check at a fractional (expected) row count, interpolated.
func (p *policy) checkF(rows float64) float64 {
	lo := max(int(math.Floor(rows)), 1)
	f := rows - float64(lo)
	if f <= 0 {
		return p.check(lo)
	}
	return (1-f)*p.check(lo) + f*p.check(lo+1)
}

func (p *policy) draftRaw(w int) float64 {
	if p.costs != nil {
		if d := p.costs.DraftCost(w); d > 0 {
			return d.Seconds()
		}
	}
	return p.check(1) * (priorDraftRatio + priorDraftPerPath*float64(w-1))
}

// geo is 1 + r + ... + r^(n-1).
func geo(r float64, n int) float64 {
	var s float64
	x := 1.0
	for range n {
		s += x
		x *= r
	}
	return s
}

// shape is the acceptance model a plan is evaluated with: a drafts are
// kept on average, g alternatives when the top was not, and with a stop
// level, a share pi of drafts is confident enough to draft on after, of
// which a share ahi is kept.
type shape struct{ a, g, pi, ahi float64 }

// expect returns the expected tokens a check makes final and the expected
// drafts per path for a tree of w paths drafted at most d deep (see the
// file comment). Drafting goes on after draft i only if it was confident,
// so draft i+1 is reached and its predecessors kept with r = pi*ahi each;
// an extra path at the j-th draft rescues a rejected top draft with g and
// then continues as a chain.
func (s shape) expect(d, w int) (tokens, drafts float64) {
	var t shapeTables
	t.fill(s, d)
	return t.expect(s, d, w)
}

// shapeTables hold the geometric sums expect needs, for depths up to n:
// gr[k] = 1 + r + ... + r^(k-1), rp[k] = r^k and gp[k] the same sum for pi.
type shapeTables struct{ gr, rp, gp []float64 }

func (t *shapeTables) fill(s shape, n int) {
	r := s.pi * s.ahi
	t.gr, t.rp, t.gp = append(t.gr[:0], 0), append(t.rp[:0], 1), append(t.gp[:0], 0)
	pp := 1.0
	for k := 1; k <= n; k++ {
		t.gr = append(t.gr, t.gr[k-1]+t.rp[k-1])
		t.rp = append(t.rp, t.rp[k-1]*r)
		t.gp = append(t.gp, t.gp[k-1]+pp)
		pp *= s.pi
	}
}

func (t *shapeTables) expect(s shape, d, w int) (tokens, drafts float64) {
	tokens = 1 + s.a*t.gr[d]
	for j := range min(w-1, d) {
		tokens += t.rp[j] * (1 - s.a) * s.g * (1 + s.a*t.gr[d-1-j])
	}
	return tokens, t.gp[d]
}

// expectTokens is the chain-and-tree formula without a stop level.
func expectTokens(a, g float64, d, w int) float64 {
	e, _ := shape{a, g, 1, a}.expect(d, w)
	return e
}

// cost is the planned time of a window with drafts expected drafts per
// path over w paths: the sparse passes and one check over their rows.
func (p *policy) cost(drafts float64, w int) float64 {
	if drafts == 0 {
		return p.check(1)
	}
	return drafts*p.draft(w) + p.checkF(float64(w)*(drafts+1))
}

// ran records a window's shape: rows checked over paths paths.
func (p *policy) ran(rows, paths int) {
	p.maxRows, p.maxPaths = max(p.maxRows, rows), max(p.maxPaths, paths)
}

// A drafting plan whose expected rate (at the mean acceptance) is less than
// recheckMargin times a dense step's gives way to one dense step, to time
// it: after firstRecheck windows while this sequence has run fewer than
// minTimedDense (one timing on a busy machine can be far off), and every
// recheckEvery windows after that. Only where a check's cost grows with its
// rows (by flatChecks or more from two rows to the largest run): there a
// one-row cost extrapolated from larger checks, or timed in a slow moment,
// can be far off; where checks cost the same whatever their rows (a link-
// bound streamed pass) it cannot, and a dense step there costs a whole
// streamed pass. Its cost is small: a token made at dense speed instead of
// at most 1.5 times it, once in many windows.
const (
	firstRecheck  = 8
	minTimedDense = 3
	recheckEvery  = 16
	recheckMargin = 1.5
	flatChecks    = 1.25
)

// recheckReason is the Reason of a dense step run to time one.
const recheckReason = "re-timing a dense step"

// recheckDue says whether a drafting plan of expected rate rate (tokens
// per second) should give way to a dense step after after more windows.
func (p *policy) recheckDue(rate float64, after int) bool {
	since := p.sinceDense + after
	due := since >= recheckEvery || (p.timedDense < minTimedDense && since >= firstRecheck)
	if !due || rate >= recheckMargin/p.check(1) {
		return false
	}
	return p.maxRows <= 2 || p.check(p.maxRows) >= flatChecks*p.check(2)
}

// spent settles a window of d drafts per path over paths paths that made
// tokens tokens final with the exploration budget: what it cost beyond the
// dense steps that would have made them is taken, what it saved and
// explorationShare of its time are banked.
func (p *policy) spent(d, paths, tokens int) {
	if d == 0 {
		p.sinceDense = 0
		p.timedDense++
	} else {
		p.sinceDense++
	}
	c := p.cost(float64(d), paths) / p.check(1)
	p.bank = min(p.bank+float64(tokens)-c+explorationShare*c, maxBank)
}

// loss is the expected cost, in dense steps, of a window of drafts expected
// drafts over w paths that makes tokens tokens final, beyond the dense
// steps that would make them (negative when drafting pays).
func (p *policy) loss(drafts float64, w int, tokens float64) float64 {
	return p.cost(drafts, w)/p.check(1) - tokens
}

// best returns the plan with the most expected tokens per second for the
// acceptance estimates, with at most room drafts: every width, depth and
// stop level (in tenths of confidence) is tried. Dense wins when nothing
// beats it; ties go to the shorter, narrower, less eager plan. A plan's
// check may have at most trustGrowth times the rows, and its tree twice the
// paths, of the largest run so far in this sequence (trust region): costs
// beyond the measured are guesses, and this bounds what a wrong guess can
// cost.
func (p *policy) best(a, g float64, room int) Plan {
	best := Plan{Width: 1, Expected: 1, Rate: 1 / p.check(1)}
	bar := best.Rate * (1 + minGain) // what a drafting plan must beat
	maxRows, maxPaths := max(2, trustGrowth*p.maxRows), max(1, 2*p.maxPaths)
	cal := p.acc.calAll()
	var tab shapeTables
	lastPi := -1.0
	for b := range confBins {
		tau := float64(b) / confBins
		pi, ahi := p.acc.above(tau, &cal)
		if b > 0 && (pi <= 0 || pi == lastPi) {
			continue // no drafts in this bin: the same as the level below
		}
		lastPi = pi
		if b > 0 && !p.acc.separates(tau) {
			continue
		}
		sh := shape{a, g, pi, ahi}
		if b == 0 {
			sh = shape{a, g, 1, a}
		}
		tab.fill(sh, room)
		for w := 1; w <= min(p.maxWidth, maxPaths); w++ {
			if w > 1 && g <= 0 {
				break
			}
			for d := 1; d <= room && w*(d+1) <= maxRows; d++ {
				e, dr := tab.expect(sh, d, w)
				if r := e / p.cost(dr, w); r > max(bar, best.Rate*(1+worthEps)) {
					best = Plan{Drafts: d, Width: w, StopBelow: tau, Expected: e, Rate: r}
				}
			}
		}
	}
	return best
}

// breakEven is the smallest per-draft acceptance at which some drafting plan
// beats dense decoding (with the current γ), or 2 when none ever does.
func (p *policy) breakEven(room int) float64 {
	g := p.acc.gamma()
	if p.best(1, g, room).Drafts == 0 {
		return 2
	}
	lo, hi := 0.0, 1.0
	for range 30 {
		mid := (lo + hi) / 2
		if p.best(mid, g, room).Drafts > 0 {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// trustGrowth bounds a check's rows by this many times the largest check so
// far. A check's cost grows slowly with its rows (one weight read, more
// arithmetic: on 2 CPU cores 16 rows cost about 2 one-row passes, on a GPU
// or behind a link about 1), so a 4x step risks little, while every extra
// ramp-up window costs a whole check pass: measured on the planted 8B-shape
// model (65 tokens), 2x growth reached 0.92 of the best fixed window.
const trustGrowth = 4

// replanEvery bounds how many dense steps reuse one plan.
const replanEvery = 8

// next plans the next window; room bounds its drafts (the tokens left).
func (p *policy) next(room, generated int) Plan {
	room = min(room, p.maxDrafts)
	if p.planned && !p.drafting && !p.acc.changed && p.stale < replanEvery && room > 0 {
		p.stale++
		return p.dense(room, p.acc.alpha(), p.acc.gamma())
	}
	p.stale, p.acc.changed = 0, false
	p.resolveCosts()
	a, opt, g := p.acc.alpha(), p.acc.optimistic(), p.acc.gamma()
	pl, dr := p.planWith(opt, a, g, room)
	if pl.Drafts > 0 && p.loss(dr, pl.Width, pl.Expected) > p.bank {
		// The optimism would cost more than the exploration budget holds
		// if the mean is right: plan with the mean.
		p.st.Deferred++
		pl, dr = p.planWith(a, a, g, room)
	}
	var rate float64 // the drafting plan's expected tokens per second
	if pl.Drafts > 0 {
		rate = pl.Expected / p.cost(dr, pl.Width)
	}
	switch {
	case room == 0:
		pl.Reason = "no room to draft: the output is almost complete"
	case pl.Drafts == 0:
		if p.drafting || !p.planned {
			p.reason = p.denseReason(a, opt, room)
			p.st.addFallback(generated, p.reason)
			if p.breakEven(room) > 1 {
				// The measured costs say no acceptance could make drafting
				// pay: probing acceptance is nearly pointless, so wait
				// much longer before the next probe (costs may still
				// change, e.g. once a cold first pass is forgotten).
				p.probeEvery = min(hopelessProbeFactor*p.probeEvery, maxProbeEvery)
			}
		}
		p.drafting = false
		pl = p.dense(room, a, g)
	case p.recheckDue(rate, 0):
		// Drafting wins by a small margin over a dense step that has not
		// been timed for a while (never, while drafting goes on): time
		// one, or a stale or extrapolated cost could keep a losing plan.
		p.st.Rechecks++
		p.drafting = true // plan afresh after it
		pl = Plan{Width: 1, Expected: 1, Rate: 1 / p.check(1), Reason: recheckReason}
	default:
		p.drafting = true
		p.sinceProbe = 0
		p.probeEvery, p.probeDrafts = probeEvery, 1
	}
	p.planned = true
	if pl.Drafts > 0 && !pl.Probe {
		pl.Then = pl.Drafts
		if p.recheckDue(rate, 1) {
			pl.Then = 0 // the next window will likely re-time a dense step
		}
	}
	if pl.Width > 1 {
		// Branch only where the top candidate is less likely kept than
		// the sequence's average draft (everywhere until calibrated).
		pl.BranchBelow = p.acc.level(a + 0.01)
		if pl.BranchBelow == 0 {
			pl.BranchBelow = 1
		}
	}
	return pl
}

// planWith returns the best plan for acceptance plan (optimistic or not)
// with its expected tokens and drafts per path at the mean acceptance a.
func (p *policy) planWith(plan, a, g float64, room int) (Plan, float64) {
	pl := p.best(plan, g, room)
	if pl.Drafts == 0 {
		return pl, 0
	}
	sh := shape{a, g, 1, a}
	if pl.StopBelow > 0 {
		cal := p.acc.calAll()
		pi, ahi := p.acc.above(pl.StopBelow, &cal)
		sh = shape{a, g, pi, ahi}
	}
	var dr float64
	pl.Expected, dr = sh.expect(pl.Drafts, pl.Width)
	return pl, dr
}

// dense is a dense step, or a probe when one is due and the exploration
// budget can pay for it; an unaffordable probe waits for the budget to
// grow, a share of each dense step.
func (p *policy) dense(room int, a, g float64) Plan {
	p.sinceProbe++
	pl := Plan{Width: 1, Expected: 1, Rate: 1 / p.check(1), Reason: p.reason}
	if p.sinceProbe+1 < p.probeEvery {
		return pl // no probe due now or next: nothing to weigh (this runs every dense token)
	}
	d := min(p.probeDrafts, room)
	e := expectTokens(a, g, d, 1)
	loss := p.loss(float64(d), 1, e)
	if p.sinceProbe >= p.probeEvery {
		if loss <= p.bank {
			p.sinceProbe = 0
			return Plan{Drafts: d, Width: 1, Expected: e, Rate: e / p.cost(float64(d), 1), Probe: true}
		}
		if p.sinceProbe == p.probeEvery {
			p.st.Deferred++ // once per wait
		}
	}
	if loss <= p.bank+explorationShare {
		pl.Then = d // a probe comes next
	}
	return pl
}

func (p *policy) denseReason(a, opt float64, room int) string {
	be := p.breakEven(room)
	costs := fmt.Sprintf("a draft costs %s, a 2-token check %s, a dense step %s",
		secs(p.draft(1)), secs(p.check(2)), secs(p.check(1)))
	if p.costs == nil || p.costs.CheckCost(1) <= 0 || p.costs.DraftCost(1) <= 0 {
		costs = fmt.Sprintf("with assumed costs (not measured), a draft costs %.2f dense steps and a 2-token check %.2f",
			p.draft(1)/p.check(1), p.check(2)/p.check(1))
	}
	if be > 1 {
		return "drafting cannot pay at any acceptance: " + costs
	}
	return fmt.Sprintf("acceptance %.3f (planned with %.3f) is below the break-even %.3f: %s", a, opt, be, costs)
}

func secs(s float64) string { return time.Duration(s * float64(time.Second)).String() }

// afterProbe adapts the probing schedule to a probe that kept kept of its d
// drafts. When it kept them all, the next window probes again at once with
// twice the drafts (unless the estimate now favours drafting): a sequence
// whose drafts became good leaves dense decoding within a few windows.
// Otherwise, or when the costs say no window could pay even with every
// draft kept (a longer probe would only lose more), the next probe waits
// twice as long and drafts one token, so probing a hopeless sequence costs
// less and less.
func (p *policy) afterProbe(kept, d int) {
	if d > 0 && kept == d && p.best(1, p.acc.gamma(), p.maxDrafts).Drafts > 0 {
		p.probeDrafts = min(2*p.probeDrafts, max(1, p.maxDrafts))
		p.sinceProbe = p.probeEvery
		return
	}
	p.probeEvery, p.probeDrafts = min(2*p.probeEvery, maxProbeEvery), 1
}

// worthBranch says whether opening one more path at step (0-based) of a
// d-deep tree that has paths paths now pays: v is the estimated chance that
// the new path's first token is kept; if it is, it also brings its own chain
// of d-1-step drafts. It must add at least pl.Rate tokens per second of the
// extra check rows and extra sparse work it costs.
func (p *policy) worthBranch(pl Plan, v float64, step, d, paths int) bool {
	if paths >= pl.Width {
		return false
	}
	rest := d - 1 - step
	a := p.acc.alpha()
	gain := v * (1 + a*geo(a, rest))
	cost := p.check((paths+1)*(d+1)) - p.check(paths*(d+1)) + float64(rest)*(p.draft(paths+1)-p.draft(paths))
	return gain >= pl.Rate*max(cost, 0)
}

// PolicyStats say what the window policy did in one generation.
type PolicyStats struct {
	Policy WindowPolicy
	// Windows[k] counts checks whose plan allowed k tokens per path (k-1
	// drafts; k = 1 is a dense step), Lengths[k] checks that actually
	// covered k tokens per path (fewer after an early stop), Widths[w]
	// checks over w paths.
	Windows, Lengths, Widths []int
	// Expected is the sum over checks of the tokens the policy expected
	// each check to make final, for the shape actually drafted; compare
	// ExpectedPerCheck with Stats.AAL (achieved).
	Expected float64
	// EarlyStops counts windows whose drafting stopped on low confidence.
	EarlyStops int
	// Probes counts windows drafted to re-measure acceptance while dense
	// decoding was the plan; DenseSteps the dense steps the policy chose.
	Probes, DenseSteps int
	// Deferred counts explorations (an optimistic plan, a due probe) that
	// the exploration budget did not cover, so were not run; Rechecks the
	// dense steps run to time a dense step again while drafting won by a
	// small margin.
	Deferred, Rechecks int
	// Judged and Kept count drafts whose fate a check decided (the first
	// candidate at each node reached): Kept/Judged is the acceptance rate.
	// Alpha is the policy's final estimate (prior and forgetting included).
	Judged, Kept int
	Alpha        float64
	// Fallbacks are the switches to dense decoding (the first window
	// included when it was dense), with the numbers behind each;
	// FallbackCount counts them all when more than maxFallbacks happened.
	Fallbacks     []Fallback
	FallbackCount int
}

// Fallback is one switch to dense decoding.
type Fallback struct {
	AtToken int    // tokens generated when it happened
	Reason  string // e.g. "acceptance 0.12 is below the break-even 0.41: ..."
}

func (s *PolicyStats) addFallback(at int, reason string) {
	s.FallbackCount++
	if len(s.Fallbacks) < maxFallbacks {
		s.Fallbacks = append(s.Fallbacks, Fallback{at, reason})
	}
}

func bump(h []int, i int) []int {
	for len(h) <= i {
		h = append(h, 0)
	}
	h[i]++
	return h
}

// AcceptanceRate is Kept/Judged (0 before any draft was judged).
func (s PolicyStats) AcceptanceRate() float64 {
	if s.Judged == 0 {
		return 0
	}
	return float64(s.Kept) / float64(s.Judged)
}

// ExpectedPerCheck is the tokens per check the policy expected on average.
func (s PolicyStats) ExpectedPerCheck() float64 {
	n := 0
	for _, c := range s.Lengths {
		n += c
	}
	if n == 0 {
		return 0
	}
	return s.Expected / float64(n)
}

// String prints the policy's decisions on a few lines for a run report, e.g.
//
//	policy adaptive: windows K=1:40 K=5:12 · widths 1:52 · 3 probes · 2 early stops
//	acceptance 0.41 (estimate 0.38) · tokens per check expected 2.10
//	fell back to dense 1 time: at token 12: acceptance 0.20 is below ...
func (s PolicyStats) String() string {
	var b strings.Builder
	hist := func(h []int, label string) string {
		var parts []string
		for k, n := range h {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%s%d:%d", label, k, n))
			}
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, " ")
	}
	fmt.Fprintf(&b, "policy %s: windows %s · checked %s · widths %s · %d dense steps · %d probes · %d early stops",
		s.Policy, hist(s.Windows, "K="), hist(s.Lengths, "K="), hist(s.Widths, ""), s.DenseSteps, s.Probes, s.EarlyStops)
	if s.Deferred > 0 {
		fmt.Fprintf(&b, " · %d explorations deferred (budget)", s.Deferred)
	}
	if s.Rechecks > 0 {
		fmt.Fprintf(&b, " · %d dense steps re-timed", s.Rechecks)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "acceptance %.2f of %d judged drafts (estimate %.2f) · tokens per check expected %.2f\n",
		s.AcceptanceRate(), s.Judged, s.Alpha, s.ExpectedPerCheck())
	if s.FallbackCount > 0 {
		fmt.Fprintf(&b, "fell back to dense %d time(s):", s.FallbackCount)
		for _, f := range s.Fallbacks {
			fmt.Fprintf(&b, "\n  at token %d: %s", f.AtToken, f.Reason)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// CostTable turns per-pass timings into Costs: the engine calls
// ObserveDraft/ObserveCheck after each pass with its measured time (the
// profiler's) and passes the table (or a Model that forwards to it) to
// Generate. Each key answers the lower median of its last costSamples
// measurements, so that a cold first pass or a moment of contention does
// not stick. (The lower quartile was tried: on the planted 8B-shape model
// behind a 4 GB/s link adaptive trees then ran at 5.3 tokens/s against 6.5
// with the median, likely planning long windows on the luckiest streamed
// passes.) A row count or width never measured is interpolated linearly
// between the nearest measured ones, extrapolated beyond the largest along
// the line through the smallest and the largest (never below the largest),
// and below all of them along the line through the two smallest (as the
// smallest when only one is measured). No size answers more than a larger
// size measured: a one-row check timed in a slow moment, then not re-timed
// while the policy drafts, must not keep drafting looking cheaper than it is
// (stories260K on 2 busy cores: a 347 µs one-row check against 215 µs
// two-row ones kept one-draft windows that lost to dense going for a whole
// sequence). The policy never plans far beyond what it has run (see
// policy.best), so a poor extrapolation costs one window at most. Not safe
// for concurrent use.
type CostTable struct {
	draft, check costSeries
}

const costSamples = 8

// costSeries holds the measurements of one kind of pass by size (rows or
// branches), sorted by size.
type costSeries struct {
	keys []int
	vals []*samples
}

type samples struct {
	d     [costSamples]time.Duration // ring of the last measurements
	n     int                        // measurements so far
	value time.Duration              // their lower median
}

func (s *costSeries) observe(k int, d time.Duration) {
	if k < 1 || d <= 0 {
		return
	}
	i, ok := slices.BinarySearch(s.keys, k)
	if !ok {
		s.keys = slices.Insert(s.keys, i, k)
		s.vals = slices.Insert(s.vals, i, &samples{})
	}
	x := s.vals[i]
	x.d[x.n%costSamples] = d
	x.n++
	v := slices.Clone(x.d[:min(x.n, costSamples)])
	slices.Sort(v)
	x.value = v[(len(v)-1)/2]
}

// ObserveDraft records the time of one Draft call over branches branches.
func (t *CostTable) ObserveDraft(branches int, d time.Duration) { t.draft.observe(branches, d) }

// ObserveCheck records the time of one Verify call over rows tokens.
func (t *CostTable) ObserveCheck(rows int, d time.Duration) { t.check.observe(rows, d) }

// DraftCost implements Costs.
func (t *CostTable) DraftCost(branches int) time.Duration { return t.draft.lookup(branches, false) }

// CheckCost implements Costs.
func (t *CostTable) CheckCost(rows int) time.Duration { return t.check.lookup(rows, true) }

// lookup answers the cost of size k. Beyond the largest size measured a
// check is answered optimistically (as the largest costs) when optimistic is
// set: a batched pass's cost need not grow linearly with its rows (on a CPU
// a few rows run as repeated matvecs and more on register-tiled kernels, so
// 8 rows can cost barely more than 4), and a linear extrapolation would keep
// the policy from ever trying the longer window that pays. The policy grows
// a window at most twofold past what it has run, so an optimistic guess
// that proves wrong costs one window.
func (s *costSeries) lookup(k int, optimistic bool) time.Duration {
	keys := s.keys
	if len(keys) == 0 {
		return 0
	}
	i, ok := slices.BinarySearch(keys, k)
	// A pass over more rows or branches never costs less: answer at most
	// what any larger size measured (a stale or contended measurement of
	// a small size must not make larger passes look cheap by comparison).
	floor := time.Duration(math.MaxInt64)
	for _, v := range s.vals[i:] {
		floor = min(floor, v.value)
	}
	if ok {
		return min(s.vals[i].value, floor)
	}
	return min(s.interpolate(i, k, optimistic), floor)
}

// interpolate answers an unmeasured size k that would sit at index i.
func (s *costSeries) interpolate(i, k int, optimistic bool) time.Duration {
	keys := s.keys
	at := func(i int) float64 { return float64(s.vals[i].value) }
	line := func(i0, i1 int) time.Duration {
		d0, d1 := at(i0), at(i1)
		v := d0 + (d1-d0)*float64(k-keys[i0])/float64(keys[i1]-keys[i0])
		return time.Duration(max(v, 1))
	}
	switch {
	case i == 0 && len(keys) == 1:
		return time.Duration(at(0))
	case i == 0:
		// Down the line through the two smallest, but no less than the
		// smallest's share: a pass's cost grows at most linearly with its
		// size, so c(k) >= c(k0)·k/k0. Answering c(k0) instead would make
		// a dense step look as dear as a two-row check until one is timed,
		// and a policy that keeps drafting never times one.
		return max(line(0, 1), time.Duration(at(0)*float64(k)/float64(keys[0])))
	case i < len(keys):
		return line(i-1, i)
	case len(keys) == 1 || optimistic:
		return time.Duration(at(len(keys) - 1))
	default:
		return max(line(0, len(keys)-1), time.Duration(at(len(keys)-1)))
	}
}
