package corrector

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// costProfile is what a pass costs in a scripted setting.
type costProfile struct {
	name  string
	draft func(branches int) time.Duration
	check func(rows int) time.Duration
}

var (
	// On a CPU a check is compute-bound: a 16-row check costs about 1.5
	// one-row passes; a sparse pass about 0.6 of a full one.
	cpuCosts = costProfile{"cpu",
		func(w int) time.Duration {
			return time.Duration(600 * (1 + 0.25*float64(w-1)) * float64(time.Microsecond))
		},
		func(r int) time.Duration {
			return time.Duration(1000 * (1 + float64(r-1)/30) * float64(time.Microsecond))
		}}
	// Offloading: a check streams every layer once whatever its rows, and
	// costs about twice a draft.
	offloadCosts = costProfile{"offload",
		func(w int) time.Duration {
			return time.Duration(500 * (1 + 0.02*float64(w-1)) * float64(time.Microsecond))
		},
		func(r int) time.Duration {
			return time.Duration(1000 * (1 + float64(r-1)/1000) * float64(time.Microsecond))
		}}
)

// costed is a scripted model that reports its costs to the policy and
// totals the modelled time of the passes it runs.
type costed struct {
	*fakeModel
	prof  costProfile
	spent time.Duration
	plans []Plan
	// measured, if set, answers the policy's cost questions from the
	// passes run so far, as the engine does (nothing is known before the
	// first pass); otherwise the profile's exact costs are told.
	measured *CostTable
	// noisy stretches each pass by a bursty factor (up to 1.8: contention
	// on a busy machine), a hash of seed and the pass count.
	noisy  bool
	seed   uint64
	passes uint64
}

// took is what a pass of modelled cost d takes this time.
func (c *costed) took(d time.Duration) time.Duration {
	c.passes++
	if !c.noisy {
		return d
	}
	u := float64(NewRNG((c.passes+c.seed<<32)*0x9e3779b97f4a7c15|1).U32()) / (1 << 32)
	return time.Duration(float64(d) * (1 + 0.8*u*u*u*u))
}

func (c *costed) DraftCost(w int) time.Duration {
	if c.measured != nil {
		return c.measured.DraftCost(w)
	}
	return c.prof.draft(w)
}

func (c *costed) CheckCost(r int) time.Duration {
	if c.measured != nil {
		return c.measured.CheckCost(r)
	}
	return c.prof.check(r)
}

func (c *costed) WindowPlanned(p Plan) { c.plans = append(c.plans, p) }
func (c *costed) Draft(toks []int, pos int) ([][]float32, error) {
	d := c.took(c.prof.draft(len(toks)))
	c.spent += d
	if c.measured != nil {
		c.measured.ObserveDraft(len(toks), d)
	}
	return c.fakeModel.Draft(toks, pos)
}

func (c *costed) Verify(toks [][]int, pos int) ([][][]float32, error) {
	rows := 0
	for _, t := range toks {
		rows += len(t)
	}
	d := c.took(c.prof.check(rows))
	c.spent += d
	if c.measured != nil {
		c.measured.ObserveCheck(rows, d)
	}
	return c.fakeModel.Verify(toks, pos)
}

// logitsWithTop returns logits over v tokens whose softmax puts top on
// target and spreads the rest evenly.
func logitsWithTop(v, target int, top float64) []float32 {
	l := make([]float32, v)
	l[target] = float32(math.Log(top * float64(v-1) / (1 - top)))
	return l
}

func ctxHash(ctx []int, seed uint64) float64 {
	h := seed ^ 0x51ed27
	for _, t := range ctx {
		h = (h ^ uint64(t+1)) * 0x100000001b3
	}
	return float64(NewRNG(h|1).U32()) / (1 << 32)
}

// scriptedSparse drafts the full model's argmax with probability acc
// (decided by a hash of the context, so the same context always gets the
// same answer) and another token otherwise. Its top probability is
// confRight when it is right and confWrong when it is wrong: equal values
// make its confidence useless, different ones informative.
func scriptedSparse(full func([]int) []float32, acc float64, confRight, confWrong float64) func([]int) []float32 {
	return func(ctx []int) []float32 {
		fl := full(ctx)
		v, want := len(fl), Argmax(fl)
		if ctxHash(ctx, 7) < acc {
			return logitsWithTop(v, want, confRight)
		}
		wrong := 1 + (want+int(ctxHash(ctx, 11)*float64(v-2)))%(v-1)
		if wrong == want {
			wrong = 1 + wrong%(v-1)
		}
		return logitsWithTop(v, wrong, confWrong)
	}
}

