package corrector

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

const eos = 0

// gen runs Generate and collects the emitted tokens.
func generate(t *testing.T, m Model, prompt []int, cfg Config) ([]int, Stats) {
	t.Helper()
	var out []int
	st, err := Generate(m, prompt, cfg, func(tok int) error { out = append(out, tok); return nil })
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if st.Generated != len(out) {
		t.Fatalf("Stats.Generated = %d, emitted %d", st.Generated, len(out))
	}
	return out, st
}

// siriusCfg is Sirius with a fixed window of k: the tests of the mechanism
// (drafting, rollback, beams, acceptance) need to know each window's shape.
// The adaptive policy has its own tests (policy_test.go).
func siriusCfg(k, maxTok int) Config {
	c := DefaultConfig()
	c.Window, c.MaxTokens, c.EOS, c.Policy = k, maxTok, []int{eos}, PolicyFixed
	return c
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func assertLog(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

// cacheLen checks branch b's cache: its length and that it holds exactly the
// prompt followed by the final tokens (all but the newest, which is never fed),
// every entry written by the full model.
func assertCache(t *testing.T, f *fakeModel, prompt, out []int) {
	t.Helper()
	want := append(slices.Clone(prompt), out[:len(out)-1]...)
	c := f.caches[0]
	if got := tokensOf(c); !slices.Equal(got, want) {
		t.Fatalf("branch 0 cache holds %v (len %d), want %v (len %d)", got, len(got), want, len(want))
	}
	for i, e := range c {
		if !e.full {
			t.Fatalf("branch 0 position %d holds sparse K/V after the last check", i)
		}
	}
}

func TestAllDraftsAccepted(t *testing.T) {
	f := &fakeModel{full: counting(50), sparse: counting(50)}
	out, st := generate(t, f, []int{1}, siriusCfg(4, 13))
	if want := seq(2, 14); !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	assertLog(t, f.log, []string{
		"P [1]",
		"D 1 [2]", "D 2 [3]", "D 3 [4]", "V 1 [[2 3 4 5]]",
		"D 5 [6]", "D 6 [7]", "D 7 [8]", "V 5 [[6 7 8 9]]",
		"D 9 [10]", "D 10 [11]", "D 11 [12]", "V 9 [[10 11 12 13]]",
	})
	assertCache(t, f, []int{1}, out)
	if st.Checks != 3 || st.AAL != 4 || st.Corrections != 0 || st.Drafted != 9 || st.Accepted != 9 || st.StopReason != StopMaxTokens {
		t.Fatalf("stats %+v", st)
	}
	for i, r := range st.PerCheck {
		if want := (CheckRecord{Start: 1 + 4*i, Drafted: 3, Accepted: 3, Token: 6 + 4*i}); r != want {
			t.Fatalf("check %d: %+v, want %+v", i, r, want)
		}
	}
}

func TestRejectAtPosition(t *testing.T) {
	full := counting(50)
	f := &fakeModel{full: full, sparse: deviating(full, map[int]int{3: 40})}
	out, st := generate(t, f, []int{1}, siriusCfg(4, 8))
	if want := seq(2, 9); !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	assertLog(t, f.log, []string{
		"P [1]",
		"D 1 [2]", "D 2 [3]", "D 3 [4]", "V 1 [[2 3 4 40]]", "T 0 4",
		"D 4 [5]", "D 5 [6]", "D 6 [7]", "V 4 [[5 6 7 8]]",
	})
	assertCache(t, f, []int{1}, out)
	want := []CheckRecord{
		{Start: 1, Drafted: 3, Accepted: 2, Corrected: true, Token: 5},
		{Start: 4, Drafted: 3, Accepted: 3, Token: 9},
	}
	if !slices.Equal(st.PerCheck, want) {
		t.Fatalf("checks %+v, want %+v", st.PerCheck, want)
	}
	if st.Corrections != 1 || st.AAL != 3.5 || st.CorrectionsPer100() != 12.5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRejectFirst(t *testing.T) {
	full := counting(50)
	f := &fakeModel{full: full, sparse: deviating(full, map[int]int{1: 40})}
	out, st := generate(t, f, []int{1}, siriusCfg(4, 3))
	if want := []int{2, 3, 4}; !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	// MaxTokens 3 leaves room for one draft ([2, draft]), then for none: the
	// last token comes from a one-token check, as in dense decoding.
	assertLog(t, f.log, []string{"P [1]", "D 1 [2]", "V 1 [[2 40]]", "T 0 2", "V 2 [[3]]"})
	assertCache(t, f, []int{1}, out)
	if st.Accepted != 0 || st.Corrections != 1 || st.Checks != 2 || st.AAL != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRollbackLengths(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bad       map[int]int
		k, max    int
		truncates []string
		checks    []CheckRecord
	}{
		{
			// W1 [2 3 40 41] keeps 1 -> T 0 3, token 4. W2 [4 5 6 41] keeps 2 ->
			// T 0 6, token 7. W3 [7 8 9 10] keeps all, bonus 11. W4 has room
			// for one draft: [11 12], bonus 13.
			name: "two rollbacks", bad: map[int]int{2: 40, 5: 41}, k: 4, max: 12,
			truncates: []string{"T 0 3", "T 0 6"},
			checks: []CheckRecord{
				{Start: 1, Drafted: 3, Accepted: 1, Corrected: true, Token: 4},
				{Start: 3, Drafted: 3, Accepted: 2, Corrected: true, Token: 7},
				{Start: 6, Drafted: 3, Accepted: 3, Token: 11},
				{Start: 10, Drafted: 1, Accepted: 1, Token: 13},
			},
		},
		{
			// Every window's first draft is wrong: each check advances by one.
			// Near MaxTokens the windows shrink (2, 2, 1, then 0 drafts).
			name: "always first", bad: map[int]int{1: 40, 2: 41, 3: 42}, k: 3, max: 5,
			truncates: []string{"T 0 2", "T 0 3", "T 0 4"},
			checks: []CheckRecord{
				{Start: 1, Drafted: 2, Accepted: 0, Corrected: true, Token: 3},
				{Start: 2, Drafted: 2, Accepted: 0, Corrected: true, Token: 4},
				{Start: 3, Drafted: 1, Accepted: 0, Corrected: true, Token: 5},
				{Start: 4, Drafted: 0, Accepted: 0, Token: 6},
			},
		},
		{
			// The last draft of a window is wrong: K-2 kept. The second window
			// has room for 6 drafts only.
			name: "last draft", bad: map[int]int{7: 45}, k: 8, max: 15,
			truncates: []string{"T 0 8"},
			checks: []CheckRecord{
				{Start: 1, Drafted: 7, Accepted: 6, Corrected: true, Token: 9},
				{Start: 8, Drafted: 6, Accepted: 6, Token: 16},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := counting(50)
			f := &fakeModel{full: full, sparse: deviating(full, tc.bad)}
			out, st := generate(t, f, []int{1}, siriusCfg(tc.k, tc.max))
			if want := seq(2, tc.max+1); !slices.Equal(out, want) {
				t.Fatalf("tokens %v, want %v", out, want)
			}
			assertLog(t, f.calls("T"), tc.truncates)
			if !slices.Equal(st.PerCheck, tc.checks) {
				t.Fatalf("checks %+v\nwant   %+v", st.PerCheck, tc.checks)
			}
			assertCache(t, f, []int{1}, out)
			adv := 0
			for _, c := range tc.checks {
				adv += c.Accepted + 1
			}
			if st.Advance != adv || st.AAL != float64(adv)/float64(len(tc.checks)) {
				t.Fatalf("advance %d AAL %v, want %d / %d", st.Advance, st.AAL, adv, len(tc.checks))
			}
		})
	}
}

func TestEOSNeverDraftedAndStopsAfterCheck(t *testing.T) {
	// The full model ends the text after the token at position 6; the sparse
	// model wants EOS at position 3 (second choice right) and, copying the
	// full model, at position 6.
	full := func(ctx []int) []float32 {
		if len(ctx)-1 == 6 {
			return peaked(50, eos, 10)
		}
		return counting(50)(ctx)
	}
	sparse := func(ctx []int) []float32 {
		if len(ctx)-1 == 3 {
			l := full(ctx)
			l[eos] = 12
			return l
		}
		return full(ctx)
	}
	f := &fakeModel{full: full, sparse: sparse}
	out, st := generate(t, f, []int{1}, siriusCfg(4, 20))
	if want := seq(2, 7); !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	// At position 6 the EOS draft is masked and the lowest other id (1) is
	// drafted; the check rejects it and the full model's EOS ends the run.
	assertLog(t, f.log, []string{
		"P [1]",
		"D 1 [2]", "D 2 [3]", "D 3 [4]", "V 1 [[2 3 4 5]]",
		"D 5 [6]", "D 6 [7]", "D 7 [1]", "V 5 [[6 7 1 2]]", "T 0 7",
	})
	if st.StopReason != StopEOS || st.Generated != 6 || st.PerCheck[1].Token != eos {
		t.Fatalf("stats %+v", st)
	}
}

func TestStopConditions(t *testing.T) {
	full := counting(50)
	for _, tc := range []struct {
		name   string
		mode   Mode
		stop   func([]int) bool
		max    int
		want   []int
		reason string
	}{
		{"stop mid-window sirius", Sirius, func(g []int) bool { return g[len(g)-1] == 5 }, 30, seq(2, 5), StopString},
		{"stop mid-window dense", Dense, func(g []int) bool { return g[len(g)-1] == 5 }, 30, seq(2, 5), StopString},
		{"stop string over two tokens", Sirius, func(g []int) bool { return slices.Equal(g[max(0, len(g)-2):], []int{9, 10}) }, 30, seq(2, 10), StopString},
		{"max tokens 1", Sirius, nil, 1, []int{2}, StopMaxTokens},
		{"max tokens 1 sparse", Sparse, nil, 1, []int{2}, StopMaxTokens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeModel{full: full, sparse: full}
			cfg := siriusCfg(8, tc.max)
			cfg.Mode, cfg.Stop = tc.mode, tc.stop
			out, st := generate(t, f, []int{1}, cfg)
			if !slices.Equal(out, tc.want) || st.StopReason != tc.reason {
				t.Fatalf("tokens %v (%s), want %v (%s)", out, st.StopReason, tc.want, tc.reason)
			}
			if tc.max == 1 {
				assertLog(t, f.log, []string{"P [1]"})
			}
		})
	}
}

func TestDenseAndSparseModes(t *testing.T) {
	full := counting(50)
	sparse := deviating(full, map[int]int{2: 40})
	f := &fakeModel{full: full, sparse: sparse}
	cfg := siriusCfg(4, 4)
	cfg.Mode = Dense
	out, st := generate(t, f, []int{1}, cfg)
	if want := seq(2, 5); !slices.Equal(out, want) {
		t.Fatalf("dense tokens %v, want %v", out, want)
	}
	assertLog(t, f.log, []string{"P [1]", "V 1 [[2]]", "V 2 [[3]]", "V 3 [[4]]"})
	assertCache(t, f, []int{1}, out)
	if st.Checks != 3 || st.AAL != 1 || st.SparsePasses != 0 || st.FullTokens != 3 || st.Window != 1 {
		t.Fatalf("dense stats %+v", st)
	}
	if d := st.EffectiveDensity(0.5, 1); d != 1 {
		t.Fatalf("dense density %v", d)
	}

	f = &fakeModel{full: full, sparse: sparse}
	cfg.Mode = Sparse
	out, st = generate(t, f, []int{1}, cfg)
	// Never checked: the sparse model's mistake at position 2 stays, and it
	// continues counting from there.
	if want := []int{2, 3, 40, 41}; !slices.Equal(out, want) {
		t.Fatalf("sparse tokens %v, want %v", out, want)
	}
	assertLog(t, f.log, []string{"P [1]", "D 1 [2]", "D 2 [3]", "D 3 [40]"})
	if st.Checks != 0 || st.AAL != 0 || st.SparsePasses != 3 || st.Drafted != 3 || st.FullTokens != 0 {
		t.Fatalf("sparse stats %+v", st)
	}
	if d := st.EffectiveDensity(0.5, 1); d != 0.5 {
		t.Fatalf("sparse density %v", d)
	}

	// In sparse mode EOS comes from the sparse model and ends generation.
	f = &fakeModel{full: full, sparse: deviating(full, map[int]int{2: eos})}
	out, st = generate(t, f, []int{1}, cfg)
	if !slices.Equal(out, []int{2, 3}) || st.StopReason != StopEOS {
		t.Fatalf("sparse EOS: tokens %v (%s)", out, st.StopReason)
	}
}

func TestAcceptAllGivesAALK(t *testing.T) {
	full := counting(50)
	// The sparse model is always wrong: it predicts t+21 (mod 49, never 0).
	sparse := func(ctx []int) []float32 { return peaked(50, (ctx[len(ctx)-1]+20)%49+1, 10) }
	for _, k := range []int{2, 5, 16} {
		f := &fakeModel{full: full, sparse: sparse}
		cfg := siriusCfg(k, 1+3*k)
		cfg.Accept = AcceptAll
		out, st := generate(t, f, []int{1}, cfg)
		if st.AAL != float64(k) || st.Checks != 3 || st.Corrections != 0 || st.Accepted != st.Drafted || st.Drafted != 3*(k-1) {
			t.Fatalf("K=%d: stats %+v", k, st)
		}
		if len(f.calls("T")) != 0 {
			t.Fatalf("K=%d: accept-all rolled back: %v", k, f.calls("T"))
		}
		// Expected: t0 from the full model, then per window K-1 sparse steps
		// and the full model's bonus (counting from the last draft).
		want := []int{2}
		for range 3 {
			last := want[len(want)-1]
			for range k - 1 {
				last = (last+20)%49 + 1
				want = append(want, last)
			}
			want = append(want, last%49+1)
		}
		if !slices.Equal(out, want) {
			t.Fatalf("K=%d: tokens %v, want %v", k, out, want)
		}
		if d, want := st.EffectiveDensity(0.5, 1), (float64(k-1)*0.5+1)/float64(k); math.Abs(d-want) > 1e-12 {
			t.Fatalf("K=%d: density %v, want %v", k, d, want)
		}
	}
}

func TestThresholdRule(t *testing.T) {
	// The full model prefers t+1 (logit 10) but gives t+2 a likelihood of
	// about 0.08 at temperature 0.6; the sparse model drafts t+2 at position 1.
	full := func(ctx []int) []float32 {
		last := ctx[len(ctx)-1]
		l := peaked(50, last+1, 10)
		l[last+2] = 8.537
		return l
	}
	p := Likelihood(full([]int{1, 2}), 4, 0.6)
	if !(p > 0.05 && p < 0.1) {
		t.Fatalf("test setup: likelihood %v not in (0.05, 0.1)", p)
	}
	sparse := func(ctx []int) []float32 {
		last := ctx[len(ctx)-1]
		if len(ctx)-1 == 1 {
			return peaked(50, last+2, 10)
		}
		return peaked(50, last+1, 10)
	}
	for _, tc := range []struct {
		thr    float64
		accept Accept
		want   []int
	}{
		{0.1, AcceptThreshold, []int{2, 3, 4, 5}},  // rejected: corrected to 3
		{0.05, AcceptThreshold, []int{2, 4, 5, 6}}, // kept
		{0.05, AcceptStrict, []int{2, 3, 4, 5}},    // not the argmax
		{0.1, AcceptAll, []int{2, 4, 5, 6}},
	} {
		f := &fakeModel{full: full, sparse: sparse}
		cfg := siriusCfg(4, 4)
		cfg.Threshold, cfg.Accept = tc.thr, tc.accept
		out, _ := generate(t, f, []int{1}, cfg)
		if !slices.Equal(out, tc.want) {
			t.Errorf("threshold %v %v: tokens %v, want %v", tc.thr, tc.accept, out, tc.want)
		}
	}
}

// Strict acceptance must reproduce dense greedy decoding exactly, for every
// window and width, with EOS and stop strings in play.
func TestStrictEqualsDenseGreedy(t *testing.T) {
	const v = 24
	for seed := range uint64(6) {
		full := hashModel(v, seed, 0)
		sparse := hashModel(v, seed, 2.5) // disagrees with full often
		for _, stop := range []func([]int) bool{nil, func(g []int) bool { return len(g) > 3 && g[len(g)-1] == 7 }} {
			ref := siriusCfg(1, 60)
			ref.Mode, ref.Stop = Dense, stop
			dense, _ := generate(t, &fakeModel{full: full, sparse: sparse}, []int{1, 5}, ref)
			for _, k := range []int{1, 2, 3, 5, 16} {
				for _, w := range []int{1, 2, 3} {
					cfg := siriusCfg(k, 60)
					cfg.Accept, cfg.Width, cfg.Stop = AcceptStrict, w, stop
					f := &fakeModel{full: full, sparse: sparse}
					out, st := generate(t, f, []int{1, 5}, cfg)
					if !slices.Equal(out, dense) {
						t.Fatalf("seed %d K=%d w=%d: strict %v\n dense %v", seed, k, w, out, dense)
					}
					if st.Checks != f.verifies {
						t.Fatalf("seed %d K=%d w=%d: %d checks but %d Verify calls", seed, k, w, st.Checks, f.verifies)
					}
					if st.StopReason == StopMaxTokens {
						assertCache(t, f, []int{1, 5}, out)
					}
				}
			}
		}
	}
}

// Threshold acceptance is not exact, but every token it emits is either a
// kept draft or the full model's argmax after a kept prefix: replaying the
// checks against the full model must reproduce each record.
func TestThresholdRecordsConsistent(t *testing.T) {
	const v = 16
	full := hashModel(v, 9, 0)
	sparse := hashModel(v, 9, 1.5)
	for _, w := range []int{1, 2, 4} {
		cfg := siriusCfg(6, 80)
		cfg.Width = w
		f := &fakeModel{full: full, sparse: sparse}
		out, st := generate(t, f, []int{1}, cfg)
		seqAll := append([]int{1}, out...)
		for i, r := range st.PerCheck {
			// the full model's token after the kept drafts is its argmax there
			ctx := seqAll[:r.Start+r.Accepted+1]
			at := r.Start + r.Accepted + 1
			if at == len(seqAll) { // generation ended with EOS, not emitted
				if r.Token != eos || i != len(st.PerCheck)-1 || st.StopReason != StopEOS {
					t.Fatalf("w=%d check %+v: token past the output is not a final EOS", w, r)
				}
				seqAll = append(seqAll, eos)
			}
			if got := Argmax(full(ctx)); got != r.Token || seqAll[at] != r.Token {
				t.Fatalf("w=%d check %+v: full argmax %d", w, r, got)
			}
			for i := range r.Accepted {
				if p := Likelihood(full(seqAll[:r.Start+i+1]), seqAll[r.Start+i+1], 0.6); p < 0.1 {
					t.Fatalf("w=%d check %+v: kept draft %d has likelihood %v", w, r, i, p)
				}
			}
		}
		if st.AAL <= 1 || st.AAL > 6 {
			t.Fatalf("w=%d: AAL %v", w, st.AAL)
		}
	}
}

// beamSparse: after a "wrong" token (>= 28) it is flat; otherwise it puts 5 on
// the wrong token t+28 and 4.5 on the right one t+1, so the greedy draft is
// always wrong but the second beam is right.
func beamSparse(ctx []int) []float32 {
	last := ctx[len(ctx)-1]
	l := make([]float32, 50)
	if last >= 28 {
		return l
	}
	l[last+28] = 5
	l[last+1] = 4.5
	return l
}

func TestBeamSecondBranchWins(t *testing.T) {
	f := &fakeModel{full: counting(50), sparse: beamSparse}
	cfg := siriusCfg(2, 5)
	cfg.Width = 2
	out, st := generate(t, f, []int{1}, cfg)
	if want := seq(2, 6); !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	assertLog(t, f.log, []string{
		"P [1]",
		"D 1 [2]", "F 1<-0", "V 1 [[2 30] [2 3]]", "F 0<-1",
		"D 3 [4]", "F 1<-0", "V 3 [[4 32] [4 5]]", "F 0<-1",
	})
	assertCache(t, f, []int{1}, out)
	if st.Checks != 2 || st.AAL != 2 || st.Corrections != 0 || st.PerCheck[0].Branch != 1 || st.FullTokens != 8 || st.SparseTokens != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Two draft steps: the beam in branch 0 dies, both survivors descend from
// branch 1, one of them moves into branch 0 without a Fork (the last step's
// stale positions are rewritten by Verify), and it wins.
func TestBeamMovesIntoDeadBranch(t *testing.T) {
	f := &fakeModel{full: counting(50), sparse: beamSparse}
	cfg := siriusCfg(3, 4)
	cfg.Width = 2
	out, st := generate(t, f, []int{1}, cfg)
	if want := seq(2, 5); !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	assertLog(t, f.log, []string{
		"P [1]",
		"D 1 [2]", "F 1<-0", "D 2 [30 3]", "V 1 [[2 3 4] [2 3 31]]",
	})
	if st.PerCheck[0] != (CheckRecord{Start: 1, Drafted: 2, Accepted: 2, Branch: 0, Token: 5}) {
		t.Fatalf("check %+v", st.PerCheck[0])
	}
	if st.SparsePasses != 2 || st.SparseTokens != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAllBeamsFail(t *testing.T) {
	sparse := func(ctx []int) []float32 {
		l := make([]float32, 50)
		l[31], l[35] = 5, 4.5
		return l
	}
	f := &fakeModel{full: counting(50), sparse: sparse}
	cfg := siriusCfg(2, 3)
	cfg.Width = 2
	out, st := generate(t, f, []int{1}, cfg)
	if want := []int{2, 3, 4}; !slices.Equal(out, want) {
		t.Fatalf("tokens %v, want %v", out, want)
	}
	// Both fail at the first draft; the tie goes to the likelier beam
	// (branch 0), which is rolled back to the window's first token. The last
	// token needs no draft: a one-token check on branch 0.
	assertLog(t, f.log, []string{"P [1]", "D 1 [2]", "F 1<-0", "V 1 [[2 31] [2 35]]", "T 0 2", "V 2 [[3]]"})
	assertCache(t, f, []int{1}, out)
	if st.Corrections != 1 || st.PerCheck[0].Branch != 0 || f.verifies != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Beams are verified in one Verify call per check, whatever the width.
func TestBeamsOneVerifyPerCheck(t *testing.T) {
	full := hashModel(30, 3, 0)
	sparse := hashModel(30, 3, 2)
	for _, w := range []int{2, 3, 5} {
		f := &fakeModel{full: full, sparse: sparse}
		cfg := siriusCfg(5, 40)
		cfg.Width, cfg.Accept = w, AcceptStrict
		_, st := generate(t, f, []int{1}, cfg)
		if f.verifies != st.Checks {
			t.Fatalf("w=%d: %d Verify calls for %d checks", w, f.verifies, st.Checks)
		}
		for _, l := range f.calls("V") {
			if n := strings.Count(l, "["); n != w+1 && n != 2 { // w branches (or 1 for a draftless window)
				t.Fatalf("w=%d: Verify call %q does not carry %d branches", w, l, w)
			}
		}
	}
}

// The speculative-sampling rule must leave the output distributed exactly as
// the full model's: compare empirical frequencies of whole outputs against
// the product of the full model's (temperature, top-p) distributions.
func TestSpeculativeSamplingPreservesDistribution(t *testing.T) {
	const v = 4 // token 0 is EOS
	fullP := [][]float64{{}, {.1, .2, .3, .4}, {.3, .1, .5, .1}, {.05, .6, .05, .3}}
	sparseP := [][]float64{{}, {.3, .5, .1, .1}, {.1, .6, .2, .1}, {.2, .1, .6, .1}} // quite different
	logits := func(tab [][]float64) func([]int) []float32 {
		return func(ctx []int) []float32 {
			l := make([]float32, v)
			for i, p := range tab[ctx[len(ctx)-1]] {
				l[i] = float32(math.Log(p))
			}
			return l
		}
	}
	full, sparse := logits(fullP), logits(sparseP)
	const maxTok, trials = 4, 30000
	for _, tc := range []struct {
		name         string
		mode         Mode
		k            int
		temp, topP   float64
		expectFailed bool // a control run that must NOT match the full model
		// trees (adaptive policy): the shapes of successive windows, as
		// {drafts, width}; each node branches as widely as the width allows.
		// An empty list lets the policy choose, with offloading costs.
		trees [][2]int
	}{
		{"K=4 T=1", Sirius, 4, 1, 0, false, nil},
		{"K=2 T=1", Sirius, 2, 1, 0, false, nil},
		{"K=3 T=0.7 top-p 0.8", Sirius, 3, 0.7, 0.8, false, nil},
		{"tree 3 deep 3 wide T=1", Sirius, 4, 1, 0, false, [][2]int{{3, 3}}},
		{"tree 2 deep 2 wide T=1", Sirius, 4, 1, 0, false, [][2]int{{2, 2}}},
		{"trees of changing shapes T=0.7 top-p 0.8", Sirius, 4, 0.7, 0.8, false, [][2]int{{3, 3}, {1, 2}, {0, 1}, {2, 3}, {1, 1}}},
		{"adaptive policy width 3 T=1", Sirius, 4, 1, 0, false, [][2]int{}},
		{"control: sparse only", Sparse, 4, 1, 0, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSampler(tc.temp, tc.topP, 1)
			// exact probability of every output (sequences ending at EOS or maxTok)
			exact := map[string]float64{}
			var walk func(out []int, last int, p float64)
			walk = func(out []int, last int, p float64) {
				d := s.Distribution(nil, full([]int{last}), nil)
				for tok, q := range d {
					if q == 0 {
						continue
					}
					if tok == eos {
						exact[fmt.Sprint(out)] += p * q
						continue
					}
					next := append(slices.Clone(out), tok)
					if len(next) == maxTok {
						exact[fmt.Sprint(next)] += p * q
						continue
					}
					walk(next, tok, p*q)
				}
			}
			walk(nil, 1, 1)
			counts := map[string]int{}
			for seed := range uint64(trials) {
				cfg := siriusCfg(tc.k, maxTok)
				cfg.Mode, cfg.Temperature, cfg.TopP, cfg.Seed = tc.mode, tc.temp, tc.topP, seed+1
				var m Model = &fakeModel{full: full, sparse: sparse}
				if tc.trees != nil {
					cfg.Policy, cfg.Width = PolicyAdaptive, 3
					if len(tc.trees) > 0 {
						cfg.plan = cyclePlans(tc.trees)
					} else {
						m = &costed{fakeModel: m.(*fakeModel), prof: offloadCosts}
					}
				}
				out, st := generate(t, m, []int{1}, cfg)
				if len(tc.trees) > 0 && seed == 0 && !slices.ContainsFunc(st.Policy.Widths[2:], func(n int) bool { return n > 0 }) {
					t.Fatalf("no window was a tree: %+v", st.Policy)
				}
				counts[fmt.Sprint(out)]++
			}
			// chi-square over outcomes, pooling those expected fewer than 5 times
			var chi, pooledE float64
			var pooledO, df int
			for k, p := range exact {
				e := p * trials
				if e < 5 {
					pooledE += e
					pooledO += counts[k]
					continue
				}
				chi += sq(float64(counts[k])-e) / e
				df++
			}
			for k, c := range counts {
				if _, ok := exact[k]; !ok {
					if !tc.expectFailed {
						t.Fatalf("output %s has probability 0 under the full model (seen %d times)", k, c)
					}
					pooledO += c
				}
			}
			if pooledE > 0 {
				chi += sq(float64(pooledO)-pooledE) / pooledE
				df++
			}
			df--
			// 99.99th percentile of chi-square is below df + 6*sqrt(2 df) + 10
			// for these df; seeds are fixed, so this is deterministic.
			bound := float64(df) + 6*math.Sqrt(2*float64(df)) + 10
			t.Logf("chi-square %.1f with %d degrees of freedom (bound %.1f)", chi, df, bound)
			if tc.expectFailed {
				if chi < 10*bound {
					t.Fatalf("control run is not distinguishable from the full model (chi-square %.1f): the test has no power", chi)
				}
				return
			}
			if chi > bound {
				t.Fatalf("chi-square %.1f > %.1f: output is not distributed like the full model", chi, bound)
			}
		})
	}
}

func sq(x float64) float64 { return x * x }

func TestSamplingDeterministic(t *testing.T) {
	full := hashModel(40, 5, 0)
	sparse := hashModel(40, 5, 1)
	run := func(seed uint64) ([]int, Stats) {
		cfg := siriusCfg(6, 50)
		cfg.Temperature, cfg.TopP, cfg.Seed = 0.9, 0.95, seed
		return generate(t, &fakeModel{full: full, sparse: sparse}, []int{1}, cfg)
	}
	a, sa := run(42)
	b, sb := run(42)
	c, _ := run(43)
	if !slices.Equal(a, b) || !slices.Equal(sa.PerCheck, sb.PerCheck) {
		t.Fatalf("same seed, different output:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 42 and 43 gave the same 50 tokens: %v", a)
	}
	if sa.Corrections == 0 || sa.Accepted == 0 {
		t.Fatalf("test setup: want both kept and rejected drafts, got %+v", sa)
	}
}

// Dense sampling goes through the same run.c sampler as the plain run path:
// token i is Sampler.Sample of the full model's logits, one RNG draw each.
func TestDenseSamplingMatchesSampler(t *testing.T) {
	full := hashModel(40, 6, 0)
	cfg := siriusCfg(1, 30)
	cfg.Mode, cfg.Temperature, cfg.TopP, cfg.Seed = Dense, 1, 0.9, 133742
	out, _ := generate(t, &fakeModel{full: full, sparse: full}, []int{1}, cfg)
	s := NewSampler(1, 0.9, 133742)
	ctx := []int{1}
	for i, tok := range out {
		want := s.Sample(full(ctx))
		if want == eos {
			t.Fatalf("reference hit EOS at %d", i)
		}
		if tok != want {
			t.Fatalf("token %d: %d, sampler says %d", i, tok, want)
		}
		ctx = append(ctx, tok)
	}
}

func TestConfigErrors(t *testing.T) {
	ok := siriusCfg(4, 10)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		msg  string
	}{
		{"max tokens", func(c *Config) { c.MaxTokens = 0 }, "max tokens"},
		{"window", func(c *Config) { c.Window = -1 }, "window"},
		{"threshold", func(c *Config) { c.Threshold = 1.5 }, "threshold"},
		{"likelihood temp", func(c *Config) { c.LikelihoodTemp = -1 }, "likelihood"},
		{"width", func(c *Config) { c.Width = -2 }, "width"},
		{"temperature", func(c *Config) { c.Temperature = math.NaN() }, "temperature"},
		{"beams with sampling", func(c *Config) { c.Width, c.Temperature = 2, 1 }, "greedy"},
		{"mode", func(c *Config) { c.Mode = 7 }, "mode"},
		{"accept", func(c *Config) { c.Accept = 9 }, "acceptance"},
	} {
		cfg := ok
		tc.mod(&cfg)
		f := &fakeModel{full: counting(10), sparse: counting(10)}
		_, err := Generate(f, []int{1}, cfg, func(int) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.msg)
		}
		if len(f.log) != 0 {
			t.Errorf("%s: model was called despite a bad config", tc.name)
		}
	}
	if _, err := Generate(&fakeModel{full: counting(10), sparse: counting(10)}, nil, ok, func(int) error { return nil }); err == nil {
		t.Error("empty prompt: want error")
	}
}

func TestModelErrors(t *testing.T) {
	full := counting(50)
	for _, tc := range []struct {
		failOn   string
		badShape bool
		sparse   func([]int) []float32
		width    int
		msg      string
	}{
		{failOn: "prefill", msg: "prefill"},
		{failOn: "draft", msg: "sparse draft"},
		{failOn: "verify", msg: "full check"},
		{failOn: "truncate", sparse: deviating(full, map[int]int{1: 40}), msg: "roll back"},
		{failOn: "fork", width: 2, msg: "fork"},
		{badShape: true, msg: "logits"},
	} {
		sp := tc.sparse
		if sp == nil {
			sp = full
		}
		f := &fakeModel{full: full, sparse: sp, failOn: tc.failOn, badShape: tc.badShape}
		cfg := siriusCfg(4, 10)
		cfg.Width = max(tc.width, 1)
		_, err := Generate(f, []int{1}, cfg, func(int) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.failOn, err, tc.msg)
		}
	}
	// An emit error stops generation and is returned.
	f := &fakeModel{full: full, sparse: full}
	stop := errors.New("client went away")
	n := 0
	_, err := Generate(f, []int{1}, siriusCfg(4, 10), func(int) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("emit error: %v after %d tokens", err, n)
	}
}

func TestEveryTokenIsEOS(t *testing.T) {
	f := &fakeModel{full: counting(3), sparse: counting(3)}
	cfg := siriusCfg(4, 10)
	cfg.EOS = []int{0, 2} // leaves 1: fine
	if _, err := Generate(f, []int{1}, cfg, func(int) error { return nil }); err != nil {
		t.Fatalf("one non-EOS token left: %v", err)
	}
	// The full model says 2 after 1 and that is EOS; nothing is drafted.
	f = &fakeModel{full: counting(2), sparse: counting(2)}
	cfg.EOS = []int{0, 1}
	out, st := generate(t, f, []int{1}, cfg)
	if len(out) != 0 || st.StopReason != StopEOS {
		t.Fatalf("tokens %v stats %+v", out, st)
	}
}

func TestParseNames(t *testing.T) {
	for _, s := range []string{"sirius", "Dense", " sparse "} {
		if _, err := ParseMode(s); err != nil {
			t.Errorf("ParseMode(%q): %v", s, err)
		}
	}
	if _, err := ParseMode("tree"); err == nil || !strings.Contains(err.Error(), "sirius, dense, sparse") {
		t.Errorf("ParseMode(tree): %v", err)
	}
	for _, s := range []string{"threshold", "STRICT", "all"} {
		if _, err := ParseAccept(s); err != nil {
			t.Errorf("ParseAccept(%q): %v", s, err)
		}
	}
	if _, err := ParseAccept("some"); err == nil || !strings.Contains(err.Error(), "threshold, strict, all") {
		t.Errorf("ParseAccept(some): %v", err)
	}
	if Sirius.String() != "sirius" || AcceptStrict.String() != "strict" {
		t.Error("String names")
	}
}

func TestEffectiveDensityReference(t *testing.T) {
	// REFERENCE.md §2: (15*0.65 + 1)/15.22 = 0.706.
	st := Stats{Mode: Sirius, Window: 16, AAL: 15.22}
	if d := st.EffectiveDensity(0.65, 1); math.Abs(d-0.706) > 0.0005 {
		t.Fatalf("density %v, want 0.706", d)
	}
}