type runResult struct {
	out   []int
	st    Stats
	spent time.Duration
	plans []Plan
}

func runCosted(t *testing.T, full, sparse func([]int) []float32, prof costProfile, cfg Config) runResult {
	t.Helper()
	return runModel(t, &costed{fakeModel: &fakeModel{full: full, sparse: sparse}, prof: prof}, cfg)
}

// runMeasured is runCosted with costs learnt from the passes run.
func runMeasured(t *testing.T, full, sparse func([]int) []float32, prof costProfile, cfg Config) runResult {
	t.Helper()
	return runModel(t, &costed{fakeModel: &fakeModel{full: full, sparse: sparse}, prof: prof, measured: &CostTable{}}, cfg)
}

func runModel(t *testing.T, m *costed, cfg Config) runResult {
	t.Helper()
	out, st := generate(t, m, []int{1, 5}, cfg)
	return runResult{out, st, m.spent, m.plans}
}

func policyCfg(policy WindowPolicy, window, width, maxTok int) Config {
	c := DefaultConfig()
	c.Policy, c.Window, c.Width, c.MaxTokens, c.Accept = policy, window, width, maxTok, AcceptStrict
	return c
}

// TestPolicyTable runs the adaptive policy against scripted acceptance
// (0, 1/2, 1) and costs (cheap checks on a CPU-like profile, checks that cost
// a full streamed pass whatever their rows), and holds it to what the cost
// model says is best: never more than 10% slower than dense, never more than
// 10% slower than the best fixed window, and the expected decisions.
func TestPolicyTable(t *testing.T) {
	const v, n = 32, 300
	full := hashModel(v, 3, 0)
	type want struct {
		dense bool // after warm-up nearly every window is a dense step, with probes
		minK  int  // otherwise the most common window drafts at least minK-1 tokens
		maxK  int  // ... and at most maxK-1
	}
	for _, tc := range []struct {
		acc  float64
		prof costProfile
		want want
	}{
		{0, cpuCosts, want{dense: true}},
		{0, offloadCosts, want{dense: true}},
		{0.5, cpuCosts, want{dense: true}},
		{0.5, offloadCosts, want{minK: 1, maxK: 3}},
		{1, cpuCosts, want{minK: 16, maxK: 16}},
		{1, offloadCosts, want{minK: 16, maxK: 16}},
	} {
		t.Run(fmt.Sprintf("acc=%v/%s", tc.acc, tc.prof.name), func(t *testing.T) {
			sparse := scriptedSparse(full, tc.acc, 0.6, 0.6)
			dcfg := policyCfg(PolicyFixed, 16, 1, n)
			dcfg.Mode = Dense
			dense := runCosted(t, full, sparse, tc.prof, dcfg)
			ad := runCosted(t, full, sparse, tc.prof, policyCfg(PolicyAdaptive, 16, 1, n))
			if !slices.Equal(ad.out, dense.out) {
				t.Fatalf("strict adaptive differs from dense")
			}
			bestFixed, bestK := time.Duration(math.MaxInt64), 0
			for _, k := range []int{2, 4, 8, 16} {
				r := runCosted(t, full, sparse, tc.prof, policyCfg(PolicyFixed, k, 1, n))
				if r.spent < bestFixed {
					bestFixed, bestK = r.spent, k
				}
			}
			ps := ad.st.Policy
			t.Logf("dense %v, best fixed K=%d %v, adaptive %v (%.2fx dense, %.2fx best fixed)\n%s",
				dense.spent, bestK, bestFixed, ad.spent, float64(ad.spent)/float64(dense.spent), float64(ad.spent)/float64(bestFixed), ps)
			if float64(ad.spent) > 1.10*float64(dense.spent) {
				t.Errorf("adaptive %v is more than 1.10x dense %v", ad.spent, dense.spent)
			}
			if float64(ad.spent) > 1.10*float64(bestFixed) {
				t.Errorf("adaptive %v is more than 1.10x the best fixed window (K=%d, %v)", ad.spent, bestK, bestFixed)
			}
			// The most common planned window after a warm-up of 5.
			hist := map[int]int{}
			for _, p := range ad.plans[min(5, len(ad.plans)):] {
				if !p.Probe {
					hist[p.Drafts+1]++
				}
			}
			common := 0
			for k, c := range hist {
				if c > hist[common] || (c == hist[common] && k > common) {
					common = k
				}
			}
			if tc.want.dense {
				if common != 1 || ps.DenseSteps < n/2 || ps.Probes == 0 {
					t.Errorf("want dense decoding with probes: most common K=%d, %d dense steps, %d probes", common, ps.DenseSteps, ps.Probes)
				}
				if len(ps.Fallbacks) == 0 || !strings.Contains(ps.Fallbacks[0].Reason, "break-even") {
					t.Errorf("fallbacks %+v: want a reason naming the break-even acceptance", ps.Fallbacks)
				}
			} else if common < tc.want.minK || common > tc.want.maxK {
				t.Errorf("most common K=%d, want %d..%d (histogram %v)", common, tc.want.minK, tc.want.maxK, hist)
			}
			// Three standard deviations of a binomial estimate (the drafts
			// the policy chose to judge are the sample).
			if tol := 3*math.Sqrt(tc.acc*(1-tc.acc)/float64(max(ps.Judged, 1))) + 0.02; ps.Judged == 0 || math.Abs(ps.AcceptanceRate()-tc.acc) > tol {
				t.Errorf("observed acceptance %.2f over %d drafts, scripted %v (tolerance %.2f)", ps.AcceptanceRate(), ps.Judged, tc.acc, tol)
			}
		})
	}
}

// With acceptance 0 the policy leaves drafting within a few windows and
// then only probes, less and less often. Drafts here cost a tenth of a
// pass, so the policy's optimism keeps trying a little longer: it pays at
// most a tenth of a pass per window for it.
func TestPolicyZeroAcceptanceFallsBack(t *testing.T) {
	full := hashModel(32, 4, 0)
	sparse := scriptedSparse(full, 0, 0.6, 0.6)
	cheap := costProfile{"cheap drafts",
		func(int) time.Duration { return 100 * time.Microsecond },
		func(int) time.Duration { return time.Millisecond }}
	r := runCosted(t, full, sparse, cheap, policyCfg(PolicyAdaptive, 16, 1, 400))
	first := slices.IndexFunc(r.plans, func(p Plan) bool { return p.Drafts == 0 && p.Reason != recheckReason })
	if first < 0 || first > 16 {
		t.Fatalf("first dense window at %d, want within the first 16 (plans %+v)", first, r.plans[:16])
	}
	dense := time.Duration(len(r.out)-1) * cheap.check(1)
	if float64(r.spent) > 1.05*float64(dense) {
		t.Fatalf("modelled time %v is more than 1.05x dense %v", r.spent, dense)
	}
	var probes []int
	for i, p := range r.plans[first:] {
		if p.Drafts > 0 {
			if !p.Probe || p.Drafts != 1 {
				t.Fatalf("window %d after falling back drafts %d tokens (probe %v)", first+i, p.Drafts, p.Probe)
			}
			probes = append(probes, first+i)
		}
	}
	for i := 2; i < len(probes); i++ {
		if probes[i]-probes[i-1] < probes[i-1]-probes[i-2] {
			t.Fatalf("probe intervals shrink: probes at %v", probes)
		}
	}
	t.Logf("cheap drafts, acceptance 0: K=1 from window %d; probes at windows %v", first, probes)
	if len(probes) > 8 {
		t.Fatalf("%d probes in 400 tokens", len(probes))
	}
}

// A sequence whose drafts become good after a bad start leaves dense
// decoding: probes notice and the policy drafts long windows again.
func TestPolicyRecoversWhenDraftsImprove(t *testing.T) {
	const switchAt = 120
	full := hashModel(32, 5, 0)
	bad := scriptedSparse(full, 0, 0.6, 0.6)
	sparse := func(ctx []int) []float32 {
		if len(ctx) < switchAt {
			return bad(ctx)
		}
		return full(ctx)
	}
	r := runCosted(t, full, sparse, offloadCosts, policyCfg(PolicyAdaptive, 16, 1, 400))
	pos, back := 2, -1
	for _, rec := range r.st.PerCheck {
		if rec.Start > switchAt && rec.Drafted >= 8 {
			back = rec.Start
			break
		}
		pos = rec.Start
	}
	_ = pos
	if back < 0 || back > switchAt+150 {
		t.Fatalf("drafting resumed at position %d, want soon after %d\n%s", back, switchAt, r.st.Policy)
	}
	t.Logf("drafts became perfect at position %d; windows of >= 8 drafts resumed at %d", switchAt, back)
}

// When the sparse model's confidence tells right drafts from wrong ones,
// the policy learns the level and stops drafting after unsure drafts.
func TestPolicyStopsOnLowConfidence(t *testing.T) {
	full := hashModel(32, 6, 0)
	sparse := scriptedSparse(full, 0.7, 0.95, 0.15)
	r := runCosted(t, full, sparse, offloadCosts, policyCfg(PolicyAdaptive, 16, 1, 400))
	blind := runCosted(t, full, scriptedSparse(full, 0.7, 0.6, 0.6), offloadCosts, policyCfg(PolicyAdaptive, 16, 1, 400))
	ps := r.st.Policy
	t.Logf("informative confidence: %v modelled, %d early stops, AAL %.2f; uninformative: %v, %d early stops, AAL %.2f",
		r.spent, ps.EarlyStops, r.st.AAL, blind.spent, blind.st.Policy.EarlyStops, blind.st.AAL)
	if ps.EarlyStops == 0 {
		t.Fatal("no early stops although low confidence always meant a wrong draft")
	}
	separating, long := 0, 0
	for _, p := range r.plans {
		if p.Drafts > 1 && !p.Probe {
			long++
			if p.StopBelow > 0.15 && p.StopBelow <= 0.95 {
				separating++
			}
		}
	}
	if separating*10 < long*9 {
		t.Fatalf("%d of %d multi-draft plans have a stop level between the confidences 0.15 and 0.95", separating, long)
	}
	if r.spent >= blind.spent {
		t.Fatalf("informative confidence did not help: %v vs %v", r.spent, blind.spent)
	}
}

// Trees: when check rows are nearly free (offloading), a tree keeps more
// tokens per check than the best chain, strict output still equals dense,
// and the modelled time is no worse.
func TestPolicyTreesWhenRowsAreFree(t *testing.T) {
	const v, n = 32, 400
	full := hashModel(v, 8, 0)
	// Right 70% of the time; when wrong, the right token is the runner-up.
	sparse := func(ctx []int) []float32 {
		fl := full(ctx)
		want := Argmax(fl)
		l := make([]float32, v)
		other := 1 + (want+3)%(v-1)
		if ctxHash(ctx, 7) < 0.7 {
			l[want], l[other] = 3, 2
		} else {
			l[want], l[other] = 2.5, 3
		}
		return l
	}
	chain := runCosted(t, full, sparse, offloadCosts, policyCfg(PolicyAdaptive, 16, 1, n))
	tree := runCosted(t, full, sparse, offloadCosts, policyCfg(PolicyAdaptive, 16, 4, n))
	if !slices.Equal(chain.out, tree.out) {
		t.Fatal("strict tree output differs from the chain's")
	}
	t.Logf("chain: AAL %.2f, %v modelled\ntree:  AAL %.2f, %v modelled\n%s", chain.st.AAL, chain.spent, tree.st.AAL, tree.spent, tree.st.Policy)
	if tree.st.AAL <= chain.st.AAL {
		t.Errorf("tree AAL %.2f <= chain %.2f", tree.st.AAL, chain.st.AAL)
	}
	if tree.spent > chain.spent {
		t.Errorf("tree modelled time %v > chain %v", tree.spent, chain.spent)
	}
	wide := 0
	for w, c := range tree.st.Policy.Widths {
		if w > 1 {
			wide += c
		}
	}
	if wide == 0 {
		t.Error("no window used more than one path")
	}
}

// On a CPU-like profile extra rows are not free: with the same sparse model
// the policy keeps to chains (or dense) rather than paying for paths.
func TestPolicyNoTreesWhenRowsCost(t *testing.T) {
	full := hashModel(32, 8, 0)
	sparse := scriptedSparse(full, 0.9, 0.6, 0.6)
	r := runCosted(t, full, sparse, cpuCosts, policyCfg(PolicyAdaptive, 16, 4, 300))
	c := runCosted(t, full, sparse, cpuCosts, policyCfg(PolicyAdaptive, 16, 1, 300))
	t.Logf("width<=4: %v, AAL %.2f; width 1: %v\n%s", r.spent, r.st.AAL, c.spent, r.st.Policy)
	if float64(r.spent) > 1.05*float64(c.spent) {
		t.Fatalf("allowing trees made the CPU profile slower: %v vs %v", r.spent, c.spent)
	}
}

func TestPolicyNames(t *testing.T) {
	for _, s := range []string{"adaptive", " Fixed"} {
		if _, err := ParseWindowPolicy(s); err != nil {
			t.Errorf("ParseWindowPolicy(%q): %v", s, err)
		}
	}
	if _, err := ParseWindowPolicy("auto"); err == nil || !strings.Contains(err.Error(), "fixed, adaptive") {
		t.Errorf("ParseWindowPolicy(auto): %v", err)
	}
	// Code that predates the policy (a zero Config, DefaultConfig) keeps the
	// paper's fixed window.
	if DefaultConfig().Policy != PolicyFixed || (Config{}).Policy != PolicyFixed || PolicyAdaptive.String() != "adaptive" {
		t.Error("the zero and default policies must be fixed")
	}
}

func TestCostTable(t *testing.T) {
	var ct CostTable
	if ct.CheckCost(4) != 0 || ct.DraftCost(1) != 0 {
		t.Fatal("an empty table must say it knows nothing")
	}
	ct.ObserveCheck(1, 10*time.Millisecond)
	if ct.CheckCost(16) != 10*time.Millisecond {
		t.Fatalf("one measurement: check(16) = %v, want the one-row time", ct.CheckCost(16))
	}
	ct.ObserveCheck(16, 25*time.Millisecond)
	ct.ObserveDraft(1, 50*time.Millisecond) // a cold first pass
	for _, ms := range []time.Duration{5, 6, 5, 7} {
		ct.ObserveDraft(1, ms*time.Millisecond)
	}
	ct.ObserveDraft(2, 8*time.Millisecond)
	ct.ObserveDraft(2, 12*time.Millisecond) // the lower median of two: the faster
	for _, tc := range []struct {
		got, want time.Duration
	}{
		{ct.CheckCost(1), 10 * time.Millisecond},
		{ct.CheckCost(6), 15 * time.Millisecond},  // interpolated
		{ct.CheckCost(31), 25 * time.Millisecond}, // beyond the largest: as the largest (optimistic)
		{ct.DraftCost(1), 6 * time.Millisecond},   // the lower median of 50 5 6 5 7
		{ct.DraftCost(2), 8 * time.Millisecond},
		{ct.DraftCost(3), 10 * time.Millisecond}, // along the line through 1 and 2
	} {
		if tc.got != tc.want {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
	ct.ObserveCheck(-1, time.Second) // ignored
	ct.ObserveCheck(4, -time.Second)
	if ct.CheckCost(4) != 13*time.Millisecond {
		t.Fatalf("bad observations changed the table: %v", ct.CheckCost(4))
	}
	// Below every measured size: the smallest alone, then down the line
	// through the two smallest, never below the smallest's share.
	var low CostTable
	low.ObserveCheck(2, 1350*time.Microsecond)
	if got := low.CheckCost(1); got != 1350*time.Microsecond {
		t.Errorf("one size measured: check(1) = %v, want check(2)", got)
	}
	low.ObserveCheck(8, 3450*time.Microsecond)
	if got := low.CheckCost(1); got != 1000*time.Microsecond {
		t.Errorf("down the line: check(1) = %v, want 1ms", got)
	}
	var steep CostTable
	steep.ObserveCheck(2, time.Millisecond)
	steep.ObserveCheck(3, 2400*time.Microsecond)
	if got := steep.CheckCost(1); got != 500*time.Microsecond {
		t.Errorf("steep line: check(1) = %v, want half of check(2)", got)
	}
	// A one-row check measured in a slow moment, then only larger checks
	// (drafting): a smaller pass never answers more than a larger one did.
	ct.ObserveCheck(2, 9*time.Millisecond)
	ct.ObserveDraft(4, 3*time.Millisecond)
	for _, tc := range []struct {
		got, want time.Duration
	}{
		{ct.CheckCost(1), 9 * time.Millisecond},
		{ct.CheckCost(2), 9 * time.Millisecond},
		{ct.DraftCost(1), 3 * time.Millisecond},
		{ct.DraftCost(3), 3 * time.Millisecond},
	} {
		if tc.got != tc.want {
			t.Errorf("monotone: got %v, want %v", tc.got, tc.want)
		}
	}
}

// expectTokens is the chain formula at width 1 and grows with width.
func TestExpectTokens(t *testing.T) {
	if e := expectTokens(0.5, 0.3, 3, 1); math.Abs(e-1.875) > 1e-12 {
		t.Fatalf("chain of 3 at 0.5: %v, want 1.875", e)
	}
	if e := expectTokens(1, 0.3, 15, 4); e != 16 {
		t.Fatalf("perfect drafts: %v, want 16", e)
	}
	if e := expectTokens(0, 0.5, 4, 2); e != 1.5 {
		t.Fatalf("no top draft kept, alternative half the time: %v, want 1.5", e)
	}
	prev := 0.0
	for w := 1; w <= 4; w++ {
		e := expectTokens(0.6, 0.4, 6, w)
		if e <= prev {
			t.Fatalf("width %d: %v not above %v", w, e, prev)
		}
		prev = e
	}
}

// BenchmarkPolicyNext is the policy's own cost per window (it runs on the
// CPU between passes): a 16-deep, 4-wide search over every stop level.
func BenchmarkPolicyNext(b *testing.B) {
	ct := &CostTable{}
	for r := 1; r <= 64; r *= 2 {
		ct.ObserveCheck(r, time.Duration(1000+10*r)*time.Microsecond)
	}
	for w := 1; w <= 4; w++ {
		ct.ObserveDraft(w, time.Duration(500+20*w)*time.Microsecond)
	}
	var st PolicyStats
	p := newPolicy(15, 4, ct, &st)
	p.ran(64, 4)
	for i := range 200 {
		c := float64(i%10) / 10
		p.acc.drafted(c)
		p.acc.observeTop(c, i%3 != 0)
	}
	b.ResetTimer()
	for range b.N {
		p.next(15, 100)
	}
}

// The report block names what the engine's report needs: the histograms,
// acceptance, expected vs achieved, and each fallback with its reason.
func TestPolicyStatsString(t *testing.T) {
	full := hashModel(32, 4, 0)
	r := runCosted(t, full, scriptedSparse(full, 0, 0.6, 0.6), cpuCosts, policyCfg(PolicyAdaptive, 16, 1, 60))
	s := r.st.Policy.String()
	for _, want := range []string{"policy adaptive", "windows K=1:", "widths 1:", "dense steps", "probes",
		"acceptance 0.00 of", "tokens per check expected", "fell back to dense 1 time(s)", ": acceptance 0.250 (planned with 0.500) is below the break-even"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if ps := r.st.Policy; ps.ExpectedPerCheck() < 1 || ps.DenseSteps+ps.Probes > len(r.plans) || ps.DenseSteps < len(r.plans)/2 {
		t.Errorf("stats %+v", ps)
	}
}

// TestPolicyRampUp: with drafts that are always kept, the trust region lets
// the check rows grow 4x per window (2, 8, then the full 16), on both cost
// profiles: every ramp-up window costs a check pass the fixed window does
// not pay.
func TestPolicyRampUp(t *testing.T) {
	const v, n = 32, 120
	full := hashModel(v, 3, 0)
	for _, prof := range []costProfile{cpuCosts, offloadCosts} {
		t.Run(prof.name, func(t *testing.T) {
			ad := runCosted(t, full, scriptedSparse(full, 1, 0.9, 0.9), prof, policyCfg(PolicyAdaptive, 16, 1, n))
			var ks []int
			for _, p := range ad.plans[:min(4, len(ad.plans))] {
				ks = append(ks, p.Drafts+1)
			}
			if want := []int{2, 8, 16, 16}; !slices.Equal(ks, want) {
				t.Errorf("first windows K=%v, want %v", ks, want)
			}
		})
	}
}

// TestPolicyThenHint: each plan says what the next window will be when
// nothing changes, so that an engine can prefetch the right pass: with
// drafts that are never kept, the dense step before each probe says a
// probe follows, the other dense steps say a dense step follows, and a
// drafting window says it drafts again.
func TestPolicyThenHint(t *testing.T) {
	const v, n = 32, 300
	full := hashModel(v, 3, 0)
	for _, tc := range []struct {
		acc  float64
		prof costProfile
	}{{0, cpuCosts}, {0, offloadCosts}, {1, offloadCosts}} {
		t.Run(fmt.Sprintf("acc=%v/%s", tc.acc, tc.prof.name), func(t *testing.T) {
			ad := runCosted(t, full, scriptedSparse(full, tc.acc, 0.6, 0.6), tc.prof, policyCfg(PolicyAdaptive, 16, 1, n))
			right, probes := 0, 0
			for i, p := range ad.plans[:len(ad.plans)-1] {
				next := ad.plans[i+1]
				switch {
				case p.Probe:
					if p.Then != 0 {
						t.Errorf("plan %d is a probe with hint %d", i, p.Then)
					}
				case p.Drafts > 0:
					if p.Then != p.Drafts {
						t.Errorf("plan %d drafts %d, hint %d", i, p.Drafts, p.Then)
					}
				case next.Probe:
					probes++
					if p.Then != next.Drafts {
						t.Errorf("plan %d: the dense step before a probe of %d drafts hints %d", i, next.Drafts, p.Then)
					}
				}
				if (p.Then > 0) == (next.Drafts > 0) {
					right++
				}
			}
			if tc.acc == 0 && probes == 0 {
				t.Fatal("no probes")
			}
			// Hints are wrong only where an outcome changed the plan.
			if frac := float64(right) / float64(len(ad.plans)-1); frac < 0.9 {
				t.Errorf("the hint named the next window's kind for %.2f of %d windows", frac, len(ad.plans)-1)
			}
		})
	}
}

// TestSeparates: an early-stop level needs evidence that confidence below it
// predicts rejection.
func TestSeparates(t *testing.T) {
	judge := func(m *acceptModel, conf float64, n, kept int) {
		for i := range n {
			m.observeTop(conf, i < kept)
		}
	}
	for _, tc := range []struct {
		name string
		fill func(m *acceptModel)
		want bool
	}{
		{"nothing judged", func(m *acceptModel) {}, false},
		{"clear split", func(m *acceptModel) { judge(m, 0.1, 20, 2); judge(m, 0.8, 20, 18) }, true},
		{"no split", func(m *acceptModel) { judge(m, 0.1, 20, 14); judge(m, 0.8, 20, 15) }, false},
		{"too few below", func(m *acceptModel) { judge(m, 0.1, 3, 0); judge(m, 0.8, 20, 18) }, false},
		{"too few above", func(m *acceptModel) { judge(m, 0.1, 20, 2); judge(m, 0.8, 3, 3) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m acceptModel
			tc.fill(&m)
			if got := m.separates(0.5); got != tc.want {
				t.Errorf("separates(0.5) = %v, want %v (bins %+v)", got, tc.want, m.bins)
			}
		})
	}
}

// stepCosts is the profile of a tiny model on a busy CPU (stories260K on 2
// cores): fixed per-pass overhead dominates, so a sparse pass costs nearly a
// dense step and every extra checked row a third of one. Drafting cannot pay
// at any acceptance; only exploring can lose. nearCosts is a profile where
// long windows pay only above an acceptance of about 0.8.
var (
	stepCosts = costProfile{"overhead-bound",
		func(w int) time.Duration { return time.Duration(900+100*(w-1)) * time.Microsecond },
		func(r int) time.Duration { return time.Duration(1000+350*(r-1)) * time.Microsecond }}
	nearCosts = costProfile{"near break-even",
		func(w int) time.Duration { return time.Duration(700+100*(w-1)) * time.Microsecond },
		func(r int) time.Duration { return time.Duration(1000+60*(r-1)) * time.Microsecond }}
)

// TestPolicyExplorationBudget: where drafting loses, optimism and probes are
// paid from the exploration budget, so the adaptive policy stays within a
// few percent of dense decoding at every acceptance, whether the costs are
// told or learnt from the passes (nothing known at first, as in the
// engine). Where drafts are good they pay for themselves: the budget does
// not slow the ramp.
func TestPolicyExplorationBudget(t *testing.T) {
	const v, n = 32, 256
	full := hashModel(v, 3, 0)
	for _, prof := range []costProfile{stepCosts, nearCosts} {
		for _, costs := range []string{"told", "measured"} {
			for _, acc := range []float64{0, 0.3, 0.5, 0.7} {
				t.Run(fmt.Sprintf("%s/%s/acc=%v", prof.name, costs, acc), func(t *testing.T) {
					run := map[string]func(*testing.T, func([]int) []float32, func([]int) []float32, costProfile, Config) runResult{
						"told": runCosted, "measured": runMeasured}[costs]
					sparse := scriptedSparse(full, acc, 0.6, 0.6)
					dcfg := policyCfg(PolicyFixed, 16, 1, n)
					dcfg.Mode = Dense
					dense := run(t, full, sparse, prof, dcfg)
					ad := run(t, full, sparse, prof, policyCfg(PolicyAdaptive, 16, 1, n))
					lost := float64(ad.spent-dense.spent) / float64(prof.check(1))
					t.Logf("%.3fx dense (%.1f dense steps lost); %d explorations deferred\n%s",
						float64(ad.spent)/float64(dense.spent), lost, ad.st.Policy.Deferred, ad.st.Policy)
					// The budget: the allowance, the share of the time,
					// and one window's overshoot.
					if limit := explorationAllowance + explorationShare*float64(n) + 2; lost > limit {
						t.Errorf("lost %.1f dense steps to exploring, budget about %.1f", lost, limit)
					}
				})
			}
		}
	}
	// Good drafts on the CPU profile: the second window drafts 7 tokens, as
	// without a budget (TestPolicyRampUp), with costs told or learnt.
	for _, run := range []func(*testing.T, func([]int) []float32, func([]int) []float32, costProfile, Config) runResult{runCosted, runMeasured} {
		ad := run(t, full, scriptedSparse(full, 1, 0.6, 0.6), cpuCosts, policyCfg(PolicyAdaptive, 16, 1, 64))
		if len(ad.plans) < 3 || ad.plans[1].Drafts < 7 || ad.st.Policy.Deferred != 0 {
			t.Errorf("perfect drafts: plans %+v, %d deferred; want a 7-draft second window and nothing deferred", ad.plans[:min(3, len(ad.plans))], ad.st.Policy.Deferred)
		}
	}
}

// TestPolicyNoisyCosts runs the adaptive policy on costs learnt from passes
// that a busy machine now and then stretches by up to 1.8x (costed.noisy), over
// the four cost profiles and acceptance 0, 1/2 and 0.9, a few noise seeds
// each: whatever the noise, it stays within 10% of dense decoding in every
// run and within a few percent of the best of dense and the fixed windows
// on average. The cost table's lower medians, the drafting
// bar (minGain), the re-timed dense steps and the exploration budget are
// what hold it there.
func TestPolicyNoisyCosts(t *testing.T) {
	const v, n, seeds = 32, 256, 4
	full := hashModel(v, 3, 0)
	for _, prof := range []costProfile{stepCosts, nearCosts, cpuCosts, offloadCosts} {
		for _, acc := range []float64{0, 0.5, 0.9} {
			t.Run(fmt.Sprintf("%s/acc=%v", prof.name, acc), func(t *testing.T) {
				sparse := scriptedSparse(full, acc, 0.6, 0.6)
				var sumDense, sumBest, worst float64
				for seed := uint64(1); seed <= seeds; seed++ {
					run := func(cfg Config) runResult {
						return runModel(t, &costed{fakeModel: &fakeModel{full: full, sparse: sparse}, prof: prof,
							measured: &CostTable{}, noisy: true, seed: seed}, cfg)
					}
					dcfg := policyCfg(PolicyFixed, 16, 1, n)
					dcfg.Mode = Dense
					dense := run(dcfg)
					ad := run(policyCfg(PolicyAdaptive, 16, 1, n))
					best := dense.spent
					for _, k := range []int{2, 4, 8, 16} {
						best = min(best, run(policyCfg(PolicyFixed, k, 1, n)).spent)
					}
					r := float64(ad.spent) / float64(dense.spent)
					sumDense += r
					worst = max(worst, r)
					sumBest += float64(ad.spent) / float64(best)
					if r > 1.10 {
						t.Errorf("seed %d: adaptive %.3fx dense\n%s", seed, r, ad.st.Policy)
					}
				}
				t.Logf("adaptive/dense mean %.3f worst %.3f; adaptive/best mean %.3f", sumDense/seeds, worst, sumBest/seeds)
				if sumDense/seeds > 1.06 || sumBest/seeds > 1.07 {
					t.Errorf("adaptive is %.3fx dense and %.3fx the best on average, want at most 1.06 and 1.07", sumDense/seeds, sumBest/seeds)
				}
			})
		}
	}
}
